import type { DhtRecord } from './record.js';

/**
 * The records a DHT node holds for others: at most one record per slot (key ‖ publisher), the
 * replacement rules of `decide()`, per-publisher and global quotas, expiry.
 *
 * `MemoryRecordStore` is the index: every rule and every count lives there. The LMDB store
 * (record-store-lmdb.ts) composes it and writes each change through to disk, so the two
 * backends cannot drift apart.
 */

export interface RecordStoreLimits {
  /** Records one publisher may hold in this store. Default 256. */
  readonly maxRecordsPerPublisher: number;
  /** Bytes of record envelopes one publisher may hold. Default 4 MiB. */
  readonly maxBytesPerPublisher: number;
  /** Records in the whole store. Default 200,000. */
  readonly maxRecords: number;
  /** Bytes of record envelopes in the whole store. Default 512 MiB. */
  readonly maxBytes: number;
}

/** 'stored' when the record is now held; 'same' when exactly this record was already held. */
export type PutResult = 'stored' | 'same';

export interface RecordStore {
  /**
   * Holds a record the caller has verified. Replacing the record of the same slot frees its
   * quota first. Throws ERR_DHT_RECORD_STALE when `decide()` calls it stale (an older or
   * conflicting record), ERR_DHT_QUOTA over a limit, ERR_DHT_RECORD_EXPIRED when it has expired by `now`.
   */
  put(record: DhtRecord, now: number): PutResult;
  /** Live records under `key`: highest seq first, then by publisher id; at most `max` (default 64). */
  get(key: Uint8Array, now: number, max?: number): DhtRecord[];
  /** The record held for (key, publisher), expired or not — expired ones stay until `sweep()`. */
  getSlot(key: Uint8Array, publisherId: Uint8Array): DhtRecord | undefined;
  /** Drops the record of one slot; false when there was none. */
  delete(key: Uint8Array, publisherId: Uint8Array): boolean;
  /** Drops every record expired by `now` and returns how many. */
  sweep(now: number): number;
  /** Every record held (for republishing and replication). Expired records stay until `sweep()`. */
  records(): IterableIterator<DhtRecord>;
  /** What one publisher holds here, counted against its quota. */
  usage(publisherId: Uint8Array): { records: number; bytes: number };
  stats(): { records: number; bytes: number; keys: number };
  /** Keeps a small blob next to the records (the routing-table snapshot); resolves once it is durable. */
  putMeta(name: string, value: Uint8Array): Promise<void> | void;
  getMeta(name: string): Buffer | undefined;
  /** Refuses every later call with ERR_DHT_CLOSED; resolves once pending writes are on disk. */
  close(): Promise<void>;
}

/** Told of every change to the index, after it happened; a persistent backend writes it through. */
export interface RecordStoreHooks {
  stored?(record: DhtRecord): void;
  removed?(record: DhtRecord): void;
}

export { DEFAULT_GET_MAX, DEFAULT_RECORD_STORE_LIMITS, MemoryRecordStore, resolveRecordStoreLimits } from './record-store-memory.js';
export { openLmdbRecordStore } from './record-store-lmdb.js';
