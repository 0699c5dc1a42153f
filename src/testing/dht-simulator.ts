import { performance } from 'node:perf_hooks';
import { createHash } from 'node:crypto';
import { DhtNode, MemoryRecordStore, RPC, createRecord, RecordType, immutableKey, type Contact } from '../dht/index.js';
import { encodeContactsResponse, encodeFindValueResponse } from '../dht/messages.js';
import { compareDistance } from '../dht/distance.js';
import { Identity, networkConfig } from '../identity/index.js';
import { MemoryNetwork } from '../transport/index.js';

export interface SimulationOptions {
  readonly nodes: number;
  /** Fraction of adversarial nodes, 0 ≤ m < 1. */
  readonly malicious: number;
  /** Disjoint lookup paths d. */
  readonly disjoint: number;
  readonly k: number;
  readonly alpha: number;
  readonly lookups: number;
  readonly seed: number;
  /** RPC timeout; adversaries that drop queries cost this much per query. Default 2 s: long
   *  enough that an honest node slowed by a saturated CPU is not taken for a dropping one. */
  readonly requestTimeoutMs?: number;
  /** Joins in flight at once, and lookups when d = α (fewer for larger d: the queries in flight
   *  stay 16·α). Default 16: more only queues work on a saturated CPU and turns honest slowness into timeouts. */
  readonly concurrency?: number;
  /** Also measure these path counts on the same network (the same lookups), for comparison. */
  readonly compare?: readonly number[];
  readonly onProgress?: (phase: 'identities' | 'join' | 'lookups', done: number, total: number) => void;
}

/** The figures of one round of lookups with a given number of disjoint paths. */
export interface LookupRound {
  readonly disjoint: number;
  readonly successRate: number;
  readonly hops: { p50: number; p95: number; histogram: Record<string, number> };
  readonly messagesPerLookup: number;
  /** S/Kademlia's estimate P = Σᵢ hᵢ·(1 − (1 − (1 − m)^i)^d) from the measured hop histogram. */
  readonly analyticSuccess: number;
  readonly wallMs: number;
}

export interface SimulationResult extends LookupRound {
  readonly nodes: number;
  readonly malicious: number;
  readonly k: number;
  readonly alpha: number;
  readonly lookups: number;
  readonly phasesMs: { identities: number; join: number; lookups: number };
  /** The rounds of `compare`, on the same network and the same lookups. */
  readonly comparison: LookupRound[];
}

/** How long a simulated node keeps a connection with no stream open. */
const IDLE_CONNECTION_MS = 30_000;

/** mulberry32: a small seeded PRNG so a run can be repeated. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic 32-byte secrets from the seed, so identities (and so NodeIds) repeat with it. */
function secret(seed: number, index: number, purpose: string): Buffer {
  return createHash('sha256').update(`themis-sim/${seed}/${index}/${purpose}`).digest();
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The S/Kademlia experiment: N DHT nodes in one process, each a real DhtNode with a real
 * identity, connected over in-memory duplex pairs with the real handshake and channel. A
 * fraction of them turn adversarial after joining: they drop queries, answer lookups with
 * only colluding contacts (an eclipse attempt) and serve forged records. Honest nodes then
 * look up other honest nodes' ids; a lookup succeeds when the target's signed contact is found.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationResult> {
  if (!(options.malicious >= 0 && options.malicious < 1)) throw new RangeError('malicious must be a fraction in [0, 1)');
  if (options.nodes < 2) throw new RangeError('a simulation needs at least 2 nodes');
  const started = performance.now();
  // In-memory links hold no OS handle, and request timers are unref'd: keep the loop alive while
  // lookups wait on adversaries that never answer.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    return await simulate(options, started);
  } finally {
    clearInterval(keepAlive);
  }
}

