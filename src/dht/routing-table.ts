import { randomBytes } from 'node:crypto';
import { copyBytes, toHex } from '../core/bytes.js';
import { parseTcpAddress } from '../transport/address.js';
import { ID_BITS, K } from './constants.js';
import type { Contact } from './contact.js';
import { commonPrefixLength, compareDistance } from './distance.js';
import { subnetOf } from './subnet.js';

const ID_BYTES = ID_BITS / 8;
/** Subnet group of contacts without an IP when loopback/non-IP exemption is off. */
const NON_IP = 'non-ip';

export interface RoutingTableOptions {
  /** Bucket size (Kademlia's k). Default K (20). */
  k?: number;
  /** Most contacts per bucket from one IPv4 /24 or IPv6 /48. Default 2; Infinity disables the limit. */
  subnetLimit?: number;
  /** Loopback (127/8, ::1) and non-IP addresses (e.g. memory://) do not count toward subnetLimit. Default true. */
  exemptLoopback?: boolean;
  /** Replacement cache size per bucket. Default k. */
  replacementCacheSize?: number;
  /** S/Kademlia sibling list size: the closest nodes to self, kept regardless of bucket eviction. Default 2·k. */
  siblingCount?: number;
}

export interface TableEntry {
  readonly contact: Contact;
  firstSeen: number;
  lastSeen: number;
  failures: number;
  /** IP the contact was observed at (connection address) when known */
  observedIp?: string;
}

export type AddResult =
  | { status: 'added' | 'updated' }
  | { status: 'self' | 'subnet-limit' | 'client' }
  | { status: 'full'; candidate: TableEntry };

interface Entry extends TableEntry {
  contact: Contact;
  /** Hex NodeId: the key of `#known`. */
  readonly key: string;
  /** Bucket index: common prefix length with self. */
  readonly index: number;
  /** Subnet group counted against subnetLimit; null when exempt or unlimited. */
  subnet: string | null;
  place: 'bucket' | 'replacement' | 'none';
  sibling: boolean;
}

interface Bucket {
  /** Least-recently seen first (Kademlia §2.2). */
  readonly entries: Entry[];
  /** Least-recently seen first; the tail is promoted first (Kademlia §4.1). */
  readonly replacements: Entry[];
  lastLookup: number;
}

/**
 * Kademlia k-buckets (Maymounkov & Mazières 2002) over 256-bit ids, with the S/Kademlia
 * (Baumgart & Mies 2007) hardening: a sibling list of the nodes closest to self, eviction
 * that never drops a live contact for a new one, and a per-bucket subnet diversity limit.
 * Pure: no I/O and no timers; callers pass `now` and run the PING that a full bucket asks for.
 *
 * Entries live in a bucket, in that bucket's replacement cache, or (siblings only) in neither.
 * get/has/closest see bucket entries and siblings; the replacement caches are standby lists.
 *
 * @example
 * const table = new RoutingTable(identity.nodeId);
 * const result = table.add(contact, Date.now(), socket.remoteAddress);
 * if (result.status === 'full') {
 *   if (await ping(result.candidate.contact)) table.touch(result.candidate.contact.nodeId, Date.now());
 *   else table.evict(result.candidate.contact.nodeId);
 * }
 */
export class RoutingTable {
  readonly self: Buffer;
  readonly k: number;
  readonly #selfKey: string;
  readonly #subnetLimit: number;
  readonly #exemptLoopback: boolean;
  readonly #replacementCacheSize: number;
  readonly #siblingCount: number;
  readonly #buckets: Bucket[];
  readonly #known = new Map<string, Entry>();
  /** Closest to self first. */
  readonly #siblings: Entry[] = [];
  #size = 0;

  constructor(self: Uint8Array, options: RoutingTableOptions = {}) {
    assertId(self, 'self');
    this.self = copyBytes(self);
    this.#selfKey = toHex(self);
    this.k = integerOption(options.k, K, 'k', 1);
    this.#subnetLimit = integerOption(options.subnetLimit, 2, 'subnetLimit', 1, true);
    this.#replacementCacheSize = integerOption(options.replacementCacheSize, this.k, 'replacementCacheSize', 0);
    this.#siblingCount = integerOption(options.siblingCount, 2 * this.k, 'siblingCount', 0);
    const exempt = options.exemptLoopback ?? true;
    if (typeof exempt !== 'boolean') throw new TypeError(`routing table exemptLoopback must be a boolean, got ${typeof exempt}`);
    this.#exemptLoopback = exempt;
    this.#buckets = Array.from({ length: ID_BITS }, () => ({ entries: [], replacements: [], lastLookup: -Infinity }));
  }

