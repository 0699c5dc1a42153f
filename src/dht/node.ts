import { EventEmitter, setMaxListeners } from 'node:events';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError, isThemisError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { RateLimiter, type RateLimit } from '../core/rate-limit.js';
import type { RequestHandler } from '../channel/index.js';
import { networkConfig, parseNodeId, type Identity } from '../identity/index.js';
import { Peer, type Connection, type PeerInit } from '../transport/index.js';
import { ALPHA, DISJOINT_PATHS, K, hour, minute, second } from './constants.js';
import { CONTACT_TTL, createContactRecord, verifyContactRecord, type Contact } from './contact.js';
import { lookup, type LookupInit, type LookupResult, type QueryAnswer } from './lookup.js';
import * as msg from './messages.js';
import { DEFAULT_RECORD_LIMITS, RecordType, createRecord, immutableKey, mutableKey, verifyRecord, type DhtRecord, type RecordLimits } from './record.js';
import { MemoryRecordStore, openLmdbRecordStore, type RecordStore, type RecordStoreLimits } from './record-store.js';
import { RoutingTable, type RoutingTableOptions } from './routing-table.js';

/** Opens a verified connection to an address; `peer.dial` (TCP) by default, in-memory in the simulator. */
export type AddressDialer = (peer: Peer, address: string, options: { expect?: Uint8Array; remoteStatic?: Uint8Array; signal: AbortSignal }) => Promise<Connection>;

export interface DhtOptions {
  readonly k: number;
  readonly alpha: number;
  readonly disjoint: number;
  /** An RPC that takes longer fails. Default 2 s. */
  readonly requestTimeoutMs: number;
  /** Publishers republish their records this often. Default 30 min. */
  readonly republishIntervalMs: number;
  /** Holders push their records to the current k closest this often. Default 1 h. */
  readonly replicateIntervalMs: number;
  /** Buckets without a lookup for this long are refreshed. Default 15 min. */
  readonly refreshIntervalMs: number;
  /** The routing-table snapshot is written this often. Default 1 min. */
  readonly snapshotIntervalMs: number;
  /** Default lifetime of records published through this node. Default 2 h. */
  readonly recordTtlMs: number;
  /** Outbound connections kept open; the least recently used idle one closes first. Default 128. */
  readonly maxOutbound: number;
  /**
   * RPCs one peer (a verified NodeId) may send: a token bucket of `burst` refilled at `perSecond`.
   * Past it an RPC fails with ERR_DHT_RATE_LIMITED (exposed to the peer). Null: no limit.
   * Default 1000/s, burst 2000 (docs/dht.md §4).
   */
  readonly rpcRateLimit: RateLimit | null;
}

export const DEFAULT_DHT_OPTIONS: DhtOptions = Object.freeze({
  k: K,
  alpha: ALPHA,
  disjoint: DISJOINT_PATHS,
  requestTimeoutMs: 2 * second,
  republishIntervalMs: 30 * minute,
  replicateIntervalMs: hour,
  refreshIntervalMs: 15 * minute,
  snapshotIntervalMs: minute,
  recordTtlMs: 2 * hour,
  maxOutbound: 128,
  rpcRateLimit: Object.freeze({ perSecond: 1000, burst: 2000 }),
});

export interface DhtNodeInit extends PeerInit {
  /** LMDB data directory for records and the routing-table snapshot; in memory when omitted. */
  readonly dataDir?: string;
  /** A record store to use instead (the simulator passes memory stores). */
  readonly store?: RecordStore;
  readonly dht?: Partial<DhtOptions>;
  readonly table?: RoutingTableOptions;
  readonly records?: Partial<RecordLimits>;
  readonly quotas?: Partial<RecordStoreLimits>;
  readonly dialer?: AddressDialer;
  /** Start the periodic republish/replicate/refresh/snapshot timers. Default true. */
  readonly maintenance?: boolean;
}

export interface NodeInspection {
  readonly id: string;
  readonly addresses: readonly string[];
  readonly client: boolean;
  readonly table: { size: number; buckets: { index: number; size: number; replacements: number }[] };
  readonly records: { records: number; bytes: number; keys: number };
  readonly connections: number;
  /** RPCs refused by the per-peer rate limit since start. */
  readonly rateLimited: number;
}

