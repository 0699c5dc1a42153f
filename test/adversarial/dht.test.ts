import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import {
  RPC,
  RecordType,
  StoreStatus,
  createContactRecord,
  createDhtNode,
  createRecord,
  immutableKey,
  mutableKey,
  type DhtNode,
} from '../../src/dht/index.js';
import * as msg from '../../src/dht/messages.js';
import { Identity, networkConfig } from '../../src/identity/index.js';
import { createPeer, type Connection, type Peer } from '../../src/transport/index.js';
import { testNetwork } from '../../src/testing/index.js';

// Attacks on the DHT's peer-facing entry points, over real TCP on 127.0.0.1. The attacker is a
// plain Themis peer that speaks the DHT RPCs with bodies of its own making.

const network = testNetwork();

async function victimAndAttacker(t: { after: (fn: () => Promise<void>) => void }, quotas = {}): Promise<{ victim: DhtNode; attacker: Peer; conn: Connection; mallory: Identity }> {
  const victim = await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false, quotas });
  const mallory = Identity.generate(network);
  const attacker = await createPeer({ network, identity: mallory, listen: 'tcp://127.0.0.1:0' });
  t.after(async () => {
    await attacker.close();
    await victim.leave();
  });
  const conn = await attacker.dial(victim.peer.addresses[0]!, { expect: victim.nodeId });
  return { victim, attacker, conn, mallory };
}

async function store(conn: Connection, record: Buffer, sender: Buffer = Buffer.alloc(0)): Promise<number> {
  return msg.decodeStoreResponse(await conn.request(RPC.Store, msg.encodeStoreRequest(sender, record)));
}

test('a forged record (any flipped bit) is refused by the holder and never stored', async (t) => {
  const { victim, conn, mallory } = await victimAndAttacker(t);
  const value = Buffer.from('honest value');
  const record = createRecord(mallory, { type: RecordType.Immutable, key: immutableKey(value), value });
  for (const position of [10, 60, record.length - 70, record.length - 1]) {
    const forged = Buffer.from(record);
    forged[position]! ^= 0x40;
    assert.equal(await store(conn, forged), StoreStatus.Invalid, `flip at ${position}`);
  }
  assert.equal(victim.recordStore.stats().records, 0);
  assert.equal(await store(conn, record), StoreStatus.Stored);
});

test('replayed and stale mutable records cannot roll a value back', async (t) => {
  const { victim, conn, mallory } = await victimAndAttacker(t);
  const key = mutableKey(mallory.publicKey);
  const v1 = createRecord(mallory, { type: RecordType.Mutable, key, value: Buffer.from('v1'), seq: 1 });
  const v2 = createRecord(mallory, { type: RecordType.Mutable, key, value: Buffer.from('v2'), seq: 2 });
  const conflicting = createRecord(mallory, { type: RecordType.Mutable, key, value: Buffer.from('v2-evil'), seq: 2 });
  assert.equal(await store(conn, v1), StoreStatus.Stored);
  assert.equal(await store(conn, v2), StoreStatus.Stored);
  assert.equal(await store(conn, v1), StoreStatus.Stale, 'replay of an older record');
  assert.equal(await store(conn, conflicting), StoreStatus.Stale, 'same seq, other value');
  assert.equal(await store(conn, v2), StoreStatus.Same, 'an exact replay is harmless');
  assert.equal(victim.recordStore.get(key, Date.now())[0]?.value.toString(), 'v2');
});

test('a flood past the per-publisher quota is refused while other publishers still store', async (t) => {
  const { victim, conn, mallory } = await victimAndAttacker(t, { maxRecordsPerPublisher: 5 });
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    const value = Buffer.from(`flood ${i}`);
    statuses.push(await store(conn, createRecord(mallory, { type: RecordType.Immutable, key: immutableKey(value), value })));
  }
  assert.deepEqual(statuses, [...Array(5).fill(StoreStatus.Stored), ...Array(7).fill(StoreStatus.Quota)]);
  const honest = Identity.generate(network);
  const value = Buffer.from('honest');
  assert.equal(await store(conn, createRecord(honest, { type: RecordType.Immutable, key: immutableKey(value), value })), StoreStatus.Stored);
  assert.equal(victim.recordStore.stats().records, 6);
});

test('oversized, expired and long-lived records are refused with their own status', async (t) => {
  const { conn, mallory } = await victimAndAttacker(t);
  const big = Buffer.alloc(100 * 1024, 1);
  assert.equal(await store(conn, createRecord(mallory, { type: RecordType.Immutable, key: immutableKey(big), value: big })), StoreStatus.TooLarge);
  const value = Buffer.from('x');
  assert.equal(await store(conn, createRecord(mallory, { type: RecordType.Immutable, key: immutableKey(value), value, ttlMs: 1, now: Date.now() - 3_600_000 })), StoreStatus.Expired);
  assert.equal(await store(conn, createRecord(mallory, { type: RecordType.Immutable, key: immutableKey(value), value, ttlMs: 365 * 86_400_000 })), StoreStatus.Invalid);
});

