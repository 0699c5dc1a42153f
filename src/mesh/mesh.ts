import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThemisError, isThemisError, type ErrorCode } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { RateLimiter, type RateLimit } from '../core/rate-limit.js';
import type { MuxStream, RequestContext, RequestHandler, StreamContext, StreamHandler } from '../channel/index.js';
import {
  RecordType,
  createContactRecord,
  createDhtNode,
  createRecord,
  decodeProviderValue,
  encodeProviderValue,
  policyKey,
  providerKey,
  revocationKey,
  verifyContactRecord,
  type DhtNode,
  type DhtOptions,
} from '../dht/index.js';
import { CredentialType, type Credential } from '../handshake/index.js';
import { Identity, type NetworkConfig } from '../identity/index.js';
import type { Connection } from '../transport/index.js';
import { CircuitBreaker, EwmaLatency, RetryBudget, backoff, pickPowerOfTwo } from './balancer.js';
import { PolicyAuthority } from './authorize.js';
import { childTraceparent, decodeCallRequest, decodeCallResponse, decodePayload, encodeCallRequest, encodeCallResponse } from './call-codec.js';
import { openEndorsement } from './endorsement.js';
import { MeshMetrics } from './metrics.js';
import { DEFAULT_REFRESH_SECONDS, isName, openPolicyRecord } from './policy.js';
import { RevocationList, RevocationReason, createRevocation, openRevocation } from './revocation.js';
import { MAX_ROTATION_CHAIN, encodeRotationChain, rotationStatement } from './rotation.js';
import { MAX_STREAM_HEADER_BYTES, STREAM_ACCEPTED, decodeStreamHeader, encodeStreamHeader, readExactly } from './stream-header.js';
import { ATTEST_CHALLENGE_TIMEOUT_MS, ATTEST_EVIDENCE_REQUEST, type AttestationVerifierHook, type EvidenceChallenge, type EvidenceResponder } from './attestation.js';
import { ReplayCache, issuePrincipalToken, reissueForAudience, verifyPrincipalToken, type VerifiedPrincipal } from './tokens.js';

export interface MeshInit {
  readonly identity?: Identity;
  readonly network?: Partial<NetworkConfig>;
  /** Listen addresses, e.g. `tcp://127.0.0.1:0`. An instance that provides a service must listen. */
  readonly listen?: string | readonly string[];
  /** DHT bootstrap addresses (`tcp://host:port` or `ID@tcp://host:port`); none: this is the first node. */
  readonly bootstrap: readonly string[];
  /** Join the DHT as a client (function instances): kept out of routing tables, stores nothing. */
  readonly client?: boolean;
  /** Credentials carried in the identity proof, e.g. the host endorsement credential. */
  readonly credentials?: readonly Credential[];
  /** Trust-domain mode: only the owner's policy decides who may call what. Absent: open mode. */
  readonly trust?: { readonly owner: Uint8Array };
  readonly dht?: Partial<DhtOptions>;
  /** DHT maintenance timers (republish, refresh…). Default true. */
  readonly maintenance?: boolean;
  /** Lifetime of provider records; republished at half of it. Default 10 min. */
  readonly providerTtlMs?: number;
  /** How long a discovered instance list is reused by call(). Default 3 s. */
  readonly discoveryCacheMs?: number;
  /** Structured logger (pino), shared with the DHT node and peer. Default: createLogger(). */
  readonly logger?: Logger;
  /** Most principal-token ids the callee remembers against replay. Default 100 000. */
  readonly replayCacheSize?: number;
  /** Most caller keys whose revocations the callee polls for. Default 4096. */
  readonly revocationWatchSize?: number;
  /**
   * Attestation (docs/attestation.md): `verifier` checks peers' evidence when the policy requires
   * a TPM; `evidence` answers verifiers' nonces with this instance's host evidence.
   */
  readonly attestation?: { readonly verifier?: AttestationVerifierHook; readonly evidence?: EvidenceResponder };
  /**
   * Calls and streams one caller (a verified NodeId) may open on this peer: a token bucket of
   * `burst` refilled at `perSecond`; past it they are refused with ERR_MESH_RATE_LIMITED before
   * admission. Null: no limit. Default 10 000/s, burst 20 000 (docs/mesh.md §5). DHT RPCs have
   * their own limit: `dht.rpcRateLimit`.
   */
  readonly callRateLimit?: RateLimit | null;
}

/** The verified end-user principal of a call, as handlers read it. */
export interface CallPrincipal {
  readonly subject: string;
  /** The service whose instance issued (or re-issued) the token: the caller's service. */
  readonly issuerService: string;
  /** The claims that are not reserved (e.g. `scope`). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** Expiry in ms since the epoch. */
  readonly expiresAt: number;
}

export interface IssueTokenInit {
  readonly subject: string;
  /** The callee service the token is for. */
  readonly audience: string;
  /** Default 60 s; at most 300 s. */
  readonly ttlSeconds?: number;
  readonly claims?: Readonly<Record<string, unknown>>;
  /** Open mode only: the service name written as issuer. Default: the first provided service, else this NodeId. */
  readonly issuerService?: string;
}

/** A verified live instance of a service. */
export interface Instance {
  /** NodeId, base32. */
  readonly id: string;
  readonly nodeId: Buffer;
  readonly addresses: readonly string[];
  readonly noiseStatic: Buffer;
}

export interface CallContext {
  /** The verified caller: its NodeId, and in trust-domain mode the service it is endorsed for. */
  readonly caller: { readonly id: string; readonly service?: string };
  /**
   * The end-user principal, verified by the mesh before the handler runs (signature, audience =
   * this service, expiry, issuer = the calling instance of a token-issuing service, no replay);
   * undefined when the caller passed no token.
   */
  readonly principal?: CallPrincipal;
  /** W3C traceparent of this call. */
  readonly traceparent: string;
  /** Aborted when the caller cancels, the deadline passes, or the channel closes. */
  readonly signal: AbortSignal;
  /**
   * Calls another service on behalf of this call: the principal, if any, is re-issued for that
   * service (reissueForAudience), the trace continues, and the call is cancelled with this one.
   */
  readonly call: (service: string, method: string, payload: unknown, options?: CallOptions) => Promise<unknown>;
}

export type MethodHandler = (payload: unknown, ctx: CallContext) => unknown | Promise<unknown>;

