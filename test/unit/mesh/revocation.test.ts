import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writer } from '../../../src/core/codec.js';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { RecordType, createRecord, mutableKey, revocationKey, verifyRecord } from '../../../src/dht/index.js';
import { decide } from '../../../src/dht/record.js';
import { Identity, networkConfig } from '../../../src/identity/index.js';
import { RevocationList, RevocationReason, createRevocation, openRevocation } from '../../../src/mesh/revocation.js';

const network = networkConfig({ c1: 0, c2: 0 });
const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);
const invalid = is('ERR_MESH_REVOCATION_INVALID');
const T0 = 1_700_000_000_000;

const owner = Identity.generate(network);
const host = Identity.generate(network);
const instance = Identity.generate(network);
const mallory = Identity.generate(network);

/** The mesh layer's rule, reduced: the instance's host and the owner have authority over it. */
const isAuthority = (signer: Buffer, revoked: Buffer): boolean => revoked.equals(instance.publicKey) && (signer.equals(host.publicKey) || signer.equals(owner.publicKey));

test('a revocation record round-trips: revoked key, reason, time and signer', () => {
  const record = createRevocation(host, instance.publicKey, RevocationReason.KeyCompromise, T0);
  const revocation = openRevocation(record, network, T0 + 1000);
  assert.deepEqual(revocation, { revokedPub: instance.publicKey, reason: 1, revokedAt: T0, signerPub: host.publicKey });
  const dht = verifyRecord(record, network, { now: T0 });
  assert.equal(dht.type, RecordType.Revocation);
  assert.deepEqual(dht.key, revocationKey(instance.publicKey));
  assert.equal(dht.value.length, 32 + 1 + 8);
  assert.equal(dht.expiresAt, T0 + 48 * 3600_000);
});

test('a later republication replaces the earlier record in its DHT slot', () => {
  const later = T0 + 3600_000;
  const first = verifyRecord(createRevocation(host, instance.publicKey, RevocationReason.Superseded, T0), network, { now: later });
  const republished = verifyRecord(createRevocation(host, instance.publicKey, RevocationReason.Superseded, later), network, { now: later });
  assert.equal(decide(first, republished), 'store');
  assert.equal(decide(republished, first), 'stale');
});

test('createRevocation checks its arguments', () => {
  assert.throws(() => createRevocation(host, instance.publicKey.subarray(0, 31), 0), RangeError);
  for (const reason of [-1, 256, 1.5, Number.NaN]) assert.throws(() => createRevocation(host, instance.publicKey, reason), RangeError);
});

test('a key may always revoke itself; the authority callback is not asked', () => {
  const list = new RevocationList();
  const revocation = openRevocation(createRevocation(instance, instance.publicKey, RevocationReason.CessationOfOperation, T0), network, T0);
  assert.equal(
    list.add(revocation, {
      isAuthority: () => assert.fail('not asked for a self-revocation'),
      now: T0 + 5,
    }),
    true,
  );
  assert.ok(list.isRevoked(instance.publicKey));
  assert.equal(list.get(instance.publicKey)?.learnedAt, T0 + 5);
});

test('the authority callback decides for any other signer, and hears who signed what', () => {
  const seen: [string, string][] = [];
  const spy = (signer: Buffer, revoked: Buffer): boolean => {
    seen.push([signer.toString('hex'), revoked.toString('hex')]);
    return isAuthority(signer, revoked);
  };
  const list = new RevocationList();
  const byMallory = openRevocation(createRevocation(mallory, instance.publicKey, RevocationReason.KeyCompromise, T0), network, T0);
  assert.throws(() => list.add(byMallory, { isAuthority: spy }), is('ERR_MESH_REVOCATION_UNAUTHORIZED'));
  assert.deepEqual(seen, [[mallory.publicKey.toString('hex'), instance.publicKey.toString('hex')]]);
  assert.equal(list.isRevoked(instance.publicKey), false);

  // The host may revoke its instance but not the owner's key.
  const ofOwner = openRevocation(createRevocation(host, owner.publicKey, RevocationReason.KeyCompromise, T0), network, T0);
  assert.throws(() => list.add(ofOwner, { isAuthority: spy }), is('ERR_MESH_REVOCATION_UNAUTHORIZED'));
  assert.equal(list.isRevoked(owner.publicKey), false);

  for (const signer of [host, owner]) {
    const fresh = new RevocationList();
    const revocation = openRevocation(createRevocation(signer, instance.publicKey, RevocationReason.KeyCompromise, T0), network, T0);
    assert.equal(fresh.add(revocation, { isAuthority: spy, now: T0 + 10 }), true);
    assert.ok(fresh.isRevoked(instance.publicKey));
    assert.equal(fresh.size, 1);
  }
});

