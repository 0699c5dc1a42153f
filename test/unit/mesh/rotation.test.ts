import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writer } from '../../../src/core/codec.js';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { Identity, networkConfig, sealEnvelope } from '../../../src/identity/index.js';
import { MAX_ROTATION_CHAIN, ROTATION_TAG, encodeRotationChain, rotationStatement, verifyRotationChain } from '../../../src/mesh/rotation.js';

const network = networkConfig({ c1: 0, c2: 0 });
const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);
const invalid = is('ERR_MESH_ROTATION_INVALID');
/** Refused for the reason named, not for some other fault of the test's making. */
const because = (reason: RegExp) => (err: unknown) => invalid(err) && reason.test((err as Error).message);
const T0 = 1_700_000_000_000;

/** One identity rotating through nine keys: statements[i] moves keys[i] to keys[i + 1]. */
const keys = Array.from({ length: MAX_ROTATION_CHAIN + 1 }, () => Identity.generate(network));
const statements = keys.slice(0, -1).map((key, i) => rotationStatement(key, keys[i + 1]!.publicKey, T0 + i * 1000));
const pub = (i: number): Buffer => keys[i]!.publicKey;

/** A chain encoded by hand, so counts and contents the encoder refuses can be sent anyway. */
function rawChain(parts: readonly Uint8Array[], count = parts.length): Buffer {
  const w = new Writer().u8(count);
  for (const part of parts) w.vec16(part);
  return w.finish();
}

test('chains of 1 to 8 statements verify and list the keys from the original to the current one', () => {
  for (let n = 1; n <= MAX_ROTATION_CHAIN; n++) {
    const chain = encodeRotationChain(statements.slice(0, n));
    assert.deepEqual(verifyRotationChain(chain, pub(n)), keys.slice(0, n + 1).map((k) => k.publicKey), `chain of ${n}`);
  }
  // A chain may start anywhere in the identity's history: from the key the verifier knew.
  assert.deepEqual(verifyRotationChain(encodeRotationChain(statements.slice(3, 5)), pub(5)), [pub(3), pub(4), pub(5)]);
});

test('a statement is an envelope under themis/rotation/v1 signed by the old key', () => {
  assert.equal(statements[0]!.length, 192);
  const chain = encodeRotationChain([statements[0]!]);
  assert.ok(chain.includes(Buffer.from(ROTATION_TAG)));
  assert.equal(chain.length, 1 + 2 + 192);
});

test('the encoder and the statement maker refuse what a verifier would', () => {
  assert.throws(() => encodeRotationChain([]), RangeError);
  assert.throws(() => encodeRotationChain([...statements, statements[0]!]), RangeError);
  assert.throws(() => rotationStatement(keys[0]!, pub(0)), RangeError, 'a key cannot rotate to itself');
  assert.throws(() => rotationStatement(keys[0]!, pub(1).subarray(0, 31)), RangeError);
  assert.throws(() => rotationStatement(keys[0]!, pub(1), -1), RangeError);
});

test('counts outside 1..8 are refused', () => {
  assert.throws(() => verifyRotationChain(rawChain([]), pub(0)), because(/holds 0 statements/));
  const tenth = Identity.generate(network).publicKey;
  assert.throws(() => verifyRotationChain(rawChain([...statements, rotationStatement(keys[8]!, tenth, T0 + 9000)]), tenth), because(/holds 9 statements/));
  // A count that promises more statements than there are.
  assert.throws(() => verifyRotationChain(rawChain(statements.slice(0, 2), 3), pub(2)), invalid);
});

test('a broken link is refused: a statement skipped', () => {
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[0]!, statements[2]!]), pub(3)), because(/statement 1 does not continue/));
});

test('reordered statements are refused', () => {
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[1]!, statements[0]!]), pub(1)), because(/does not continue/));
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[1]!, statements[0]!]), pub(2)), because(/does not continue/));
});