export interface CallOptions {
  /** The whole call, retries included, must end within this. Default 10 s. */
  readonly deadlineMs?: number;
  /** Retries on other instances at most (each also needs the retry budget). Default 2. */
  readonly retries?: number;
  /** An end-user principal token to pass on. */
  readonly token?: string;
  /** The caller's traceparent; the call continues its trace. A new trace when absent. */
  readonly traceparent?: string;
  readonly signal?: AbortSignal;
}

/** What a stream handler gets besides the stream: the same verified metadata as a call's. */
export interface StreamCallContext {
  readonly caller: { readonly id: string; readonly service?: string };
  readonly principal?: CallPrincipal;
  /** W3C traceparent of this stream. */
  readonly traceparent: string;
}

/** Serves one mesh stream; a throw or rejection resets the stream (HANDLER_ERROR). */
export type MeshStreamHandler = (stream: Duplex, ctx: StreamCallContext) => void | Promise<void>;

export interface StreamCallOptions {
  /** Opening the stream (instance choice, dial, the callee's admission, retries) must end within this. Default 10 s. */
  readonly deadlineMs?: number;
  /** Retries on other instances at most while opening. Default 2. */
  readonly retries?: number;
  /** An end-user principal token to pass on (in the stream header). */
  readonly token?: string;
  readonly traceparent?: string;
  /** Aborting resets the stream (CANCELLED), also once it is open. */
  readonly signal?: AbortSignal;
}

export interface RotateOptions {
  /** Credentials for the new key (e.g. a host endorsement of it); default: the current ones. The rotation chain is added. */
  readonly credentials?: readonly Credential[];
}

const DEFAULT_PROVIDER_TTL = 10 * 60_000;
/** How long a callee waits for the header of a stream it accepted. */
const STREAM_HEADER_TIMEOUT_MS = 10_000;
/** A withdrawn provider record (published by the old key of a rotation) lives this long. */
const WITHDRAWN_TTL_MS = 1_000;
const DEFAULT_DISCOVERY_CACHE_MS = 3_000;
const DEFAULT_DEADLINE_MS = 10_000;
const DEFAULT_CALL_RATE_LIMIT: RateLimit = Object.freeze({ perSecond: 10_000, burst: 20_000 });
const DEFAULT_RETRIES = 2;
const BACKOFF = { baseMs: 10, maxMs: 200 };
/** Revocation lookups in flight at once during a poll. */
const REVOCATION_LOOKUP_CONCURRENCY = 8;
/** How a callee's exposed refusal reads (ERR_CHANNEL_HANDLER carries the message verbatim). */
const MESH_CODE = /^(ERR_(?:MESH|ATTEST)_[A-Z_]+): ([\s\S]*)$/;

/** Balancer state of one instance, kept while it is discovered. */
interface Tracked {
  instance: Instance;
  readonly latency: EwmaLatency;
  readonly breaker: CircuitBreaker;
  inFlight: number;
}

/** The request name a method is served under. */
export function methodName(service: string, method: string): string {
  return `mesh/${service}/${method}`;
}

/**
 * The mesh actions over a DHT node: provide a service, discover its instances, call its methods.
 * In trust-domain mode every incoming call passes the owner policy (identify, then authorize).
 *
 * @example
 * const mesh = await createMesh({ listen: 'tcp://127.0.0.1:0', bootstrap: ['tcp://10.0.0.1:4000'] });
 * await mesh.provide('users', { get: ({ id }) => ({ id, name: 'Ada' }) });
 * const user = await other.call('users', 'get', { id: 1 }, { deadlineMs: 2_000 });
 */
export class Mesh {
  #node: DhtNode;
  /** Null in open mode. */
  readonly authority: PolicyAuthority | null;
  readonly #init: MeshInit;
  readonly #provided = new Map<string, { timer: NodeJS.Timeout }>();
  /** Every request and stream handler this mesh registered on its peer, re-registered after rotate(). */
  readonly #handlers = new Map<string, RequestHandler>();
  readonly #streamHandlers = new Map<string, StreamHandler>();
  /** Rotation statements, oldest first, leading from the first key to the current one. */
  #rotations: Buffer[] = [];
  /** The credentials carried in the current identity proof. */
  #credentials: readonly Credential[];
  #rotating: Promise<void> | null = null;
  readonly #discovered = new Map<string, { at: number; instances: Promise<Instance[]> }>();
  readonly #tracked = new Map<string, Tracked>();
  readonly #dials = new Map<string, Promise<Connection>>();
  readonly #budget = new RetryBudget();
  readonly #closing = new AbortController();
  readonly #log: Logger;
  readonly #metrics = new MeshMetrics();
  readonly #replay: ReplayCache;
  /** Keys this peer believes revoked (from DHT revocation records it polled). */
  readonly #revocations = new RevocationList();
  /** Keys seen calling this peer, whose revocations it polls for: hex key → its endorsing host. */
  readonly #watched = new Map<string, { pub: Buffer; host: Buffer | null }>();
  #policyTimer: NodeJS.Timeout | null = null;
  readonly #callLimiter: RateLimiter | null;

  constructor(node: DhtNode, init: MeshInit) {
    this.#node = node;
    this.#init = init;
    this.#credentials = init.credentials ?? [];
    const verifier = init.attestation?.verifier;
    this.authority = init.trust === undefined ? null : new PolicyAuthority(init.trust.owner, verifier === undefined ? {} : { attestation: verifier });
    const evidence = init.attestation?.evidence;
    if (evidence !== undefined) {
      const serve: RequestHandler = async (nonce) => evidence(nonce);
      this.#handlers.set(ATTEST_EVIDENCE_REQUEST, serve);
      node.peer.handle(ATTEST_EVIDENCE_REQUEST, serve);
    }
    this.#log = init.logger ?? createLogger();
    this.#replay = new ReplayCache(init.replayCacheSize === undefined ? {} : { maxEntries: init.replayCacheSize });
    const callRateLimit = init.callRateLimit === undefined ? DEFAULT_CALL_RATE_LIMIT : init.callRateLimit;
    this.#callLimiter = callRateLimit === null ? null : new RateLimiter(callRateLimit);
    this.#countNodeEvents(node);
  }

  /** The current DHT node; a new one (new key) after rotate(). */
  get node(): DhtNode {
    return this.#node;
  }

  #countNodeEvents(node: DhtNode): void {
    node.on('rate-limited', () => this.#metrics.rateLimited.inc({ layer: 'dht' }));
    node.peer.on('connection', (conn: Connection) => {
      // The dialer reached one of the addresses the remote advertises; an accepted socket comes from an ephemeral port.
      const role = conn.remote.addresses.includes(conn.remote.address) ? 'initiator' : 'responder';
      this.#metrics.handshakes.inc({ pattern: conn.remote.pattern, role });
    });
  }

