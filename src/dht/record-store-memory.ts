import { ThemisError } from '../core/errors.js';
import { formatNodeId } from '../identity/index.js';
import { decide, type DhtRecord } from './record.js';
import type { PutResult, RecordStore, RecordStoreHooks, RecordStoreLimits } from './record-store.js';

/**
 * The index of held records — the one place where slots, quotas and expiry are kept, applying
 * `decide()` from record.ts. Used on its own as the in-memory store and composed by the LMDB store.
 */

export const DEFAULT_RECORD_STORE_LIMITS: RecordStoreLimits = Object.freeze({
  maxRecordsPerPublisher: 256,
  maxBytesPerPublisher: 4 * 1024 * 1024,
  maxRecords: 200_000,
  maxBytes: 512 * 1024 * 1024,
});

/** Records `get()` returns when the caller names no bound. */
export const DEFAULT_GET_MAX = 64;

/** The defaults with `overrides` applied; throws RangeError on an unknown key or a value that is not a positive integer. */
export function resolveRecordStoreLimits(overrides: Partial<RecordStoreLimits> = {}): RecordStoreLimits {
  const limits: Record<string, unknown> = { ...DEFAULT_RECORD_STORE_LIMITS };
  for (const [name, value] of Object.entries(overrides)) {
    if (!(name in DEFAULT_RECORD_STORE_LIMITS)) throw new RangeError(`unknown record store limit "${name}"`);
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`record store limit ${name} must be a positive integer, got ${String(value)}`);
    limits[name] = value;
  }
  return Object.freeze(limits as unknown as RecordStoreLimits);
}

const KEY_LENGTH = 32;
const MAX_META_NAME_BYTES = 255;

function assertBytes(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new RangeError(`${what} must be ${length} bytes`);
}

function assertTime(now: number): void {
  if (!Number.isFinite(now)) throw new RangeError(`now must be a finite number of milliseconds, got ${now}`);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Highest seq first, then ascending publisher id. */
function byRank(a: DhtRecord, b: DhtRecord): number {
  return b.seq - a.seq || Buffer.compare(a.publisherId, b.publisherId);
}

interface Usage {
  records: number;
  bytes: number;
}

interface Expiry {
  readonly expiresAt: number;
  readonly keyHex: string;
  readonly publisherHex: string;
  readonly record: DhtRecord;
}

/**
 * A binary min-heap of expiry times, so `sweep()` costs O(expired · log n) and a sweep with
 * nothing to drop costs O(1) — a full store under a flood of refused puts never scans itself.
 * Entries of replaced or deleted records stay until they surface and are skipped.
 */
class ExpiryQueue {
  #heap: Expiry[] = [];

  get size(): number {
    return this.#heap.length;
  }

  peek(): Expiry | undefined {
    return this.#heap[0];
  }

  push(entry: Expiry): void {
    const heap = this.#heap;
    let i = heap.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.expiresAt <= entry.expiresAt) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = entry;
  }

  pop(): Expiry | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && heap[child + 1]!.expiresAt < heap[child]!.expiresAt) child++;
      if (heap[child]!.expiresAt >= last.expiresAt) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
    return top;
  }

  /** Replaces the contents (after a compaction). */
  reset(entries: Expiry[]): void {
    this.#heap = [];
    for (const entry of entries) this.push(entry);
  }
}

/**
 * The in-memory record store, and the index every backend keeps: a real backend (the simulator
 * runs thousands of nodes on it), not a mock.
 *
 * @example
 * const store = new MemoryRecordStore({ maxRecordsPerPublisher: 64 });
 * store.put(verifyRecord(bytes, network, { now }), now); // 'stored'
 * store.get(record.key, now); // [record]
 */
export class MemoryRecordStore implements RecordStore {
  readonly limits: RecordStoreLimits;
  readonly #hooks: RecordStoreHooks;
  /** key hex → publisher id hex → record: one record per slot. */
  readonly #byKey = new Map<string, Map<string, DhtRecord>>();
  readonly #byPublisher = new Map<string, Usage>();
  readonly #expiries = new ExpiryQueue();
  readonly #meta = new Map<string, Buffer>();
  #records = 0;
  #bytes = 0;
  #closed = false;

  /** `hooks` is for backends that persist the index; an application passes limits only. */
  constructor(limits: Partial<RecordStoreLimits> = {}, hooks: RecordStoreHooks = {}) {
    this.limits = resolveRecordStoreLimits(limits);
    this.#hooks = hooks;
  }

