// Floods from authenticated peers over real TCP on 127.0.0.1 — streams, DHT RPCs, mesh calls and
// records past the publisher quota — each while an honest peer keeps making requests. Measured:
// every honest request succeeds within its protocol deadline, the flooder gets typed refusals,
// and the victim's counters (open streams, pending bytes, records held) stay at their caps.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { createDhtNode, createRecord, mutableKey, RecordType, RPC, type DhtNode } from '../../src/dht/index.js';
import { decodeStoreResponse, encodeFindNodeRequest, encodeStoreRequest, StoreStatus } from '../../src/dht/messages.js';
import { Identity } from '../../src/identity/index.js';
import { createMesh, type Mesh } from '../../src/mesh/index.js';
import { createPeer, type Connection, type Peer } from '../../src/transport/index.js';
import { testNetwork } from '../../src/testing/index.js';
import { honestLoad, sampleMax } from './helpers/dos.js';

const network = testNetwork();
const LISTEN = 'tcp://127.0.0.1:0';
const HONEST = 40;
const INTERVAL_MS = 40;
const DEADLINE_MS = 2000;

/** Runs `loops` request loops until `stop` resolves; counts successes and refusals by code. */
async function flood(loops: number, until: Promise<unknown>, send: () => Promise<unknown>): Promise<{ ok: number; refused: Map<string, number> }> {
  let stopped = false;
  void until.then(() => (stopped = true));
  let ok = 0;
  const refused = new Map<string, number>();
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (!stopped) {
        try {
          await send();
          ok++;
        } catch (err) {
          const text = String((err as Error).message).match(/ERR_[A-Z_]+/)?.[0] ?? (err as { code?: string }).code ?? 'error';
          refused.set(text, (refused.get(text) ?? 0) + 1);
        }
      }
    }),
  );
  return { ok, refused };
}

test('stream flood: eight connections each hold their maximum of streams and fill their windows; honest requests all succeed', async (t) => {
  const channel = { maxStreams: 16, initialWindow: 65_536, maxMessageBytes: 65_536, maxPendingBytes: 2 * 1024 * 1024 };
  const victim = await createPeer({ network, listen: LISTEN, channel });
  const attackers: Peer[] = [];
  t.after(async () => {
    // The flooders' streams never finish: drop their connections rather than wait out the grace period.
    for (const attacker of attackers) for (const conn of attacker.connections) conn.destroy();
    await Promise.all(attackers.map((a) => a.close()));
    await victim.close();
  });
  victim.handle('echo', (body) => body);
  victim.handle('hold', (_, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(Buffer.alloc(0)))));
  victim.handleStream('sink', () => {}); // never reads: the stream's window closes
  const watch = sampleMax(() => {
    let streams = 0;
    let pendingBytes = 0;
    for (const conn of victim.connections) {
      streams = Math.max(streams, conn.stats.openStreams);
      pendingBytes = Math.max(pendingBytes, conn.stats.pendingBytes);
    }
    return { streams, pendingBytes, connections: victim.connections.size };
  });
  const refusals: unknown[] = [];
  for (let i = 0; i < 8; i++) {
    const attacker = await createPeer({ network });
    attackers.push(attacker);
    const conn = await attacker.dial(victim.addresses[0]!, { expect: victim.id });
    await conn.ping(); // both SETTINGS have crossed (§4.3): the victim's maxStreams binds
    for (let s = 0; s < 8; s++) conn.openStream('sink').on('error', () => {}).write(randomBytes(256 * 1024));
    for (let s = 0; s < 8; s++) conn.request('hold', randomBytes(1024)).catch(() => {});
    // A well-behaved channel refuses to open past the victim's limit itself.
    try {
      conn.openStream('sink');
    } catch (err) {
      refusals.push(err);
    }
  }
  const honest = await createPeer({ network });
  t.after(() => honest.close());
  const conn = await honest.dial(victim.addresses[0]!, { expect: victim.id });
  const load = await honestLoad(HONEST, INTERVAL_MS, (i) => conn.request('echo', Buffer.from(`honest ${i}`), { timeoutMs: DEADLINE_MS }));
  const max = watch.stop();
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, HONEST);
  assert.equal(refusals.length, 8);
  assert.ok(refusals.every((err) => isThemisError(err, 'ERR_CHANNEL_STREAM_LIMIT')));
  assert.equal(max.streams, channel.maxStreams, 'each flooding connection held exactly its maximum of streams');
  assert.ok(max.pendingBytes <= channel.maxPendingBytes, `pending bytes peaked at ${max.pendingBytes}`);
  assert.ok(max.pendingBytes >= channel.initialWindow, `the flood filled the windows (${max.pendingBytes})`);
});

/** A DHT server node and an authenticated raw connection to it from a fresh identity. */
async function dhtVictim(t: { after(fn: () => Promise<void>): void }, init: Parameters<typeof createDhtNode>[0]): Promise<{ victim: DhtNode; dial: () => Promise<{ peer: Peer; conn: Connection }> }> {
  const victim = await createDhtNode({ network, listen: LISTEN, maintenance: false, ...init });
  t.after(() => victim.leave());
  const dial = async () => {
    const peer = await createPeer({ network });
    t.after(() => peer.close());
    return { peer, conn: await peer.dial(victim.peer.addresses[0]!, { expect: victim.id }) };
  };
  return { victim, dial };
}