  /** Contacts in buckets (siblings held outside the buckets are not counted). */
  get size(): number {
    return this.#size;
  }

  /**
   * Offers a contact that was just seen alive (after a completed handshake). Kademlia §2.2: a
   * known contact moves to the tail of its bucket; a new one enters a bucket with room; a full
   * bucket keeps its members and parks the newcomer in the replacement cache until the caller
   * has pinged `candidate`, the least-recently seen member, and called touch() or evict().
   */
  add(contact: Contact, now: number, observedIp?: string): AddResult {
    assertId(contact.nodeId, 'contact.nodeId');
    assertTime(now);
    const key = toHex(contact.nodeId);
    if (key === this.#selfKey) return { status: 'self' };
    const known = this.#known.get(key);
    // DESIGN.md (DHT): clients query and publish but never enter routing tables; a newer
    // record that turns a known node into a client takes it out.
    if (contact.client) {
      if (known !== undefined && contact.issuedAt > known.contact.issuedAt) this.#drop(known);
      return { status: 'client' };
    }
    if (known === undefined) {
      const entry: Entry = {
        contact,
        firstSeen: now,
        lastSeen: now,
        failures: 0,
        key,
        index: commonPrefixLength(this.self, contact.nodeId),
        subnet: this.#subnetKey(contact, observedIp),
        place: 'none',
        sibling: false,
      };
      if (observedIp !== undefined) entry.observedIp = observedIp;
      this.#known.set(key, entry);
      return this.#admit(entry);
    }
    const next = contact.issuedAt > known.contact.issuedAt ? contact : known.contact;
    const ip = observedIp ?? known.observedIp;
    const subnet = this.#subnetKey(next, ip);
    const bucket = this.#buckets[known.index]!;
    if (known.place === 'bucket' && subnet !== known.subnet && !this.#subnetHasRoom(bucket.entries, subnet)) return { status: 'subnet-limit' };
    known.contact = next;
    known.subnet = subnet;
    known.lastSeen = now;
    known.failures = 0;
    if (ip !== undefined) known.observedIp = ip;
    if (known.place === 'bucket') {
      moveToTail(bucket.entries, known);
      return { status: 'updated' };
    }
    if (known.place === 'replacement') {
      removeFrom(bucket.replacements, known);
      known.place = 'none';
    }
    return this.#admit(known);
  }

  /** The contact answered: lastSeen = now, failures = 0, and it becomes the most recently seen. */
  touch(nodeId: Uint8Array, now: number): void {
    assertTime(now);
    const entry = this.#lookup(nodeId);
    if (entry === undefined) return;
    entry.lastSeen = now;
    entry.failures = 0;
    const bucket = this.#buckets[entry.index]!;
    if (entry.place === 'bucket') moveToTail(bucket.entries, entry);
    else if (entry.place === 'replacement') moveToTail(bucket.replacements, entry);
  }

  /** Counts an unanswered request; returns the count since the contact was last seen (0 if unknown). */
  recordFailure(nodeId: Uint8Array): number {
    const entry = this.#lookup(nodeId);
    return entry === undefined ? 0 : ++entry.failures;
  }

  /**
   * Drops an unresponsive contact from its bucket, replacement cache and the sibling list, and
   * promotes the most recently seen replacement that fits the subnet limit (Kademlia §4.1).
   * Returns the promoted contact, or null.
   */
  evict(nodeId: Uint8Array): Contact | null {
    const entry = this.#lookup(nodeId);
    return entry === undefined ? null : this.#drop(entry);
  }

  /** Like evict(), for a contact dropped for other reasons (revoked, misbehaving); true if it was known. */
  remove(nodeId: Uint8Array): boolean {
    const entry = this.#lookup(nodeId);
    if (entry === undefined) return false;
    this.#drop(entry);
    return true;
  }

  /** The entry of a contact in a bucket or the sibling list (a copy). */
  get(nodeId: Uint8Array): TableEntry | undefined {
    const entry = this.#lookup(nodeId);
    return entry !== undefined && isRoutable(entry) ? view(entry) : undefined;
  }

  has(nodeId: Uint8Array): boolean {
    const entry = this.#lookup(nodeId);
    return entry !== undefined && isRoutable(entry);
  }

  /**
   * The n known contacts closest to target (buckets ∪ siblings, never self), closest first.
   *
   * For contacts a in bucket i and b in bucket j > i, both equal self in bits 0 … i−1 and only b
   * does in bit i, so bit i of x = self ⊕ target alone decides which is closer to target: a when
   * x_i = 1, b when x_i = 0. Buckets therefore never interleave, and walking them in the order
   * [i ascending where x_i = 1] ++ [i descending where x_i = 0] sorts one bucket at a time.
   */
  closest(target: Uint8Array, n: number, filter?: (c: Contact) => boolean): Contact[] {
    assertId(target, 'target');
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
    const out: Contact[] = [];
    if (n === 0) return out;
    const outside = new Map<number, Entry[]>();
    for (const s of this.#siblings) {
      if (s.place === 'bucket') continue;
      const list = outside.get(s.index);
      if (list === undefined) outside.set(s.index, [s]);
      else list.push(s);
    }
    for (const index of bucketOrder(this.self, target)) {
      const entries = this.#buckets[index]!.entries;
      const extra = outside.get(index);
      if (entries.length === 0 && extra === undefined) continue;
      const candidates = extra === undefined ? entries : [...entries, ...extra];
      const group = filter === undefined ? [...candidates] : candidates.filter((e) => filter(e.contact));
      group.sort((a, b) => compareDistance(a.contact.nodeId, b.contact.nodeId, target));
      for (const e of group) {
        out.push(e.contact);
        if (out.length === n) return out;
      }
    }
    return out;
  }

  /** S/Kademlia §4.2 sibling list: the siblingCount closest contacts to self, closest first. */
  siblings(): Contact[] {
    return this.#siblings.map((e) => e.contact);
  }

  /** Whether nodeId is on the sibling list. */
  isSibling(nodeId: Uint8Array): boolean {
    return this.#lookup(nodeId)?.sibling === true;
  }

  /**
   * Whether self is among the `replicas` closest known nodes to key (self included), i.e. should
   * hold a copy of a record stored under key. S/Kademlia §4.2: the sibling list makes this
   * answer reliable for keys near self.
   */
  responsibleFor(key: Uint8Array, replicas: number = this.k): boolean {
    assertId(key, 'key');
    if (!Number.isInteger(replicas) || replicas < 1) throw new RangeError(`replicas must be a positive integer, got ${replicas}`);
    const closer = this.closest(key, replicas);
    return closer.length < replicas || compareDistance(this.self, closer[replicas - 1]!.nodeId, key) < 0;
  }

  /**
   * Kademlia §2.3: buckets without a lookup in the last refreshIntervalMs, to refresh with a
   * lookup for randomIdInBucket(index). Only buckets 0 … d, where d is the deepest bucket holding
   * a contact: the paper's split buckets end there, and deeper ranges are all but empty.
   */
  staleBuckets(now: number, refreshIntervalMs: number): number[] {
    assertTime(now);
    if (!(refreshIntervalMs >= 0)) throw new RangeError(`refreshIntervalMs must be ≥ 0, got ${refreshIntervalMs}`);
    let deepest = this.#siblings[0]?.index ?? -1;
    for (let i = ID_BITS - 1; i > deepest; i--) {
      if (this.#buckets[i]!.entries.length > 0) deepest = i;
    }
    const stale: number[] = [];
    for (let i = 0; i <= deepest; i++) {
      if (now - this.#buckets[i]!.lastLookup >= refreshIntervalMs) stale.push(i);
    }
    return stale;
  }

  /** Records a lookup for target: its bucket is fresh as of now (a lookup for self counts for bucket 255). */
  markLookup(target: Uint8Array, now: number): void {
    assertId(target, 'target');
    assertTime(now);
    this.#buckets[Math.min(commonPrefixLength(this.self, target), ID_BITS - 1)]!.lastLookup = now;
  }

  /** A random id sharing exactly `index` leading bits with self: a refresh target for that bucket. */
  randomIdInBucket(index: number): Buffer {
    if (!Number.isInteger(index) || index < 0 || index >= ID_BITS) throw new RangeError(`bucket index must be an integer from 0 to ${ID_BITS - 1}, got ${index}`);
    const id = randomBytes(ID_BYTES);
    const at = index >> 3;
    const bit = 0x80 >> (index & 7);
    this.self.copy(id, 0, 0, at);
    const own = this.self[at]!;
    id[at] = (own & ~(2 * bit - 1) & 0xff) | (~own & bit) | (id[at]! & (bit - 1));
    return id;
  }

  /** All bucket entries (copies), by bucket index, least-recently seen first within a bucket. */
  entries(): TableEntry[] {
    return this.#buckets.flatMap((b) => b.entries.map(view));
  }

  /** Buckets holding contacts or replacements, for `themis inspect`. */
  buckets(): { index: number; size: number; replacements: number }[] {
    const out: { index: number; size: number; replacements: number }[] = [];
    for (const [index, b] of this.#buckets.entries()) {
      if (b.entries.length + b.replacements.length > 0) out.push({ index, size: b.entries.length, replacements: b.replacements.length });
    }
    return out;
  }

  /** The signed contact records of bucket entries and siblings, long-lived first, to persist and re-add after a restart. */
  snapshot(): Buffer[] {
    const routable = [...this.#known.values()].filter(isRoutable);
    return routable.sort((a, b) => a.firstSeen - b.firstSeen).map((e) => e.contact.record);
  }

  #lookup(nodeId: Uint8Array): Entry | undefined {
    assertId(nodeId, 'nodeId');
    return this.#known.get(toHex(nodeId));
  }

  /** Places an entry that is in no bucket or cache; it is already in #known. */
  #admit(entry: Entry): AddResult {
    const bucket = this.#buckets[entry.index]!;
    // S/Kademlia-style diversity: an address block gets at most subnetLimit slots per bucket.
    if (!this.#subnetHasRoom(bucket.entries, entry.subnet)) {
      this.#forgetIfUnused(entry);
      return { status: 'subnet-limit' };
    }
    if (bucket.entries.length < this.k) {
      bucket.entries.push(entry);
      entry.place = 'bucket';
      this.#size++;
      this.#offerSibling(entry);
      return { status: 'added' };
    }
    // Kademlia §2.2/§4.1: a full bucket keeps its long-lived members; the newcomer waits.
    this.#offerSibling(entry);
    this.#cacheReplacement(bucket, entry);
    return { status: 'full', candidate: view(bucket.entries[0]!) };
  }

  #cacheReplacement(bucket: Bucket, entry: Entry): void {
    const cache = bucket.replacements;
    // One subnet may not flush the others out of the cache either: it replaces its own oldest.
    if (entry.subnet !== null && cache.filter((e) => e.subnet === entry.subnet).length >= this.#subnetLimit) {
      this.#dropReplacement(cache, cache.findIndex((e) => e.subnet === entry.subnet));
    }
    cache.push(entry);
    entry.place = 'replacement';
    if (cache.length > this.#replacementCacheSize) this.#dropReplacement(cache, 0);
  }

  #dropReplacement(cache: Entry[], at: number): void {
    const [gone] = cache.splice(at, 1);
    gone!.place = 'none';
    this.#forgetIfUnused(gone!);
  }

  #drop(entry: Entry): Contact | null {
    const bucket = this.#buckets[entry.index]!;
    let promoted: Entry | undefined;
    if (entry.place === 'bucket') {
      removeFrom(bucket.entries, entry);
      this.#size--;
      promoted = this.#promote(bucket);
    } else if (entry.place === 'replacement') {
      removeFrom(bucket.replacements, entry);
    }
    entry.place = 'none';
    this.#known.delete(entry.key);
    if (entry.sibling) {
      removeFrom(this.#siblings, entry);
      entry.sibling = false;
      this.#refillSiblings();
    }
    return promoted?.contact ?? null;
  }

  /** Kademlia §4.1: the most recently seen replacement takes a freed slot (if its subnet fits). */
  #promote(bucket: Bucket): Entry | undefined {
    const cache = bucket.replacements;
    for (let i = cache.length - 1; i >= 0; i--) {
      const entry = cache[i]!;
      if (!this.#subnetHasRoom(bucket.entries, entry.subnet)) continue;
      cache.splice(i, 1);
      let at = bucket.entries.length;
      while (at > 0 && bucket.entries[at - 1]!.lastSeen > entry.lastSeen) at--;
      bucket.entries.splice(at, 0, entry);
      entry.place = 'bucket';
      this.#size++;
      return entry;
    }
    return undefined;
  }

  /** S/Kademlia §4.2: keeps the siblingCount closest contacts ever admitted, sorted by distance to self. */
  #offerSibling(entry: Entry): void {
    if (entry.sibling || this.#siblingCount === 0) return;
    const list = this.#siblings;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareDistance(list[mid]!.contact.nodeId, entry.contact.nodeId, this.self) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.#siblingCount) return;
    list.splice(lo, 0, entry);
    entry.sibling = true;
    if (list.length > this.#siblingCount) {
      const out = list.pop()!;
      out.sibling = false;
      this.#forgetIfUnused(out);
    }
  }

  /** After a sibling left: the closest known non-sibling (deeper buckets are closer to self) takes its place. */
  #refillSiblings(): void {
    for (let i = ID_BITS - 1; i >= 0; i--) {
      const b = this.#buckets[i]!;
      let best: Entry | undefined;
      for (const e of [...b.entries, ...b.replacements]) {
        if (!e.sibling && (best === undefined || compareDistance(e.contact.nodeId, best.contact.nodeId, this.self) < 0)) best = e;
      }
      if (best !== undefined) {
        this.#offerSibling(best);
        return;
      }
    }
  }

  #forgetIfUnused(entry: Entry): void {
    if (entry.place === 'none' && !entry.sibling) this.#known.delete(entry.key);
  }