/** Per-lookup overrides of the node's options. */
export interface LookupOverrides {
  readonly disjoint?: number;
  /** Looking for one node, not the k closest: stop as soon as its contact is found. */
  readonly stopAtTarget?: boolean;
}

export interface StoreResult {
  readonly key: Buffer;
  /** Nodes that accepted the record (including this one when it is among the closest). */
  readonly stored: number;
  readonly closest: number;
}

const SNAPSHOT_META = 'routing-snapshot';

const tcpDialer: AddressDialer = (peer, address, options) => peer.dial(address, options);

/**
 * A DHT node: Kademlia over the Themis channel, hardened as S/Kademlia prescribes — contacts
 * enter the routing table only after a handshake proved their NodeId, contacts passed along are
 * signed records verified before use, lookups run over disjoint paths, and every record is
 * verified by every holder and every reader.
 *
 * @example
 * const node = await createDhtNode({ listen: 'tcp://127.0.0.1:0', dataDir: './data' });
 * await node.join(['tcp://10.0.0.1:4000']);
 * const key = await node.putImmutable(Buffer.from('hello'));
 * const value = await node.getImmutable(key);
 */
export class DhtNode extends EventEmitter {
  readonly peer: Peer;
  readonly table: RoutingTable;
  readonly options: DhtOptions;
  readonly client: boolean;
  private readonly logger: Logger;
  private readonly recordLimits: RecordLimits;
  private readonly dialer: AddressDialer;
  private readonly outbound = new Map<string, Promise<Connection>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly closing = new AbortController();
  private ownContact: { record: Buffer; expiresAt: number } | null = null;
  private readonly rpcLimiter: RateLimiter | null;
  private lastReplicated = 0;

  constructor(
    readonly recordStore: RecordStore,
    private readonly init: DhtNodeInit,
  ) {
    super();
    this.peer = new Peer(init);
    this.client = init.client === true;
    this.options = Object.freeze({ ...DEFAULT_DHT_OPTIONS, ...init.dht });
    this.recordLimits = Object.freeze({ ...DEFAULT_RECORD_LIMITS, ...init.records });
    this.table = new RoutingTable(this.peer.nodeId, { k: this.options.k, ...init.table });
    this.logger = init.logger ?? createLogger();
    this.dialer = init.dialer ?? tcpDialer;
    setMaxListeners(0, this.closing.signal); // every dial in flight listens for leave()
    this.rpcLimiter = this.options.rpcRateLimit === null ? null : new RateLimiter(this.options.rpcRateLimit);
    const handle = (name: string, fn: RequestHandler): void =>
      void this.peer.handle(name, (body, ctx) => {
        this.checkRate(ctx.channel as Connection);
        return fn(body, ctx);
      });
    handle(msg.RPC.Ping, (body, ctx) => this.onPing(body, ctx.channel as Connection));
    handle(msg.RPC.FindNode, (body, ctx) => this.onFindNode(body, ctx.channel as Connection));
    handle(msg.RPC.FindValue, (body, ctx) => this.onFindValue(body, ctx.channel as Connection));
    handle(msg.RPC.Store, (body, ctx) => this.onStore(body, ctx.channel as Connection));
    handle(msg.RPC.Inspect, () => Buffer.from(JSON.stringify(this.inspect())));
  }

  get id(): string {
    return this.peer.id;
  }

  get nodeId(): Buffer {
    return this.peer.nodeId;
  }

  get identity(): Identity {
    return this.peer.identity;
  }

  /** This node's signed contact record, renewed before it expires. Empty for clients. */
  contactRecord(now = Date.now()): Buffer {
    if (this.client) return Buffer.alloc(0);
    if (this.ownContact === null || this.ownContact.expiresAt - now < CONTACT_TTL / 4) {
      const record = createContactRecord(this.identity, { addresses: this.peer.addresses, now, ttlMs: CONTACT_TTL });
      this.ownContact = { record, expiresAt: now + CONTACT_TTL };
    }
    return this.ownContact.record;
  }

  /** Starts listening and maintenance; rejoins from the persisted snapshot when there is one. */
  async start(): Promise<void> {
    await this.peer.listen();
    if (this.init.maintenance !== false) this.startMaintenance();
  }