  /** The Prometheus text exposition of this peer's metrics (its own registry, not prom-client's global one). */
  metrics(): Promise<string> {
    return this.#metrics.text();
  }

  /** This peer's metrics registry, e.g. to merge into an application's registry. */
  get metricsRegistry(): MeshMetrics['registry'] {
    return this.#metrics.registry;
  }

  /**
   * Turns an authenticated end user into a short-lived principal token for `audience`, signed by
   * this instance's key. In trust-domain mode this instance's service (from its host endorsement)
   * must be listed in the policy's `tokenIssuers`, else ERR_MESH_TOKEN_ISSUER.
   */
  issueToken(init: IssueTokenInit): string {
    this.#assertOpen();
    const issuerService = this.#ownService(init.issuerService);
    if (this.authority !== null && !this.authority.mayIssueTokens(issuerService)) {
      throw new ThemisError('ERR_MESH_TOKEN_ISSUER', `service "${issuerService}" may not issue principal tokens: add it to \`tokenIssuers:\` of the trust-domain policy`);
    }
    return issuePrincipalToken(this.node.identity, {
      subject: init.subject,
      audience: init.audience,
      issuerService,
      ...(init.ttlSeconds === undefined ? {} : { ttlSeconds: init.ttlSeconds }),
      ...(init.claims === undefined ? {} : { claims: init.claims }),
    });
  }

  /**
   * Publishes a signed revocation of `pub` (default: this peer's own key). Peers believe it when
   * signed by the key itself, its endorsing host, or the trust-domain owner.
   *
   * Bound: a callee that has seen the key call it refuses it (ERR_MESH_REVOKED) at most one
   * polling interval (the policy's refreshSeconds, min 5 s; 30 s in open mode) plus one DHT
   * lookup after this resolves — one lookup per watched key, 8 at a time, so a callee watching
   * N keys adds ⌈N/8⌉ lookup times. A key seen for the first time is looked up at once (in the
   * background), so it is refused within one lookup of its first call. The policy's `revoked` list applies at once on every call once that policy is in force.
   */
  async revoke(pub?: Uint8Array, reason: number = RevocationReason.Unspecified): Promise<void> {
    this.#assertOpen();
    const record = createRevocation(this.node.identity, pub ?? this.node.identity.publicKey, reason);
    const result = await this.node.store(record);
    if (result.stored === 0) throw new ThemisError('ERR_DHT_LOOKUP_FAILED', 'no DHT node accepted the revocation record; is this peer joined?');
    this.#log.info({ reason, self: pub === undefined }, 'published a revocation');
  }