test('the first revocation learned stays; later ones of the same key change nothing', () => {
  const list = new RevocationList();
  const byHost = openRevocation(createRevocation(host, instance.publicKey, RevocationReason.Superseded, T0), network, T0);
  const byOwner = openRevocation(createRevocation(owner, instance.publicKey, RevocationReason.KeyCompromise, T0 + 50), network, T0 + 50);
  assert.equal(list.add(byHost, { isAuthority, now: T0 + 100 }), true);
  assert.equal(list.add(byOwner, { isAuthority, now: T0 + 200 }), false);
  const entry = list.get(instance.publicKey)!;
  assert.equal(entry.learnedAt, T0 + 100);
  assert.equal(entry.reason, RevocationReason.Superseded);
  assert.deepEqual(entry.signerPub, host.publicKey);
  assert.ok(Object.isFrozen(entry));
  assert.equal(list.size, 1);
  assert.equal(list.get(mallory.publicKey), undefined);
});

test('an entry is a copy: changing the revocation added later does not change the list', () => {
  const list = new RevocationList();
  const revocation = openRevocation(createRevocation(host, instance.publicKey, 0, T0), network, T0);
  list.add(revocation, { isAuthority });
  revocation.revokedPub.fill(0);
  assert.ok(list.isRevoked(instance.publicKey));
  assert.deepEqual(list.get(instance.publicKey)?.revokedPub, instance.publicKey);
});

test('an unknown reason still revokes', () => {
  const revocation = openRevocation(createRevocation(host, instance.publicKey, 200, T0), network, T0);
  assert.equal(revocation.reason, 200);
  const list = new RevocationList();
  list.add(revocation, { isAuthority });
  assert.ok(list.isRevoked(instance.publicKey));
});

test('forged records are refused: any bit flipped', () => {
  const record = createRevocation(host, instance.publicKey, RevocationReason.KeyCompromise, T0);
  for (let bit = 0; bit < record.length * 8; bit += 5) {
    const flipped = Buffer.from(record);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    assert.throws(() => openRevocation(flipped, network, T0), invalid, `bit ${bit}`);
  }
});

test('forged records are refused: under another key’s revocation key, or of another type', () => {
  const value = new Writer().fixed(instance.publicKey, 32).u8(1).u64(T0).finish();
  // Value names the instance, key is mallory's revocation key: the DHT key binding fails.
  const misfiled = createRecord(mallory, { type: RecordType.Revocation, key: revocationKey(mallory.publicKey), value, now: T0 });
  assert.throws(() => openRevocation(misfiled, network, T0), invalid);
  const mutable = createRecord(host, { type: RecordType.Mutable, key: mutableKey(host.publicKey), value, now: T0 });
  assert.throws(() => openRevocation(mutable, network, T0), (err) => invalid(err) && /not a revocation/.test((err as Error).message));
});

test('malformed values are refused: short, long, truncated', () => {
  const key = revocationKey(instance.publicKey);
  for (const value of [
    instance.publicKey,
    new Writer().fixed(instance.publicKey, 32).u8(1).finish(),
    new Writer().fixed(instance.publicKey, 32).u8(1).u64(T0).u8(0).finish(),
  ]) {
    assert.throws(() => openRevocation(createRecord(host, { type: RecordType.Revocation, key, value, now: T0 }), network, T0), invalid);
  }
  const record = createRevocation(host, instance.publicKey, 1, T0);
  for (const length of [0, 1, 40, record.length - 1]) assert.throws(() => openRevocation(record.subarray(0, length), network, T0), invalid);
});

test('an expired record is refused', () => {
  const record = createRevocation(host, instance.publicKey, 1, T0);
  assert.throws(() => openRevocation(record, network, T0 + 49 * 3600_000), invalid);
});
