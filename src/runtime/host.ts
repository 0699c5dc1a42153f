import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThemisError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Credential } from '../handshake/index.js';
import { Identity, type NetworkConfig } from '../identity/index.js';
import { endorse, endorsementCredential, type MeshInit } from '../mesh/index.js';
import { FunctionInstance } from './instance.js';
import type { RuntimeMetrics } from './metrics.js';
import { Sandbox, type DisposeReason } from './sandbox.js';
import type { AppKv } from './kv.js';
import type { AppManifest, ServiceManifest } from './manifest.js';

/**
 * The serverless host (issue 5 "Host", DESIGN.md "Runtime"): starts function instances on
 * demand, scales each service on in-flight concurrency up to `instances.max`, down to
 * `instances.min` (0 = scale to zero) after `idleSeconds` without a call, replaces an instance
 * whose isolate died, and makes a request at zero instances wait for a cold start.
 *
 * Cold start (provisionIdentity, the one provisioning seam): a fresh identity made here and never
 * exported (only its public key leaves, inside the endorsement) → the host reads and measures the
 * module bytes (SHA-256) → endorses the instance key for the service and that digest with the
 * host key → asks the attestor for extra proof credentials → the instance loads the same bytes
 * into its isolate, joins the DHT as a client, and publishes its provider record.
 */
export interface HostAttestor {
  readonly kind: string;
  measure(init: { service: string; digest: Buffer }): Promise<void>;
  credentials(init: { nodeId: Buffer; service: string; digest: Buffer }): Promise<Credential[]>;
  close(): Promise<void>;
}

/** What provisionIdentity gives a new instance: its identity and proof, and the measured module. */
export interface ProvisionedIdentity {
  readonly identity: Identity;
  /** The host endorsement, then any attestor credentials. */
  readonly credentials: readonly Credential[];
  /** SHA-256 of `source`. */
  readonly digest: Buffer;
  /** The module bytes that were measured: what the instance runs. */
  readonly source: Buffer;
}

export interface HostInit {
  readonly manifest: AppManifest;
  readonly hostIdentity: Identity;
  readonly owner: Uint8Array;
  readonly network: NetworkConfig;
  readonly bootstrap: readonly string[];
  readonly kv: AppKv;
  readonly logger: Logger;
  readonly listenHost?: string;
  /** Extra proof at cold start (TPM quotes…); none: the endorsement's code digest is the proof. */
  readonly attestor?: HostAttestor;
  /** Every instance's mesh checks its peers with this verifier and answers challenges with this evidence (docs/attestation.md §4). */
  readonly attestation?: MeshInit['attestation'];
  /** A request at zero instances waits at most this for a cold start. Default 10 s. */
  readonly coldStartTimeoutMs?: number;
  readonly metrics?: RuntimeMetrics;
}

export interface ServiceStats {
  readonly instances: number;
  readonly starting: number;
  readonly inFlight: number;
  readonly served: number;
  /** Instances replaced after their isolate died (memory limit, stuck loop) or was killed. */
  readonly replaced: number;
  readonly coldStarts: number;
  /** Cold start: identity, measurement, endorsement, isolate, join and provider record, in ms. */
  readonly coldStartMs: { readonly last: number; readonly p50: number; readonly max: number } | null;
}

/** How often the autoscaler looks for idle instances. */
const IDLE_CHECK_MS = 500;
const DEFAULT_COLD_START_TIMEOUT_MS = 10_000;
/** Cold-start samples kept per service for the stats. */
const SAMPLES = 256;

class ServicePool {
  readonly ready: FunctionInstance[] = [];
  readonly starting = new Set<Promise<FunctionInstance>>();
  /** Instances out of `ready` that are still stopping (close() waits for them). */
  readonly stopping = new Set<Promise<void>>();
  coldStartMs: number[] = [];
  coldStarts = 0;
  replaced = 0;
  servedByGone = 0;

  constructor(readonly manifest: ServiceManifest) {}

  get inFlight(): number {
    return this.ready.reduce((sum, instance) => sum + instance.inFlight, 0);
  }
}

export class Host {
  readonly #init: HostInit;
  readonly #pools = new Map<string, ServicePool>();
  readonly #timer: NodeJS.Timeout;
  readonly #log: Logger;
  #closed = false;

  constructor(init: HostInit) {
    this.#init = init;
    this.#log = init.logger.child({ component: 'host' });
    for (const service of init.manifest.services.values()) this.#pools.set(service.name, new ServicePool(service));
    this.#timer = setInterval(() => this.#scaleDown(), IDLE_CHECK_MS);
    this.#timer.unref();
  }

