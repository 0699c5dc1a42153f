import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { hour } from '../../src/dht/constants.js';
import type { Contact } from '../../src/dht/contact.js';
import { commonPrefixLength, compareDistance, xorDistance } from '../../src/dht/distance.js';
import { RoutingTable, type RoutingTableOptions } from '../../src/dht/routing-table.js';
import { formatNodeId } from '../../src/identity/index.js';

const T0 = 1_700_000_000_000;
/** Address blocks the generated contacts come from; 127.0.0 is loopback, memory has no IP. */
const BLOCKS = ['10.0.0', '10.0.1', '192.0.2', '2001:db8:1', '2001:db8:2', '127.0.0', 'memory'] as const;
type Block = (typeof BLOCKS)[number];

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));
const big = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString('hex')}`);

/** An id sharing exactly `index` leading bits with self, the rest taken from `noise`. */
function idAt(self: Buffer, index: number, noise: Buffer): Buffer {
  const id = Buffer.from(noise);
  for (let bit = 0; bit <= index; bit++) {
    const own = (self[bit >> 3]! >> (7 - (bit & 7))) & 1;
    const want = bit === index ? 1 - own : own;
    id[bit >> 3] = (id[bit >> 3]! & ~(0x80 >> (bit & 7))) | (want << (7 - (bit & 7)));
  }
  return id;
}

function ipIn(block: Block, host: number, mapped: boolean): string | undefined {
  if (block === 'memory') return undefined;
  if (block.includes(':')) return `${block}::${host.toString(16)}`;
  return mapped ? `::ffff:${block}.${host}` : `${block}.${host}`;
}

function addressIn(block: Block, host: number): string {
  const ip = ipIn(block, host, false);
  if (ip === undefined) return `memory://${host}`;
  return ip.includes(':') ? `tcp://[${ip}]:4000` : `tcp://${ip}:4000`;
}

/** The diversity group an entry counts in, worked out independently of src/dht/subnet.ts. */
function groupOf(ip: string | undefined, exemptLoopback: boolean): string | null {
  if (ip === undefined) return exemptLoopback ? null : 'non-ip';
  const bare = ip.replace(/^::ffff:/, '');
  const block = bare.includes(':') ? bare.split('::')[0]! : bare.split('.').slice(0, 3).join('.');
  return block === '127.0.0' && exemptLoopback ? null : block;
}

function hostIp(contact: Contact): string | undefined {
  const tcp = contact.addresses.find((a) => a.startsWith('tcp://'));
  return tcp === undefined ? undefined : tcp.slice('tcp://'.length, tcp.lastIndexOf(':')).replace(/^\[|\]$/g, '');
}

const optionsArb: fc.Arbitrary<Required<RoutingTableOptions>> = fc.record({
  k: fc.integer({ min: 1, max: 4 }),
  subnetLimit: fc.constantFrom(1, 2, Infinity),
  exemptLoopback: fc.boolean(),
  replacementCacheSize: fc.integer({ min: 0, max: 3 }),
  siblingCount: fc.integer({ min: 0, max: 6 }),
});

/** Mostly the crowded far buckets, some deep ones near self. */
const peerArb = fc.record({ bucket: fc.constantFrom(0, 0, 0, 1, 1, 2, 9, 200), noise: bytes32 });

const opArb = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      who: fc.nat(),
      block: fc.constantFrom(...BLOCKS),
      host: fc.integer({ min: 1, max: 254 }),
      issuedAt: fc.nat(4),
      client: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
      observed: fc.option(fc.record({ block: fc.constantFrom(...BLOCKS), host: fc.integer({ min: 1, max: 254 }), mapped: fc.boolean() })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('touch' as const, 'evict' as const, 'remove' as const, 'fail' as const), who: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'self' as const }) },
);

function checkInvariants(table: RoutingTable, options: Required<RoutingTableOptions>, targets: readonly Buffer[]): void {
  const entries = table.entries();
  const siblings = table.siblings();
  assert.equal(table.size, entries.length);
  const ids = entries.map((e) => e.contact.id);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.equal(new Set(siblings.map((c) => c.id)).size, siblings.length, 'no duplicate siblings');
  assert.equal(table.has(table.self), false);

  const perBucket = new Map<number, typeof entries>();
  for (const e of [...entries]) {
    assert.equal(e.contact.client, false, 'clients never enter');
    assert.equal(table.has(e.contact.nodeId), true);
    const index = commonPrefixLength(table.self, e.contact.nodeId);
    assert.ok(index < 256, 'self never present');
    perBucket.set(index, [...(perBucket.get(index) ?? []), e]);
  }
  const reported = new Map(table.buckets().map((b) => [b.index, b]));
  for (const [index, bucket] of perBucket) {
    assert.ok(bucket.length <= options.k, `bucket ${index} holds ${bucket.length} > k`);
    assert.equal(reported.get(index)?.size, bucket.length, `bucket ${index}: entries sit in the bucket of their prefix length`);
    for (let i = 1; i < bucket.length; i++) assert.ok(bucket[i - 1]!.lastSeen <= bucket[i]!.lastSeen, 'least-recently seen first');
    const groups = new Map<string, number>();
    for (const e of bucket) {
      const group = groupOf(e.observedIp ?? hostIp(e.contact), options.exemptLoopback);
      if (group !== null) groups.set(group, (groups.get(group) ?? 0) + 1);
    }
    for (const [group, count] of groups) assert.ok(count <= options.subnetLimit, `bucket ${index}: ${count} contacts from ${group}`);
  }
  for (const b of reported.values()) {
    assert.equal(b.size, perBucket.get(b.index)?.length ?? 0);
    assert.ok(b.replacements <= options.replacementCacheSize);
  }

  // Sibling list: sorted, bounded, and nothing known but left out is closer than its farthest member.
  assert.ok(siblings.length <= options.siblingCount);
  for (let i = 1; i < siblings.length; i++) assert.ok(compareDistance(siblings[i - 1]!.nodeId, siblings[i]!.nodeId, table.self) < 0);
  for (const c of siblings) {
    assert.equal(c.client, false);
    assert.equal(table.isSibling(c.nodeId), true);
    assert.equal(table.has(c.nodeId), true);
  }
  const last = siblings.at(-1);
  for (const e of entries) {
    if (table.isSibling(e.contact.nodeId)) continue;
    assert.equal(siblings.length, options.siblingCount, 'a short sibling list holds every contact');
    if (last !== undefined) assert.ok(compareDistance(last.nodeId, e.contact.nodeId, table.self) < 0, 'a closer contact was left out of the sibling list');
  }

  const all = new Map<string, Contact>();
  for (const c of [...entries.map((e) => e.contact), ...siblings]) all.set(c.id, c);
  for (const target of [table.self, ...targets]) {
    const ranked = [...all.values()].sort((a, b) => compareDistance(a.nodeId, b.nodeId, target)).map((c) => c.id);
    for (const n of [1, 2, options.k, all.size + 1]) assert.deepEqual(table.closest(target, n).map((c) => c.id), ranked.slice(0, n));
  }
}