  /**
   * Joins the network through bootstrap addresses (`tcp://host:port`, optionally `ID@tcp://…`),
   * or, with none, through the contacts of the persisted routing-table snapshot. Fills the
   * routing table with a lookup of our own id and refreshes the farther buckets.
   */
  async join(bootstrap: readonly string[] = [], options: { refreshBuckets?: number; disjoint?: number } = {}): Promise<{ contacts: number }> {
    const seeds = bootstrap.length > 0 ? bootstrap.map(parseBootstrap) : this.snapshotSeeds();
    if (seeds.length === 0) throw new ThemisError('ERR_DHT_LOOKUP_FAILED', 'nothing to join through: give bootstrap addresses (--bootstrap tcp://HOST:PORT) or start from a data directory with a saved routing table');
    const reached = await Promise.allSettled(seeds.map((seed) => this.pingAddress(seed.address, seed.expect)));
    if (!reached.some((r) => r.status === 'fulfilled')) {
      const first = reached.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      throw new ThemisError('ERR_DHT_LOOKUP_FAILED', `could not reach any bootstrap node: ${(first?.reason as Error | undefined)?.message ?? 'unknown error'}`, { cause: first?.reason });
    }
    const overrides = options.disjoint === undefined ? {} : { disjoint: options.disjoint };
    await this.findNode(this.nodeId, overrides);
    // Kademlia §2.3: refresh buckets farther than the closest neighbour.
    const now = Date.now();
    for (const index of this.table.staleBuckets(now, 0).slice(0, options.refreshBuckets ?? 8)) {
      await this.findNode(this.table.randomIdInBucket(index), overrides).catch(() => undefined);
    }
    return { contacts: this.table.size };
  }

  /** Ping a node by address; admits it with its fresh contact record. */
  async pingAddress(address: string, expect?: Buffer): Promise<Contact> {
    const conn = await this.dialer(this.peer, address, { ...(expect === undefined ? {} : { expect }), signal: this.closing.signal });
    return this.pingOver(conn);
  }

  private async pingOver(conn: Connection): Promise<Contact> {
    const answer = await conn.request(msg.RPC.Ping, msg.encodePingRequest(this.contactRecord()), { timeoutMs: this.options.requestTimeoutMs });
    const contact = this.verifyContactFrom(msg.decodePingResponse(answer), conn);
    this.pool(contact.nodeId.toString('hex'), Promise.resolve(conn), contact);
    this.admit(contact, conn);
    return contact;
  }

  /** Iterative disjoint lookup of the k closest nodes to `target`. */
  async findNode(target: Uint8Array, options: LookupOverrides = {}): Promise<LookupResult> {
    const key = Buffer.from(target);
    this.table.markLookup(key, Date.now());
    return lookup({ ...this.lookupParameters(key, options), query: (contact) => this.queryNodes(contact, key) });
  }

  private lookupParameters(key: Buffer, options: LookupOverrides): Omit<LookupInit, 'query'> {
    const disjoint = options.disjoint ?? this.options.disjoint;
    return {
      target: key,
      seeds: this.seeds(key, disjoint),
      self: this.nodeId,
      k: this.options.k,
      alpha: this.options.alpha,
      disjoint,
      ...(options.stopAtTarget === undefined ? {} : { stopAtTarget: options.stopAtTarget }),
    };
  }

  /** All verified live records under `key` found in the network (and held locally). */
  async find(key: Uint8Array, options: { enough?: (records: readonly DhtRecord[]) => boolean } = {}): Promise<DhtRecord[]> {
    const target = Buffer.from(key);
    const result = await this.findValue(target, options.enough);
    const local = this.recordStore.get(target, Date.now());
    const merged = new Map<string, DhtRecord>();
    for (const record of [...local, ...result.records]) {
      const slot = record.publisherId.toString('hex');
      const existing = merged.get(slot);
      if (existing === undefined || record.seq > existing.seq) merged.set(slot, record);
    }
    return [...merged.values()].sort((a, b) => b.seq - a.seq);
  }

  /** The value lookup itself, with its statistics (the simulator reads them). */
  findValue(key: Buffer, enough?: (records: readonly DhtRecord[]) => boolean, options: LookupOverrides = {}): Promise<LookupResult> {
    this.table.markLookup(key, Date.now());
    return lookup({ ...this.lookupParameters(key, options), query: (contact) => this.queryValue(contact, key), ...(enough === undefined ? {} : { enough }) });
  }

