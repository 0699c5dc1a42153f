import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { hour, minute } from '../../../src/dht/constants.js';
import { createContactRecord, verifyContactRecord, type Contact } from '../../../src/dht/contact.js';
import { commonPrefixLength, compareDistance } from '../../../src/dht/distance.js';
import { RoutingTable, type AddResult } from '../../../src/dht/routing-table.js';
import { Identity, formatNodeId, networkConfig } from '../../../src/identity/index.js';

const network = networkConfig({ c1: 0, c2: 0 });
const T0 = 1_700_000_000_000;

/** A contact whose record bytes do not matter (no signature): enough for table mechanics. */
function fake(nodeId: Buffer, options: { addresses?: string[]; client?: boolean; issuedAt?: number } = {}): Contact {
  const issuedAt = options.issuedAt ?? T0;
  return {
    nodeId,
    id: formatNodeId(nodeId),
    identityPub: randomBytes(32),
    noiseStatic: randomBytes(32),
    puzzleNonce: randomBytes(32),
    addresses: options.addresses ?? [`memory://${formatNodeId(nodeId)}`],
    client: options.client ?? false,
    issuedAt,
    expiresAt: issuedAt + hour,
    record: Buffer.from(`fake:${nodeId.toString('hex')}:${issuedAt}`),
  };
}

/** A contact in bucket `index` of table, optionally at an address. */
function inBucket(table: RoutingTable, index: number, address?: string): Contact {
  return fake(table.randomIdInBucket(index), address === undefined ? {} : { addresses: [address] });
}

/** Ids of every contact closest() draws from (bucket entries ∪ siblings), sorted by distance to target. */
function bruteForce(table: RoutingTable, target: Uint8Array, filter: (c: Contact) => boolean = () => true): string[] {
  const all = new Map<string, Contact>();
  for (const e of table.entries()) all.set(e.contact.id, e.contact);
  for (const c of table.siblings()) all.set(c.id, c);
  return [...all.values()]
    .filter(filter)
    .sort((a, b) => compareDistance(a.nodeId, b.nodeId, target))
    .map((c) => c.id);
}

const ids = (contacts: readonly Contact[]): string[] => contacts.map((c) => c.id);

test('the constructor validates self and every option', () => {
  const self = randomBytes(32);
  assert.throws(() => new RoutingTable(randomBytes(31)), RangeError);
  assert.throws(() => new RoutingTable('x'.repeat(32) as unknown as Uint8Array), TypeError);
  for (const bad of [{ k: 0 }, { k: 1.5 }, { k: Infinity }, { subnetLimit: 0 }, { subnetLimit: NaN }, { replacementCacheSize: -1 }, { siblingCount: 2.5 }]) {
    assert.throws(() => new RoutingTable(self, bad), RangeError, JSON.stringify(bad));
  }
  assert.throws(() => new RoutingTable(self, { exemptLoopback: 'yes' as unknown as boolean }), TypeError);
  const table = new RoutingTable(self, { subnetLimit: Infinity, replacementCacheSize: 0, siblingCount: 0 });
  assert.equal(table.k, 20);
  assert.deepEqual(table.self, self);
  self[0] = self[0]! ^ 1;
  assert.notDeepEqual(table.self, self, 'self is copied');
});

test('add() reports added, updated, self, client, subnet-limit and full', () => {
  const table = new RoutingTable(randomBytes(32), { k: 3 });
  const a = inBucket(table, 0, 'tcp://10.0.0.1:4000');
  assert.deepEqual(table.add(a, T0), { status: 'added' });
  assert.deepEqual(table.add(a, T0 + 1), { status: 'updated' });
  assert.deepEqual(table.add(fake(Buffer.from(table.self)), T0), { status: 'self' });
  assert.deepEqual(table.add(fake(table.randomIdInBucket(0), { client: true }), T0), { status: 'client' });
  assert.deepEqual(table.add(inBucket(table, 0, 'tcp://10.0.0.2:4000'), T0 + 2), { status: 'added' });
  assert.deepEqual(table.add(inBucket(table, 0, 'tcp://10.0.0.3:4000'), T0 + 3), { status: 'subnet-limit' });
  assert.deepEqual(table.add(inBucket(table, 0, 'tcp://10.0.1.1:4000'), T0 + 4), { status: 'added' });
  const full = table.add(inBucket(table, 0, 'tcp://10.0.2.1:4000'), T0 + 5);
  assert.equal(full.status, 'full');
  assert.equal((full as Extract<AddResult, { status: 'full' }>).candidate.contact.id, a.id);
  assert.equal(table.size, 3);
  assert.equal(table.has(table.self), false);
});

