import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { compareDistance, lookup, type Contact, type QueryAnswer } from '../../../src/dht/index.js';

// The lookup algorithm on its own, over a synthetic id space: each "node" answers with the k
// closest ids it knows (here: all of them), so paths converge as in a full Kademlia network.

function contact(nodeId: Buffer): Contact {
  return { nodeId, id: nodeId.toString('hex'), identityPub: nodeId, noiseStatic: nodeId, puzzleNonce: nodeId, addresses: [], client: false, issuedAt: 0, expiresAt: 0, record: nodeId };
}

function world(n: number): Contact[] {
  return Array.from({ length: n }, () => contact(randomBytes(32)));
}

function closest(all: readonly Contact[], target: Buffer, k: number): Contact[] {
  return [...all].sort((a, b) => compareDistance(a.nodeId, b.nodeId, target)).slice(0, k);
}

test('an honest network: the target is found and the k closest are exact', async () => {
  const all = world(500);
  const target = all[123]!;
  const asked: string[] = [];
  const result = await lookup({
    target: target.nodeId,
    seeds: all.slice(0, 8),
    self: randomBytes(32),
    k: 8,
    alpha: 3,
    disjoint: 4,
    query: async (c): Promise<QueryAnswer> => {
      asked.push(c.id);
      return { contacts: closest(all, target.nodeId, 8) };
    },
  });
  assert.equal(result.target?.id, target.id);
  assert.ok(result.hops !== null && result.hops >= 1);
  assert.deepEqual(result.closest.map((c) => c.id), closest(all, target.nodeId, 8).map((c) => c.id));
  assert.equal(new Set(asked).size, asked.length, 'no node is queried twice: paths are disjoint');
  assert.equal(result.queries, asked.length);
});

test('one adversary per path spoils only its own path', async () => {
  const all = world(400);
  const target = all[7]!;
  const liars = new Set(all.slice(100, 140).map((c) => c.id));
  const liarContacts = all.slice(100, 140);
  const seeds = [all[100]!, all[101]!, all[102]!, all[300]!]; // three paths start at an adversary, one honest
  const result = await lookup({
    target: target.nodeId,
    seeds,
    self: randomBytes(32),
    k: 8,
    alpha: 3,
    disjoint: 4,
    query: async (c) => ({ contacts: liars.has(c.id) ? liarContacts.slice(0, 8) : closest(all, target.nodeId, 8) }),
  });
  assert.equal(result.target?.id, target.id, 'the honest path still reaches the target');
});

test('failures are counted, enough() stops value lookups, and maxQueries bounds an endless feed', async () => {
  const all = world(300);
  const target = randomBytes(32);
  let failing = 0;
  const result = await lookup({
    target,
    seeds: all.slice(0, 20),
    self: randomBytes(32),
    k: 10,
    alpha: 3,
    disjoint: 2,
    query: async (c) => {
      if (c.nodeId[0]! % 2 === 0) {
        failing++;
        throw new Error('timeout');
      }
      return { contacts: closest(all, target, 10) };
    },
  });
  assert.equal(result.failures, failing);
  assert.ok(result.closest.every((c) => c.nodeId[0]! % 2 === 1), 'only nodes that answered are reported');

  let queries = 0;
  const endless = await lookup({
    target,
    seeds: all.slice(0, 5),
    self: randomBytes(32),
    k: 10,
    alpha: 3,
    disjoint: 1,
    maxQueries: 25,
    query: async () => {
      queries++;
      return { contacts: world(10) }; // always new, never closer in any useful way
    },
  });
  assert.ok(endless.queries <= 25 && queries <= 25);

  let asked = 0;
  const record = { key: target, publisherId: randomBytes(32), seq: 1 } as never;
  const found = await lookup({
    target,
    seeds: all.slice(0, 12),
    self: randomBytes(32),
    k: 10,
    alpha: 1,
    disjoint: 1,
    enough: (records) => records.length > 0,
    query: async () => {
      asked++;
      return { contacts: closest(all, target, 10), records: [record] };
    },
  });
  assert.equal(found.records.length, 1);
  assert.equal(asked, 1, 'the first record ends the lookup');
});