  /**
   * Looks up the revocation records of every key seen calling this peer and believes those
   * signed by the key itself, its endorsing host or the owner. Returns how many keys became revoked.
   */
  async refreshRevocations(): Promise<number> {
    const watched = [...this.#watched.values()].filter(({ pub }) => !this.#revocations.isRevoked(pub));
    // A few lookups at a time: a callee seen by thousands of callers must not flood the DHT.
    let added = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < watched.length) {
        const { pub, host } = watched[next++]!;
        if (await this.#checkRevocation(pub, host)) added++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(REVOCATION_LOOKUP_CONCURRENCY, watched.length) }, worker));
    return added;
  }

  /** Looks up the revocation records of one key; true when this made it revoked. */
  async #checkRevocation(pub: Buffer, host: Buffer | null): Promise<boolean> {
    const records = await this.#find(revocationKey(pub)).catch(() => []);
    const isAuthority = (signer: Buffer): boolean => (host !== null && signer.equals(host)) || (this.authority !== null && signer.equals(this.authority.owner));
    let added = false;
    for (const record of records) {
      if (record.type !== RecordType.Revocation) continue;
      try {
        const revocation = openRevocation(record.bytes, this.node.peer.network);
        if (!revocation.revokedPub.equals(pub)) continue;
        if (this.#revocations.add(revocation, { isAuthority })) {
          added = true;
          this.#log.info({ code: 'ERR_MESH_REVOKED', reason: revocation.reason }, 'learned a revocation of a caller key');
        }
      } catch {
        continue; // forged, or signed by a key with no authority over this one: ignored
      }
    }
    return added;
  }

  get id(): string {
    return this.node.id;
  }

  get addresses(): readonly string[] {
    return this.node.peer.addresses;
  }

  /** Serves `handlers` as methods of `service` and publishes (and keeps republishing) its provider record. */
  async provide(service: string, handlers: Record<string, MethodHandler>): Promise<void> {
    this.#assertOpen();
    if (!isName(service)) throw new RangeError(`service name "${service}" must be 1 to 64 characters [a-z0-9-]`);
    if (this.node.peer.addresses.length === 0) throw new ThemisError('ERR_MESH_CALL_INVALID', `cannot provide ${service}: this peer does not listen (give listen: 'tcp://…')`);
    for (const [method, handler] of Object.entries(handlers)) {
      const name = methodName(service, method);
      const serve: RequestHandler = (body, ctx) => this.#serve(service, method, handler, body, ctx);
      this.#handlers.set(name, serve);
      this.node.peer.handle(name, serve);
    }
    await this.#startPublishing(service);
  }

  /**
   * Serves `handler` as the stream method `service.method` (channel stream `mesh/<service>/<method>`)
   * and publishes the provider record as provide() does. Each stream is admitted when it opens,
   * exactly like a call (trust-domain policy, revocations, principal token, from the stream header);
   * a refused stream is reset with the typed error ("ERR_MESH_…: reason"), which stream() rethrows.
   */
  async provideStream(service: string, method: string, handler: MeshStreamHandler): Promise<void> {
    this.#assertOpen();
    if (!isName(service)) throw new RangeError(`service name "${service}" must be 1 to 64 characters [a-z0-9-]`);
    if (this.node.peer.addresses.length === 0) throw new ThemisError('ERR_MESH_CALL_INVALID', `cannot provide ${service}: this peer does not listen (give listen: 'tcp://…')`);
    const name = methodName(service, method);
    const serve: StreamHandler = (stream, ctx) => this.#serveStream(service, method, handler, stream, ctx);
    this.#streamHandlers.set(name, serve);
    this.node.peer.handleStream(name, serve);
    await this.#startPublishing(service);
  }

  /** Publishes the provider record of `service` now and every half TTL. */
  async #startPublishing(service: string): Promise<void> {
    await this.#publish(service);
    const ttl = this.#init.providerTtlMs ?? DEFAULT_PROVIDER_TTL;
    const previous = this.#provided.get(service);
    if (previous !== undefined) clearInterval(previous.timer);
    const timer = setInterval(() => void this.#publish(service).catch(() => undefined), Math.max(1_000, Math.floor(ttl / 2)));
    timer.unref();
    this.#provided.set(service, { timer });
  }

  /** The verified, unexpired instances of `service` listed in the DHT. */
  async discover(service: string): Promise<Instance[]> {
    this.#assertOpen();
    const records = await this.#find(providerKey(service));
    const now = Date.now();
    const instances: Instance[] = [];
    for (const record of records) {
      if (record.type !== RecordType.Provider || record.expiresAt <= now) continue;
      try {
        const value = decodeProviderValue(record.value);
        if (value.service !== service) continue;
        const contact = verifyContactRecord(value.contactRecord, this.node.peer.network, now);
        if (!contact.identityPub.equals(record.publisher) || contact.addresses.length === 0) continue;
        instances.push({ id: contact.id, nodeId: contact.nodeId, addresses: contact.addresses, noiseStatic: contact.noiseStatic });
      } catch {
        continue; // a record that does not verify is no instance
      }
    }
    return instances;
  }

  /**
   * Calls `service.method` on one of its instances (power of two choices over latency and load),
   * retrying on another instance within the retry budget while the deadline allows.
   * Rejects with ERR_MESH_DEADLINE, ERR_MESH_NO_INSTANCES, a refusal of the callee (ERR_MESH_*),
   * or ERR_MESH_CALL_FAILED.
   */
  async call(service: string, method: string, payload: unknown, options: CallOptions = {}): Promise<unknown> {
    const stop = this.#metrics.callDuration.startTimer({ service, method });
    let outcome = 'ok';
    try {
      return await this.#call(service, method, payload, options);
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      stop({ outcome });
      this.#metrics.calls.inc({ service, method, outcome });
    }
  }

  async #call(service: string, method: string, payload: unknown, options: CallOptions): Promise<unknown> {
    this.#assertOpen();
    const traceparent = childTraceparent(options.traceparent);
    const body = encodeCallRequest(payload, { traceparent, ...(options.token === undefined ? {} : { token: options.token }) });
    const name = methodName(service, method);
    return this.#attempt(service, method, options, async (conn, timeoutMs) => {
      const answer = await conn.request(name, body, { timeoutMs, ...(options.signal === undefined ? {} : { signal: options.signal }) });
      return decodeCallResponse(answer);
    });
  }

  /**
   * Opens a byte stream to `service.method` on one of its instances, chosen, connected and retried
   * like call() (same balancer, connection reuse, retry budget and circuit breakers). The stream
   * header (principal token, traceparent; see stream-header.ts) goes first and the promise resolves
   * once the callee admitted the stream, so a refusal rejects typed (ERR_MESH_DENIED, …).
   * `deadlineMs` bounds the opening only; the open stream lives until either side ends it.
   */
  async stream(service: string, method: string, options: StreamCallOptions = {}): Promise<Duplex> {
    this.#assertOpen();
    const traceparent = childTraceparent(options.traceparent);
    const header = encodeStreamHeader({ traceparent, token: options.token ?? '' });
    const name = methodName(service, method);
    return this.#attempt(service, method, options, async (conn, timeoutMs) => {
      const stream = conn.openStream(name, options.signal === undefined ? {} : { signal: options.signal });
      const timer = AbortSignal.timeout(timeoutMs);
      try {
        stream.write(header);
        const ack = await readExactly(stream, 1, timer);
        if (ack[0] !== STREAM_ACCEPTED) throw new ThemisError('ERR_MESH_CALL_FAILED', `instance ${conn.remote.id} answered the stream header with byte ${ack[0]}`);
        return stream;
      } catch (err) {
        stream.destroy();
        if (timer.aborted) throw new ThemisError('ERR_CHANNEL_TIMEOUT', `stream ${service}.${method} was not accepted within ${timeoutMs} ms`, { cause: err });
        throw err;
      }
    });
  }

  /**
   * The attempts of one call or stream opening: pick an instance not tried yet, connect (reusing an
   * open connection), run `once`; on failure retry on another instance within the retry budget,
   * the deadline and `retries`. A callee's refusal is rethrown typed at once.
   */
  async #attempt<T>(
    service: string,
    method: string,
    options: { readonly deadlineMs?: number; readonly retries?: number; readonly signal?: AbortSignal },
    once: (conn: Connection, timeoutMs: number) => Promise<T>,
  ): Promise<T> {
    const started = Date.now();
    const deadline = started + (options.deadlineMs ?? DEFAULT_DEADLINE_MS);
    const retries = options.retries ?? DEFAULT_RETRIES;
    this.#budget.recordCall(started);
    const tried = new Set<string>();
    let lastError: unknown;
    let openCircuits = 0;
    const cancelled = (): boolean => options.signal?.aborted === true;
    for (let attempt = 0; ; attempt++) {
      if (cancelled()) throw new ThemisError('ERR_MESH_CALL_FAILED', `call ${service}.${method} was cancelled`, { cause: options.signal?.reason });
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw deadlineError(service, method, deadline - started, lastError);
      const target = await this.#pick(service, tried, attempt > 0);
      if (target === undefined) {
        // Every instance the caller itself refused (trust-domain mode): say why, with its code.
        if (lastError !== undefined && isCalleeRefusal(lastError)) throw lastError;
        if (lastError !== undefined) throw failed(service, method, lastError);
        if (openCircuits > 0) {
          throw new ThemisError('ERR_MESH_CALL_FAILED', `all ${openCircuits} listed instances of "${service}" failed repeatedly (circuit open); retry later`);
        }
        throw new ThemisError('ERR_MESH_NO_INSTANCES', `no live instance of service "${service}" is listed in the DHT; is it provided and is this peer joined?`);
      }
      tried.add(target.instance.id);
      const t0 = Date.now();
      if (!target.breaker.tryAcquire(t0)) {
        openCircuits++;
        continue;
      }
      target.inFlight++;
      try {
        const conn = await this.#connect(target.instance, service);
        const timeoutMs = Math.max(1, deadline - Date.now());
        const result = await once(conn, timeoutMs);
        const now = Date.now();
        target.latency.observe(now - t0, now);
        target.breaker.onSuccess(now);
        return result;
      } catch (err) {
        const now = Date.now();
        if (cancelled()) {
          target.breaker.onSuccess(now); // the caller gave up: no fault of the instance
          throw new ThemisError('ERR_MESH_CALL_FAILED', `call ${service}.${method} was cancelled`, { cause: err });
        }
        if (isCalleeRefusal(err)) {
          // This caller may not use this instance (revoked or untrusted host, another service):
          // no fault of the instance, so its circuit is untouched; another instance may do.
          target.breaker.onSuccess(now);
          lastError = err;
          continue;
        }
        const refusal = remoteRefusal(err);
        if (refusal !== null) {
          target.breaker.onSuccess(now); // the instance is up and answered: a refusal is no instance failure
          throw refusal; // another instance would answer the same
        }
        target.breaker.onFailure(now);
        lastError = err;
        if (isThemisError(err, 'ERR_CHANNEL_HANDLER')) throw failed(service, method, err);
        if (isThemisError(err, 'ERR_CHANNEL_TIMEOUT') || now >= deadline) throw deadlineError(service, method, deadline - started, err);
        if (attempt >= retries || !this.#budget.tryRetry(now)) throw failed(service, method, err);
        const delay = Math.min(backoff(attempt, BACKOFF), Math.max(0, deadline - now - 1));
        if (delay > 0) await sleep(delay, undefined, { ref: false });
      } finally {
        target.inFlight--;
      }
    }
  }

  /** Fetches the owner's policy from the DHT and puts the newest valid one in force. */
  async refreshPolicy(): Promise<boolean> {
    const authority = this.authority;
    if (authority === null) return false;
    const records = await this.#find(policyKey(authority.owner));
    let changed = false;
    for (const record of records.filter((r) => r.type === RecordType.Policy).sort((a, b) => b.seq - a.seq)) {
      try {
        changed = authority.update(openPolicyRecord(record.bytes, authority.owner, this.node.peer.network));
        break;
      } catch {
        continue; // forged, rolled back or malformed: try the next
      }
    }
    return changed;
  }

  /**
   * Replaces this instance's key and keeps serving (docs/mesh.md §5). A DhtNode's identity is fixed
   * (its Peer, Noise static key, routing table and NodeId all derive from it), so rotation starts a
   * second DhtNode with a fresh Identity of the same network:
   *
   * 1. the old key signs a rotation statement naming the new key; the chain of statements (oldest
   *    first, the last MAX_ROTATION_CHAIN kept) travels as credential type 3 (RotationChain) in the
   *    new node's identity proof, next to the other credentials (`options.credentials`, default the
   *    current ones — in a trust domain, pass a host endorsement of the new key);
   * 2. the new node listens on the same hosts (port 0: the old node still holds its ports), gets every
   *    request and stream handler this mesh provides, and joins through the bootstrap list, the old
   *    node and the old node's contacts;
   * 3. it publishes the provider records of every provided service under the new key, and only then
   *    becomes `mesh.node`;
   * 4. the old key re-publishes its provider records with a 1 s lifetime (a withdrawal: same slot,
   *    newer seq), then the old node leaves the DHT: GOAWAY on every connection, in-flight calls and
   *    streams finish within the channel's grace time, new ones are refused as retryable.
   *
   * Callers that used the old instance retry, rediscover and reach the new one.
   */
  rotate(options: RotateOptions = {}): Promise<void> {
    this.#assertOpen();
    const previous = this.#rotating ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.#rotate(options));
    const tracked: Promise<void> = next.finally(() => {
      if (this.#rotating === tracked) this.#rotating = null;
    });
    this.#rotating = tracked;
    return next;
  }

  /** The statements of this instance's rotations, oldest first (empty before the first rotate()). */
  get rotationChain(): readonly Buffer[] {
    return this.#rotations;
  }

  async #rotate(options: RotateOptions): Promise<void> {
    this.#assertOpen();
    const old = this.#node;
    const identity = Identity.generate(old.peer.network);
    const statements = [...this.#rotations, rotationStatement(old.identity, identity.publicKey)].slice(-MAX_ROTATION_CHAIN);
    const credentials: Credential[] = [
      ...(options.credentials ?? this.#credentials).filter((c) => c.type !== CredentialType.RotationChain),
      { type: CredentialType.RotationChain, data: encodeRotationChain(statements) },
    ];
    const seeds = new Set(this.#init.bootstrap);
    if (!old.client && old.peer.addresses.length > 0) seeds.add(`${old.id}@${old.peer.addresses[0]!}`);
    for (const contact of old.table.closest(identity.nodeId, 8)) {
      if (!contact.client && contact.addresses.length > 0) seeds.add(`${contact.id}@${contact.addresses[0]!}`);
    }
    const listen = this.#init.listen === undefined ? undefined : [this.#init.listen].flat().map((address) => address.replace(/:\d+$/, ':0'));
    const node = await createDhtNode(nodeInit(this.#init, this.#log, { identity, credentials, ...(listen === undefined ? {} : { listen }) }));
    try {
      for (const [name, handler] of this.#handlers) node.peer.handle(name, handler);
      for (const [name, handler] of this.#streamHandlers) node.peer.handleStream(name, handler);
      if (seeds.size > 0) await node.join([...seeds]);
      await Promise.all([...this.#provided.keys()].map((service) => this.#publish(service, node)));
      this.#assertOpen();
    } catch (err) {
      await node.leave().catch(() => undefined);
      throw err;
    }
    this.#countNodeEvents(node);
    this.#node = node;
    this.#rotations = statements;
    this.#credentials = credentials;
    this.#discovered.clear();
    this.#log.info({ from: old.id, to: node.id, chain: statements.length }, 'rotated the instance key');
    await Promise.all([...this.#provided.keys()].map((service) => this.#publish(service, old, WITHDRAWN_TTL_MS).catch(() => undefined)));
    await old.leave();
  }

  /** Stops republishing and refreshing, and leaves the DHT. */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    await this.#rotating?.catch(() => undefined);
    for (const { timer } of this.#provided.values()) clearInterval(timer);
    this.#provided.clear();
    if (this.#policyTimer !== null) clearTimeout(this.#policyTimer);
    await this.node.leave();
  }

  /** @internal Called once by createMesh. */
  async start(): Promise<void> {
    if (this.#init.bootstrap.length > 0) await this.node.join(this.#init.bootstrap);
    if (this.authority !== null) await this.refreshPolicy().catch(() => false);
    this.#schedulePolicyRefresh();
  }

  /** Every refreshSeconds (of the policy; 30 s in open mode): the policy, then the revocations of the keys seen calling. */
  #schedulePolicyRefresh(): void {
    if (this.#closing.signal.aborted) return;
    const seconds = this.authority?.policy?.refreshSeconds ?? DEFAULT_REFRESH_SECONDS;
    this.#policyTimer = setTimeout(() => {
      void Promise.all([this.refreshPolicy().catch(() => false), this.refreshRevocations().catch(() => 0)]).finally(() => this.#schedulePolicyRefresh());
    }, seconds * 1000);
    this.#policyTimer.unref();
  }

  /** A DHT value lookup, counted. */
  #find(key: Buffer): ReturnType<DhtNode['find']> {
    this.#metrics.dhtLookups.inc();
    return this.node.find(key);
  }

  /** The service this instance issues tokens as: its endorsed service in trust-domain mode. */
  #ownService(requested: string | undefined): string {
    if (this.authority === null) return requested ?? this.#provided.keys().next().value ?? this.id;
    const credential = this.#credentials.find((c) => c.type === CredentialType.HostEndorsement);
    if (credential === undefined) throw new ThemisError('ERR_MESH_UNENDORSED', 'this instance presents no host endorsement, so it has no service to issue tokens as');
    const service = openEndorsement(credential.data).service;
    if (requested !== undefined && requested !== service) throw new TypeError(`this instance is endorsed for "${service}"; it cannot issue tokens as "${requested}"`);
    return service;
  }

  /** Publishes the provider record of `service` through `node` (default the current one), under its key. */
  async #publish(service: string, node: DhtNode = this.node, ttlMs: number = this.#init.providerTtlMs ?? DEFAULT_PROVIDER_TTL): Promise<void> {
    const contact = node.client
      ? createContactRecord(node.identity, { addresses: node.peer.addresses, client: true })
      : node.contactRecord();
    const record = createRecord(node.identity, {
      type: RecordType.Provider,
      key: providerKey(service),
      value: encodeProviderValue(service, contact),
      seq: Date.now(),
      ttlMs,
    });
    await node.store(record);
  }

  /** The callee side of one call: admission (trust domain, revocation, principal token), decoding, the handler, encoding. */
  async #serve(service: string, method: string, handler: MethodHandler, body: Buffer, ctx: RequestContext): Promise<Buffer> {
    const remote = (ctx.channel as Connection).remote;
    let outcome = 'ok';
    try {
      let callerService: string | undefined;
      let request: ReturnType<typeof decodeCallRequest>;
      let verified: VerifiedPrincipal | undefined;
      try {
        this.#checkRate(remote);
        ({ callerService, request, verified } = await this.#admit(service, method, body, remote));
      } catch (err) {
        const code = isThemisError(err) ? err.code : 'ERR_MESH_CALL_INVALID';
        this.#metrics.denials.inc({ code });
        this.#log.info({ code, service, method, caller: remote.id }, 'refused a call');
        throw err;
      }
      const payload = decodePayload(request.codec, request.payload);
      const result = await handler(payload, {
        caller: callerService === undefined ? { id: remote.id } : { id: remote.id, service: callerService },
        ...(verified === undefined
          ? {}
          : { principal: Object.freeze({ subject: verified.subject, issuerService: verified.issuerService, claims: verified.claims, expiresAt: verified.expiresAt }) }),
        traceparent: request.traceparent,
        signal: ctx.signal,
        call: async (target, targetMethod, targetPayload, options = {}) => {
          const token = options.token ?? (verified === undefined ? undefined : reissueForAudience(this.node.identity, verified, target, service));
          return this.call(target, targetMethod, targetPayload, {
            traceparent: request.traceparent,
            signal: ctx.signal,
            ...options,
            ...(token === undefined ? {} : { token }),
          });
        },
      });
      return encodeCallResponse(result);
    } catch (err) {
      outcome = outcomeOf(err);
      // Exposed refusals carry their code in the message, so the caller can rethrow them typed.
      if (err instanceof ThemisError && err.expose) throw new ThemisError(err.code, `${err.code}: ${err.message}`, { expose: true, cause: err });
      throw err;
    } finally {
      this.#metrics.handledCalls.inc({ service, method, outcome });
    }
  }

  /**
   * Whether this call may run: in trust-domain mode the owner policy (identify, authorize); in
   * both modes the revocations learned from the DHT; and the principal token, if any. Refusals
   * are exposed ThemisErrors (no key material in their messages).
   */
  async #admit(
    service: string,
    method: string,
    body: Buffer,
    remote: Connection['remote'],
  ): Promise<{ callerService: string | undefined; request: ReturnType<typeof decodeCallRequest>; verified: VerifiedPrincipal | undefined }> {
    const callerService = await this.#admitCaller(service, method, remote);
    const request = decodeCallRequest(body);
    const verified = await this.#verifyToken(request.token, service, callerService, remote);
    return { callerService, request, verified };
  }

  /** docs/mesh.md §5 (rate limit): one token per call or stream from this caller, or ERR_MESH_RATE_LIMITED. */
  #checkRate(remote: Connection['remote']): void {
    if (this.#callLimiter === null || this.#callLimiter.take(remote.id)) return;
    this.#metrics.rateLimited.inc({ layer: 'mesh' });
    const { perSecond, burst } = this.#callLimiter.limit;
    throw new ThemisError('ERR_MESH_RATE_LIMITED', `caller ${remote.id} opens more than ${perSecond} calls/s (burst ${burst}); slow down and retry`, { expose: true });
  }

  /** The caller part of admission (policy, attestation, revocations): the caller's endorsed service in trust-domain mode. */
  async #admitCaller(service: string, method: string, remote: Connection['remote']): Promise<string | undefined> {
    const caller = this.authority === null ? null : this.authority.identify(remote);
    if (caller !== null) await this.authority!.attest(remote, caller, this.#challenge(remote));
    const callerService = caller?.service;
    const host = caller?.hostPub ?? null;
    this.#watch(remote.identityPub, host);
    if (host !== null) this.#watch(host, null); // a host revokes itself, or the owner revokes it
    if (this.#revocations.isRevoked(remote.identityPub) || (host !== null && this.#revocations.isRevoked(host))) {
      throw new ThemisError('ERR_MESH_REVOKED', `caller ${remote.id} uses a revoked key (a signed revocation record is published); it must restart with a fresh key`, { expose: true });
    }
    if (caller !== null) this.authority!.authorize(caller, service, method);
    return callerService;
  }

  /** Verifies the principal token of a call or stream ('' : none); refusals are exposed ThemisErrors. */
  async #verifyToken(token: string, service: string, callerService: string | undefined, remote: Connection['remote']): Promise<VerifiedPrincipal | undefined> {
    if (token === '') return undefined;
    try {
      return await verifyPrincipalToken(token, {
        audience: service,
        replay: this.#replay,
        issuerKey: (issPub, issuerService) => {
          // The token must come from the instance calling: its own key, of a service that may issue tokens.
          if (!issPub.equals(remote.identityPub)) {
            throw new ThemisError('ERR_MESH_TOKEN_ISSUER', 'principal token was not issued by the calling instance; a service re-issues a principal for its own callee');
          }
          if (this.authority !== null) {
            if (issuerService !== callerService) {
              throw new ThemisError('ERR_MESH_TOKEN_ISSUER', `principal token names issuer service "${issuerService}", but the caller is endorsed for "${callerService}"`);
            }
            if (!this.authority.mayIssueTokens(issuerService)) {
              throw new ThemisError('ERR_MESH_TOKEN_ISSUER', `service "${issuerService}" may not issue principal tokens: it is not in \`tokenIssuers:\` of the policy`);
            }
          }
        },
      });
    } catch (err) {
      if (err instanceof ThemisError && !err.expose) throw new ThemisError(err.code, err.message, { expose: true, cause: err });
      throw err;
    }
  }

  /**
   * The callee side of one stream: reads the stream header, admits it like a call, answers
   * STREAM_ACCEPTED, then hands the stream to the handler. A refusal resets the stream with the
   * exposed "ERR_MESH_…: reason" message.
   */
  async #serveStream(service: string, method: string, handler: MeshStreamHandler, stream: MuxStream, ctx: StreamContext): Promise<void> {
    const remote = (ctx.channel as Connection).remote;
    let callerService: string | undefined;
    let header: ReturnType<typeof decodeStreamHeader>;
    let verified: VerifiedPrincipal | undefined;
    try {
      this.#checkRate(remote);
      // A caller that never sends its header must not hold the stream open.
      const headerTimeout = AbortSignal.timeout(STREAM_HEADER_TIMEOUT_MS);
      const length = (await readExactly(stream, 2, headerTimeout)).readUInt16BE(0);
      if (length === 0 || length > MAX_STREAM_HEADER_BYTES) throw new ThemisError('ERR_MESH_CALL_INVALID', `stream header of ${length} bytes; expected 1 to ${MAX_STREAM_HEADER_BYTES}`, { expose: true });
      header = decodeStreamHeader(await readExactly(stream, length, headerTimeout));
      callerService = await this.#admitCaller(service, method, remote);
      verified = await this.#verifyToken(header.token, service, callerService, remote);
    } catch (err) {
      const code = isThemisError(err) ? err.code : 'ERR_MESH_CALL_INVALID';
      this.#metrics.denials.inc({ code });
      this.#log.info({ code, service, method, caller: remote.id }, 'refused a stream');
      if (err instanceof ThemisError && err.expose) throw new ThemisError(err.code, `${err.code}: ${err.message}`, { expose: true, cause: err });
      throw err;
    }
    stream.write(Buffer.of(STREAM_ACCEPTED));
    await handler(stream, {
      caller: callerService === undefined ? { id: remote.id } : { id: remote.id, service: callerService },
      ...(verified === undefined
        ? {}
        : { principal: Object.freeze({ subject: verified.subject, issuerService: verified.issuerService, claims: verified.claims, expiresAt: verified.expiresAt }) }),
      traceparent: header.traceparent,
    });
  }

  /** Remembers a caller key (and its host) to poll for its revocation; bounded, oldest forgotten first. */
  #watch(pub: Buffer, host: Buffer | null): void {
    const id = pub.toString('hex');
    if (this.#watched.has(id)) return;
    const max = this.#init.revocationWatchSize ?? 4096;
    if (this.#watched.size >= max) this.#watched.delete(this.#watched.keys().next().value!);
    this.#watched.set(id, { pub: Buffer.from(pub), host: host === null ? null : Buffer.from(host) });
    // First sight: look it up now (in the background), so a key revoked before it ever called is
    // refused within one lookup rather than at the next poll.
    void this.#checkRevocation(Buffer.from(pub), host === null ? null : Buffer.from(host)).catch(() => false);
  }

  /** Discovered instances (cached a few seconds), with their balancer state; picks one not tried yet. */
  async #pick(service: string, tried: ReadonlySet<string>, fresh: boolean): Promise<Tracked | undefined> {
    const now = Date.now();
    let cached = this.#discovered.get(service);
    const ttl = this.#init.discoveryCacheMs ?? DEFAULT_DISCOVERY_CACHE_MS;
    if (cached === undefined || now - cached.at > ttl) {
      cached = { at: now, instances: this.discover(service) };
      this.#discovered.set(service, cached);
      cached.instances.catch(() => this.#discovered.get(service) === cached && this.#discovered.delete(service));
    }
    let instances = await cached.instances;
    if (instances.length === 0 && !fresh) {
      this.#discovered.delete(service);
      instances = await this.discover(service);
    } else if (fresh && cached.at < now && instances.every((instance) => tried.has(instance.id))) {
      // A retry found every cached instance tried (e.g. one rotated its key or moved): look again.
      this.#discovered.delete(service);
      instances = await this.discover(service);
    }
    const candidates = instances
      .filter((instance) => !tried.has(instance.id))
      .map((instance) => {
        let tracked = this.#tracked.get(instance.id);
        if (tracked === undefined) {
          tracked = { instance, latency: new EwmaLatency(), breaker: new CircuitBreaker(), inFlight: 0 };
          this.#tracked.set(instance.id, tracked);
        }
        tracked.instance = instance;
        return tracked;
      })
      .map((tracked) => ({ tracked, latencyMs: tracked.latency.estimate(now), inFlight: tracked.inFlight, available: tracked.breaker.available(now) }));
    return pickPowerOfTwo(candidates, Math.random)?.tracked;
  }

  /** An open connection to the instance (any existing one is reused), else a new IK dial expecting its NodeId. */
  async #connect(instance: Instance, service: string): Promise<Connection> {
    let conn: Connection | undefined;
    for (const open of this.node.peer.connections) {
      if (!open.closed && open.remote.nodeId.equals(instance.nodeId)) conn = open;
    }
    conn ??= await this.#pooledDial(instance);
    await this.#checkCallee(conn, instance, service);
    return conn;
  }

  /** Sends a verifier's nonce to the peer `remote` over an open connection to it (docs/attestation.md §4). */
  #challenge(remote: Connection['remote']): EvidenceChallenge {
    return async (nonce) => {
      let conn: Connection | undefined;
      for (const open of this.node.peer.connections) if (!open.closed && open.remote.nodeId.equals(remote.nodeId)) conn = open;
      if (conn === undefined) throw new ThemisError('ERR_ATTEST_UNAVAILABLE', `no open connection to ${remote.id} to ask for its attestation evidence`);
      return conn.request(ATTEST_EVIDENCE_REQUEST, nonce, { timeoutMs: ATTEST_CHALLENGE_TIMEOUT_MS });
    };
  }

  /** In trust-domain mode the caller checks the callee too: it must be an endorsed instance of `service`
   * (a refusal here is one of CALLEE_REFUSALS). */
  async #checkCallee(conn: Connection, instance: Instance, service: string): Promise<void> {
    if (this.authority === null) return;
    const identified = this.authority.identify(conn.remote);
    await this.authority.attest(conn.remote, identified, this.#challenge(conn.remote));
    if (identified.service !== service) {
      throw new ThemisError('ERR_MESH_UNKNOWN_SERVICE', `instance ${instance.id} is endorsed for service "${identified.service}", not "${service}"`);
    }
  }

  #pooledDial(instance: Instance): Promise<Connection> {
    const key = instance.id;
    let pending = this.#dials.get(key);
    if (pending === undefined) {
      pending = this.#dial(instance);
      this.#dials.set(key, pending);
      const forget = (): void => void (this.#dials.get(key) === pending && this.#dials.delete(key));
      pending.then(forget, forget);
    }
    return pending;
  }

  async #dial(instance: Instance): Promise<Connection> {
    let last: unknown = new ThemisError('ERR_MESH_CALL_FAILED', `instance ${instance.id} lists no address`);
    for (const address of instance.addresses) {
      try {
        return await this.node.peer.dial(address, { expect: instance.nodeId, remoteStatic: instance.noiseStatic, signal: this.#closing.signal });
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  #assertOpen(): void {
    if (this.#closing.signal.aborted) throw new ThemisError('ERR_MESH_CLOSED', 'this mesh peer is closed');
  }
}

/** Creates a mesh peer: starts its DHT node, joins through `bootstrap`, and in trust-domain mode loads the owner's policy. */
export async function createMesh(init: MeshInit): Promise<Mesh> {
  const logger = init.logger ?? createLogger();
  const node = await createDhtNode(nodeInit(init, logger, {}));
  const mesh = new Mesh(node, { ...init, logger });
  try {
    await mesh.start();
  } catch (err) {
    await mesh.close();
    throw err;
  }
  return mesh;
}

/** The DHT node options of a mesh peer; `overrides` for a rotation's new node. */
function nodeInit(
  init: MeshInit,
  logger: Logger,
  overrides: { identity?: Identity; credentials?: readonly Credential[]; listen?: readonly string[] },
): Parameters<typeof createDhtNode>[0] {
  const identity = overrides.identity ?? init.identity;
  const credentials = overrides.credentials ?? init.credentials;
  const listen = overrides.listen ?? init.listen;
  return {
    logger,
    ...(identity === undefined ? {} : { identity }),
    ...(init.network === undefined ? {} : { network: init.network }),
    ...(listen === undefined ? {} : { listen }),
    ...(init.client === undefined ? {} : { client: init.client }),
    ...(credentials === undefined ? {} : { credentials }),
    ...(init.dht === undefined ? {} : { dht: init.dht }),
    ...(init.maintenance === undefined ? {} : { maintenance: init.maintenance }),
  };
}

/** A refusal the callee sent (its exposed "ERR_MESH_…: message" or "ERR_ATTEST_…: message"), as a typed error; else null. */
function remoteRefusal(err: unknown): ThemisError | null {
  if (!isThemisError(err, 'ERR_CHANNEL_HANDLER')) return null;
  const match = MESH_CODE.exec(err.message);
  if (match === null) return null;
  return new ThemisError(match[1] as ErrorCode, `${match[1]}: ${match[2]}`, { cause: err });
}

/** The `outcome` label of a call: ok, the ThemisError code, or error. */
function outcomeOf(err: unknown): string {
  return isThemisError(err) ? err.code : 'error';
}

function deadlineError(service: string, method: string, deadlineMs: number, cause: unknown): ThemisError {
  return new ThemisError('ERR_MESH_DEADLINE', `call ${service}.${method} did not complete within its ${deadlineMs} ms deadline`, cause === undefined ? undefined : { cause });
}

function failed(service: string, method: string, cause: unknown): ThemisError {
  return new ThemisError('ERR_MESH_CALL_FAILED', `call ${service}.${method} failed: ${(cause as Error | undefined)?.message ?? 'unknown error'}`, { cause });
}

/** What the caller's own check of a callee (PolicyAuthority.identify, then attest) refuses with. */
const CALLEE_REFUSALS = new Set<string>([
  'ERR_MESH_NO_POLICY',
  'ERR_MESH_UNENDORSED',
  'ERR_MESH_ENDORSEMENT_INVALID',
  'ERR_MESH_ENDORSEMENT_EXPIRED',
  'ERR_MESH_WRONG_DOMAIN',
  'ERR_MESH_UNTRUSTED_HOST',
  'ERR_MESH_REVOKED',
  'ERR_MESH_WRONG_INSTANCE',
  'ERR_MESH_UNKNOWN_SERVICE',
  'ERR_MESH_DIGEST_NOT_ALLOWED',
  // attestation (docs/attestation.md §4)
  'ERR_ATTEST_MISSING',
  'ERR_ATTEST_UNAVAILABLE',
  'ERR_ATTEST_UNTRUSTED_KEY',
  'ERR_ATTEST_MEASUREMENT_REFUSED',
  'ERR_ATTEST_NOT_MEASURED',
  'ERR_ATTEST_NONCE',
  'ERR_ATTEST_LOG_MISMATCH',
  'ERR_ATTEST_SIGNATURE',
  'ERR_ATTEST_EVIDENCE_INVALID',
]);

function isCalleeRefusal(err: unknown): err is ThemisError {
  return isThemisError(err) && CALLEE_REFUSALS.has(err.code);
}