async function simulate(options: SimulationOptions, started: number): Promise<SimulationResult> {
  const random = prng(options.seed);
  const network = networkConfig({ c1: 0, c2: 0 });
  const net = new MemoryNetwork();
  const timeout = options.requestTimeoutMs ?? 2000;
  const concurrency = options.concurrency ?? 16;
  const progress = options.onProgress ?? (() => undefined);

  const nodes: DhtNode[] = [];
  for (let i = 0; i < options.nodes; i++) {
    const identity = Identity.fromSecrets({ identity: secret(options.seed, i, 'identity'), noiseStatic: secret(options.seed, i, 'noise'), puzzleNonce: Buffer.alloc(32) }, network);
    const node = new DhtNode(new MemoryRecordStore(), {
      identity,
      network,
      maintenance: false,
      dialer: (peer, address, opts) => net.dial(peer, address, opts),
      dht: { k: options.k, alpha: options.alpha, disjoint: options.disjoint, requestTimeoutMs: timeout, maxOutbound: 16 },
      limits: { maxConnections: 1 << 20, maxConnectionsPerIp: 1 << 20, maxPendingHandshakes: 1 << 20 },
      // Connections idle this long close (GOAWAY), as on a node short of memory: a 10,000-node
      // run then holds the connections in use, not every one ever opened; redials use IK.
      channel: { idleTimeoutMs: IDLE_CONNECTION_MS },
    });
    net.attach(node.peer);
    nodes.push(node);
    if (i % 256 === 0) progress('identities', i, options.nodes);
  }
  progress('identities', options.nodes, options.nodes);
  const identitiesDone = performance.now();

  // Join in order, each through a random earlier node (d = 1 while bootstrapping, as plain Kademlia).
  const joinOrder = nodes.slice(1);
  let joined = 0;
  await pool(joinOrder, Math.min(concurrency, 16), async (node, index) => {
    const via = nodes[Math.floor(random() * (index + 1))]!;
    await node.join([`${via.id}@${via.peer.addresses[0]!}`], { disjoint: 1, refreshBuckets: 0 }).catch(() => undefined);
    if (++joined % 64 === 0) progress('join', joined, joinOrder.length);
  });
  progress('join', joinOrder.length, joinOrder.length);
  const joinDone = performance.now();

  // Turn a random fraction adversarial.
  const order = nodes.map((_, i) => i).sort(() => random() - 0.5);
  const badCount = Math.round(options.malicious * options.nodes);
  const bad = new Set(order.slice(0, badCount));
  const badContacts: Contact[] = [...bad].map((i) => contactOf(nodes[i]!));
  for (const i of bad) makeAdversarial(nodes[i]!, badContacts, options.k, random);
  const honest = nodes.filter((_, i) => !bad.has(i));

  const pairs = Array.from({ length: options.lookups }, () => {
    const from = honest[Math.floor(random() * honest.length)]!;
    let to = honest[Math.floor(random() * honest.length)]!;
    while (to === from && honest.length > 1) to = honest[Math.floor(random() * honest.length)]!;
    return { from, to };
  });
  const m = badCount / options.nodes;
  const rounds: LookupRound[] = [];
  for (const disjoint of [options.disjoint, ...(options.compare ?? [])]) {
    // The same queries in flight whatever d is: a d = 8 lookup sends 8α at once, so fewer of them
    // run together; else a saturated CPU turns honest answers into timeouts only for large d.
    const inFlight = Math.max(1, Math.min(concurrency, Math.floor((concurrency * options.alpha) / disjoint)));
    rounds.push(await measureRound(pairs, disjoint, m, inFlight, (done) => progress('lookups', done, pairs.length)));
  }
  const lookupsDone = performance.now();
  await Promise.all(nodes.map((node) => node.leave()));
  const [main, ...comparison] = rounds as [LookupRound, ...LookupRound[]];
  return {
    ...main,
    nodes: options.nodes,
    malicious: m,
    k: options.k,
    alpha: options.alpha,
    lookups: options.lookups,
    wallMs: Math.round(lookupsDone - started),
    phasesMs: { identities: Math.round(identitiesDone - started), join: Math.round(joinDone - identitiesDone), lookups: Math.round(lookupsDone - joinDone) },
    comparison,
  };
}

