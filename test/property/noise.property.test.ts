import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isThemisError } from '../../src/core/errors.js';
import { HandshakeState, generateKeyPair25519, type CipherName, type TransportCipherStates } from '../../src/handshake/noise/index.js';

const HANDSHAKE_MESSAGES = 3;

/**
 * Sends payloads alternately initiator → responder → …: the first three as XX handshake
 * messages, the rest as transport messages. `tamper` may alter each message on the wire.
 * Returns what the receiving side got for each message.
 */
function exchange(
  cipher: CipherName,
  payloads: readonly Uint8Array[],
  tamper: (index: number, message: Buffer) => Buffer = (_, message) => message,
): Buffer[] {
  const protocolName = `Noise_XX_25519_${cipher}_SHA256`;
  const prologue = Buffer.from('themis/property');
  const initiator = new HandshakeState({ protocolName, initiator: true, prologue, s: generateKeyPair25519() });
  const responder = new HandshakeState({ protocolName, initiator: false, prologue, s: generateKeyPair25519() });
  const received: Buffer[] = [];
  let transport: { initiator: TransportCipherStates; responder: TransportCipherStates } | undefined;
  for (const [i, payload] of payloads.entries()) {
    const fromInitiator = i % 2 === 0;
    if (i < HANDSHAKE_MESSAGES) {
      const [writer, reader] = fromInitiator ? [initiator, responder] : [responder, initiator];
      received.push(reader.readMessage(tamper(i, writer.writeMessage(payload))));
    } else {
      transport ??= { initiator: initiator.split(), responder: responder.split() };
      const [send, recv] = fromInitiator
        ? [transport.initiator.send, transport.responder.recv]
        : [transport.responder.send, transport.initiator.recv];
      received.push(recv.decrypt(tamper(i, send.encrypt(payload))));
    }
  }
  return received;
}

const cipherArb = fc.constantFrom<CipherName>('ChaChaPoly', 'AESGCM');
const payloadsArb = fc.array(fc.uint8Array({ minLength: 0, maxLength: 1000 }), { minLength: HANDSHAKE_MESSAGES + 1, maxLength: 8 });

test('XX handshake and transport deliver every payload unchanged', () => {
  fc.assert(
    fc.property(cipherArb, payloadsArb, (cipher, payloads) => {
      const received = exchange(cipher, payloads);
      assert.deepEqual(received.map((b) => b.toString('hex')), payloads.map((p) => Buffer.from(p).toString('hex')));
    }),
    { numRuns: 60 },
  );
});

test('flipping any byte of any message makes a receiving side throw a ThemisError', () => {
  fc.assert(
    fc.property(cipherArb, payloadsArb, fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (cipher, payloads, which, where, mask) => {
      const target = which % payloads.length;
      let thrownAt = -1;
      let delivered = 0;
      try {
        exchange(cipher, payloads, (i, message) => {
          delivered = i;
          if (i !== target) return message;
          const flipped = Buffer.from(message);
          flipped[where % flipped.length]! ^= mask;
          return flipped;
        });
      } catch (err) {
        assert.ok(isThemisError(err), `expected a ThemisError, got ${String(err)}`);
        thrownAt = delivered;
      }
      // Every message is authenticated on receipt except XX message 0 (e ‖ cleartext payload),
      // whose alteration changes the handshake hash and fails message 1.
      assert.equal(thrownAt, target === 0 ? 1 : target, `tampered message ${target}, failure at ${thrownAt}`);
    }),
    { numRuns: 200 },
  );
});