test('routing-table invariants hold after random add/touch/evict/remove/recordFailure sequences', () => {
  fc.assert(
    fc.property(
      bytes32,
      optionsArb,
      fc.array(peerArb, { minLength: 1, maxLength: 24 }),
      fc.array(opArb, { minLength: 1, maxLength: 80 }),
      fc.array(bytes32, { maxLength: 3 }),
      (self, options, peers, ops, targets) => {
        const table = new RoutingTable(self, options);
        const pool = peers.map((p) => idAt(self, p.bucket, p.noise));
        let now = T0;
        for (const op of ops) {
          now += 1000;
          if (op.op === 'self') {
            assert.equal(table.add(fake(self, { addresses: [], issuedAt: T0 }), now).status, 'self');
            continue;
          }
          const id = pool[op.who % pool.length]!;
          switch (op.op) {
            case 'add': {
              const contact = fake(id, { addresses: [addressIn(op.block, op.host)], issuedAt: T0 + op.issuedAt, client: op.client });
              const observed = op.observed === null ? undefined : ipIn(op.observed.block, op.observed.host, op.observed.mapped);
              const result = table.add(contact, now, observed);
              if (result.status === 'full') assert.equal(result.candidate.contact.id, table.entries().find((e) => commonPrefixLength(self, e.contact.nodeId) === commonPrefixLength(self, id))!.contact.id);
              if (result.status === 'added' || result.status === 'updated') assert.equal(table.get(id)?.lastSeen, now);
              if (result.status === 'client') assert.equal(table.has(id) && table.get(id)!.contact.issuedAt < contact.issuedAt, false);
              break;
            }
            case 'touch':
              table.touch(id, now);
              break;
            case 'evict': {
              const promoted = table.evict(id);
              assert.equal(table.has(id), false);
              if (promoted !== null) assert.equal(table.get(promoted.nodeId)?.contact, promoted);
              break;
            }
            case 'remove':
              table.remove(id);
              assert.equal(table.has(id), false);
              break;
            case 'fail': {
              const before = table.get(id)?.failures;
              const after = table.recordFailure(id);
              if (before !== undefined) assert.equal(after, before + 1);
              break;
            }
          }
          checkInvariants(table, options, targets);
        }
      },
    ),
    { numRuns: 400, interruptAfterTimeLimit: 3500, includeErrorInReport: true },
  );
});

test('XOR metric: d(a,a) = 0, symmetry, d(a,c) = d(a,b) ⊕ d(b,c), triangle inequality; compareDistance and prefix length agree', () => {
  fc.assert(
    fc.property(bytes32, bytes32, bytes32, (a, b, c) => {
      assert.equal(big(xorDistance(a, a)), 0n);
      assert.deepEqual(xorDistance(a, b), xorDistance(b, a));
      const [ab, bc, ac] = [big(xorDistance(a, b)), big(xorDistance(b, c)), big(xorDistance(a, c))];
      assert.equal(ac, ab ^ bc);
      assert.ok(ac <= ab + bc);
      const [da, db] = [big(xorDistance(a, c)), big(xorDistance(b, c))];
      assert.equal(compareDistance(a, b, c), da < db ? -1 : da > db ? 1 : 0);
      assert.equal(compareDistance(a, a, c), 0);
      assert.equal(commonPrefixLength(a, b), ab === 0n ? 256 : 256 - ab.toString(2).length);
      assert.equal(commonPrefixLength(a, a), 256);
    }),
    { numRuns: 1000, interruptAfterTimeLimit: 1000 },
  );
});

function fake(nodeId: Buffer, options: { addresses: string[]; issuedAt: number; client?: boolean }): Contact {
  return {
    nodeId,
    id: formatNodeId(nodeId),
    identityPub: Buffer.alloc(32),
    noiseStatic: Buffer.alloc(32),
    puzzleNonce: Buffer.alloc(32),
    addresses: options.addresses,
    client: options.client ?? false,
    issuedAt: options.issuedAt,
    expiresAt: options.issuedAt + hour,
    record: Buffer.from(nodeId),
  };
}