test('updated: a later issuedAt replaces the contact, an earlier one does not; both move it to the tail', () => {
  const table = new RoutingTable(randomBytes(32), { k: 3 });
  const id = table.randomIdInBucket(0);
  const v1 = fake(id, { issuedAt: T0, addresses: ['tcp://10.0.0.1:1'] });
  const v2 = fake(id, { issuedAt: T0 + 10, addresses: ['tcp://10.0.0.1:2'] });
  const other = inBucket(table, 0);
  table.add(v1, T0);
  table.add(other, T0 + 1);
  assert.equal(table.add(v2, T0 + 2).status, 'updated');
  assert.equal(table.get(id)?.contact, v2);
  assert.deepEqual(ids(table.entries().map((e) => e.contact)), [other.id, v2.id]);
  assert.equal(table.add(v1, T0 + 3).status, 'updated');
  const entry = table.get(id)!;
  assert.equal(entry.contact, v2, 'an older record never replaces a newer one');
  assert.deepEqual([entry.firstSeen, entry.lastSeen, entry.failures], [T0, T0 + 3, 0]);
  assert.equal(table.size, 2);
});

test('full bucket: the caller pings the candidate; touch() keeps it and the newcomer waits in the replacement cache', () => {
  // No sibling list here, so that the newcomer is visible only in the replacement cache.
  const table = new RoutingTable(randomBytes(32), { k: 4, siblingCount: 0 });
  const members = Array.from({ length: 4 }, (_, i) => {
    const c = inBucket(table, 0);
    table.add(c, T0 + i);
    return c;
  });
  const newcomer = inBucket(table, 0);
  const result = table.add(newcomer, T0 + 10);
  assert.equal(result.status, 'full');
  const { candidate } = result as Extract<AddResult, { status: 'full' }>;
  assert.equal(candidate.contact.id, members[0]!.id, 'the least-recently seen member is the one to ping');
  table.touch(candidate.contact.nodeId, T0 + 11);
  assert.deepEqual(ids(table.entries().map((e) => e.contact)), ids([...members.slice(1), members[0]!]));
  assert.equal(table.has(newcomer.nodeId), false);
  assert.deepEqual(table.buckets(), [{ index: 0, size: 4, replacements: 1 }]);
  // The next newcomer gets the next least-recently seen member as candidate; that one is dead.
  const second = table.add(inBucket(table, 0), T0 + 12) as Extract<AddResult, { status: 'full' }>;
  assert.equal(second.candidate.contact.id, members[1]!.id);
  assert.equal(table.recordFailure(members[1]!.nodeId), 1);
  assert.equal(table.recordFailure(members[1]!.nodeId), 2);
  const promoted = table.evict(members[1]!.nodeId);
  assert.notEqual(promoted, null);
  assert.notEqual(promoted!.id, newcomer.id, 'the most recently seen replacement is promoted first');
  assert.equal(table.has(promoted!.nodeId), true);
  assert.equal(table.has(members[1]!.nodeId), false);
  assert.deepEqual(table.buckets(), [{ index: 0, size: 4, replacements: 1 }]);
  assert.equal(table.evict(members[2]!.nodeId)?.id, newcomer.id);
  assert.equal(table.evict(members[3]!.nodeId), null, 'nothing left to promote');
  assert.equal(table.size, 3);
});

test('replacement caches are bounded, keep the most recently seen, and touch() reorders them', () => {
  const table = new RoutingTable(randomBytes(32), { k: 2, replacementCacheSize: 3, siblingCount: 0 });
  const [m1, m2] = [inBucket(table, 0), inBucket(table, 0)];
  table.add(m1, T0);
  table.add(m2, T0);
  const waiting = Array.from({ length: 6 }, (_, i) => {
    const c = inBucket(table, 0);
    assert.equal(table.add(c, T0 + 1 + i).status, 'full');
    return c;
  });
  assert.deepEqual(table.buckets(), [{ index: 0, size: 2, replacements: 3 }]);
  assert.equal(table.recordFailure(waiting[0]!.nodeId), 0, 'dropped from the cache: unknown');
  table.touch(waiting[3]!.nodeId, T0 + 20);
  assert.equal(table.add(waiting[4]!, T0 + 21).status, 'full', 'a waiting contact seen again becomes the most recent replacement');
  assert.equal(table.evict(m1.nodeId)?.id, waiting[4]!.id);
  assert.equal(table.evict(m2.nodeId)?.id, waiting[3]!.id);
  assert.equal(table.remove(waiting[4]!.nodeId), true);
  assert.equal(table.has(waiting[5]!.nodeId), true, 'remove() promotes too');
  assert.deepEqual(table.buckets(), [{ index: 0, size: 2, replacements: 0 }]);
});