  /**
   * Loads every module once into a throw-away isolate (so a module that does not compile or lacks
   * a handler fails `themis up` at once, not at its first request), then starts the
   * `instances.min` instances of every service.
   */
  async start(): Promise<void> {
    await Promise.all(
      [...this.#pools.values()].map(async ({ manifest: service }) => {
        const sandbox = await Sandbox.create({
          source: await readFile(service.entry, 'utf8'),
          filename: service.entry,
          handlers: service.handlers,
          memoryMb: service.memoryMb,
          timeoutMs: service.timeoutMs,
          host: async () => {
            throw new Error('a module cannot use ctx while it loads');
          },
        });
        sandbox.dispose();
      }),
    );
    await Promise.all([...this.#pools.values()].flatMap((pool) => Array.from({ length: pool.manifest.instances.min }, () => this.#startInstance(pool))));
  }

  /**
   * Resolves once `service` has a ready instance, starting one at zero; rejects with
   * ERR_RUNTIME_COLD_START when none could start within the bound.
   */
  async ensure(service: string): Promise<void> {
    const pool = this.#pool(service);
    if (this.#closed) throw new ThemisError('ERR_RUNTIME_CLOSED', 'the host is shutting down');
    const ready = pool.ready[0];
    if (ready !== undefined) {
      ready.lastActive = Date.now();
      return;
    }
    const timeoutMs = this.#init.coldStartTimeoutMs ?? DEFAULT_COLD_START_TIMEOUT_MS;
    const pending = pool.starting.size > 0 ? Promise.race(pool.starting) : this.#startInstance(pool);
    const timer = new AbortController();
    try {
      await Promise.race([
        pending,
        sleep(timeoutMs, undefined, { signal: timer.signal, ref: false }).then(() => {
          throw new ThemisError('ERR_RUNTIME_COLD_START', `no instance of "${service}" started within ${timeoutMs} ms`);
        }),
      ]);
    } catch (err) {
      if (err instanceof ThemisError && err.code === 'ERR_RUNTIME_COLD_START') throw err;
      throw new ThemisError('ERR_RUNTIME_COLD_START', `an instance of "${service}" could not start: ${(err as Error).message}`, { cause: err });
    } finally {
      timer.abort();
    }
  }

  /** Per-service instance counts, load and cold-start times. */
  stats(): Record<string, ServiceStats> {
    const out: Record<string, ServiceStats> = {};
    for (const [name, pool] of this.#pools) {
      const sorted = [...pool.coldStartMs].sort((a, b) => a - b);
      out[name] = {
        instances: pool.ready.length,
        starting: pool.starting.size,
        inFlight: pool.inFlight,
        served: pool.servedByGone + pool.ready.reduce((sum, instance) => sum + instance.served, 0),
        replaced: pool.replaced,
        coldStarts: pool.coldStarts,
        coldStartMs:
          sorted.length === 0
            ? null
            : { last: round(pool.coldStartMs.at(-1)!), p50: round(sorted[Math.floor((sorted.length - 1) / 2)]!), max: round(sorted.at(-1)!) },
      };
    }
    return out;
  }

  /** For tests: stops an instance abruptly, as a crash would (in-flight calls fail); it is replaced. */
  async killInstance(service: string, index = 0): Promise<void> {
    const pool = this.#pool(service);
    const instance = pool.ready[index];
    if (instance === undefined) throw new RangeError(`service "${service}" has no instance #${index} (it has ${pool.ready.length})`);
    await instance.stop({ graceful: false, reason: 'killed' });
  }

  /** Stops every instance; in-flight calls finish first. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const pools = [...this.#pools.values()];
    await Promise.allSettled(pools.flatMap((pool) => [...pool.starting]));
    for (const pool of pools) for (const instance of pool.ready.splice(0)) this.#stop(pool, instance, { graceful: true });
    await Promise.all(pools.flatMap((pool) => [...pool.stopping]));
    await this.#init.attestor?.close();
  }

  #pool(service: string): ServicePool {
    const pool = this.#pools.get(service);
    if (pool === undefined) throw new ThemisError('ERR_RUNTIME_MODULE', `no service "${service}" in this app; declare it in themis.yaml`);
    return pool;
  }

  /** Starts one instance of the pool (a cold start), counting it as starting until it serves. */
  #startInstance(pool: ServicePool): Promise<FunctionInstance> {
    const started = performance.now();
    const pending = this.#provisionInstance(pool).then(
      (instance) => {
        pool.starting.delete(pending);
        const ms = performance.now() - started;
        pool.coldStarts++;
        pool.coldStartMs.push(ms);
        if (pool.coldStartMs.length > SAMPLES) pool.coldStartMs = pool.coldStartMs.slice(-SAMPLES);
        if (this.#closed) {
          this.#stop(pool, instance, { graceful: false });
          throw new ThemisError('ERR_RUNTIME_CLOSED', 'the host closed during a cold start');
        }
        pool.ready.push(instance);
        this.#init.metrics?.coldStarts.observe({ service: pool.manifest.name }, ms / 1000);
        this.#countInstances(pool);
        instance.onDispose((reason) => this.#gone(pool, instance, reason));
        this.#log.info({ service: pool.manifest.name, instance: instance.id.slice(0, 12), coldStartMs: round(ms) }, 'instance started');
        return instance;
      },
      (err: unknown) => {
        pool.starting.delete(pending);
        this.#log.error({ service: pool.manifest.name, err: (err as Error).message }, 'instance failed to start');
        throw err;
      },
    );
    pool.starting.add(pending);
    pending.catch(() => undefined);
    return pending;
  }

  /**
   * The one provisioning seam (RUNTIME-CONTRACT.md "Attestation seam"): a fresh identity for a new
   * instance of `service` (made here, never exported), the measurement of the module bytes it
   * will run, the host's endorsement of both, and the attestor's extra credentials.
   */
  async provisionIdentity(service: string): Promise<ProvisionedIdentity> {
    const { manifest, hostIdentity, network } = this.#init;
    const entry = this.#pool(service).manifest.entry;
    const identity = Identity.generate(network);
    const source = await readFile(entry);
    const digest = createHash('sha256').update(source).digest();
    const credentials: Credential[] = [
      endorsementCredential(endorse(hostIdentity, { instancePub: identity.publicKey, trustDomain: manifest.trustDomain, service, codeDigest: digest })),
    ];
    if (this.#init.attestor !== undefined) {
      await this.#init.attestor.measure({ service, digest });
      credentials.push(...(await this.#init.attestor.credentials({ nodeId: identity.nodeId, service, digest })));
    }
    return { identity, credentials, digest, source };
  }

  /** A cold start: a provisioned identity, then the instance that runs exactly the measured bytes. */
  async #provisionInstance(pool: ServicePool): Promise<FunctionInstance> {
    const { identity, credentials, source } = await this.provisionIdentity(pool.manifest.name);
    return FunctionInstance.start({
      service: pool.manifest,
      source: source.toString('utf8'),
      identity,
      credentials,
      network: this.#init.network,
      owner: this.#init.owner,
      bootstrap: this.#init.bootstrap,
      listenHost: this.#init.listenHost ?? '127.0.0.1',
      kv: this.#init.kv,
      logger: this.#init.logger,
      ensure: (callee) => this.ensure(callee),
      onLoad: () => this.#scaleUp(pool),
      ...(this.#init.attestation === undefined ? {} : { attestation: this.#init.attestation }),
    });
  }

  /** More in flight than the ready instances' concurrency: one more instance (one at a time), up to max. */
  #scaleUp(pool: ServicePool): void {
    if (this.#closed || pool.starting.size > 0) return;
    const { concurrency, instances } = pool.manifest;
    if (pool.inFlight > pool.ready.length * concurrency && pool.ready.length < instances.max) void this.#startInstance(pool).catch(() => undefined);
  }

  /** Instances idle for idleSeconds stop gracefully, down to instances.min. */
  #scaleDown(): void {
    const now = Date.now();
    for (const pool of this.#pools.values()) {
      const idleMs = pool.manifest.idleSeconds * 1000;
      for (const instance of [...pool.ready]) {
        if (pool.ready.length <= pool.manifest.instances.min) break;
        if (instance.inFlight > 0 || now - instance.lastActive < idleMs) continue;
        this.#remove(pool, instance);
        this.#log.info({ service: pool.manifest.name, instance: instance.id.slice(0, 12) }, 'instance idle: scaled down');
        this.#stop(pool, instance, { graceful: true });
      }
    }
  }

  #remove(pool: ServicePool, instance: FunctionInstance): void {
    const i = pool.ready.indexOf(instance);
    if (i >= 0) {
      pool.ready.splice(i, 1);
      pool.servedByGone += instance.served;
      this.#countInstances(pool);
    }
  }

  /** Stops an instance that left `ready`, tracked until it has stopped. */
  #stop(pool: ServicePool, instance: FunctionInstance, options: { graceful: boolean; reason?: DisposeReason }): void {
    const stopping = instance.stop(options).finally(() => pool.stopping.delete(stopping));
    pool.stopping.add(stopping);
  }

  #countInstances(pool: ServicePool): void {
    this.#init.metrics?.instances.set({ service: pool.manifest.name }, pool.ready.length);
  }

  /** An isolate died (memory limit, stuck, killed): drop the instance and start a replacement. */
  #gone(pool: ServicePool, instance: FunctionInstance, reason: DisposeReason): void {
    if (this.#closed || !pool.ready.includes(instance)) return;
    this.#remove(pool, instance);
    pool.replaced++;
    this.#init.metrics?.replaced.inc({ service: pool.manifest.name, reason });
    this.#log.warn({ service: pool.manifest.name, instance: instance.id.slice(0, 12), reason }, 'instance stopped; starting a replacement');
    this.#stop(pool, instance, { graceful: false, reason });
    void this.#startInstance(pool).catch(() => undefined);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
