import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import {
  RecordType,
  createContactRecord,
  createRecord,
  encodeProviderValue,
  immutableKey,
  mutableKey,
  policyKey,
  providerKey,
  revocationKey,
  verifyContactRecord,
  verifyRecord,
} from '../../../src/dht/index.js';
import { decide } from '../../../src/dht/record.js';
import { Identity, networkConfig, sealEnvelope } from '../../../src/identity/index.js';

const network = networkConfig({ c1: 0, c2: 0 });
const alice = Identity.generate(network);
const bob = Identity.generate(network);
const is = (code: ErrorCode) => (e: unknown) => isThemisError(e, code);

test('contact records verify, carry the static key, and refuse forgery, expiry and wrong puzzles', () => {
  const now = Date.now();
  const record = createContactRecord(alice, { addresses: ['tcp://127.0.0.1:4000'], now });
  const contact = verifyContactRecord(record, network, now);
  assert.equal(contact.id, alice.id);
  assert.deepEqual(contact.noiseStatic, alice.noiseStatic.publicKey);
  assert.deepEqual(contact.addresses, ['tcp://127.0.0.1:4000']);
  assert.throws(() => verifyContactRecord(record, network, now + 2 * 3600_000), is('ERR_DHT_CONTACT_INVALID'));
  assert.equal(verifyContactRecord(record, network, now + 2 * 3600_000, { ignoreExpiry: true }).id, alice.id);
  const flipped = Buffer.from(record);
  flipped[flipped.length - 80]! ^= 1;
  assert.throws(() => verifyContactRecord(flipped, network, now), is('ERR_DHT_CONTACT_INVALID'));
  assert.throws(() => verifyContactRecord(record.subarray(0, 50), network, now), is('ERR_DHT_CONTACT_INVALID'));
  let weak: Identity;
  do weak = Identity.generate(network);
  while (weak.meets(networkConfig({ c1: 6, c2: 0 })));
  assert.throws(() => verifyContactRecord(createContactRecord(weak, { addresses: [] }), networkConfig({ c1: 6, c2: 0 })), is('ERR_DHT_CONTACT_INVALID'));
});

test('each record type binds its key: nobody writes under another’s key', () => {
  const value = Buffer.from('v');
  const good = [
    createRecord(alice, { type: RecordType.Immutable, key: immutableKey(value), value }),
    createRecord(alice, { type: RecordType.Mutable, key: mutableKey(alice.publicKey, Buffer.from('s')), salt: Buffer.from('s'), value, seq: 3 }),
    createRecord(alice, { type: RecordType.Policy, key: policyKey(alice.publicKey), value }),
    createRecord(alice, { type: RecordType.Revocation, key: revocationKey(bob.publicKey), value: Buffer.concat([bob.publicKey, value]) }),
    createRecord(alice, { type: RecordType.Contact, key: alice.nodeId, value: createContactRecord(alice, { addresses: [] }) }),
    createRecord(alice, { type: RecordType.Provider, key: providerKey('users'), value: encodeProviderValue('users', createContactRecord(alice, { addresses: [] })) }),
  ];
  for (const bytes of good) assert.equal(verifyRecord(bytes, network).publisherId.toString('hex'), alice.nodeId.toString('hex'));
  const bad = [
    createRecord(alice, { type: RecordType.Immutable, key: immutableKey(Buffer.from('other')), value }),
    createRecord(alice, { type: RecordType.Mutable, key: mutableKey(bob.publicKey), value }),
    createRecord(alice, { type: RecordType.Policy, key: policyKey(bob.publicKey), value }),
    createRecord(alice, { type: RecordType.Contact, key: bob.nodeId, value: createContactRecord(bob, { addresses: [] }) }),
    createRecord(alice, { type: RecordType.Provider, key: providerKey('users'), value: encodeProviderValue('users', createContactRecord(bob, { addresses: [] })) }),
    createRecord(alice, { type: RecordType.Provider, key: providerKey('accounts'), value: encodeProviderValue('users', createContactRecord(alice, { addresses: [] })) }),
    createRecord(alice, { type: RecordType.Immutable, key: immutableKey(value), value, salt: Buffer.from('x') }),
    createRecord(alice, { type: RecordType.Revocation, key: revocationKey(bob.publicKey), value: Buffer.alloc(5) }),
  ];
  for (const [i, bytes] of bad.entries()) assert.throws(() => verifyRecord(bytes, network), is('ERR_DHT_RECORD_INVALID'), `bad record ${i}`);
});

test('forged, expired, far-future, oversized and unknown-type records are refused with typed errors', () => {
  const value = Buffer.from('v');
  const record = createRecord(alice, { type: RecordType.Immutable, key: immutableKey(value), value });
  for (let i = 0; i < record.length; i += 3) {
    const forged = Buffer.from(record);
    forged[i]! ^= 0x10;
    assert.throws(() => verifyRecord(forged, network), (e) => isThemisError(e) && e.code.startsWith('ERR_DHT_'), `flip at ${i}`);
  }
  const now = Date.now();
  assert.throws(() => verifyRecord(createRecord(alice, { type: RecordType.Immutable, key: immutableKey(value), value, ttlMs: 1000, now: now - 3600_000 }), network), is('ERR_DHT_RECORD_EXPIRED'));
  assert.throws(() => verifyRecord(createRecord(alice, { type: RecordType.Immutable, key: immutableKey(value), value, ttlMs: 1000 * 3600_000 }), network), is('ERR_DHT_RECORD_INVALID'));
  const big = Buffer.alloc(70 * 1024);
  assert.throws(() => verifyRecord(createRecord(alice, { type: RecordType.Immutable, key: immutableKey(big), value: big }), network), is('ERR_DHT_TOO_LARGE'));
  assert.throws(() => verifyRecord(createRecord(alice, { type: 9 as RecordType, key: immutableKey(value), value }), network), is('ERR_DHT_RECORD_INVALID'));
});

test('replacement rules: higher seq wins, replays and rollbacks are stale', () => {
  const key = mutableKey(alice.publicKey);
  const v1 = verifyRecord(createRecord(alice, { type: RecordType.Mutable, key, value: Buffer.from('1'), seq: 1 }), network);
  const v2 = verifyRecord(createRecord(alice, { type: RecordType.Mutable, key, value: Buffer.from('2'), seq: 2 }), network);
  const v2other = verifyRecord(createRecord(alice, { type: RecordType.Mutable, key, value: Buffer.from('x'), seq: 2 }), network);
  assert.equal(decide(undefined, v1), 'store');
  assert.equal(decide(v1, v2), 'store');
  assert.equal(decide(v2, v1), 'stale');
  assert.equal(decide(v2, v2), 'same');
  assert.equal(decide(v2, v2other), 'stale');
});