test('a long-lived contact that keeps answering survives a flood of new contacts', () => {
  const table = new RoutingTable(randomBytes(32));
  const old = Array.from({ length: table.k }, (_, i) => {
    const c = inBucket(table, 1);
    table.add(c, T0 + i);
    return c;
  });
  let now = T0 + minute;
  for (let i = 0; i < 1000; i++) {
    const result = table.add(inBucket(table, 1), now++);
    assert.equal(result.status, 'full');
    table.touch((result as Extract<AddResult, { status: 'full' }>).candidate.contact.nodeId, now++);
  }
  assert.deepEqual(new Set(ids(table.entries().map((e) => e.contact))), new Set(ids(old)));
  for (const [i, c] of old.entries()) assert.equal(table.get(c.nodeId)?.firstSeen, T0 + i);
  assert.deepEqual(table.buckets(), [{ index: 1, size: table.k, replacements: table.k }]);
  assert.deepEqual(table.snapshot().slice(0, table.k), old.map((c) => c.record), 'long-lived first');
});

test('subnet limit: at most 2 per IPv4 /24 per bucket; observedIp wins over the advertised address', () => {
  const table = new RoutingTable(randomBytes(32));
  assert.equal(table.add(inBucket(table, 0, 'tcp://192.0.2.1:4000'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0, 'tcp://192.0.2.200:4000'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0, 'tcp://192.0.2.7:4001'), T0).status, 'subnet-limit');
  assert.equal(table.add(inBucket(table, 0, 'tcp://192.0.3.7:4001'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 1, 'tcp://192.0.2.7:4001'), T0).status, 'added', 'the limit is per bucket');
  // Advertising a different address does not help when the connection came from the same /24.
  assert.equal(table.add(inBucket(table, 0, 'tcp://198.51.100.1:4000'), T0, '192.0.2.9').status, 'subnet-limit');
  // A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
  assert.equal(table.add(inBucket(table, 0, 'tcp://198.51.100.1:4000'), T0, '::ffff:192.0.2.9').status, 'subnet-limit');
  assert.equal(table.add(inBucket(table, 0, 'tcp://192.0.2.9:4000'), T0, '203.0.113.5').status, 'added');
  assert.equal(table.size, 5);
});

test('subnet limit: at most 2 per IPv6 /48 per bucket (bracketed addresses, zones, :: forms)', () => {
  const table = new RoutingTable(randomBytes(32));
  assert.equal(table.add(inBucket(table, 0, 'tcp://[2001:db8:1::1]:4000'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0, 'tcp://[2001:0db8:0001:ffff::2]:4000'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0, 'tcp://[2001:db8:1:1:1:1:1:1]:4000'), T0).status, 'subnet-limit');
  assert.equal(table.add(inBucket(table, 0, 'tcp://[2001:db8:2::1]:4000'), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0), T0, '2001:db8:1::99%eth0').status, 'subnet-limit');
  assert.equal(table.add(inBucket(table, 0), T0, '2001:db8:2:0:0:0:1.2.3.4').status, 'added');
  assert.equal(table.add(inBucket(table, 0), T0, '2001:db8:2::5').status, 'subnet-limit');
});

test('subnet limit: loopback and non-IP addresses are exempt by default, counted when exemptLoopback is false', () => {
  const exempt = new RoutingTable(randomBytes(32));
  for (const address of ['tcp://127.0.0.1:1', 'tcp://127.0.0.1:2', 'tcp://127.0.0.1:3', 'tcp://[::1]:1', 'tcp://[::1]:2', 'tcp://[::1]:3']) {
    assert.equal(exempt.add(inBucket(exempt, 0, address), T0).status, 'added', address);
  }
  for (let i = 0; i < 5; i++) assert.equal(exempt.add(inBucket(exempt, 1), T0).status, 'added', 'memory://');
  for (const address of ['tcp://example.test:4000', 'tcp://example.test:4001', 'tcp://10.0.0.1', 'tcp://[10.0.0.1]:4000']) {
    assert.equal(exempt.add(inBucket(exempt, 2, address), T0).status, 'added', `${address}: no IP to go by`);
  }

  const strict = new RoutingTable(randomBytes(32), { exemptLoopback: false });
  const statuses = (index: number, addresses: (string | undefined)[]): string[] => addresses.map((a) => strict.add(inBucket(strict, index, a), T0).status);
  assert.deepEqual(statuses(0, ['tcp://127.0.0.1:1', 'tcp://127.0.0.2:1', 'tcp://127.0.0.3:1', 'tcp://127.0.1.1:1']), ['added', 'added', 'subnet-limit', 'added']);
  assert.deepEqual(statuses(1, ['tcp://[::1]:1', 'tcp://[::1]:2', 'tcp://[::1]:3']), ['added', 'added', 'subnet-limit']);
  assert.deepEqual(statuses(2, [undefined, undefined, 'tcp://example.test:1']), ['added', 'added', 'subnet-limit'], 'no IP: one shared group');
});

