/**
 * Churn on loopback: a DHT of real server nodes (TCP on 127.0.0.1, each with its own LMDB data
 * directory) and mesh instances of one service, while a driver kills and starts them at a fixed
 * rate and clients look up stored records and live nodes and call the service. It reports lookup
 * success and call error rates before, during and after the churn, the time to recover, and
 * whether every record stored before the churn is still found after it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { toBase32 } from '../core/bytes.js';
import { isThemisError } from '../core/errors.js';
import { RecordType, createDhtNode, createRecord, mutableKey, type DhtNode } from '../dht/index.js';
import { Identity, type NetworkConfig } from '../identity/index.js';
import { createMesh, endorse, endorsementCredential, parsePolicyYaml, signPolicy, type Mesh, type MeshInit } from '../mesh/index.js';
import type { PeerLimits } from '../transport/index.js';
import { phaseFigures, recoveryMs, type ChurnPhase, type ChurnReport, type Operation } from './churn-report.js';
import { testNetwork } from './index.js';

export type { ChurnPhase, ChurnReport, OperationFigures, PhaseFigures } from './churn-report.js';

export interface ChurnOptions {
  /** DHT server nodes kept running (each kill is followed by a start). Default 32. */
  readonly nodes?: number;
  /** Instances of the called service `users` (DHT clients, as function instances are: docs/dht.md §7). Default 6. */
  readonly instances?: number;
  /** Caller peers (DHT clients) that call `users.get`. Default 2. */
  readonly callers?: number;
  /** Mutable records stored (replicated on the k closest) before the churn. Default 32. */
  readonly records?: number;
  /** Length of the churn phase. Default 10 s. */
  readonly seconds?: number;
  /** Churn events per second; each kills one node or instance and starts one. Default 2. */
  readonly rate?: number;
  /** Load without churn before it (the baseline). Default 2 s. */
  readonly warmupSeconds?: number;
  /** Load after the churn stops (recovery is measured in it). Default 8 s. */
  readonly afterSeconds?: number;
  /** Share of server starts that restart a killed server with its identity and LMDB data; the rest are fresh nodes. Default 0.5. */
  readonly restartShare?: number;
  /** Share of kills that crash (sockets destroyed, no GOAWAY); the rest leave gracefully. Default 0.5. */
  readonly crashShare?: number;
  /** Share of events that hit an instance rather than a server. Default instances / (nodes + instances). */
  readonly instanceShare?: number;
  /** Trust-domain mode (owner policy, host endorsements) or open mode. Default 'trust-domain'. */
  readonly mode?: 'trust-domain' | 'open';
  /** Lookup loops and call loops running at once (each). Default 4. */
  readonly concurrency?: number;
  /**
   * Lookups (records and nodes, alternately) started per second over all lookup loops, and calls
   * per second over all call loops: the offered load, so that the driver's timing holds and the
   * figures do not just measure a saturated event loop. A loop that falls behind runs back to back.
   * Defaults 10 and 40.
   */
  readonly lookupsPerSecond?: number;
  readonly callsPerSecond?: number;
  /** The publisher re-stores its records (and the owner its policy) this often, as publishers do (docs/dht.md §1). Default 10 s. */
  readonly republishMs?: number;
  /** Lifetime of provider records (a crashed instance stays listed this long). Default 8 s. */
  readonly providerTtlMs?: number;
  /** Deadline of each call. Default 5 s. */
  readonly callDeadlineMs?: number;
  readonly network?: Partial<NetworkConfig>;
  /** Where the servers keep their LMDB data; a temp directory (removed afterwards) by default. */
  readonly dataDir?: string;
  /** Random source for the driver's choices. Default Math.random. */
  readonly random?: () => number;
  /** Progress: phase changes and churn events. */
  readonly onEvent?: (event: ChurnEvent) => void;
}

