import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createDhtNode, type DhtNode } from '../../src/dht/index.js';
import { Identity } from '../../src/identity/index.js';
import { testNetwork } from '../../src/testing/index.js';

const network = testNetwork();
const NODES = 24;

async function startNetwork(t: { after: (fn: () => Promise<void>) => void }, n: number): Promise<{ nodes: DhtNode[]; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'themis-dht-'));
  const nodes: DhtNode[] = [];
  t.after(async () => {
    await Promise.all(nodes.map((node) => node.leave()));
    await rm(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < n; i++) {
    nodes.push(await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', dataDir: join(dir, `node-${i}`), maintenance: false }));
  }
  const bootstrap = `${nodes[0]!.id}@${nodes[0]!.peer.addresses[0]!}`;
  for (const node of nodes.slice(1)) await node.join([bootstrap]);
  return { nodes, dir };
}

test('24 TCP nodes: join fills routing tables; store on one, find on another', async (t) => {
  const { nodes } = await startNetwork(t, NODES);
  for (const node of nodes) assert.ok(node.table.size >= 10, `${node.id} knows ${node.table.size} contacts`);
  const key = await nodes[3]!.putImmutable(Buffer.from('hello, mesh'));
  assert.equal((await nodes[17]!.getImmutable(key))?.toString(), 'hello, mesh');
  const first = await nodes[5]!.putMutable(Buffer.from('v1'), { salt: Buffer.from('config') });
  const second = await nodes[5]!.putMutable(Buffer.from('v2'), { salt: Buffer.from('config') });
  assert.equal(second.seq, first.seq + 1);
  const latest = await nodes[20]!.getMutable(nodes[5]!.identity.publicKey, Buffer.from('config'));
  assert.equal(latest?.value.toString(), 'v2');
  assert.equal(latest?.seq, second.seq);
  assert.equal(await nodes[9]!.getImmutable(Buffer.alloc(32, 7)), null);
  const lookup = await nodes[1]!.findNode(nodes[22]!.nodeId);
  assert.equal(lookup.target?.id, nodes[22]!.id);
});

test('records survive the departure of 30% of the nodes', async (t) => {
  const { nodes } = await startNetwork(t, NODES);
  const keys: Buffer[] = [];
  for (let i = 0; i < 12; i++) keys.push(await nodes[i % NODES]!.putImmutable(Buffer.from(`record ${i}`)));
  // Kill 30%: they close their sockets without a word (leave() also saves their snapshot, harmless here).
  const killed = nodes.splice(1, Math.round(NODES * 0.3));
  await Promise.all(killed.map((node) => node.peer.close()));
  for (const [i, key] of keys.entries()) {
    const reader = nodes[(i * 5) % nodes.length]!;
    assert.equal((await reader.getImmutable(key))?.toString(), `record ${i}`, `record ${i} from ${reader.id}`);
  }
  await Promise.all(killed.map((node) => node.leave()));
});

test('a restarted node serves its records from LMDB and rejoins from its snapshot without a bootstrap list', async (t) => {
  const { nodes, dir } = await startNetwork(t, 12);
  const key = await nodes[4]!.putImmutable(Buffer.from('durable'));
  const holder = nodes.find((node) => node.recordStore.get(key, Date.now()).length > 0)!;
  const index = nodes.indexOf(holder);
  const identity = Identity.fromSecrets(holder.identity.exportSecrets(), network);
  await holder.leave();
  const restarted = await createDhtNode({ network, identity, listen: 'tcp://127.0.0.1:0', dataDir: join(dir, `node-${index}`), maintenance: false });
  nodes[index] = restarted;
  assert.equal(restarted.recordStore.get(key, Date.now()).length, 1, 'the record came back from disk');
  const joined = await restarted.join();
  assert.ok(joined.contacts >= 5, `rejoined with ${joined.contacts} contacts`);
  const other = nodes[(index + 1) % nodes.length]!;
  assert.equal((await other.getImmutable(key))?.toString(), 'durable');
});

test('client nodes query and publish but never enter routing tables', async (t) => {
  const { nodes } = await startNetwork(t, 10);
  const client = await createDhtNode({ network, client: true, maintenance: false });
  t.after(() => client.leave());
  await client.join([nodes[0]!.peer.addresses[0]!]);
  const key = await client.putImmutable(Buffer.from('from a function instance'));
  assert.equal((await nodes[7]!.getImmutable(key))?.toString(), 'from a function instance');
  for (const node of nodes) assert.equal(node.table.has(client.nodeId), false, `${node.id} admitted the client`);
  assert.ok(client.table.size > 0, 'the client keeps its own routing table of servers');
});