test('subnetLimit: Infinity disables the limit', () => {
  const table = new RoutingTable(randomBytes(32), { subnetLimit: Infinity, exemptLoopback: false });
  for (let i = 0; i < table.k; i++) assert.equal(table.add(inBucket(table, 0, `tcp://10.1.1.${i}:4000`), T0).status, 'added');
  assert.equal(table.add(inBucket(table, 0, 'tcp://10.1.1.99:4000'), T0).status, 'full');
});

test('subnet limit also holds when a known contact moves, and one subnet cannot flush a replacement cache', () => {
  const table = new RoutingTable(randomBytes(32), { k: 3, replacementCacheSize: 4 });
  const a = inBucket(table, 0, 'tcp://10.0.0.1:1');
  const b = inBucket(table, 0, 'tcp://10.0.0.2:1');
  const c = inBucket(table, 0, 'tcp://10.0.1.1:1');
  for (const x of [a, b, c]) table.add(x, T0);
  assert.equal(table.add(c, T0 + 1, '10.0.0.3').status, 'subnet-limit', 'moving into a full /24 is refused');
  assert.equal(table.get(c.nodeId)?.observedIp, undefined, 'and changes nothing');
  assert.equal(table.add(a, T0 + 1, '10.0.0.1').status, 'updated', 'staying in its own /24 is fine');
  assert.equal(table.add(a, T0 + 2).status, 'updated');
  assert.equal(table.get(a.nodeId)?.observedIp, '10.0.0.1', 'a later add without observedIp keeps the known one');

  const diverse = [inBucket(table, 0, 'tcp://10.7.0.1:1'), inBucket(table, 0, 'tcp://10.8.0.1:1')];
  for (const x of diverse) assert.equal(table.add(x, T0 + 3).status, 'full');
  for (let i = 0; i < 10; i++) assert.equal(table.add(inBucket(table, 0, `tcp://10.9.9.${i}:1`), T0 + 4 + i).status, 'full');
  assert.deepEqual(table.buckets(), [{ index: 0, size: 3, replacements: 4 }]);
  table.evict(c.nodeId);
  table.evict(b.nodeId);
  table.evict(a.nodeId);
  const kept = new Set(ids(table.entries().map((e) => e.contact)));
  assert.equal(kept.size, 3);
  assert.ok(diverse.some((x) => kept.has(x.id)), 'diverse replacements survived the flood');
});

test('clients never enter the table; a newer record that turns a node into a client takes it out', () => {
  const table = new RoutingTable(randomBytes(32));
  const id = table.randomIdInBucket(5);
  assert.equal(table.add(fake(id, { client: true }), T0).status, 'client');
  assert.equal(table.has(id), false);
  assert.equal(table.add(fake(id, { issuedAt: T0 }), T0).status, 'added');
  assert.equal(table.add(fake(id, { client: true, issuedAt: T0 - 1 }), T0).status, 'client');
  assert.equal(table.has(id), true, 'an older client record is ignored');
  assert.equal(table.add(fake(id, { client: true, issuedAt: T0 + 1 }), T0).status, 'client');
  assert.equal(table.has(id), false);
  assert.equal(table.siblings().length, 0);
});