export type ChurnEvent =
  | { readonly type: 'phase'; readonly phase: ChurnPhase | 'setup' | 'check'; readonly atMs: number }
  | { readonly type: 'kill'; readonly target: 'server' | 'instance'; readonly how: 'crash' | 'leave'; readonly id: string; readonly atMs: number }
  | { readonly type: 'start'; readonly target: 'server' | 'instance'; readonly how: 'fresh' | 'restart'; readonly id: string; readonly atMs: number; readonly ok: boolean };

interface Server {
  node: DhtNode;
  readonly identity: Identity;
  readonly dataDir: string;
  readonly original: boolean;
}

const LISTEN = 'tcp://127.0.0.1:0';
const SERVICE = 'users';
const TRUST_DOMAIN = 'churn';
/** Every peer runs on 127.0.0.1, so the per-IP inbound cap must cover the whole population. */
const LOOPBACK_LIMITS: Partial<PeerLimits> = { maxConnectionsPerIp: 1 << 16, maxConnections: 1 << 16 };
const FINAL_CALLS = 20;

/**
 * Runs a churn experiment on loopback and reports what the clients saw. Everything it starts is
 * stopped, and its temp directory removed, before it resolves or rejects.
 *
 * @example
 * const report = await runChurn({ nodes: 32, seconds: 10, rate: 2 });
 * console.log(report.phases.during.calls.successRate, report.final.records.lost);
 */
export async function runChurn(options: ChurnOptions = {}): Promise<ChurnReport> {
  const o = resolveOptions(options);
  const run = new ChurnRun(o, options);
  try {
    return await run.execute();
  } finally {
    await run.stop();
  }
}

type Resolved = ChurnReport['options'] & {
  readonly warmupSeconds: number;
  readonly afterSeconds: number;
  readonly republishMs: number;
  readonly providerTtlMs: number;
  readonly callDeadlineMs: number;
};