  /** Verifies a signed record and stores it on the k closest nodes to its key. */
  async store(recordBytes: Uint8Array): Promise<StoreResult> {
    const record = this.verify(recordBytes);
    const { closest } = await this.findNode(record.key);
    let stored = 0;
    if (!this.client && this.table.responsibleFor(record.key, this.options.k)) {
      this.keepLocally(record);
      stored++;
    }
    const results = await Promise.allSettled(closest.map((contact) => this.storeAt(contact, record.bytes)));
    stored += results.filter((r) => r.status === 'fulfilled' && (r.value === msg.StoreStatus.Stored || r.value === msg.StoreStatus.Same)).length;
    if (stored === 0) throw new ThemisError('ERR_DHT_LOOKUP_FAILED', `no node accepted the record (${closest.length} asked); is this node joined?`);
    return { key: record.key, stored, closest: closest.length };
  }

  /** Publishes a mutable value under H(pub ‖ salt) with the next sequence number. */
  async putMutable(value: Uint8Array, options: { salt?: Uint8Array; seq?: number; ttlMs?: number } = {}): Promise<StoreResult & { seq: number }> {
    const salt = Buffer.from(options.salt ?? Buffer.alloc(0));
    const key = mutableKey(this.identity.publicKey, salt);
    const seq = options.seq ?? (await this.currentSeq(key)) + 1;
    const bytes = createRecord(this.identity, { type: RecordType.Mutable, key, salt, value, seq, ttlMs: options.ttlMs ?? this.options.recordTtlMs });
    return { ...(await this.store(bytes)), seq };
  }

  /** The latest value published by `publisher` (Ed25519 public key) under `salt`, or null. */
  async getMutable(publisher: Uint8Array, salt: Uint8Array = Buffer.alloc(0)): Promise<DhtRecord | null> {
    const key = mutableKey(publisher, salt);
    const records = (await this.find(key)).filter((r) => r.type === RecordType.Mutable && r.publisher.equals(publisher));
    return records[0] ?? null;
  }

  /** Stores a value under SHA-256(value); returns the key. */
  async putImmutable(value: Uint8Array, options: { ttlMs?: number } = {}): Promise<Buffer> {
    const key = immutableKey(value);
    await this.store(createRecord(this.identity, { type: RecordType.Immutable, key, value, ttlMs: options.ttlMs ?? this.options.recordTtlMs }));
    return key;
  }

  /** The value whose SHA-256 is `key`, or null. Stops at the first verified copy. */
  async getImmutable(key: Uint8Array): Promise<Buffer | null> {
    const records = await this.find(key, { enough: (found) => found.some((r) => r.type === RecordType.Immutable) });
    return records.find((r) => r.type === RecordType.Immutable)?.value ?? null;
  }

  /** What `themis inspect` shows: routing-table buckets and record counts (public information). */
  inspect(): NodeInspection {
    return {
      id: this.id,
      addresses: this.peer.addresses,
      client: this.client,
      table: { size: this.table.size, buckets: this.table.buckets() },
      records: this.recordStore.stats(),
      connections: this.peer.connections.size,
      rateLimited: this.rpcLimiter?.refused ?? 0,
    };
  }

  /** Saves the routing table, closes every connection and the store. */
  async leave(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    for (const timer of this.timers) clearInterval(timer);
    if (!this.client) await this.saveSnapshot();
    await this.peer.close();
    await this.recordStore.close();
  }

  // --- RPC handlers (docs/dht.md §4) ---

  /** docs/dht.md §4 (rate limit): one token per RPC from this peer, or ERR_DHT_RATE_LIMITED. Emits 'rate-limited'. */
  private checkRate(conn: Connection): void {
    if (this.rpcLimiter === null || this.rpcLimiter.take(conn.remote.id)) return;
    this.emit('rate-limited', conn.remote.id);
    const { perSecond, burst } = this.rpcLimiter.limit;
    throw new ThemisError('ERR_DHT_RATE_LIMITED', `ERR_DHT_RATE_LIMITED: more than ${perSecond} RPCs/s (burst ${burst}) from this peer; slow down and retry`, { expose: true });
  }

  private onPing(body: Buffer, conn: Connection): Buffer {
    this.admitSender(msg.decodePingRequest(body).sender, conn);
    return msg.encodePingResponse(this.contactRecord());
  }

