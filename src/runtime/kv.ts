import type { Database, RootDatabase } from 'lmdb';
import { ThemisError } from '../core/errors.js';
import { FunctionError } from './function-error.js';
import { MAX_TRANSACT_ATTEMPTS, transactLoop, type Transaction, type TransactOps } from './transact.js';

/**
 * The durable key-value store of an application (RUNTIME-CONTRACT.md `ctx.kv`): one LMDB
 * environment on the host, one namespace per service. A namespace is a key prefix
 * (`<service>/` ‖ key), so services never see each other's keys and a list() never
 * crosses into another namespace.
 */
export const KV_LIMITS = Object.freeze({ keyBytes: 512, valueBytes: 64 * 1024, listDefault: 100, listMax: 1000 });

/** Not a character of service names ([a-z0-9-]), so one namespace's prefix never matches another's. */
const SEPARATOR = '/';

/** An open application store; `kvContext(kv, service)` gives one service's view. */
export interface AppKv {
  readonly path: string;
  /** @internal the LMDB database, string keys → JSON text. */
  readonly db: Database<string, string>;
  close(): Promise<void>;
}

/** The `ctx.kv` object a function sees. */
export interface KvApi {
  get(key: string): Promise<unknown>;
  /** Keys starting with `prefix`, in key order; `after` (exclusive) continues from a previous page's last key. */
  list(prefix?: string, options?: { limit?: number; after?: string }): Promise<{ key: string; value: unknown }[]>;
  transact<T>(fn: (tx: Transaction) => Promise<T> | T): Promise<T>;
}

/**
 * One namespace of the store as raw operations on JSON text: what kvContext() builds on, and
 * what an isolate reaches through its bridge (sandbox.ts), so both share the same checks.
 */
export interface KvNamespace {
  read(key: string): Promise<string | null>;
  list(prefix: string, limit: number, after?: string): Promise<{ key: string; value: string }[]>;
  commit(reads: [string, string | null][], writes: [string, string | null][]): Promise<boolean>;
}

export async function openKv(path: string): Promise<AppKv> {
  const { open } = await import('lmdb');
  let root: RootDatabase;
  try {
    root = open({ path, compression: false });
  } catch (err) {
    throw new ThemisError('ERR_RUNTIME_KV', `cannot open the key-value store at ${path}: ${(err as Error).message}; check the data directory`, { cause: err });
  }
  const db = root.openDB<string, string>('kv', { encoding: 'string' });
  return { path, db, close: () => root.close() };
}

function badRequest(message: string): FunctionError {
  return new FunctionError(400, 'BAD_REQUEST', message);
}

export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw badRequest('a kv key must be a non-empty string');
  if (Buffer.byteLength(key, 'utf8') > KV_LIMITS.keyBytes) throw badRequest(`a kv key must be at most ${KV_LIMITS.keyBytes} bytes`);
  return key;
}

function checkValueText(text: string | null): void {
  if (text !== null && Buffer.byteLength(text, 'utf8') > KV_LIMITS.valueBytes) {
    throw new FunctionError(413, 'VALUE_TOO_LARGE', `a kv value must be at most ${KV_LIMITS.valueBytes} bytes of JSON`);
  }
}

export function encodeValue(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw badRequest('a kv value must be JSON-serializable (not undefined or a function)');
  checkValueText(text);
  return text;
}

export function kvNamespace(kv: AppKv, namespace: string): KvNamespace {
  const base = `${namespace}${SEPARATOR}`;
  const full = (key: string): string => base + checkKey(key);
  return {
    async read(key) {
      return kv.db.get(full(key)) ?? null;
    },
    async list(prefix, limit, after) {
      if (typeof prefix !== 'string') throw badRequest('a kv list prefix must be a string');
      if (after !== undefined && typeof after !== 'string') throw badRequest('a kv list `after` must be a key (string)');
      const n = Number.isFinite(limit) ? Math.min(Math.max(1, Math.floor(limit)), KV_LIMITS.listMax) : KV_LIMITS.listDefault;
      const within = base + prefix;
      const from = after !== undefined && after > prefix ? base + after : within;
      const out: { key: string; value: string }[] = [];
      for (const { key, value } of kv.db.getRange({ start: from })) {
        if (key === from && after !== undefined && after > prefix) continue; // `after` is exclusive
        if (!key.startsWith(within) || out.length >= n) break;
        out.push({ key: key.slice(base.length), value });
      }
      return out;
    },
    async commit(reads, writes) {
      const keyed = writes.map(([key, text]) => {
        checkValueText(text);
        return [full(key), text] as const;
      });
      const readKeys = reads.map(([key, text]) => [full(key), text] as const);
      if (keyed.length === 0) return readKeys.every(([key, text]) => (kv.db.get(key) ?? null) === text);
      return kv.db.transaction(() => {
        for (const [key, text] of readKeys) if ((kv.db.get(key) ?? null) !== text) return false;
        for (const [key, text] of keyed) {
          if (text === null) void kv.db.remove(key);
          else void kv.db.put(key, text);
        }
        return true;
      });
    },
  };
}

/** The host-side `ctx.kv` of `namespace` (the benches' harness runs function modules with it). */
export function kvContext(kv: AppKv, namespace: string): KvApi {
  const ns = kvNamespace(kv, namespace);
  const ops: TransactOps = {
    read: (key) => ns.read(key),
    encode: encodeValue,
    commit: (reads, writes) => ns.commit(reads, writes),
    conflict: (attempts) => new FunctionError(409, 'CONFLICT', `the transaction conflicted with concurrent writes ${attempts} times; retry the request`),
  };
  return {
    async get(key) {
      const text = await ns.read(key);
      return text === null ? undefined : JSON.parse(text);
    },
    async list(prefix = '', options = {}) {
      const rows = await ns.list(prefix, options.limit ?? KV_LIMITS.listDefault, options.after);
      return rows.map(({ key, value }) => ({ key, value: JSON.parse(value) as unknown }));
    },
    transact: (fn) => transactLoop(ops, fn, MAX_TRANSACT_ATTEMPTS),
  };
}