test('touch, recordFailure, remove and get work by NodeId', () => {
  const table = new RoutingTable(randomBytes(32));
  const a = inBucket(table, 3);
  table.add(a, T0, '192.0.2.1');
  assert.deepEqual(table.get(a.nodeId), { contact: a, firstSeen: T0, lastSeen: T0, failures: 0, observedIp: '192.0.2.1' });
  assert.equal(table.recordFailure(a.nodeId), 1);
  assert.equal(table.recordFailure(a.nodeId), 2);
  table.touch(new Uint8Array(a.nodeId), T0 + 5);
  assert.deepEqual(table.get(a.nodeId), { contact: a, firstSeen: T0, lastSeen: T0 + 5, failures: 0, observedIp: '192.0.2.1' });
  const copy = table.get(a.nodeId)!;
  copy.failures = 99;
  assert.equal(table.get(a.nodeId)?.failures, 0, 'get() returns a copy');
  assert.equal(table.recordFailure(randomBytes(32)), 0);
  table.touch(randomBytes(32), T0);
  assert.equal(table.evict(randomBytes(32)), null);
  assert.equal(table.remove(a.nodeId), true);
  assert.equal(table.remove(a.nodeId), false);
  assert.equal(table.size, 0);
  assert.deepEqual(table.entries(), []);
  assert.throws(() => table.get(randomBytes(20)), RangeError);
  assert.throws(() => table.add(inBucket(table, 0), NaN), RangeError);
});

test('closest() matches a brute-force sort on random tables of 1,000+ contacts', () => {
  const spread = new RoutingTable(randomBytes(32));
  for (let i = 0; i < 70; i++) for (let j = 0; j < spread.k; j++) spread.add(inBucket(spread, i), T0);
  // Uniform ids fill the first buckets and their caches; the sibling list then holds contacts
  // that only wait in a replacement cache, which closest() must include too.
  const uniform = new RoutingTable(randomBytes(32), { k: 256 });
  for (let i = 0; i < 5000; i++) uniform.add(fake(randomBytes(32)), T0);
  assert.ok(uniform.siblings().some((c) => !uniform.entries().some((e) => e.contact.id === c.id)));
  for (const table of [spread, uniform]) {
    assert.ok(table.size >= 1000, `table holds ${table.size}`);
    const some = table.entries().slice(0, 10).map((e) => e.contact.nodeId);
    const targets = [table.self, ...some, ...Array.from({ length: 30 }, () => randomBytes(32)), ...[0, 1, 2, 40, 255].map((i) => table.randomIdInBucket(i))];
    const even = (c: Contact): boolean => c.nodeId[31]! % 2 === 0;
    for (const target of targets) {
      const ranked = bruteForce(table, target);
      for (const n of [1, 3, 20, 100, table.size, table.size + 5]) {
        assert.deepEqual(ids(table.closest(target, n)), ranked.slice(0, n));
      }
      assert.deepEqual(ids(table.closest(target, 25, even)), bruteForce(table, target, even).slice(0, 25));
      assert.ok(!table.closest(target, 50).some((c) => c.nodeId.equals(table.self)));
    }
    assert.deepEqual(table.closest(table.self, 0), []);
    assert.throws(() => table.closest(table.self, -1), RangeError);
  }
});

test('the sibling list keeps the closest contacts to self even when their bucket is full', () => {
  const table = new RoutingTable(randomBytes(32), { k: 2, siblingCount: 4 });
  const far = [inBucket(table, 0), inBucket(table, 1)];
  const near = [inBucket(table, 30), inBucket(table, 30), inBucket(table, 30)];
  for (const c of [...far, ...near]) table.add(c, T0);
  const byDistance = (cs: Contact[]): string[] => ids([...cs].sort((a, b) => compareDistance(a.nodeId, b.nodeId, table.self)));
  assert.deepEqual(ids(table.siblings()), byDistance([...near, far[1]!]));
  assert.equal(table.size, 4, 'the third near contact waits in the replacement cache...');
  const waiting = near.find((c) => !table.entries().some((e) => e.contact.id === c.id))!;
  assert.equal(table.has(waiting.nodeId), true, '...but is a sibling');
  assert.equal(table.isSibling(waiting.nodeId), true);
  assert.equal(table.isSibling(far[0]!.nodeId), false);
  assert.deepEqual(ids(table.closest(table.self, 5)), byDistance([...near, ...far]));
  assert.equal(table.snapshot().length, 5);
  // A sibling that is removed is replaced by the closest remaining contact.
  table.remove(near[0]!.nodeId);
  assert.deepEqual(ids(table.siblings()), byDistance([...near.slice(1), ...far]));
  table.remove(far[0]!.nodeId);
  assert.deepEqual(ids(table.siblings()), byDistance([...near.slice(1), far[1]!]));
});