  private onFindNode(body: Buffer, conn: Connection): Buffer {
    const request = msg.decodeFindNodeRequest(body);
    this.admitSender(request.sender, conn);
    return msg.encodeContactsResponse(this.closestRecords(request.body, conn));
  }

  private onFindValue(body: Buffer, conn: Connection): Buffer {
    const request = msg.decodeFindValueRequest(body);
    this.admitSender(request.sender, conn);
    const records = this.recordStore.get(request.body, Date.now()).map((r) => r.bytes);
    return msg.encodeFindValueResponse(records, this.closestRecords(request.body, conn));
  }

  private onStore(body: Buffer, conn: Connection): Buffer {
    const request = msg.decodeStoreRequest(body);
    this.admitSender(request.sender, conn);
    let record: DhtRecord;
    try {
      record = this.verify(request.body);
    } catch (err) {
      return msg.encodeStoreResponse(storeStatusOf(err));
    }
    try {
      return msg.encodeStoreResponse(this.keepLocally(record) === 'same' ? msg.StoreStatus.Same : msg.StoreStatus.Stored);
    } catch (err) {
      return msg.encodeStoreResponse(storeStatusOf(err));
    }
  }

  // --- routing ---

  /** A contact enters the table only over a connection whose handshake proved the same identity. */
  private admitSender(record: Buffer, conn: Connection): void {
    if (record.length === 0 || conn.remote.client) return;
    let contact: Contact;
    try {
      contact = this.verifyContactFrom(record, conn);
    } catch (err) {
      this.logger.debug({ peer: conn.remote.id, code: isThemisError(err) ? err.code : undefined }, 'ignored an invalid sender contact');
      return;
    }
    this.admit(contact, conn);
  }

  private verifyContactFrom(record: Buffer, conn: Connection): Contact {
    const contact = verifyContactRecord(record, this.peer.network);
    if (!contact.nodeId.equals(conn.remote.nodeId) || !contact.noiseStatic.equals(conn.remote.noiseStatic)) {
      throw new ThemisError('ERR_DHT_CONTACT_INVALID', 'contact record does not match the identity proven in the handshake');
    }
    return contact;
  }

  private admit(contact: Contact, conn: Connection): void {
    if (contact.client) return;
    const now = Date.now();
    const result = this.table.add(contact, now, observedIp(conn.remote.address));
    if (result.status !== 'full') return;
    // Kademlia §2.2: ping the least-recently seen contact; keep it if it answers.
    const candidate = result.candidate.contact;
    this.connect(candidate)
      .then((c) => c.request(msg.RPC.Ping, msg.encodePingRequest(this.contactRecord()), { timeoutMs: this.options.requestTimeoutMs }))
      .then(
        () => this.table.touch(candidate.nodeId, Date.now()),
        () => this.table.evict(candidate.nodeId),
      );
  }

  private seeds(target: Buffer, disjoint: number): Contact[] {
    return this.table.closest(target, this.options.k * Math.max(1, disjoint));
  }

  private closestRecords(target: Buffer, conn: Connection): Buffer[] {
    return this.table.closest(target, this.options.k, (c) => !c.nodeId.equals(conn.remote.nodeId)).map((c) => c.record);
  }

  private verifyContacts(records: readonly Buffer[]): Contact[] {
    const now = Date.now();
    const out: Contact[] = [];
    for (const record of records) {
      try {
        const contact = verifyContactRecord(record, this.peer.network, now);
        if (!contact.client) out.push(contact);
      } catch {
        // An invalid contact from a peer is dropped, never used (S/Kademlia §4.2).
      }
    }
    return out;
  }

  private verifyRecords(records: readonly Buffer[], key: Buffer): DhtRecord[] {
    const out: DhtRecord[] = [];
    for (const bytes of records) {
      try {
        const record = this.verify(bytes);
        if (record.key.equals(key)) out.push(record);
      } catch {
        // Forged or expired records are dropped.
      }
    }
    return out;
  }

  private verify(bytes: Uint8Array): DhtRecord {
    return verifyRecord(bytes, this.peer.network, { limits: this.recordLimits });
  }

