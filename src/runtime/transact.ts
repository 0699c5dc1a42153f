/**
 * The one implementation of `ctx.kv.transact` (RUNTIME-CONTRACT.md "Function modules"): an
 * optimistic, serializable transaction. Each attempt runs the callback against a snapshot built
 * from the reads it makes (every key is read at most once from the store; reads see the
 * attempt's own writes), buffers the writes, and asks the store to commit them atomically only if
 * every key read still holds the text it had when read. Otherwise the callback runs again, at
 * most `maxAttempts` times.
 *
 * Validation compares the stored JSON text rather than a version counter: a key that changed
 * and changed back reads the same, so the attempt is still equivalent to running at its commit
 * point, which is what serializability asks.
 *
 * The host runs this function, and its source text (Function.prototype.toString) runs inside
 * every isolate (sandbox.ts), so it must stay self-contained: no imports, no outer variables.
 */
export interface TransactOps {
  /** The stored JSON text of `key`, or null when absent. */
  read(key: string): Promise<string | null>;
  /** JSON text of a value to write; throws when it is not storable. */
  encode(value: unknown): string;
  /** Commits `writes` (null = delete) only if every key in `reads` still holds its text; false on conflict. */
  commit(reads: [string, string | null][], writes: [string, string | null][]): Promise<boolean>;
  /** The error to throw after the last attempt conflicted. */
  conflict(attempts: number): Error;
}

export interface Transaction {
  get(key: string): Promise<unknown>;
  put(key: string, value: unknown): void;
  delete(key: string): void;
}

export const MAX_TRANSACT_ATTEMPTS = 10;

export async function transactLoop<T>(ops: TransactOps, fn: (tx: Transaction) => Promise<T> | T, maxAttempts: number): Promise<T> {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const reads = new Map<string, string | null>();
    const writes = new Map<string, string | null>();
    const tx: Transaction = {
      async get(key) {
        const text = writes.has(key) ? writes.get(key)! : reads.has(key) ? reads.get(key)! : await ops.read(key);
        if (!writes.has(key) && !reads.has(key)) reads.set(key, text);
        return text === null ? undefined : JSON.parse(text);
      },
      put(key, value) {
        writes.set(key, ops.encode(value));
      },
      delete(key) {
        writes.set(key, null);
      },
    };
    const result = await fn(tx);
    if (await ops.commit([...reads], [...writes])) return result;
  }
  throw ops.conflict(maxAttempts);
}
