import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat, chmod, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { leadingZeroBits } from '../../../src/core/bytes.js';
import { isThemisError } from '../../../src/core/errors.js';
import {
  Identity,
  NOISE_STATIC_TAG,
  formatNodeId,
  meetsDynamicPuzzle,
  meetsStaticPuzzle,
  networkConfig,
  networkId,
  nodeIdFromPublicKey,
  openEnvelope,
  parseNodeId,
  readKeyFile,
  sealEnvelope,
  verifyTagged,
  writeKeyFile,
} from '../../../src/identity/index.js';

const network = networkConfig({ c1: 4, c2: 8 });

test('NodeId = SHA-256("themis/node-id/v1" ‖ ed25519_pub), printed as 52 base32 characters', () => {
  const identity = Identity.generate(network);
  const expected = createHash('sha256').update('themis/node-id/v1').update(identity.publicKey).digest();
  assert.deepEqual(identity.nodeId, expected);
  assert.equal(identity.id, formatNodeId(expected));
  assert.match(identity.id, /^[a-z2-7]{52}$/);
  assert.deepEqual(parseNodeId(identity.id), expected);
  assert.throws(() => parseNodeId('not-a-node-id'), (e) => isThemisError(e, 'ERR_IDENTITY_INVALID'));
  assert.throws(() => parseNodeId('mzxw6ytboi'), (e) => isThemisError(e, 'ERR_IDENTITY_INVALID'));
});

test('generated identities meet both S/Kademlia puzzles of their network, and only as hard as asked', () => {
  const hard = networkConfig({ c1: 6, c2: 10 });
  const identity = Identity.generate(hard);
  assert.ok(leadingZeroBits(createHash('sha256').update(identity.nodeId).digest()) >= 6);
  assert.ok(meetsStaticPuzzle(identity.nodeId, 6));
  assert.ok(meetsDynamicPuzzle(identity.nodeId, identity.puzzleNonce, 10));
  assert.ok(identity.meets(hard));
  assert.equal(identity.meets(networkConfig({ c1: 40, c2: 0 })), false);
  assert.equal(meetsDynamicPuzzle(identity.nodeId, Buffer.alloc(31), 0), false);
});

test('the binding signature covers the Noise static key under its own tag only', () => {
  const identity = Identity.generate(network);
  assert.ok(verifyTagged(identity.publicKey, NOISE_STATIC_TAG, identity.noiseStatic.publicKey, identity.bindingSignature));
  assert.equal(verifyTagged(identity.publicKey, 'themis/other/v1', identity.noiseStatic.publicKey, identity.bindingSignature), false);
  const other = Identity.generate(network);
  assert.equal(verifyTagged(identity.publicKey, NOISE_STATIC_TAG, other.noiseStatic.publicKey, identity.bindingSignature), false);
  assert.equal(verifyTagged(Buffer.alloc(31), NOISE_STATIC_TAG, other.noiseStatic.publicKey, identity.bindingSignature), false);
});

test('signed envelopes verify, and refuse another tag, a flipped bit, truncation and trailing bytes', () => {
  const identity = Identity.generate(network);
  const sealed = sealEnvelope(identity, 'themis/test/v1', Buffer.from('body'));
  const opened = openEnvelope(sealed, 'themis/test/v1');
  assert.equal(opened.body.toString(), 'body');
  assert.deepEqual(opened.signer, identity.publicKey);
  assert.throws(() => openEnvelope(sealed, 'themis/test/v2'), (e) => isThemisError(e, 'ERR_IDENTITY_BAD_SIGNATURE'));
  for (let i = 0; i < sealed.length; i++) {
    const flipped = Buffer.from(sealed);
    flipped[i]! ^= 0x01;
    assert.throws(() => openEnvelope(flipped, 'themis/test/v1'), (e) => isThemisError(e), `flip at ${i}`);
  }
  assert.throws(() => openEnvelope(sealed.subarray(0, sealed.length - 1), 'themis/test/v1'), (e) => isThemisError(e, 'ERR_DECODE_TRUNCATED'));
  assert.throws(() => openEnvelope(Buffer.concat([sealed, Buffer.from([0])]), 'themis/test/v1'), (e) => isThemisError(e, 'ERR_DECODE_TRAILING'));
});

test('network ids differ when c1, c2 or the trust domain differ', () => {
  const ids = [networkConfig(), networkConfig({ c1: 5 }), networkConfig({ c2: 9 }), networkConfig({ trustDomain: 'bank' })].map((n) => networkId(n).toString('hex'));
  assert.equal(new Set(ids).size, 4);
  assert.throws(() => networkConfig({ c1: 65 }), RangeError);
});

test('secrets never show in inspect or JSON', async () => {
  const identity = Identity.generate(network);
  const secret = Buffer.from(identity.exportSecrets().identity).toString('base64url');
  const { inspect } = await import('node:util');
  assert.ok(!inspect(identity).includes(secret));
  assert.ok(!JSON.stringify(identity).includes(secret));
  assert.equal(JSON.parse(JSON.stringify(identity)).id, identity.id);
});

test('key files are written 0600, read back to the same identity, and never overwritten silently', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-keys-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'id.key');
  const identity = Identity.generate(network);
  await writeKeyFile(path, identity);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  const loaded = await readKeyFile(path, network);
  assert.equal(loaded.id, identity.id);
  assert.deepEqual(loaded.noiseStatic.publicKey, identity.noiseStatic.publicKey);
  assert.deepEqual(loaded.puzzleNonce, identity.puzzleNonce);
  await assert.rejects(writeKeyFile(path, Identity.generate(network)), (e) => isThemisError(e, 'ERR_IDENTITY_KEY_FILE') && /already exists/.test((e as Error).message));
  await chmod(path, 0o644);
  await writeKeyFile(path, identity, { overwrite: true });
  assert.equal((await stat(path)).mode & 0o777, 0o600, 'overwriting makes the file private again');
});

test('key files readable by group or others are refused with the fix in the message', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-keys-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'id.key');
  await writeKeyFile(path, Identity.generate(network));
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    await chmod(path, mode);
    await assert.rejects(readKeyFile(path, network), (e) => isThemisError(e, 'ERR_IDENTITY_KEY_PERMISSIONS') && (e as Error).message.includes(`chmod 600 ${path}`));
  }
});

test('malformed key files and keys that miss the static puzzle give typed errors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-keys-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'bad.key');
  for (const text of ['not json', '{"type":"other"}', '{"type":"themis-identity-v1","identity":"AAAA","noiseStatic":"AAAA"}']) {
    await writeFile(path, text, { mode: 0o600 });
    await assert.rejects(readKeyFile(path, network), (e) => isThemisError(e, 'ERR_IDENTITY_KEY_FILE'));
  }
  await assert.rejects(readKeyFile(join(dir, 'missing.key'), network), (e) => isThemisError(e, 'ERR_IDENTITY_KEY_FILE') && /themis keygen/.test((e as Error).message));
  // A key from an easy network rarely meets a hard static puzzle; find one that does not.
  let weak: Identity;
  do weak = Identity.generate(networkConfig({ c1: 0, c2: 0 }));
  while (meetsStaticPuzzle(weak.nodeId, 8));
  const weakPath = join(dir, 'weak.key');
  await writeKeyFile(weakPath, weak);
  await assert.rejects(readKeyFile(weakPath, networkConfig({ c1: 8, c2: 0 })), (e) => isThemisError(e, 'ERR_IDENTITY_PUZZLE'));
  assert.deepEqual(nodeIdFromPublicKey(weak.publicKey), weak.nodeId);
});
