import { fromHex } from '../core/bytes.js';
import type { Logger } from '../core/log.js';
import { RecordType, createContactRecord, createRecord, encodeProviderValue, providerKey } from '../dht/index.js';
import type { Credential } from '../handshake/index.js';
import type { Identity, NetworkConfig } from '../identity/index.js';
import { createMesh, type CallContext, type Mesh, type MeshInit } from '../mesh/index.js';
import { FunctionError, type Outcome } from './function-error.js';
import { RUNTIME_DISCOVERY_CACHE_MS, callService } from './mesh-call.js';
import { KV_LIMITS, kvNamespace, type AppKv, type KvNamespace } from './kv.js';
import type { ServiceManifest } from './manifest.js';
import { Sandbox, callToken, type DisposeReason } from './sandbox.js';

/**
 * One function instance: an isolate running the service module, and its own mesh peer (fresh
 * identity, host endorsement, client DHT mode, listening on loopback) that provides the
 * service. Each mesh call of a method runs the handler in the isolate; the handler's ctx
 * operations come back through the isolate's bridge to `#op`, which acts for that call only.
 *
 * The result of every mesh call is an Outcome (function-error.ts), so an application error
 * (`ctx.error`) is an answer, not a failed call: the mesh does not count it against the
 * instance's circuit or retry it elsewhere.
 */
export interface InstanceInit {
  readonly service: ServiceManifest;
  /** The module bytes the host measured (what the isolate runs). */
  readonly source: string;
  readonly identity: Identity;
  readonly credentials: readonly Credential[];
  readonly network: NetworkConfig;
  readonly owner: Uint8Array;
  readonly bootstrap: readonly string[];
  /** Listen host for the instance's mesh peer. */
  readonly listenHost: string;
  readonly kv: AppKv;
  readonly logger: Logger;
  /** Before a ctx.call: the host makes sure the callee has an instance (it may be at zero). */
  readonly ensure: (service: string) => Promise<void>;
  /** A call started or ended on this instance (the autoscaler's signal). */
  readonly onLoad: () => void;
  /** The host's attestation verifier (one per host) and its evidence responder. */
  readonly attestation?: MeshInit['attestation'];
}

/** Provider records live this long; a crashed instance drops out of discovery within it. */
export const INSTANCE_PROVIDER_TTL_MS = 60_000;
const LOG_LEVELS = ['info', 'warn', 'error'] as const;
/** A function's log message is cut to this many characters. */
const MAX_LOG_MESSAGE = 4096;

export class FunctionInstance {
  readonly service: string;
  readonly startedAt = Date.now();
  inFlight = 0;
  served = 0;
  lastActive = Date.now();
  readonly #init: InstanceInit;
  readonly #kv: KvNamespace;
  readonly #log: Logger;
  readonly #calls = new Map<string, CallContext>();
  readonly #idle: (() => void)[] = [];
  #sandbox!: Sandbox;
  #mesh!: Mesh;
  #stopped = false;

  private constructor(init: InstanceInit) {
    this.#init = init;
    this.service = init.service.name;
    this.#kv = kvNamespace(init.kv, init.service.name);
    this.#log = init.logger.child({ service: init.service.name, instance: init.identity.id.slice(0, 12) });
  }