function resolveOptions(options: ChurnOptions): Resolved {
  const nodes = options.nodes ?? 32;
  const instances = options.instances ?? 6;
  const o: Resolved = {
    nodes,
    instances,
    callers: options.callers ?? 2,
    records: options.records ?? 32,
    seconds: options.seconds ?? 10,
    rate: options.rate ?? 2,
    mode: options.mode ?? 'trust-domain',
    restartShare: options.restartShare ?? 0.5,
    crashShare: options.crashShare ?? 0.5,
    instanceShare: options.instanceShare ?? instances / (nodes + instances),
    concurrency: options.concurrency ?? 4,
    lookupsPerSecond: options.lookupsPerSecond ?? 10,
    callsPerSecond: options.callsPerSecond ?? 40,
    warmupSeconds: options.warmupSeconds ?? 2,
    afterSeconds: options.afterSeconds ?? 8,
    republishMs: options.republishMs ?? 10_000,
    providerTtlMs: options.providerTtlMs ?? 8_000,
    callDeadlineMs: options.callDeadlineMs ?? 5_000,
  };
  if (!Number.isInteger(o.nodes) || o.nodes < 4) throw new RangeError(`nodes must be an integer ≥ 4, got ${o.nodes}`);
  if (!Number.isInteger(o.instances) || o.instances < 1) throw new RangeError(`instances must be an integer ≥ 1, got ${o.instances}`);
  if (!Number.isInteger(o.callers) || o.callers < 1) throw new RangeError(`callers must be an integer ≥ 1, got ${o.callers}`);
  if (!Number.isInteger(o.records) || o.records < 1) throw new RangeError(`records must be an integer ≥ 1, got ${o.records}`);
  if (!(o.seconds > 0) || !(o.rate > 0)) throw new RangeError(`seconds and rate must be positive, got ${o.seconds} and ${o.rate}`);
  for (const [name, share] of [['restartShare', o.restartShare], ['crashShare', o.crashShare], ['instanceShare', o.instanceShare]] as const) {
    if (!(share >= 0 && share <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${share}`);
  }
  return o;
}

/** One experiment: the population, the driver, the load loops and what they observed. */
class ChurnRun {
  readonly #network: NetworkConfig;
  readonly #random: () => number;
  readonly #emit: (event: ChurnEvent) => void;
  readonly #started = Date.now();
  #dir = '';
  #ownDir = false;
  readonly #servers: Server[] = [];
  /** Servers killed and not restarted (their identity and data kept for a restart). */
  readonly #dead: Server[] = [];
  readonly #instances: Mesh[] = [];
  readonly #callers: Mesh[] = [];
  /** Publisher of the records, owner of the policy, and the client doing the lookups. */
  #publisher: DhtNode | null = null;
  #prober: DhtNode | null = null;
  readonly #stored: { key: Buffer; value: Buffer; bytes: Buffer }[] = [];
  #policyRecord: Buffer | null = null;
  #trust: { owner: Identity; host: Identity } | null = null;
  #phase: ChurnPhase = 'before';
  #loadRunning = false;
  readonly #operations: Operation[] = [];
  /** Kills and starts in flight (a graceful leave waits for in-flight streams). */
  readonly #pending = new Set<Promise<unknown>>();
  readonly #events = { serverKills: 0, instanceKills: 0, crashes: 0, leaves: 0, freshStarts: 0, restarts: 0, failedStarts: 0, skipped: 0 };
  /** The fewest servers and instances alive at once during the churn. */
  readonly #minLive = { servers: Infinity, instances: Infinity };
  /** Errors of start attempts (each start has three), by code. */
  readonly #startErrors: Record<string, number> = {};
  #serial = 0;
  #republisher: NodeJS.Timeout | null = null;
  #republishing = false;

  constructor(
    private readonly o: Resolved,
    options: ChurnOptions,
  ) {
    this.#network = testNetwork(options.network);
    this.#random = options.random ?? Math.random;
    this.#emit = options.onEvent ?? (() => undefined);
    if (options.dataDir !== undefined) this.#dir = options.dataDir;
  }

  #at(): number {
    return Date.now() - this.#started;
  }

  async execute(): Promise<ChurnReport> {
    this.#emit({ type: 'phase', phase: 'setup', atMs: this.#at() });
    await this.#setUp();
    this.#loadRunning = true;
    const loadStarted = Date.now();
    const cpu = [process.cpuUsage()];
    const load = this.#startLoad();
    this.#emit({ type: 'phase', phase: 'before', atMs: this.#at() });
    await sleep(this.o.warmupSeconds * 1000);
    this.#phase = 'during';
    const churnStarted = Date.now();
    cpu.push(process.cpuUsage());
    this.#emit({ type: 'phase', phase: 'during', atMs: this.#at() });
    await this.#churn();
    this.#phase = 'after';
    const churnEnded = Date.now();
    cpu.push(process.cpuUsage());
    this.#emit({ type: 'phase', phase: 'after', atMs: this.#at() });
    await sleep(this.o.afterSeconds * 1000);
    this.#loadRunning = false;
    await load;
    const afterEnded = Date.now();
    cpu.push(process.cpuUsage());
    const cpuMs = (i: number): number => (cpu[i + 1]!.user + cpu[i + 1]!.system - cpu[i]!.user - cpu[i]!.system) / 1000;
    this.#emit({ type: 'phase', phase: 'check', atMs: this.#at() });
    const final = await this.#finalCheck();
    const originals = new Set(this.#servers.filter((s) => s.original).map((s) => s.identity.id));
    return {
      options: {
        nodes: this.o.nodes,
        instances: this.o.instances,
        callers: this.o.callers,
        records: this.o.records,
        seconds: this.o.seconds,
        rate: this.o.rate,
        mode: this.o.mode,
        restartShare: this.o.restartShare,
        crashShare: this.o.crashShare,
        instanceShare: this.o.instanceShare,
        concurrency: this.o.concurrency,
        lookupsPerSecond: this.o.lookupsPerSecond,
        callsPerSecond: this.o.callsPerSecond,
      },
      phases: {
        before: phaseFigures(this.#operations, 'before', churnStarted - loadStarted, cpuMs(0)),
        during: phaseFigures(this.#operations, 'during', churnEnded - churnStarted, cpuMs(1)),
        after: phaseFigures(this.#operations, 'after', afterEnded - churnEnded, cpuMs(2)),
      },
      events: { ...this.#events, startErrors: { ...this.#startErrors } },
      minLive: { servers: Math.min(this.#minLive.servers, this.#servers.length), instances: Math.min(this.#minLive.instances, this.#instances.length) },
      killedShare: Math.min(1, (this.#events.serverKills + this.#events.instanceKills) / (this.o.nodes + this.o.instances)),
      originalServersLostShare: (this.o.nodes - originals.size) / this.o.nodes,
      recoveryMs: {
        recordLookups: recoveryMs(this.#operations, 'recordLookups', churnEnded, afterEnded),
        nodeLookups: recoveryMs(this.#operations, 'nodeLookups', churnEnded, afterEnded),
        calls: recoveryMs(this.#operations, 'calls', churnEnded, afterEnded),
      },
      final,
      durationMs: Date.now() - this.#started,
    };
  }

  // --- the population ---

  async #setUp(): Promise<void> {
    if (this.#dir === '') {
      this.#dir = await mkdtemp(join(tmpdir(), 'themis-churn-'));
      this.#ownDir = true;
    }
    for (let i = 0; i < this.o.nodes; i++) {
      const server = await this.#startServer(Identity.generate(this.#network), join(this.#dir, `server-${i}`), true);
      if (server === null) throw new Error(`server ${i} of ${this.o.nodes} could not join the DHT being built`);
    }
    this.#publisher = await this.#startClient();
    this.#prober = await this.#startClient();
    if (this.o.mode === 'trust-domain') await this.#signPolicy();
    const publisher = this.#publisher;
    for (let i = 0; i < this.o.records; i++) {
      const salt = Buffer.from(`churn-record-${i}`);
      const value = Buffer.from(`value ${i} of the churn run`);
      const key = mutableKey(publisher.identity.publicKey, salt);
      this.#stored.push({ key, value, bytes: createRecord(publisher.identity, { type: RecordType.Mutable, key, salt, value, seq: 1 }) });
    }
    await inParallel(this.#stored, (record) => publisher.store(record.bytes));
    // Publishers keep their records alive by storing them again (docs/dht.md §1, republish).
    this.#republisher = setInterval(() => void this.#republish(), this.o.republishMs);
    this.#republisher.unref();
    for (let i = 0; i < this.o.instances; i++) {
      if ((await this.#startInstance()) === null) throw new Error(`instance ${i} of ${this.o.instances} could not start`);
    }
    for (let i = 0; i < this.o.callers; i++) this.#callers.push(await createMesh(this.#meshInit(this.#endorsed('gateway'), { client: true })));
  }

  async #signPolicy(): Promise<void> {
    const owner = Identity.generate(this.#network);
    const host = Identity.generate(this.#network);
    this.#trust = { owner, host };
    const policy = parsePolicyYaml(`trustDomain: ${TRUST_DOMAIN}
seq: 1
hosts:
  - { name: churn-host, key: ${toBase32(host.publicKey)} }
services:
  ${SERVICE}: { digests: [] }
  gateway: { digests: [] }
rules:
  - { from: gateway, to: ${SERVICE}, methods: [get] }
revoked: []
tokenIssuers: []
refreshSeconds: 5
`);
    this.#policyRecord = signPolicy(owner, policy);
    await this.#publisher!.store(this.#policyRecord);
  }

  /** One round of re-stores; a round still running when the next is due makes that one a no-op. */
  async #republish(): Promise<void> {
    const publisher = this.#publisher;
    if (publisher === null || this.#republishing) return;
    this.#republishing = true;
    try {
      const records = [...this.#stored.map((r) => r.bytes), ...(this.#policyRecord === null ? [] : [this.#policyRecord])];
      for (const bytes of records) await publisher.store(bytes).catch(() => undefined);
    } finally {
      this.#republishing = false;
    }
  }

  /** Three random live servers, as `ID@address`. */
  #bootstrap(): string[] {
    const live = this.#servers.filter((s) => s.node.peer.addresses.length > 0);
    const picked = new Set<Server>();
    while (picked.size < Math.min(3, live.length)) picked.add(live[Math.floor(this.#random() * live.length)]!);
    return [...picked].map((s) => `${s.node.id}@${s.node.peer.addresses[0]!}`);
  }

  /** Starts a server (fresh, or restarted from its identity and data) and joins it; null when it could not. */
  async #startServer(identity: Identity, dataDir: string, original: boolean): Promise<Server | null> {
    const first = this.#servers.length === 0;
    const node = await this.#attempts(async () => {
      const started = await createDhtNode({ network: this.#network, identity, listen: LISTEN, dataDir, maintenance: false, limits: LOOPBACK_LIMITS });
      if (!first) await started.join(this.#bootstrap()).catch(async (err: unknown) => {
        await started.leave().catch(() => undefined);
        throw err;
      });
      return started;
    });
    if (node === null) return null;
    const server: Server = { node, identity, dataDir, original };
    this.#servers.push(server);
    return server;
  }

  async #startClient(): Promise<DhtNode> {
    const node = await createDhtNode({ network: this.#network, client: true, maintenance: false, limits: LOOPBACK_LIMITS });
    await node.join(this.#bootstrap());
    return node;
  }

  /**
   * Starting through servers that die meanwhile can fail: three attempts, each through other
   * servers; the errors are counted by code. `start` cleans up after itself when it throws.
   */
  async #attempts<T>(start: () => Promise<T>): Promise<T | null> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return await start();
      } catch (err) {
        const code = isThemisError(err) ? err.code : (err as Error).message;
        this.#startErrors[code] = (this.#startErrors[code] ?? 0) + 1;
      }
    }
    return null;
  }

  #meshInit(credentials: Pick<MeshInit, 'identity' | 'credentials'>, extra: Partial<MeshInit>): MeshInit {
    return {
      network: this.#network,
      bootstrap: this.#bootstrap(),
      maintenance: false,
      providerTtlMs: this.o.providerTtlMs,
      ...(this.#trust === null ? {} : { trust: { owner: this.#trust.owner.publicKey } }),
      ...credentials,
      ...extra,
    };
  }

  /** A fresh identity, endorsed by the host for `service` in trust-domain mode. */
  #endorsed(service: string): Pick<MeshInit, 'identity' | 'credentials'> {
    const identity = Identity.generate(this.#network);
    if (this.#trust === null) return { identity };
    const bytes = endorse(this.#trust.host, { instancePub: identity.publicKey, trustDomain: TRUST_DOMAIN, service, codeDigest: Buffer.alloc(32) });
    return { identity, credentials: [endorsementCredential(bytes)] };
  }

  /** A fresh instance of `users` (instances are short-lived DHT clients: docs/dht.md §7). */
  async #startInstance(): Promise<Mesh | null> {
    const instance = await this.#attempts(async () => {
      const mesh = await createMesh(this.#meshInit(this.#endorsed(SERVICE), { client: true, listen: LISTEN }));
      try {
        await mesh.provide(SERVICE, { get: (payload) => ({ n: (payload as { n: number }).n, by: mesh.id }) });
      } catch (err) {
        await mesh.close().catch(() => undefined);
        throw err;
      }
      return mesh;
    });
    if (instance !== null) this.#instances.push(instance);
    return instance;
  }

  // --- the driver ---

  async #churn(): Promise<void> {
    const events = Math.max(1, Math.round(this.o.seconds * this.o.rate));
    const interval = 1000 / this.o.rate;
    const started = Date.now();
    for (let i = 0; i < events; i++) {
      await sleep(Math.max(0, started + i * interval - Date.now()));
      this.#track(this.#event(i));
    }
    await sleep(Math.max(0, started + this.o.seconds * 1000 - Date.now()));
    await Promise.allSettled([...this.#pending]);
  }

  #track(task: Promise<unknown>): void {
    const tracked = task.catch(() => undefined).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /**
   * Churn event `i`: kill a random server or instance, then start its replacement. Which kind, how
   * it dies and how it comes back follow the configured shares exactly (spread()); the victims are random.
   */
  async #event(i: number): Promise<void> {
    const instanceEvent = spread(i, this.o.instanceShare);
    // Kills are immediate and starts take a join: when starts fall behind, the population shrinks.
    // An event finds no victim once none is left (or only the 3 servers newcomers join through).
    if (instanceEvent ? this.#instances.length === 0 : this.#servers.length <= 3) {
      this.#events.skipped++;
      return;
    }
    const crash = spread(i, this.o.crashShare);
    const how = crash ? 'crash' : 'leave';
    if (crash) this.#events.crashes++;
    else this.#events.leaves++;
    if (instanceEvent) {
      const victim = this.#instances.splice(Math.floor(this.#random() * this.#instances.length), 1)[0]!;
      this.#events.instanceKills++;
      this.#minLive.instances = Math.min(this.#minLive.instances, this.#instances.length);
      this.#emit({ type: 'kill', target: 'instance', how, id: victim.id, atMs: this.#at() });
      this.#track(stopPeer(victim.node, crash, () => victim.close()));
      const started = await this.#startInstance();
      if (started === null) this.#events.failedStarts++;
      this.#emit({ type: 'start', target: 'instance', how: 'fresh', id: started?.id ?? '', atMs: this.#at(), ok: started !== null });
      return;
    }
    const victim = this.#servers.splice(Math.floor(this.#random() * this.#servers.length), 1)[0]!;
    this.#events.serverKills++;
    this.#minLive.servers = Math.min(this.#minLive.servers, this.#servers.length);
    this.#emit({ type: 'kill', target: 'server', how, id: victim.node.id, atMs: this.#at() });
    // Its LMDB environment must be closed before a restart opens it again.
    const stopped = stopPeer(victim.node, crash, () => victim.node.leave()).then(() => void this.#dead.push(victim));
    this.#track(stopped);
    const restart = spread(this.#events.serverKills - 1, this.o.restartShare) && this.#dead.length > 0;
    let started: Server | null;
    if (restart) {
      const back = this.#dead.splice(Math.floor(this.#random() * this.#dead.length), 1)[0]!;
      this.#events.restarts++;
      started = await this.#startServer(back.identity, back.dataDir, back.original);
      if (started === null) this.#dead.push(back);
    } else {
      this.#events.freshStarts++;
      started = await this.#startServer(Identity.generate(this.#network), join(this.#dir, `server-${this.o.nodes + this.#serial++}`), false);
    }
    if (started === null) this.#events.failedStarts++;
    this.#emit({ type: 'start', target: 'server', how: restart ? 'restart' : 'fresh', id: started?.node.id ?? '', atMs: this.#at(), ok: started !== null });
  }

  // --- the load ---

  #startLoad(): Promise<unknown> {
    const loops: Promise<void>[] = [];
    const c = this.o.concurrency;
    for (let i = 0; i < c; i++) {
      loops.push(this.#loop(this.o.lookupsPerSecond / c, (n) => (n % 2 === 0 ? this.#recordLookup() : this.#nodeLookup())));
      loops.push(this.#loop(this.o.callsPerSecond / c, (n) => this.#call(this.#callers[(i + n) % this.#callers.length]!, n)));
    }
    return Promise.all(loops);
  }

  /** Runs `operation` about `perSecond` times a second (never two at once) while the load runs. */
  async #loop(perSecond: number, operation: (n: number) => Promise<void>): Promise<void> {
    const interval = 1000 / perSecond;
    let next = Date.now() + this.#random() * interval;
    for (let n = 0; this.#loadRunning; n++) {
      await sleep(Math.max(0, next - Date.now()));
      if (!this.#loadRunning) return;
      next = Math.max(next + interval, Date.now());
      await operation(n);
    }
  }

  async #measure(kind: Operation['kind'], body: () => Promise<boolean | null>): Promise<void> {
    const phase = this.#phase;
    const startedAt = Date.now();
    let ok: boolean | null;
    let code: string | undefined;
    try {
      ok = await body();
      if (ok === false) code = 'WRONG_ANSWER';
    } catch (err) {
      ok = false;
      code = isThemisError(err) ? err.code : 'error';
    }
    if (ok === null) return; // not counted (the target died during the lookup)
    this.#operations.push({ kind, phase, startedAt, endedAt: Date.now(), ok, ...(code === undefined ? {} : { code }) });
  }

  #recordLookup(): Promise<void> {
    const record = this.#stored[Math.floor(this.#random() * this.#stored.length)]!;
    return this.#measure('recordLookups', async () => this.#found(record));
  }

  async #found(record: { key: Buffer; value: Buffer }): Promise<boolean> {
    const found = await this.#prober!.find(record.key);
    return found.some((r) => r.type === RecordType.Mutable && r.value.equals(record.value));
  }

  #nodeLookup(): Promise<void> {
    const target = this.#servers[Math.floor(this.#random() * this.#servers.length)];
    if (target === undefined) return sleep(10);
    const node = target.node;
    return this.#measure('nodeLookups', async () => {
      const result = await this.#prober!.findNode(node.nodeId, { stopAtTarget: true });
      if (!this.#servers.includes(target)) return null;
      return result.target !== null;
    });
  }

  #call(caller: Mesh, n: number): Promise<void> {
    return this.#measure('calls', async () => {
      const answer = (await caller.call(SERVICE, 'get', { n }, { deadlineMs: this.o.callDeadlineMs })) as { n?: number };
      return answer.n === n;
    });
  }

  // --- results ---

  async #finalCheck(): Promise<ChurnReport['final']> {
    const lost: string[] = [];
    await inParallel(this.#stored, async (record) => {
      if (!(await this.#found(record).catch(() => false))) lost.push(record.key.toString('hex'));
    });
    const errors: Record<string, number> = {};
    let ok = 0;
    for (let n = 0; n < FINAL_CALLS; n++) {
      try {
        const answer = (await this.#callers[n % this.#callers.length]!.call(SERVICE, 'get', { n }, { deadlineMs: this.o.callDeadlineMs, retries: this.o.instances })) as { n?: number };
        if (answer.n === n) ok++;
        else errors['WRONG_ANSWER'] = (errors['WRONG_ANSWER'] ?? 0) + 1;
      } catch (err) {
        const code = isThemisError(err) ? err.code : 'error';
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
    return { records: { stored: this.#stored.length, found: this.#stored.length - lost.length, lost }, calls: { attempts: FINAL_CALLS, ok, errors } };
  }

  /** Stops the load, every peer, and removes the temp directory. */
  async stop(): Promise<void> {
    this.#loadRunning = false;
    if (this.#republisher !== null) clearInterval(this.#republisher);
    await Promise.allSettled([...this.#pending]);
    const all: Promise<unknown>[] = [
      ...this.#callers.map((m) => m.close()),
      ...this.#instances.map((m) => m.close()),
      ...this.#servers.map((s) => s.node.leave()),
      ...[this.#publisher, this.#prober].flatMap((node) => (node === null ? [] : [node.leave()])),
    ];
    await Promise.allSettled(all);
    if (this.#ownDir) await rm(this.#dir, { recursive: true, force: true });
  }
}

/** A crash destroys every connection at once (peers see the sockets close, no GOAWAY); then the node is stopped. */
async function stopPeer(node: DhtNode, crash: boolean, stop: () => Promise<void>): Promise<void> {
  if (crash) for (const conn of [...node.peer.connections]) conn.destroy();
  await stop();
}

/** Runs `task` over `items`, eight at a time. */
async function inParallel<T>(items: readonly T[], task: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(8, items.length) }, worker));
}

/** Whether event `i` of a sequence is one of the `share` of events picked, spread evenly (Bresenham). */
function spread(i: number, share: number): boolean {
  return Math.floor((i + 1) * share) > Math.floor(i * share);
}