test('RPC flood from one peer: 32 loops of find_node are rate limited; honest lookups and stores all succeed', async (t) => {
  const limit = { perSecond: 200, burst: 100 };
  const { victim, dial } = await dhtVictim(t, { dht: { rpcRateLimit: limit } });
  const honest = await createDhtNode({ network, listen: LISTEN, maintenance: false });
  t.after(() => honest.leave());
  await honest.join([`${victim.id}@${victim.peer.addresses[0]!}`]);
  const { conn } = await dial();
  let release = (): void => undefined;
  const done = new Promise<void>((resolve) => (release = resolve));
  const started = performance.now();
  const attack = flood(32, done, () => conn.request(RPC.FindNode, encodeFindNodeRequest(Buffer.alloc(0), randomBytes(32)), { timeoutMs: DEADLINE_MS }));
  const load = await honestLoad(HONEST, INTERVAL_MS, (i) => (i % 2 === 0 ? honest.findNode(randomBytes(32)) : honest.putImmutable(Buffer.from(`honest record ${i}`))));
  release();
  const { ok, refused } = await attack;
  const elapsedSeconds = (performance.now() - started) / 1000;
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, HONEST);
  assert.ok((refused.get('ERR_DHT_RATE_LIMITED') ?? 0) > 0, `the flooder was refused: ${JSON.stringify([...refused])}`);
  assert.deepEqual([...refused.keys()], ['ERR_DHT_RATE_LIMITED'], 'the only refusal is the rate limit');
  // The token bucket's invariant: never more than the burst plus what the elapsed time earned.
  assert.ok(ok <= limit.burst + limit.perSecond * elapsedSeconds + 1, `${ok} RPCs served in ${elapsedSeconds.toFixed(2)} s`);
  assert.equal(victim.inspect().rateLimited, refused.get('ERR_DHT_RATE_LIMITED'));
});

test('mesh call flood from one caller: refused with ERR_MESH_RATE_LIMITED and counted; an honest caller’s calls all succeed', async (t) => {
  const limit = { perSecond: 200, burst: 100 };
  const meshes: Mesh[] = [];
  t.after(() => Promise.all(meshes.map((m) => m.close())));
  const victim = await createMesh({ network, listen: LISTEN, bootstrap: [], maintenance: false, callRateLimit: limit });
  meshes.push(victim);
  await victim.provide('users', { get: (payload) => ({ id: (payload as { id: number }).id }) });
  const bootstrap = [`${victim.id}@${victim.addresses[0]!}`];
  const attacker = await createMesh({ network, bootstrap, maintenance: false });
  meshes.push(attacker);
  const honest = await createMesh({ network, bootstrap, maintenance: false });
  meshes.push(honest);
  let release = (): void => undefined;
  const done = new Promise<void>((resolve) => (release = resolve));
  const attack = flood(32, done, () => attacker.call('users', 'get', { id: 0 }, { deadlineMs: DEADLINE_MS }));
  const load = await honestLoad(HONEST, INTERVAL_MS, async (i) => {
    const reply = (await honest.call('users', 'get', { id: i }, { deadlineMs: DEADLINE_MS })) as { id: number };
    assert.equal(reply.id, i);
  });
  release();
  const { refused } = await attack;
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, HONEST);
  assert.ok((refused.get('ERR_MESH_RATE_LIMITED') ?? 0) > 0, `the flooder was refused: ${JSON.stringify([...refused])}`);
  assert.deepEqual([...refused.keys()], ['ERR_MESH_RATE_LIMITED']);
  const metrics = await victim.metrics();
  const counted = Number(/themis_rate_limited_total\{layer="mesh"\} (\d+)/.exec(metrics)?.[1]);
  assert.equal(counted, refused.get('ERR_MESH_RATE_LIMITED'));
});

test('record flood past the publisher quota: the flooder’s extra records are refused, the store stays bounded, honest stores all succeed', async (t) => {
  const quota = 64;
  const { victim, dial } = await dhtVictim(t, { quotas: { maxRecordsPerPublisher: quota } });
  const flooder = Identity.generate(network);
  const { conn } = await dial();
  const store = (identity: Identity, i: number) => {
    const salt = Buffer.from(`salt ${i}`);
    const record = createRecord(identity, { type: RecordType.Mutable, key: mutableKey(identity.publicKey, salt), salt, value: randomBytes(512), seq: 1 });
    return conn.request(RPC.Store, encodeStoreRequest(Buffer.alloc(0), record), { timeoutMs: DEADLINE_MS }).then(decodeStoreResponse);
  };
  const statuses = await Promise.all(Array.from({ length: quota * 3 }, (_, i) => store(flooder, i)));
  const honestIdentity = Identity.generate(network);
  const load = await honestLoad(HONEST / 2, INTERVAL_MS / 4, async (i) => assert.equal(await store(honestIdentity, i), StoreStatus.Stored));
  assert.equal(statuses.filter((s) => s === StoreStatus.Stored).length, quota);
  assert.equal(statuses.filter((s) => s === StoreStatus.Quota).length, quota * 2);
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, HONEST / 2);
  assert.equal(victim.recordStore.stats().records, quota + HONEST / 2, 'the flooder holds exactly its quota');
});
