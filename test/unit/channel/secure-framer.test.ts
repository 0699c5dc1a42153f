import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError } from '../../../src/core/errors.js';
import { REKEY_INTERVAL, TransportOpener, TransportSealer, type MessageCipher } from '../../../src/channel/secure-framer.js';
import { cipherPair } from './helpers.js';

/** `length ‖ ciphertext` of each plaintext, as the channel puts them on the wire. */
function wire(sealer: TransportSealer, plaintexts: readonly Buffer[]): Buffer {
  return Buffer.concat(
    plaintexts.flatMap((plaintext) => {
      const ciphertext = sealer.seal(plaintext);
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(ciphertext.length);
      return [prefix, ciphertext];
    }),
  );
}

function collector(recv: MessageCipher, nonceLimit?: number): { opener: TransportOpener; received: Buffer[] } {
  const received: Buffer[] = [];
  const opener = new TransportOpener(recv, (plaintext) => (received.push(plaintext), true), nonceLimit);
  return { opener, received };
}

test('messages split at every possible boundary reassemble in order (§4.1)', () => {
  const plaintexts = [Buffer.from('a'), Buffer.alloc(300, 7), Buffer.from('end')];
  for (let cut1 = 0; cut1 <= 40; cut1++) {
    for (const cut2 of [cut1, cut1 + 1, cut1 + 2, 330, 340]) {
      const keys = cipherPair();
      const bytes = wire(new TransportSealer(keys.initiator.send), plaintexts);
      const { opener, received } = collector(keys.responder.recv);
      const [a, b] = [Math.min(cut1, cut2), Math.max(cut1, cut2)];
      opener.push(bytes.subarray(0, a));
      opener.push(bytes.subarray(a, b));
      opener.push(bytes.subarray(b));
      assert.deepEqual(received, plaintexts, `cuts at ${a}, ${b}`);
      assert.equal(opener.midMessage, false);
    }
  }
});

test('one byte at a time, including the split length prefix', () => {
  const keys = cipherPair();
  const plaintexts = [Buffer.alloc(65_519, 1), Buffer.from('x')];
  const bytes = wire(new TransportSealer(keys.initiator.send), plaintexts);
  const { opener, received } = collector(keys.responder.recv);
  const boundaries = new Set([2 + 65_535, bytes.length]);
  for (let i = 0; i < bytes.length; i++) {
    opener.push(bytes.subarray(i, i + 1));
    assert.equal(opener.midMessage, !boundaries.has(i + 1));
  }
  assert.deepEqual(received, plaintexts);
  assert.equal(opener.midMessage, false);
});

test('the largest message is 65535 bytes on the wire (a 65519-byte plaintext)', () => {
  const keys = cipherPair();
  const ciphertext = new TransportSealer(keys.initiator.send).seal(Buffer.alloc(65_519));
  assert.equal(ciphertext.length, 65_535);
});

test(`both directions rekey after ${REKEY_INTERVAL} messages, in lockstep (§4.1)`, () => {
  const keys = cipherPair();
  for (const [send, recv] of [
    [keys.initiator.send, keys.responder.recv],
    [keys.responder.send, keys.initiator.recv],
  ] as const) {
    const sealer = new TransportSealer(send);
    const { opener, received } = collector(recv);
    const total = REKEY_INTERVAL + 500;
    const batch: Buffer[] = [];
    for (let i = 0; i < total; i++) {
      batch.push(Buffer.from([i & 0xff, (i >> 8) & 0xff, i >> 16]));
      if (batch.length === 4096 || i === total - 1) {
        opener.push(wire(sealer, batch));
        batch.length = 0;
      }
    }
    assert.equal(received.length, total);
    assert.deepEqual(received[total - 1], Buffer.from([(total - 1) & 0xff, ((total - 1) >> 8) & 0xff, (total - 1) >> 16]));
    assert.equal(send.nonce, total);
    assert.equal(recv.nonce, total);
  }
});

test('a rekey is real: a receiver that skips it cannot read the next message', () => {
  const keys = cipherPair();
  keys.initiator.send.setNonce(REKEY_INTERVAL - 1);
  keys.responder.recv.setNonce(REKEY_INTERVAL - 1);
  const sealer = new TransportSealer(keys.initiator.send);
  const bytes = wire(sealer, [Buffer.from('last before rekey'), Buffer.from('first after')]);
  // A raw CipherState with no rekey logic decrypts the first message and fails on the second.
  const first = keys.responder.recv.decryptWithAd(Buffer.alloc(0), bytes.subarray(2, 2 + 17 + 16));
  assert.equal(first.toString(), 'last before rekey');
  assert.throws(() => keys.responder.recv.decryptWithAd(Buffer.alloc(0), bytes.subarray(2 + 33 + 2)));
});

test('a flipped bit, a replay and a reordering each fail authentication', () => {
  const tamper = (mutate: (messages: Buffer[]) => Buffer[]): unknown => {
    const keys = cipherPair();
    const sealer = new TransportSealer(keys.initiator.send);
    const messages = [Buffer.from('one'), Buffer.from('two')].map((p) => wire(sealer, [p]));
    const { opener } = collector(keys.responder.recv);
    try {
      for (const message of mutate(messages)) opener.push(message);
    } catch (err) {
      return err;
    }
    return undefined;
  };
  const flipped = tamper(([a, b]) => {
    const bad = Buffer.from(a!);
    bad[5]! ^= 0x10;
    return [bad, b!];
  });
  assert.ok(isThemisError(flipped, 'ERR_CHANNEL_DECRYPT'), String(flipped));
  assert.ok(isThemisError(tamper(([a]) => [a!, a!]), 'ERR_CHANNEL_DECRYPT'));
  assert.ok(isThemisError(tamper(([a, b]) => [b!, a!]), 'ERR_CHANNEL_DECRYPT'));
});

test('a length below 16 cannot be a transport message', () => {
  const keys = cipherPair();
  const { opener } = collector(keys.responder.recv);
  assert.throws(() => opener.push(Buffer.from([0x00, 0x0f, 1, 2, 3])), (err) => isThemisError(err, 'ERR_CHANNEL_DECRYPT') && /below 16/.test(err.message));
});

test('the nonce limit stops both directions with ERR_CHANNEL_NONCE_EXHAUSTED', () => {
  const keys = cipherPair();
  const sealer = new TransportSealer(keys.initiator.send, 3);
  const bytes = wire(sealer, [Buffer.from('0'), Buffer.from('1'), Buffer.from('2')]);
  assert.throws(() => sealer.seal(Buffer.from('3')), (err) => isThemisError(err, 'ERR_CHANNEL_NONCE_EXHAUSTED'));
  const { opener, received } = collector(keys.responder.recv, 2);
  assert.throws(() => opener.push(bytes), (err) => isThemisError(err, 'ERR_CHANNEL_NONCE_EXHAUSTED'));
  assert.equal(received.length, 2);
});

test('a sink returning false stops the opener mid-chunk', () => {
  const keys = cipherPair();
  const bytes = wire(new TransportSealer(keys.initiator.send), [Buffer.from('a'), Buffer.from('b')]);
  const received: Buffer[] = [];
  const opener = new TransportOpener(keys.responder.recv, (plaintext) => (received.push(plaintext), false));
  opener.push(bytes);
  assert.deepEqual(received, [Buffer.from('a')]);
});