  #subnetHasRoom(entries: readonly Entry[], subnet: string | null): boolean {
    if (subnet === null) return true;
    let count = 0;
    for (const e of entries) if (e.subnet === subnet) count++;
    return count < this.#subnetLimit;
  }

  /** The group a contact counts in for subnetLimit: observed IP, else the host of its first tcp:// address. */
  #subnetKey(contact: Contact, observedIp: string | undefined): string | null {
    if (this.#subnetLimit === Infinity) return null;
    const host = observedIp ?? tcpHost(contact.addresses);
    const subnet = host === undefined ? null : subnetOf(host);
    if (subnet === null) return this.#exemptLoopback ? null : NON_IP;
    return subnet.loopback && this.#exemptLoopback ? null : subnet.prefix;
  }
}

function isRoutable(entry: Entry): boolean {
  return entry.place === 'bucket' || entry.sibling;
}

function view(entry: Entry): TableEntry {
  const out: TableEntry = { contact: entry.contact, firstSeen: entry.firstSeen, lastSeen: entry.lastSeen, failures: entry.failures };
  if (entry.observedIp !== undefined) out.observedIp = entry.observedIp;
  return out;
}

function* bucketOrder(self: Uint8Array, target: Uint8Array): Generator<number> {
  const x = (i: number): number => ((self[i >> 3]! ^ target[i >> 3]!) >> (7 - (i & 7))) & 1;
  for (let i = 0; i < ID_BITS; i++) if (x(i) === 1) yield i;
  for (let i = ID_BITS - 1; i >= 0; i--) if (x(i) === 0) yield i;
}

function tcpHost(addresses: readonly string[]): string | undefined {
  const address = addresses.find((a) => a.startsWith('tcp://'));
  if (address === undefined) return undefined;
  try {
    return parseTcpAddress(address).host;
  } catch {
    return undefined;
  }
}

function moveToTail(list: Entry[], entry: Entry): void {
  removeFrom(list, entry);
  list.push(entry);
}

function removeFrom(list: Entry[], entry: Entry): void {
  list.splice(list.indexOf(entry), 1);
}

function assertId(id: Uint8Array, name: string): void {
  if (!(id instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (id.length !== ID_BYTES) throw new RangeError(`${name} must be ${ID_BYTES} bytes, got ${id.length}`);
}

function assertTime(now: number): void {
  if (!Number.isFinite(now)) throw new RangeError(`now must be a finite number of milliseconds, got ${now}`);
}

function integerOption(value: number | undefined, fallback: number, name: string, min: number, allowInfinity = false): number {
  const v = value ?? fallback;
  if (!((Number.isInteger(v) || (allowInfinity && v === Infinity)) && v >= min)) {
    throw new RangeError(`routing table ${name} must be an integer ≥ ${min}${allowInfinity ? ' or Infinity' : ''}, got ${v}`);
  }
  return v;
}