test('a truncated chain is refused, at every length', () => {
  const chain = encodeRotationChain(statements.slice(0, 3));
  for (let length = 0; length < chain.length; length++) assert.throws(() => verifyRotationChain(chain.subarray(0, length), pub(3)), invalid, `length ${length}`);
  assert.throws(() => verifyRotationChain(Buffer.concat([chain, Buffer.from([0])]), pub(3)), invalid, 'trailing byte');
});

test('a chain that does not end at the key proven in the handshake is refused', () => {
  const chain = encodeRotationChain(statements.slice(0, 3));
  for (const current of [pub(2), pub(4), pub(0), Identity.generate(network).publicKey]) {
    assert.throws(() => verifyRotationChain(chain, current), because(/does not end at the key proven/));
  }
});

test('a statement replayed from another chain is refused', () => {
  const other = Array.from({ length: 3 }, () => Identity.generate(network));
  const theirs = rotationStatement(other[0]!, other[1]!.publicKey, T0 + 5000);
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[0]!, theirs]), other[1]!.publicKey), because(/does not continue/));
  assert.throws(() => verifyRotationChain(encodeRotationChain([theirs, statements[1]!]), pub(2)), because(/does not continue/));
  // A fork: keys[1] also signed a move to another key; it does not lead to keys[2].
  const fork = rotationStatement(keys[1]!, other[2]!.publicKey, T0 + 1000);
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[0]!, fork]), pub(2)), invalid);
  assert.deepEqual(verifyRotationChain(encodeRotationChain([statements[0]!, fork]), other[2]!.publicKey), [pub(0), pub(1), other[2]!.publicKey]);
});

test('issuedAt must strictly increase along the chain', () => {
  const a = Identity.generate(network);
  const b = Identity.generate(network);
  const c = Identity.generate(network);
  for (const second of [T0 - 1, T0]) {
    const chain = encodeRotationChain([rotationStatement(a, b.publicKey, T0), rotationStatement(b, c.publicKey, second)]);
    assert.throws(() => verifyRotationChain(chain, c.publicKey), because(/not newer/), `second at ${second - T0}`);
  }
});

test('a chain that comes back to a key it passed through is refused', () => {
  const back = rotationStatement(keys[2]!, pub(0), T0 + 2000);
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[0]!, statements[1]!, back]), pub(0)), because(/returns to a key/));
  const loop = rotationStatement(keys[2]!, pub(1), T0 + 2000);
  assert.throws(() => verifyRotationChain(encodeRotationChain([statements[0]!, statements[1]!, loop]), pub(1)), because(/returns to a key/));
});

test('a statement signed by another key than the one it rotates away from is refused', () => {
  const mallory = Identity.generate(network);
  const body = new Writer().fixed(pub(0), 32).fixed(mallory.publicKey, 32).u64(T0).finish();
  assert.throws(() => verifyRotationChain(encodeRotationChain([sealEnvelope(mallory, ROTATION_TAG, body)]), mallory.publicKey), because(/not signed by the key/));
  // Signed by the right key but under another tag.
  assert.throws(() => verifyRotationChain(encodeRotationChain([sealEnvelope(keys[0]!, 'themis/record/v1', body)]), mallory.publicKey), because(/tag/));
  // A body with trailing bytes is not canonical.
  const long = Buffer.concat([new Writer().fixed(pub(0), 32).fixed(pub(1), 32).u64(T0).finish(), Buffer.from([0])]);
  assert.throws(() => verifyRotationChain(encodeRotationChain([sealEnvelope(keys[0]!, ROTATION_TAG, long)]), pub(1)), because(/trailing/));
});

test('any bit flipped anywhere in a chain is refused', () => {
  const chain = encodeRotationChain(statements.slice(0, 2));
  for (let bit = 0; bit < chain.length * 8; bit += 3) {
    const flipped = Buffer.from(chain);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    assert.throws(() => verifyRotationChain(flipped, pub(2)), invalid, `bit ${bit}`);
  }
});

test('the input is copied: changing it after the call changes nothing returned', () => {
  const chain = encodeRotationChain(statements.slice(0, 1));
  const result = verifyRotationChain(chain, pub(1));
  chain.fill(0);
  assert.deepEqual(result, [pub(0), pub(1)]);
});