test('responsibleFor(): self is among the `replicas` closest known nodes to the key', () => {
  const table = new RoutingTable(randomBytes(32));
  assert.equal(table.responsibleFor(randomBytes(32)), true, 'an empty table is responsible for everything');
  for (let i = 0; i < 12; i++) for (let j = 0; j < 10; j++) table.add(inBucket(table, i), T0);
  assert.equal(table.responsibleFor(table.self), true);
  for (let i = 0; i < 300; i++) {
    const key = i % 3 === 0 ? table.randomIdInBucket(i % 16) : randomBytes(32);
    const replicas = 1 + (i % 25);
    const closer = table.entries().filter((e) => compareDistance(e.contact.nodeId, table.self, key) < 0).length;
    assert.equal(table.responsibleFor(key, replicas), closer < replicas);
  }
  assert.throws(() => table.responsibleFor(table.self, 0), RangeError);
});

test('staleBuckets() lists buckets 0 … deepest occupied without a recent lookup; markLookup() refreshes one', () => {
  const table = new RoutingTable(randomBytes(32));
  assert.deepEqual(table.staleBuckets(T0, hour), [], 'nothing to refresh in an empty table');
  for (const i of [0, 2, 5]) table.add(inBucket(table, i), T0);
  assert.deepEqual(table.staleBuckets(T0, hour), [0, 1, 2, 3, 4, 5], 'never looked up: all stale');
  table.markLookup(table.randomIdInBucket(3), T0);
  table.markLookup(table.randomIdInBucket(0), T0 + 10 * minute);
  assert.deepEqual(table.staleBuckets(T0 + hour - 1, hour), [1, 2, 4, 5]);
  assert.deepEqual(table.staleBuckets(T0 + hour, hour), [1, 2, 3, 4, 5]);
  assert.deepEqual(table.staleBuckets(T0 + hour + 10 * minute, hour), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(table.staleBuckets(T0 + 10 * minute, 0), [0, 1, 2, 3, 4, 5], 'an interval of 0 refreshes everything');
  table.markLookup(table.self, T0 + hour);
  assert.deepEqual(table.staleBuckets(T0 + hour, hour), [1, 2, 3, 4, 5], 'a lookup for self marks bucket 255, beyond the range');
});

test('randomIdInBucket() lands in the requested bucket for all 256 indices', () => {
  const table = new RoutingTable(randomBytes(32));
  for (let i = 0; i < 256; i++) {
    for (let j = 0; j < 4; j++) assert.equal(commonPrefixLength(table.self, table.randomIdInBucket(i)), i);
  }
  for (const bad of [-1, 256, 1.5, NaN]) assert.throws(() => table.randomIdInBucket(bad), RangeError);
});

test('entries(), buckets() and size agree', () => {
  const table = new RoutingTable(randomBytes(32), { k: 3 });
  for (let i = 0; i < 300; i++) table.add(fake(randomBytes(32)), T0 + i);
  const buckets = table.buckets();
  assert.equal(table.size, table.entries().length);
  assert.equal(table.size, buckets.reduce((n, b) => n + b.size, 0));
  for (const b of buckets) {
    assert.ok(b.size <= 3 && b.replacements <= 3);
    assert.equal(table.entries().filter((e) => commonPrefixLength(table.self, e.contact.nodeId) === b.index).length, b.size);
  }
});

test('snapshot() round-trips real signed contact records through verifyContactRecord, long-lived first', () => {
  const self = Identity.generate(network);
  const identities = Array.from({ length: 24 }, () => Identity.generate(network));
  const table = new RoutingTable(self.nodeId);
  const contacts = identities.map((identity, i) => verifyContactRecord(createContactRecord(identity, { addresses: [`tcp://10.${i}.0.1:4000`], now: T0 }), network, T0));
  // Admitted youngest first; touching them all afterwards must not change the long-lived order.
  for (const [i, contact] of contacts.entries()) assert.equal(table.add(contact, T0 + (contacts.length - i) * 1000).status, 'added');
  for (const contact of contacts) table.touch(contact.nodeId, T0 + hour);
  const restored = table.snapshot().map((bytes) => verifyContactRecord(bytes, network, T0 + minute));
  assert.deepEqual(ids(restored), ids(contacts).reverse());
  const reloaded = new RoutingTable(self.nodeId);
  for (const c of restored) assert.equal(reloaded.add(c, T0 + 2 * hour).status, 'added');
  assert.deepEqual(new Set(ids(reloaded.entries().map((e) => e.contact))), new Set(ids(table.entries().map((e) => e.contact))));
  assert.deepEqual(ids(reloaded.siblings()), ids(table.siblings()));
});