  put(record: DhtRecord, now: number): PutResult {
    this.#assertOpen();
    assertTime(now);
    if (record.expiresAt <= now) throw new ThemisError('ERR_DHT_RECORD_EXPIRED', 'record has expired', { expose: true });
    const keyHex = hex(record.key);
    const publisherHex = hex(record.publisherId);
    let existing = this.#byKey.get(keyHex)?.get(publisherHex);
    // An expired record is gone for every reader already; it neither blocks nor outranks the new one.
    if (existing !== undefined && existing.expiresAt <= now) {
      this.#remove(keyHex, publisherHex, existing);
      existing = undefined;
    }
    switch (decide(existing, record)) {
      case 'same':
        return 'same';
      case 'stale':
        throw new ThemisError(
          'ERR_DHT_RECORD_STALE',
          `this slot holds seq ${existing?.seq}; refused seq ${record.seq} (an older record, or another record with the same seq)`,
          { expose: true },
        );
      case 'store':
        break;
    }
    let refusal = this.#quotaRefusal(publisherHex, existing, record);
    // Records that expired but were not swept yet must not hold quota against live ones.
    if (refusal !== undefined && this.sweep(now) > 0) refusal = this.#quotaRefusal(publisherHex, existing, record);
    if (refusal !== undefined) throw refusal;
    // The backend overwrites the slot when told of the new record; it needs no removal first.
    if (existing !== undefined) this.#remove(keyHex, publisherHex, existing, false);
    this.#insert(keyHex, publisherHex, record);
    return 'stored';
  }