test('a sender contact that does not match the handshake identity, or misses the puzzles, is not admitted', async (t) => {
  const { victim, conn, mallory } = await victimAndAttacker(t);
  const someoneElse = Identity.generate(network);
  const stolen = createContactRecord(someoneElse, { addresses: ['tcp://127.0.0.1:9'] });
  await conn.request(RPC.Ping, msg.encodePingRequest(stolen));
  assert.equal(victim.table.has(someoneElse.nodeId), false);
  assert.equal(victim.table.has(mallory.nodeId), false);
  const flipped = Buffer.from(createContactRecord(mallory, { addresses: ['tcp://127.0.0.1:9'] }));
  flipped[flipped.length - 1]! ^= 1;
  await conn.request(RPC.Ping, msg.encodePingRequest(flipped));
  assert.equal(victim.table.has(mallory.nodeId), false);
  await conn.request(RPC.Ping, msg.encodePingRequest(createContactRecord(mallory, { addresses: ['tcp://127.0.0.1:9'] })));
  assert.equal(victim.table.has(mallory.nodeId), true, 'the genuine record is admitted');
});

test('contacts with bad signatures or unmet puzzles in a FIND_NODE answer are dropped', async (t) => {
  const strict = networkConfig({ c1: 0, c2: 8 });
  const victim = await createDhtNode({ network: strict, listen: 'tcp://127.0.0.1:0', maintenance: false });
  const mallory = Identity.generate(strict);
  const attacker = await createPeer({ network: strict, identity: mallory, listen: 'tcp://127.0.0.1:0' });
  t.after(async () => {
    await attacker.close();
    await victim.leave();
  });
  let weak: Identity;
  do weak = Identity.generate(networkConfig({ c1: 0, c2: 0 }));
  while (weak.meets(strict));
  const impersonated = Identity.generate(strict);
  const forged = Buffer.from(createContactRecord(impersonated, { addresses: ['tcp://127.0.0.1:9'] }));
  forged[forged.length - 5]! ^= 1;
  attacker.handle(RPC.FindNode, () => msg.encodeContactsResponse([forged, createContactRecord(weak, { addresses: ['tcp://127.0.0.1:9'] })]));
  attacker.handle(RPC.Ping, () => msg.encodePingResponse(createContactRecord(mallory, { addresses: attacker.addresses })));
  await victim.pingAddress(attacker.addresses[0]!);
  assert.equal(victim.table.has(mallory.nodeId), true);
  for (const target of [weak, impersonated]) {
    const result = await victim.findNode(target.nodeId);
    assert.equal(result.target, null, 'the contact was dropped, not used');
    assert.equal(result.queries, 1, 'only the attacker itself was queried');
    assert.equal(victim.table.has(target.nodeId), false);
  }
});

test('a node lying about closer contacts cannot stop a lookup that has honest paths', async (t) => {
  const nodes: DhtNode[] = [];
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.leave()));
  });
  for (let i = 0; i < 14; i++) nodes.push(await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false }));
  for (const node of nodes.slice(1)) await node.join([nodes[0]!.peer.addresses[0]!]);
  const liar = nodes[1]!;
  const phantom = Array.from({ length: 20 }, () => createContactRecord(Identity.generate(network), { addresses: ['tcp://127.0.0.1:9'] }));
  liar.peer.handle(RPC.FindNode, () => msg.encodeContactsResponse(phantom));
  for (const target of nodes.slice(2)) {
    const result = await nodes[13]!.findNode(target.nodeId);
    if (target !== nodes[13]) assert.equal(result.target?.id, target.id);
  }
});

test('malformed DHT requests get an error reply; the connection and the node stay healthy', async (t) => {
  const { victim, conn } = await victimAndAttacker(t);
  for (const body of [Buffer.alloc(0), Buffer.from([9]), Buffer.from([1, 0xff, 0xff]), Buffer.alloc(500, 0xee)]) {
    for (const name of [RPC.Ping, RPC.FindNode, RPC.FindValue, RPC.Store]) {
      await assert.rejects(conn.request(name, body), (e) => isThemisError(e, 'ERR_CHANNEL_HANDLER'), `${name} with ${body.length} bytes`);
    }
  }
  const answer = msg.decodePingResponse(await conn.request(RPC.Ping, msg.encodePingRequest(Buffer.alloc(0))));
  assert.ok(answer.length > 0);
  assert.equal(victim.peer.connections.size, 1);
});