/** One round of lookups: each honest `from` looks up `to`'s id over `disjoint` paths. */
async function measureRound(
  pairs: readonly { from: DhtNode; to: DhtNode }[],
  disjoint: number,
  m: number,
  concurrency: number,
  onProgress: (done: number) => void,
): Promise<LookupRound> {
  const started = performance.now();
  const histogram = new Map<number, number>();
  const hopsList: number[] = [];
  let messages = 0;
  let done = 0;
  await pool(pairs, concurrency, async ({ from, to }) => {
    const result = await from.findNode(to.nodeId, { disjoint, stopAtTarget: true });
    messages += result.queries;
    if (result.target !== null) {
      const hops = result.hops ?? 0;
      hopsList.push(hops);
      histogram.set(hops, (histogram.get(hops) ?? 0) + 1);
    }
    if (++done % 32 === 0 || done === pairs.length) onProgress(done);
  });
  hopsList.sort((a, b) => a - b);
  const pct = (p: number): number => (hopsList.length === 0 ? 0 : hopsList[Math.min(hopsList.length - 1, Math.ceil(p * hopsList.length) - 1)]!);
  let analytic = 0;
  for (const [hops, count] of histogram) analytic += (count / Math.max(1, hopsList.length)) * (1 - (1 - (1 - m) ** hops) ** disjoint);
  return {
    disjoint,
    successRate: hopsList.length / Math.max(1, pairs.length),
    hops: { p50: pct(0.5), p95: pct(0.95), histogram: Object.fromEntries([...histogram].sort((x, y) => x[0] - y[0]).map(([h, n]) => [String(h), n])) },
    messagesPerLookup: messages / Math.max(1, pairs.length),
    analyticSuccess: analytic,
    wallMs: Math.round(performance.now() - started),
  };
}

function contactOf(node: DhtNode): Contact {
  return {
    nodeId: node.nodeId,
    id: node.id,
    identityPub: node.identity.publicKey,
    noiseStatic: node.identity.noiseStatic.publicKey,
    puzzleNonce: node.identity.puzzleNonce,
    addresses: node.peer.addresses,
    client: false,
    issuedAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
    record: node.contactRecord(),
  };
}

/**
 * The adversary of S/Kademlia's evaluation: a third of queries are dropped (the requester times
 * out); the rest are answered with the colluding nodes closest to the target (never an honest
 * one) and, for value lookups, a forged record for the key.
 */
function makeAdversarial(node: DhtNode, colluders: readonly Contact[], k: number, random: () => number): void {
  const forge = (key: Buffer): Buffer => {
    // Signed by the adversary, but the key does not match the value: every reader rejects it.
    const value = Buffer.from(`forged by ${node.id}`);
    const record = createRecord(node.identity, { type: RecordType.Immutable, key: immutableKey(value), value });
    const tampered = Buffer.from(record);
    key.copy(tampered, tampered.indexOf(immutableKey(value)));
    return tampered;
  };
  const closestColluders = (target: Buffer): Buffer[] =>
    [...colluders]
      .sort((a, b) => compareDistance(a.nodeId, b.nodeId, target))
      .slice(0, k)
      .map((c) => c.record);
  const stall = (): Promise<Buffer> => new Promise(() => undefined);
  node.peer.handle(RPC.FindNode, (body) => (random() < 1 / 3 ? stall() : encodeContactsResponse(closestColluders(body.subarray(body.length - 32)))));
  node.peer.handle(RPC.FindValue, (body) => {
    const key = body.subarray(body.length - 32);
    return random() < 1 / 3 ? stall() : encodeFindValueResponse([forge(key)], closestColluders(key));
  });
}