  private async queryNodes(contact: Contact, target: Buffer): Promise<QueryAnswer> {
    const conn = await this.connect(contact);
    const answer = await conn.request(msg.RPC.FindNode, msg.encodeFindNodeRequest(this.contactRecord(), target), { timeoutMs: this.options.requestTimeoutMs });
    this.admit(contact, conn);
    return { contacts: this.verifyContacts(msg.decodeContactsResponse(answer)) };
  }

  private async queryValue(contact: Contact, key: Buffer): Promise<QueryAnswer> {
    const conn = await this.connect(contact);
    const answer = msg.decodeFindValueResponse(
      await conn.request(msg.RPC.FindValue, msg.encodeFindValueRequest(this.contactRecord(), key), { timeoutMs: this.options.requestTimeoutMs }),
    );
    this.admit(contact, conn);
    return { contacts: this.verifyContacts(answer.contacts), records: this.verifyRecords(answer.records, key) };
  }

  private async storeAt(contact: Contact, record: Buffer): Promise<msg.StoreStatus> {
    const conn = await this.connect(contact);
    return msg.decodeStoreResponse(await conn.request(msg.RPC.Store, msg.encodeStoreRequest(this.contactRecord(), record), { timeoutMs: this.options.requestTimeoutMs }));
  }

  /** A pooled connection to a contact (IK with its signed static key), at most maxOutbound open. */
  private connect(contact: Contact): Promise<Connection> {
    const key = contact.nodeId.toString('hex');
    const existing = this.outbound.get(key);
    if (existing !== undefined) {
      this.outbound.delete(key);
      this.outbound.set(key, existing);
      return existing.then((conn) => (conn.closed ? this.redial(key, contact) : conn));
    }
    // A connection the contact opened to us proves the same identity: no second handshake.
    const open = this.peer.connectionTo(contact.nodeId);
    if (open !== undefined) return Promise.resolve(open);
    return this.redial(key, contact);
  }

  private redial(key: string, contact: Contact): Promise<Connection> {
    return this.pool(key, this.dialContact(contact), contact);
  }

  /** Tries the contact's addresses in order, with IK (its signed static key) and its NodeId expected. */
  private async dialContact(contact: Contact): Promise<Connection> {
    let last: unknown;
    for (const address of contact.addresses) {
      try {
        return await this.dialer(this.peer, address, { expect: contact.nodeId, remoteStatic: contact.noiseStatic, signal: this.closing.signal });
      } catch (err) {
        last = err;
      }
    }
    throw last ?? new ThemisError('ERR_DHT_CONTACT_INVALID', `contact ${contact.id} lists no address`);
  }

  private pool(key: string, pending: Promise<Connection>, contact: Contact): Promise<Connection> {
    this.outbound.set(key, pending);
    pending.then(
      (conn) => conn.once('close', () => this.outbound.get(key) === pending && this.outbound.delete(key)),
      () => {
        if (this.outbound.get(key) === pending) this.outbound.delete(key);
        this.table.recordFailure(contact.nodeId);
      },
    );
    while (this.outbound.size > this.options.maxOutbound) {
      const [oldestKey, oldest] = this.outbound.entries().next().value as [string, Promise<Connection>];
      this.outbound.delete(oldestKey);
      oldest.then((conn) => conn.close(), () => undefined);
    }
    return pending;
  }

  private keepLocally(record: DhtRecord): 'stored' | 'same' {
    return this.recordStore.put(record, Date.now());
  }

  private async currentSeq(key: Buffer): Promise<number> {
    const records = await this.find(key).catch(() => [] as DhtRecord[]);
    return records.filter((r) => r.publisher.equals(this.identity.publicKey)).reduce((max, r) => Math.max(max, r.seq), 0);
  }

  // --- maintenance ---

