import assert from 'node:assert/strict';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { fromHex } from '../../../src/core/bytes.js';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { CipherState, type CipherName } from '../../../src/handshake/noise/cipher.js';
import { DHLEN, dh25519, generateKeyPair25519, importPublicKey25519, keyPair25519FromPrivate } from '../../../src/handshake/noise/dh25519.js';
import { HandshakeState, type HandshakeStateInit } from '../../../src/handshake/noise/handshake-state.js';
import { hkdf } from '../../../src/handshake/noise/hash.js';
import { parseProtocolName } from '../../../src/handshake/noise/patterns.js';

const CIPHERS: readonly CipherName[] = ['ChaChaPoly', 'AESGCM'];
const XX = 'Noise_XX_25519_ChaChaPoly_SHA256';
const PROLOGUE = Buffer.from('themis/1 test');

function throwsCode(fn: () => unknown, ...codes: ErrorCode[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isThemisError(err), `expected a ThemisError, got ${String(err)}`);
    assert.ok(codes.includes(err.code), `expected ${codes.join(' or ')}, got ${err.code}`);
    return true;
  });
}

/** ENCRYPT(k, n, ad, plaintext) straight from node:crypto, with the §12.3 / §12.4 nonce layout. */
function referenceEncrypt(cipher: CipherName, key: Buffer, n: bigint, plaintext: Buffer): Buffer {
  const nonce = Buffer.alloc(12);
  if (cipher === 'ChaChaPoly') nonce.writeBigUInt64LE(n, 4);
  else nonce.writeBigUInt64BE(n, 4);
  const c = cipher === 'ChaChaPoly' ? createCipheriv('chacha20-poly1305', key, nonce) : createCipheriv('aes-256-gcm', key, nonce);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

function pair(protocolName: string, initiatorInit: Partial<HandshakeStateInit> = {}, responderInit: Partial<HandshakeStateInit> = {}) {
  const initiator = new HandshakeState({ protocolName, initiator: true, prologue: PROLOGUE, ...initiatorInit });
  const responder = new HandshakeState({ protocolName, initiator: false, prologue: PROLOGUE, ...responderInit });
  return { initiator, responder };
}

function xxPair(protocolName = XX) {
  return pair(protocolName, { s: generateKeyPair25519() }, { s: generateKeyPair25519() });
}

/** Runs the handshake to completion with the given payloads; returns what each side received. */
function handshake(initiator: HandshakeState, responder: HandshakeState, payloads: readonly Buffer[] = []): Buffer[] {
  const received: Buffer[] = [];
  for (let i = 0; !initiator.isComplete; i++) {
    const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
    received.push(reader.readMessage(writer.writeMessage(payloads[i] ?? Buffer.alloc(0))));
  }
  assert.ok(responder.isComplete);
  return received;
}

describe('CipherState', () => {
  for (const cipher of CIPHERS) {
    test(`${cipher}: matches ENCRYPT with the spec's nonce layout, also above 2^32`, () => {
      const key = randomBytes(32);
      const plaintext = randomBytes(100);
      const c = new CipherState(cipher, key);
      assert.deepEqual(c.encrypt(plaintext), referenceEncrypt(cipher, key, 0n, plaintext));
      c.setNonce(2 ** 32 + 5);
      assert.deepEqual(c.encrypt(plaintext), referenceEncrypt(cipher, key, 2n ** 32n + 5n, plaintext));
      assert.equal(c.nonce, 2 ** 32 + 6);
    });

    test(`${cipher}: a bit-flipped ciphertext throws ERR_HANDSHAKE_DECRYPT and leaves the nonce unchanged`, () => {
      const key = randomBytes(32);
      const ad = randomBytes(32);
      const sender = new CipherState(cipher, key);
      const receiver = new CipherState(cipher, key);
      const ciphertext = sender.encryptWithAd(ad, Buffer.from('attack at dawn'));
      for (let bit = 0; bit < ciphertext.length * 8; bit += 7) {
        const flipped = Buffer.from(ciphertext);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        throwsCode(() => receiver.decryptWithAd(ad, flipped), 'ERR_HANDSHAKE_DECRYPT');
        assert.equal(receiver.nonce, 0);
      }
      throwsCode(() => receiver.decryptWithAd(randomBytes(32), ciphertext), 'ERR_HANDSHAKE_DECRYPT');
      throwsCode(() => receiver.decrypt(ciphertext.subarray(0, 15)), 'ERR_HANDSHAKE_DECRYPT');
      assert.equal(receiver.nonce, 0);
      assert.equal(receiver.decryptWithAd(ad, ciphertext).toString(), 'attack at dawn');
      assert.equal(receiver.nonce, 1);
    });

    test(`${cipher}: the nonce is refused once it reaches 2^53-1`, () => {
      const key = randomBytes(32);
      const sender = new CipherState(cipher, key);
      const receiver = new CipherState(cipher, key);
      sender.setNonce(Number.MAX_SAFE_INTEGER - 1);
      receiver.setNonce(Number.MAX_SAFE_INTEGER - 1);
      assert.equal(receiver.decrypt(sender.encrypt(Buffer.from('last'))).toString(), 'last');
      throwsCode(() => sender.encrypt(Buffer.from('one too many')), 'ERR_HANDSHAKE_NONCE_EXHAUSTED');
      throwsCode(() => receiver.decrypt(Buffer.alloc(32)), 'ERR_HANDSHAKE_NONCE_EXHAUSTED');
      assert.equal(sender.nonce, Number.MAX_SAFE_INTEGER);
      assert.throws(() => sender.setNonce(2 ** 53), RangeError);
      assert.throws(() => sender.setNonce(-1), RangeError);
    });

    test(`${cipher}: rekey follows REKEY(k) and keeps both sides in lockstep`, () => {
      const key = randomBytes(32);
      const sender = new CipherState(cipher, key);
      const receiver = new CipherState(cipher, key);
      const stale = new CipherState(cipher, key);
      const before = sender.encrypt(Buffer.from('before'));
      assert.equal(receiver.decrypt(before).toString(), 'before');
      stale.decrypt(before);
      sender.rekey();
      receiver.rekey();
      assert.equal(sender.nonce, 1, 'rekey leaves n alone (§11.3)');
      const ciphertext = sender.encrypt(Buffer.from('after'));
      const rekeyed = referenceEncrypt(cipher, key, 2n ** 64n - 1n, Buffer.alloc(32)).subarray(0, 32);
      assert.deepEqual(ciphertext, referenceEncrypt(cipher, rekeyed, 1n, Buffer.from('after')));
      throwsCode(() => stale.decrypt(ciphertext), 'ERR_HANDSHAKE_DECRYPT');
      assert.equal(receiver.decrypt(ciphertext).toString(), 'after');
    });
  }

  test('without a key, encryption and decryption pass the data through (§5.1)', () => {
    const c = new CipherState('ChaChaPoly');
    assert.equal(c.hasKey(), false);
    assert.deepEqual(c.encryptWithAd(Buffer.alloc(32), Buffer.from('clear')), Buffer.from('clear'));
    assert.deepEqual(c.decrypt(Buffer.from('clear')), Buffer.from('clear'));
    assert.equal(c.nonce, 0);
    throwsCode(() => c.rekey(), 'ERR_HANDSHAKE_STATE');
  });

  test('wrong-sized keys and unknown ciphers are refused', () => {
    assert.throws(() => new CipherState('ChaChaPoly', Buffer.alloc(31)), RangeError);
    assert.throws(() => new CipherState('AES' as CipherName), RangeError);
  });
});

describe('HKDF and DH', () => {
  test('hkdf equals RFC 5869 HKDF with ck as salt and empty info (§4.3)', () => {
    for (const ikm of [Buffer.alloc(0), randomBytes(32)]) {
      const ck = randomBytes(32);
      const expected = Buffer.from(hkdfSync('sha256', ikm, ck, Buffer.alloc(0), 96));
      assert.deepEqual(Buffer.concat(hkdf(ck, ikm, 3)), expected);
      assert.deepEqual(Buffer.concat(hkdf(ck, ikm, 2)), expected.subarray(0, 64));
    }
  });

  test('X25519 agrees both ways and matches RFC 7748 §6.1', () => {
    const alice = generateKeyPair25519();
    const bob = generateKeyPair25519();
    assert.deepEqual(dh25519(alice.privateKey, bob.publicKey), dh25519(bob.privateKey, importPublicKey25519(alice.publicKey)));
    const a = keyPair25519FromPrivate(fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
    assert.equal(a.publicKey.toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    const shared = dh25519(a.privateKey, fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'));
    assert.equal(shared.toString('hex'), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  test('low-order and all-zero public keys are refused with ERR_HANDSHAKE_MESSAGE', () => {
    const local = generateKeyPair25519();
    const lowOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ];
    for (const hex of lowOrder) throwsCode(() => dh25519(local.privateKey, fromHex(hex)), 'ERR_HANDSHAKE_MESSAGE');
    assert.throws(() => dh25519(local.privateKey, Buffer.alloc(31, 9)), RangeError);
  });
});

describe('HandshakeState', () => {
  for (const cipher of CIPHERS) {
    test(`${cipher}: XX with random keys agrees on the handshake hash and transport works both ways`, () => {
      const initiatorStatic = generateKeyPair25519();
      const responderStatic = generateKeyPair25519();
      const { initiator, responder } = pair(
        `Noise_XX_25519_${cipher}_SHA256`,
        { s: initiatorStatic },
        { s: responderStatic },
      );
      const payloads = [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')];
      assert.deepEqual(handshake(initiator, responder, payloads), payloads);
      assert.deepEqual(initiator.handshakeHash, responder.handshakeHash);
      assert.deepEqual(initiator.remoteStatic, responderStatic.publicKey);
      assert.deepEqual(responder.remoteStatic, initiatorStatic.publicKey);
      assert.equal(initiator.messageIndex, 3);
      const a = initiator.split();
      const b = responder.split();
      for (let i = 0; i < 3; i++) {
        assert.equal(b.recv.decrypt(a.send.encrypt(Buffer.from(`ping ${i}`))).toString(), `ping ${i}`);
        assert.equal(a.recv.decrypt(b.send.encrypt(Buffer.from(`pong ${i}`))).toString(), `pong ${i}`);
      }
      throwsCode(() => a.recv.decrypt(a.send.encrypt(Buffer.from('own direction'))), 'ERR_HANDSHAKE_DECRYPT');
    });

    test(`${cipher}: IK with random keys agrees on the handshake hash and transport works both ways`, () => {
      const responderStatic = generateKeyPair25519();
      const { initiator, responder } = pair(
        `Noise_IK_25519_${cipher}_SHA256`,
        { s: generateKeyPair25519(), rs: responderStatic.publicKey },
        { s: responderStatic },
      );
      assert.deepEqual(handshake(initiator, responder, [Buffer.from('0-RTT'), Buffer.from('reply')]), [
        Buffer.from('0-RTT'),
        Buffer.from('reply'),
      ]);
      assert.deepEqual(initiator.handshakeHash, responder.handshakeHash);
      const a = initiator.split();
      const b = responder.split();
      assert.equal(b.recv.decrypt(a.send.encrypt(Buffer.from('hi'))).toString(), 'hi');
      assert.equal(a.recv.decrypt(b.send.encrypt(Buffer.from('hello'))).toString(), 'hello');
    });
  }

  test('IK with the wrong responder key fails on the first message', () => {
    const { initiator, responder } = pair(
      'Noise_IK_25519_ChaChaPoly_SHA256',
      { s: generateKeyPair25519(), rs: generateKeyPair25519().publicKey },
      { s: generateKeyPair25519() },
    );
    throwsCode(() => responder.readMessage(initiator.writeMessage(Buffer.alloc(0))), 'ERR_HANDSHAKE_DECRYPT');
  });

  test('a different prologue fails the handshake', () => {
    const { initiator } = xxPair();
    const responder = new HandshakeState({ protocolName: XX, initiator: false, prologue: Buffer.from('other'), s: generateKeyPair25519() });
    responder.readMessage(initiator.writeMessage(Buffer.alloc(0)));
    throwsCode(() => initiator.readMessage(responder.writeMessage(Buffer.alloc(0))), 'ERR_HANDSHAKE_DECRYPT');
  });

  test('turn-order misuse throws ERR_HANDSHAKE_STATE', () => {
    const { initiator, responder } = xxPair();
    throwsCode(() => initiator.readMessage(Buffer.alloc(32)), 'ERR_HANDSHAKE_STATE');
    throwsCode(() => responder.writeMessage(Buffer.alloc(0)), 'ERR_HANDSHAKE_STATE');
    throwsCode(() => initiator.split(), 'ERR_HANDSHAKE_STATE');
    const first = initiator.writeMessage(Buffer.alloc(0));
    throwsCode(() => initiator.writeMessage(Buffer.alloc(0)), 'ERR_HANDSHAKE_STATE');
    responder.readMessage(first);
    throwsCode(() => responder.readMessage(first), 'ERR_HANDSHAKE_STATE');
    initiator.readMessage(responder.writeMessage(Buffer.alloc(0)));
    responder.readMessage(initiator.writeMessage(Buffer.alloc(0)));
    throwsCode(() => initiator.writeMessage(Buffer.alloc(0)), 'ERR_HANDSHAKE_STATE');
    throwsCode(() => responder.readMessage(Buffer.alloc(64)), 'ERR_HANDSHAKE_STATE');
    initiator.split();
    throwsCode(() => initiator.split(), 'ERR_HANDSHAKE_STATE');
  });

  test('every truncation of every XX message throws ERR_HANDSHAKE_MESSAGE or ERR_HANDSHAKE_DECRYPT, then the state is dead', () => {
    const payloads = [Buffer.from('hello'), Buffer.from('proof of the responder'), Buffer.from('proof of the initiator')];
    /** Plays a fresh XX handshake up to message `target`; returns it unread, with the side that reads it. */
    const upTo = (target: number) => {
      const { initiator, responder } = xxPair();
      for (let i = 0; ; i++) {
        const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
        const message = writer.writeMessage(payloads[i]!);
        if (i === target) return { message, reader };
        reader.readMessage(message);
      }
    };
    for (let target = 0; target < 3; target++) {
      // XX message 0 is e ‖ cleartext payload: a cut into the payload is caught only by the next message.
      const lengths = target === 0 ? DHLEN : upTo(target).message.length;
      for (let length = 0; length < lengths; length++) {
        const { message, reader } = upTo(target);
        throwsCode(() => reader.readMessage(message.subarray(0, length)), 'ERR_HANDSHAKE_MESSAGE', 'ERR_HANDSHAKE_DECRYPT');
        throwsCode(() => reader.readMessage(message), 'ERR_HANDSHAKE_STATE');
      }
    }
  });

  test('a handshake message longer than 65535 bytes is refused', () => {
    const { responder } = xxPair();
    throwsCode(() => responder.readMessage(Buffer.alloc(65536)), 'ERR_HANDSHAKE_MESSAGE');
    const { initiator } = xxPair();
    assert.throws(() => initiator.writeMessage(Buffer.alloc(65535)), RangeError);
  });

  test('a low-order ephemeral key is refused at the first DH that uses it', () => {
    // XX: the responder uses the initiator's e in "ee" when writing message 1.
    const xx = xxPair();
    xx.responder.readMessage(Buffer.alloc(32));
    throwsCode(() => xx.responder.writeMessage(Buffer.alloc(0)), 'ERR_HANDSHAKE_MESSAGE');
    // NK: the responder uses it in "es" while reading message 0.
    const responderStatic = generateKeyPair25519();
    const nk = pair('Noise_NK_25519_ChaChaPoly_SHA256', { rs: responderStatic.publicKey }, { s: responderStatic });
    throwsCode(() => nk.responder.readMessage(Buffer.concat([fromHex('01'.padEnd(64, '0')), Buffer.alloc(16)])), 'ERR_HANDSHAKE_MESSAGE');
  });

  test('a payload read from a message does not alias the caller\'s buffer', () => {
    const { initiator, responder } = xxPair();
    const message = initiator.writeMessage(Buffer.from('cleartext'));
    const payload = responder.readMessage(message);
    message.fill(0);
    assert.equal(payload.toString(), 'cleartext');
  });

  test('constructor options are checked against the pattern', () => {
    const s = generateKeyPair25519();
    const init = (protocolName: string, options: Partial<HandshakeStateInit>) => () =>
      new HandshakeState({ protocolName, initiator: true, prologue: PROLOGUE, ...options });
    const IK = 'Noise_IK_25519_ChaChaPoly_SHA256';
    const XXpsk3 = 'Noise_XXpsk3_25519_ChaChaPoly_SHA256';
    assert.throws(init(XX, {}), TypeError, 'XX without s');
    assert.throws(init('Noise_NN_25519_ChaChaPoly_SHA256', { s }), TypeError, 'NN with s');
    assert.throws(init(IK, { s }), TypeError, 'IK without rs');
    assert.throws(init(XX, { s, rs: s.publicKey }), TypeError, 'XX with rs');
    assert.throws(init(IK, { s, rs: Buffer.alloc(31) }), RangeError, 'rs of 31 bytes');
    assert.throws(init(XX, { s: { ...s, publicKey: Buffer.alloc(33) } }), RangeError, 's of 33 bytes');
    assert.throws(init(XXpsk3, { s }), TypeError, 'XXpsk3 without a PSK');
    assert.throws(init(XXpsk3, { s, psks: [Buffer.alloc(16)] }), RangeError, 'a PSK of 16 bytes');
  });

  test('XXpsk3 with different PSKs fails; with the same PSK succeeds', () => {
    const protocolName = 'Noise_XXpsk3_25519_AESGCM_SHA256';
    const psk = randomBytes(32);
    const good = pair(protocolName, { s: generateKeyPair25519(), psks: [psk] }, { s: generateKeyPair25519(), psks: [psk] });
    handshake(good.initiator, good.responder);
    assert.deepEqual(good.initiator.handshakeHash, good.responder.handshakeHash);
    const bad = pair(protocolName, { s: generateKeyPair25519(), psks: [psk] }, { s: generateKeyPair25519(), psks: [randomBytes(32)] });
    throwsCode(() => handshake(bad.initiator, bad.responder), 'ERR_HANDSHAKE_DECRYPT');
  });
});

describe('parseProtocolName', () => {
  test('parses patterns, psk modifiers and the cipher', () => {
    const ik = parseProtocolName('Noise_IKpsk2_25519_AESGCM_SHA256');
    assert.equal(ik.pattern, 'IK');
    assert.deepEqual(ik.modifiers, ['psk2']);
    assert.equal(ik.cipher, 'AESGCM');
    assert.deepEqual(ik.handshake.messages, [['e', 'es', 's', 'ss'], ['e', 'ee', 'se', 'psk']]);
    const nn = parseProtocolName('Noise_NNpsk0+psk2_25519_ChaChaPoly_SHA256');
    assert.deepEqual(nn.handshake.messages, [['psk', 'e'], ['e', 'ee', 'psk']]);
  });

  test('refuses what it does not implement, with a RangeError naming it', () => {
    const refused: [string, RegExp][] = [
      ['Noise_XX_448_ChaChaPoly_SHA256', /DH functions 448/],
      ['Noise_XX_25519_ChaChaPoly_BLAKE2s', /hash BLAKE2s/],
      ['Noise_XX_25519_AESGCM_SHA512', /hash SHA512/],
      ['Noise_XX_25519_AES_SHA256', /cipher AES/],
      ['Noise_NX_25519_ChaChaPoly_SHA256', /pattern NX/],
      ['Noise_XXfallback_25519_ChaChaPoly_SHA256', /modifier "fallback"/],
      ['Noise_XXpsk4_25519_ChaChaPoly_SHA256', /psk4 on a 3-message/],
      ['Noise_XXpsk3+psk0_25519_ChaChaPoly_SHA256', /increasing order/],
      ['Noise_XX_25519_ChaChaPoly', /expected Noise_/],
      ['noise_XX_25519_ChaChaPoly_SHA256', /expected Noise_/],
    ];
    for (const [name, message] of refused) {
      assert.throws(() => parseProtocolName(name), (err: unknown) => err instanceof RangeError && message.test(err.message), name);
    }
  });
});
