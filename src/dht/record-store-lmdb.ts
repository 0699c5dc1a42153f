import type { Database, RootDatabase } from 'lmdb';
import { ThemisError, isThemisError } from '../core/errors.js';
import type { NetworkConfig } from '../identity/index.js';
import { slotOf, verifyRecord, type DhtRecord } from './record.js';
import { MemoryRecordStore, resolveRecordStoreLimits } from './record-store-memory.js';
import type { PutResult, RecordStore, RecordStoreLimits } from './record-store.js';

/**
 * The persistent record store: the in-memory index of record-store-memory.ts, written through to an
 * LMDB environment so a restarted node serves its records again and rejoins from its
 * routing-table snapshot.
 *
 * Layout: sub-database `records` maps the 64-byte slot (key ‖ publisher id) to the record's
 * signed envelope, verbatim; sub-database `meta` maps a name to a blob. Writes are LMDB's
 * asynchronous puts, which the library batches into one transaction per event turn; `close()`
 * waits for them. A crash may lose the last writes before their commit but never corrupts the
 * environment, and whatever is read back is verified again before it is served.
 */

class LmdbRecordStore implements RecordStore {
  readonly #dir: string;
  readonly #env: RootDatabase;
  readonly #records: Database<Buffer, Buffer>;
  readonly #meta: Database<Buffer, string>;
  readonly #index: MemoryRecordStore;
  /** Writes not yet committed, each settled quietly: a failure is kept in #failure. */
  readonly #pending = new Set<Promise<void>>();
  #failure: ThemisError | undefined;
  #closing: Promise<void> | undefined;
  /** While the index is rebuilt from disk, what it stores is already there. */
  #loading = true;

  private constructor(dir: string, env: RootDatabase, limits: RecordStoreLimits) {
    this.#dir = dir;
    this.#env = env;
    this.#records = env.openDB<Buffer, Buffer>('records', { encoding: 'binary', keyEncoding: 'binary' });
    this.#meta = env.openDB<Buffer, string>('meta', { encoding: 'binary' });
    this.#index = new MemoryRecordStore(limits, {
      stored: (record) => {
        if (!this.#loading) this.#writeQuietly('storing a record', () => this.#records.put(slotOf(record), record.bytes));
      },
      removed: (record) => this.#writeQuietly('removing a record', () => this.#records.remove(slotOf(record))),
    });
  }

  static async open(dir: string, network: NetworkConfig, limits: Partial<RecordStoreLimits>): Promise<LmdbRecordStore> {
    const resolved = resolveRecordStoreLimits(limits); // before anything is opened
    let store: LmdbRecordStore;
    try {
      // Loaded on first use, so importing the DHT does not load a native addon (the simulator does not need it).
      const { open } = await import('lmdb');
      store = new LmdbRecordStore(dir, open({ path: dir, compression: false }), resolved);
    } catch (err) {
      throw new ThemisError('ERR_DHT_STORAGE', `cannot open the record store at ${dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await store.#load(network, Date.now());
    } catch (err) {
      await store.#env.close().catch(() => undefined);
      throw err;
    }
    return store;
  }

  put(record: DhtRecord, now: number): PutResult {
    this.#assertWritable();
    return this.#index.put(record, now);
  }

  get(key: Uint8Array, now: number, max?: number): DhtRecord[] {
    return this.#index.get(key, now, max);
  }

  getSlot(key: Uint8Array, publisherId: Uint8Array): DhtRecord | undefined {
    return this.#index.getSlot(key, publisherId);
  }

  delete(key: Uint8Array, publisherId: Uint8Array): boolean {
    this.#assertWritable();
    return this.#index.delete(key, publisherId);
  }

  sweep(now: number): number {
    return this.#index.sweep(now);
  }

  records(): IterableIterator<DhtRecord> {
    return this.#index.records();
  }

  usage(publisherId: Uint8Array): { records: number; bytes: number } {
    return this.#index.usage(publisherId);
  }

  stats(): { records: number; bytes: number; keys: number } {
    return this.#index.stats();
  }

  /** The index keeps the blob too, so `getMeta` sees it at once; the promise resolves once it is written. */
  putMeta(name: string, value: Uint8Array): Promise<void> {
    this.#assertWritable();
    this.#index.putMeta(name, value);
    const copy = Buffer.from(value);
    return this.#write(`writing meta "${name}"`, () => this.#meta.put(name, copy));
  }

  getMeta(name: string): Buffer | undefined {
    return this.#index.getMeta(name);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /** Rebuilds the index from disk; a record that no longer verifies (tampered, expired, over a lowered quota) is deleted. */
  async #load(network: NetworkConfig, now: number): Promise<void> {
    const dropped: Buffer[] = [];
    try {
      for (const { key, value } of this.#records.getRange()) {
        if (!this.#restore(key, value, network, now)) dropped.push(Buffer.from(key));
      }
      for (const { key, value } of this.#meta.getRange()) this.#index.putMeta(key, value);
    } catch (err) {
      if (isThemisError(err) || err instanceof RangeError) throw err;
      throw new ThemisError('ERR_DHT_STORAGE', `cannot read the record store at ${this.#dir}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.#loading = false;
    }
    await Promise.all(dropped.map((slot) => this.#write('dropping an invalid record', () => this.#records.remove(slot))));
  }

  #restore(slot: Buffer, bytes: Buffer, network: NetworkConfig, now: number): boolean {
    let record: DhtRecord;
    try {
      record = verifyRecord(bytes, network, { now });
    } catch {
      return false; // whatever fails verification is not served, whatever the reason
    }
    if (!slotOf(record).equals(slot)) return false; // a valid record moved under another slot
    try {
      this.#index.put(record, now);
    } catch (err) {
      if (isThemisError(err)) return false;
      throw err;
    }
    return true;
  }

  #assertWritable(): void {
    if (this.#closing !== undefined) throw new ThemisError('ERR_DHT_CLOSED', 'the record store is closed');
    if (this.#failure !== undefined) throw this.#failure;
  }

  #write(what: string, start: () => Promise<unknown>): Promise<void> {
    const done = (async () => {
      await start();
    })().catch((err: unknown) => {
      const failure = new ThemisError('ERR_DHT_STORAGE', `record store at ${this.#dir}: ${what} failed: ${(err as Error).message}`, { cause: err });
      this.#failure ??= failure;
      throw failure;
    });
    const settled = done.catch(() => undefined);
    this.#pending.add(settled);
    void settled.then(() => this.#pending.delete(settled));
    return done;
  }

  #writeQuietly(what: string, start: () => Promise<unknown>): void {
    this.#write(what, start).catch(() => undefined); // kept in #failure; the next write and close() report it
  }

  async #shutdown(): Promise<void> {
    await this.#index.close();
    await Promise.all(this.#pending);
    try {
      await this.#env.close();
    } catch (err) {
      this.#failure ??= new ThemisError('ERR_DHT_STORAGE', `closing the record store at ${this.#dir} failed: ${(err as Error).message}`, { cause: err });
    }
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/**
 * Opens (or creates) the persistent record store in `dir`, verifying every stored record again
 * against `network` and the current time.
 *
 * @example
 * const store = await openLmdbRecordStore('/var/lib/themis/dht', network);
 * store.put(verifyRecord(bytes, network, { now }), now);
 * await store.putMeta('routing-table', snapshot);
 * await store.close();
 */
export async function openLmdbRecordStore(dir: string, network: NetworkConfig, limits: Partial<RecordStoreLimits> = {}): Promise<RecordStore> {
  return LmdbRecordStore.open(dir, network, limits);
}