  private startMaintenance(): void {
    const every = (ms: number, task: () => Promise<unknown>): void => {
      const timer = setInterval(() => {
        task().catch((err: unknown) => this.logger.debug({ code: isThemisError(err) ? err.code : undefined }, `maintenance: ${(err as Error).message}`));
      }, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(this.options.refreshIntervalMs, () => this.refresh());
    every(this.options.republishIntervalMs, () => this.republish());
    every(Math.min(this.options.replicateIntervalMs, this.options.republishIntervalMs), () => this.replicate());
    every(this.options.snapshotIntervalMs, () => this.saveSnapshot());
  }

  /** Kademlia §2.3: a lookup for a random id in every bucket not looked up for an hour. */
  async refresh(): Promise<void> {
    for (const index of this.table.staleBuckets(Date.now(), this.options.refreshIntervalMs)) {
      await this.findNode(this.table.randomIdInBucket(index));
    }
    this.recordStore.sweep(Date.now());
  }

  /** The publisher re-signs its own records with a fresh expiry and stores them again. */
  async republish(): Promise<number> {
    const now = Date.now();
    let count = 0;
    for (const record of [...this.recordStore.records()]) {
      if (!record.publisher.equals(this.identity.publicKey)) continue;
      const renewed = createRecord(this.identity, { type: record.type, key: record.key, salt: record.salt, value: record.value, seq: record.seq, ttlMs: this.options.recordTtlMs, now });
      await this.store(renewed).then(() => count++, () => undefined);
    }
    return count;
  }

  /** Kademlia §2.5: holders push what they hold to the current k closest nodes. */
  async replicate(): Promise<number> {
    const now = Date.now();
    if (now - this.lastReplicated < this.options.replicateIntervalMs) return 0;
    this.lastReplicated = now;
    let pushed = 0;
    for (const record of [...this.recordStore.records()]) {
      const { closest } = await this.findNode(record.key);
      const results = await Promise.allSettled(closest.map((c) => this.storeAt(c, record.bytes)));
      pushed += results.filter((r) => r.status === 'fulfilled').length;
    }
    return pushed;
  }

  async saveSnapshot(): Promise<void> {
    if (this.client) return;
    const records = this.table.snapshot();
    const w = new Writer(records.reduce((n, r) => n + r.length + 2, 4)).u32(records.length);
    for (const record of records) w.vec16(record);
    await this.recordStore.putMeta(SNAPSHOT_META, w.finish());
  }

  private snapshotSeeds(): { address: string; expect: Buffer }[] {
    const bytes = this.recordStore.getMeta(SNAPSHOT_META);
    if (bytes === undefined) return [];
    const seeds: { address: string; expect: Buffer }[] = [];
    try {
      const r = new Reader(bytes, 'routing snapshot');
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const contact = verifyContactRecord(r.vec16(), this.peer.network, Date.now(), { ignoreExpiry: true });
        for (const address of contact.addresses) seeds.push({ address, expect: contact.nodeId });
      }
    } catch (err) {
      this.logger.warn({ code: isThemisError(err) ? err.code : undefined }, 'the saved routing table is damaged; join with --bootstrap');
    }
    return seeds.slice(0, this.options.k * 2);
  }
}

function storeStatusOf(err: unknown): msg.StoreStatus {
  if (!isThemisError(err)) return msg.StoreStatus.Invalid;
  switch (err.code) {
    case 'ERR_DHT_RECORD_STALE':
      return msg.StoreStatus.Stale;
    case 'ERR_DHT_QUOTA':
      return msg.StoreStatus.Quota;
    case 'ERR_DHT_TOO_LARGE':
      return msg.StoreStatus.TooLarge;
    case 'ERR_DHT_RECORD_EXPIRED':
      return msg.StoreStatus.Expired;
    default:
      return msg.StoreStatus.Invalid;
  }
}

function observedIp(address: string): string | undefined {
  const match = /^tcp:\/\/\[?([^\]]+?)\]?:\d+$/.exec(address);
  return match?.[1];
}

/** `tcp://host:port` or `ID@tcp://host:port`. */
function parseBootstrap(text: string): { address: string; expect?: Buffer } {
  const at = text.indexOf('@');
  if (at < 0) return { address: text };
  return { address: text.slice(at + 1), expect: parseNodeId(text.slice(0, at)) };
}

/** Creates a DHT node with an LMDB store under `dataDir` (or in memory) and starts it. */
export async function createDhtNode(init: DhtNodeInit = {}): Promise<DhtNode> {
  let store = init.store;
  if (store === undefined) {
    if (init.dataDir === undefined) store = new MemoryRecordStore(init.quotas);
    else {
      await mkdir(init.dataDir, { recursive: true, mode: 0o700 });
      store = await openLmdbRecordStore(join(init.dataDir, 'dht'), networkConfig(init.network), init.quotas);
    }
  }
  const node = new DhtNode(store, init);
  try {
    await node.start();
  } catch (err) {
    await node.leave();
    throw err;
  }
  return node;
}