  /** Loads the module into a new isolate and joins the mesh as the service's provider. */
  static async start(init: InstanceInit): Promise<FunctionInstance> {
    const instance = new FunctionInstance(init);
    const { service } = init;
    const [sandbox, mesh] = await Promise.allSettled([
      Sandbox.create({
        source: init.source,
        filename: service.entry,
        handlers: service.handlers,
        memoryMb: service.memoryMb,
        timeoutMs: service.timeoutMs,
        host: (token, op, args) => instance.#op(token, op, args),
      }),
      createMesh({
        identity: init.identity,
        credentials: init.credentials,
        network: init.network,
        listen: `tcp://${init.listenHost}:0`,
        bootstrap: init.bootstrap,
        client: true,
        trust: { owner: init.owner },
        maintenance: false,
        discoveryCacheMs: RUNTIME_DISCOVERY_CACHE_MS,
        providerTtlMs: INSTANCE_PROVIDER_TTL_MS,
        logger: init.logger,
        ...(init.attestation === undefined ? {} : { attestation: init.attestation }),
      }),
    ]);
    if (sandbox.status === 'rejected' || mesh.status === 'rejected') {
      if (sandbox.status === 'fulfilled') sandbox.value.dispose();
      if (mesh.status === 'fulfilled') await mesh.value.close().catch(() => undefined);
      throw sandbox.status === 'rejected' ? sandbox.reason : (mesh as PromiseRejectedResult).reason;
    }
    instance.#sandbox = sandbox.value;
    instance.#mesh = mesh.value;
    try {
      await mesh.value.provide(
        service.name,
        Object.fromEntries(service.handlers.map((method) => [method, (payload: unknown, ctx: CallContext) => instance.#handle(method, payload, ctx)])),
      );
    } catch (err) {
      await instance.stop({ graceful: false });
      throw err;
    }
    return instance;
  }

  get id(): string {
    return this.#init.identity.id;
  }

  /** Why the isolate is gone, or null while it serves. */
  get disposed(): DisposeReason | null {
    return this.#sandbox.disposed;
  }

  onDispose(listener: (reason: DisposeReason) => void): void {
    this.#sandbox.onDispose(listener);
  }

  async #handle(method: string, payload: unknown, ctx: CallContext): Promise<Outcome> {
    this.inFlight++;
    this.lastActive = Date.now();
    this.#init.onLoad();
    const token = callToken();
    this.#calls.set(token, ctx);
    try {
      const principal = ctx.principal === undefined ? undefined : { subject: ctx.principal.subject, claims: ctx.principal.claims };
      return await this.#sandbox.run(method, payload, principal, token);
    } finally {
      this.#calls.delete(token);
      this.inFlight--;
      this.served++;
      this.lastActive = Date.now();
      this.#init.onLoad();
      if (this.inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /** A ctx operation of the call `token` names (sandbox.ts bridge). */
  async #op(token: string, op: string, args: unknown[]): Promise<unknown> {
    const ctx = this.#calls.get(token);
    if (ctx === undefined) throw new FunctionError(500, 'INTERNAL', 'this call is over: ctx cannot be used after the handler returned');
    const str = (i: number): string => {
      const value = args[i];
      if (typeof value !== 'string') throw new FunctionError(400, 'BAD_REQUEST', `${op}: argument ${i + 1} must be a string`);
      return value;
    };
    switch (op) {
      case 'call':
        return this.#call(ctx, str(0), str(1), args[2]);
      case 'log': {
        const level = LOG_LEVELS.find((name) => name === args[0]) ?? 'info';
        const fields = typeof args[2] === 'object' && args[2] !== null ? args[2] : {};
        this.#log[level]({ fields }, str(1).slice(0, MAX_LOG_MESSAGE));
        return null;
      }
      case 'kv.read':
        return this.#kv.read(str(0));
      case 'kv.list':
        return this.#kv.list(str(0), typeof args[1] === 'number' ? args[1] : KV_LIMITS.listDefault, args[2] === null || args[2] === undefined ? undefined : str(2));
      case 'kv.commit':
        return this.#kv.commit(pairs(args[0]), pairs(args[1]));
      case 'dht.putImmutable':
        return (await this.#mesh.node.putImmutable(Buffer.from(str(0), 'utf8'))).toString('hex');
      case 'dht.getImmutable':
        return (await this.#mesh.node.getImmutable(fromHex(str(0))))?.toString('utf8') ?? null;
      case 'dht.putMutable': {
        const salt = (args[1] as { salt?: unknown } | undefined)?.salt;
        await this.#mesh.node.putMutable(Buffer.from(str(0), 'utf8'), { salt: Buffer.from(typeof salt === 'string' ? salt : '', 'utf8') });
        return { publisher: this.#mesh.node.identity.publicKey.toString('hex') };
      }
      case 'dht.getMutable': {
        const record = await this.#mesh.node.getMutable(fromHex(str(0)), Buffer.from(typeof args[1] === 'string' ? args[1] : '', 'utf8'));
        return record === null ? null : record.value.toString('utf8');
      }
      default:
        throw new FunctionError(400, 'BAD_REQUEST', `unknown ctx operation "${op}"`);
    }
  }

  /** ctx.call: the callee's outcome, its error rethrown with status and code. */
  async #call(ctx: CallContext, service: string, method: string, payload: unknown): Promise<unknown> {
    if (!this.#init.service.calls.includes(service)) {
      throw new FunctionError(500, 'INTERNAL', `service "${this.service}" may not call "${service}": add it to \`calls:\` of ${this.service} in themis.yaml`);
    }
    return callService((...args) => ctx.call(...args), this.#init.ensure, service, method, payload, { deadlineMs: this.#init.service.timeoutMs });
  }

  /** Resolves once no call is in flight. */
  #drained(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Stops the instance: withdraws its provider record (so callers stop picking it); graceful: lets
   * in-flight calls finish; then disposes the isolate and leaves the mesh. Not graceful (its isolate
   * died, killInstance): in-flight calls fail at once.
   */
  async stop(options: { graceful: boolean; reason?: DisposeReason }): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // Even after a crash of its isolate the instance's peer is still in this process: withdraw it.
    if (this.#mesh !== undefined) await this.#withdraw().catch(() => undefined);
    if (options.graceful) await this.#drained();
    this.#sandbox?.dispose(options.reason ?? 'closed');
    await this.#mesh?.close().catch(() => undefined);
  }

  /** Replaces this instance's provider record with one that lists no address, so callers stop picking it. */
  async #withdraw(): Promise<void> {
    const node = this.#mesh.node;
    // Same slot, newer seq, no address: discover() skips it, and it outlives the record it replaces.
    const contact = createContactRecord(node.identity, { addresses: [], client: true });
    await node.store(
      createRecord(node.identity, { type: RecordType.Provider, key: providerKey(this.service), value: encodeProviderValue(this.service, contact), seq: Date.now(), ttlMs: INSTANCE_PROVIDER_TTL_MS }),
    );
  }
}

function pairs(value: unknown): [string, string | null][] {
  if (!Array.isArray(value)) throw new FunctionError(400, 'BAD_REQUEST', 'kv commit expects lists of [key, text] pairs');
  return value.map((pair: unknown) => {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || (pair[1] !== null && typeof pair[1] !== 'string')) {
      throw new FunctionError(400, 'BAD_REQUEST', 'kv commit expects lists of [key, text] pairs');
    }
    return [pair[0], pair[1] as string | null];
  });
}