  get(key: Uint8Array, now: number, max = DEFAULT_GET_MAX): DhtRecord[] {
    this.#assertOpen();
    assertBytes(key, KEY_LENGTH, 'key');
    assertTime(now);
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`max must be a positive integer, got ${max}`);
    const held = this.#byKey.get(hex(key));
    if (held === undefined) return [];
    // The best `max` in one pass, not a sort of everything: a key may list thousands of providers.
    const best: DhtRecord[] = [];
    for (const record of held.values()) {
      if (record.expiresAt <= now || (best.length === max && byRank(record, best[max - 1]!) >= 0)) continue;
      let lo = 0;
      let hi = best.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (byRank(best[mid]!, record) <= 0) lo = mid + 1;
        else hi = mid;
      }
      best.splice(lo, 0, record);
      if (best.length > max) best.pop();
    }
    return best;
  }

  getSlot(key: Uint8Array, publisherId: Uint8Array): DhtRecord | undefined {
    this.#assertOpen();
    assertBytes(key, KEY_LENGTH, 'key');
    assertBytes(publisherId, KEY_LENGTH, 'publisherId');
    return this.#byKey.get(hex(key))?.get(hex(publisherId));
  }

  delete(key: Uint8Array, publisherId: Uint8Array): boolean {
    const record = this.getSlot(key, publisherId);
    if (record === undefined) return false;
    this.#remove(hex(key), hex(publisherId), record);
    return true;
  }

  sweep(now: number): number {
    this.#assertOpen();
    assertTime(now);
    let dropped = 0;
    for (let next = this.#expiries.peek(); next !== undefined && next.expiresAt <= now; next = this.#expiries.peek()) {
      this.#expiries.pop();
      if (this.#byKey.get(next.keyHex)?.get(next.publisherHex) !== next.record) continue; // replaced or deleted since
      this.#remove(next.keyHex, next.publisherHex, next.record);
      dropped++;
    }
    return dropped;
  }

  records(): IterableIterator<DhtRecord> {
    this.#assertOpen();
    return this.#iterate();
  }

  usage(publisherId: Uint8Array): { records: number; bytes: number } {
    this.#assertOpen();
    assertBytes(publisherId, KEY_LENGTH, 'publisherId');
    const usage = this.#byPublisher.get(hex(publisherId));
    return { records: usage?.records ?? 0, bytes: usage?.bytes ?? 0 };
  }

  stats(): { records: number; bytes: number; keys: number } {
    this.#assertOpen();
    return { records: this.#records, bytes: this.#bytes, keys: this.#byKey.size };
  }

  putMeta(name: string, value: Uint8Array): void {
    this.#assertOpen();
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name, 'utf8') > MAX_META_NAME_BYTES) {
      throw new RangeError(`a meta name must be a string of 1 to ${MAX_META_NAME_BYTES} bytes`);
    }
    if (!(value instanceof Uint8Array)) throw new TypeError('a meta value must be a Uint8Array');
    this.#meta.set(name, Buffer.from(value));
  }

  getMeta(name: string): Buffer | undefined {
    this.#assertOpen();
    const value = this.#meta.get(name);
    return value === undefined ? undefined : Buffer.from(value);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Let the memory go without telling the hooks: closing removes nothing from a backend.
    this.#byKey.clear();
    this.#byPublisher.clear();
    this.#expiries.reset([]);
    this.#meta.clear();
    this.#records = 0;
    this.#bytes = 0;
  }

  *#iterate(): IterableIterator<DhtRecord> {
    for (const held of this.#byKey.values()) yield* held.values();
  }

  #assertOpen(): void {
    if (this.#closed) throw new ThemisError('ERR_DHT_CLOSED', 'the record store is closed');
  }

  /** The error for the first limit `incoming` would break once `existing` (same slot) is freed. */
  #quotaRefusal(publisherHex: string, existing: DhtRecord | undefined, incoming: DhtRecord): ThemisError | undefined {
    const limits = this.limits;
    const freedRecords = existing === undefined ? 0 : 1;
    const addedBytes = incoming.bytes.length - (existing?.bytes.length ?? 0);
    const usage = this.#byPublisher.get(publisherHex) ?? { records: 0, bytes: 0 };
    const who = `publisher ${formatNodeId(incoming.publisherId)}`;
    const records = usage.records - freedRecords + 1;
    const bytes = usage.bytes + addedBytes;
    const totalRecords = this.#records - freedRecords + 1;
    const totalBytes = this.#bytes + addedBytes;
    let message: string | undefined;
    if (records > limits.maxRecordsPerPublisher) message = `${who} would hold ${records} records; the limit is ${limits.maxRecordsPerPublisher} per publisher`;
    else if (bytes > limits.maxBytesPerPublisher) message = `${who} would hold ${bytes} bytes of records; the limit is ${limits.maxBytesPerPublisher} bytes per publisher`;
    else if (totalRecords > limits.maxRecords) message = `the record store would hold ${totalRecords} records; its limit is ${limits.maxRecords}`;
    else if (totalBytes > limits.maxBytes) message = `the record store would hold ${totalBytes} bytes of records; its limit is ${limits.maxBytes} bytes`;
    return message === undefined ? undefined : new ThemisError('ERR_DHT_QUOTA', message, { expose: true });
  }

  #insert(keyHex: string, publisherHex: string, record: DhtRecord): void {
    let held = this.#byKey.get(keyHex);
    if (held === undefined) this.#byKey.set(keyHex, (held = new Map()));
    held.set(publisherHex, record);
    let usage = this.#byPublisher.get(publisherHex);
    if (usage === undefined) this.#byPublisher.set(publisherHex, (usage = { records: 0, bytes: 0 }));
    usage.records++;
    usage.bytes += record.bytes.length;
    this.#records++;
    this.#bytes += record.bytes.length;
    this.#expiries.push({ expiresAt: record.expiresAt, keyHex, publisherHex, record });
    // Entries of replaced and deleted records linger in the queue; rebuild it before they dominate.
    if (this.#expiries.size > 2 * this.#records + 1024) this.#compactExpiries();
    this.#hooks.stored?.(record);
  }

  #remove(keyHex: string, publisherHex: string, record: DhtRecord, tell = true): void {
    const held = this.#byKey.get(keyHex);
    if (held === undefined || !held.delete(publisherHex)) return;
    if (held.size === 0) this.#byKey.delete(keyHex);
    const usage = this.#byPublisher.get(publisherHex);
    if (usage !== undefined) {
      usage.records--;
      usage.bytes -= record.bytes.length;
      if (usage.records === 0) this.#byPublisher.delete(publisherHex);
    }
    this.#records--;
    this.#bytes -= record.bytes.length;
    if (tell) this.#hooks.removed?.(record);
  }

  #compactExpiries(): void {
    const live: Expiry[] = [];
    for (const [keyHex, held] of this.#byKey) {
      for (const [publisherHex, record] of held) live.push({ expiresAt: record.expiresAt, keyHex, publisherHex, record });
    }
    this.#expiries.reset(live);
  }
}
