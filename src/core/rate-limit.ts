/**
 * Token buckets per key (a peer's NodeId): each key may spend `burst` requests at once and earns
 * `perSecond` back, continuously. Keys are kept in least-recently-used order and the oldest is
 * forgotten past `maxKeys`, so memory stays bounded however many identities a flood uses (a
 * forgotten key starts again with a full bucket, which only favours honest peers that return).
 */
export interface RateLimit {
  /** Requests a key earns back per second. */
  readonly perSecond: number;
  /** Requests a key may make at once (the bucket's size). */
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly limit: RateLimit;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();
  #refused = 0;

  constructor(limit: RateLimit, options: { maxKeys?: number } = {}) {
    const { perSecond, burst } = limit;
    if (!(Number.isFinite(perSecond) && perSecond > 0)) throw new RangeError(`a rate limit's perSecond must be a positive number, got ${perSecond}`);
    if (!(Number.isInteger(burst) && burst >= 1)) throw new RangeError(`a rate limit's burst must be an integer of at least 1, got ${burst}`);
    const maxKeys = options.maxKeys ?? 10_000;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) throw new RangeError(`maxKeys must be a positive integer, got ${maxKeys}`);
    this.limit = Object.freeze({ perSecond, burst });
    this.#maxKeys = maxKeys;
  }

  /** Takes one token from `key`'s bucket; false (and counted as refused) when it is empty. */
  take(key: string, now: number = performance.now()): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: this.limit.burst, at: now };
      if (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    } else {
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) * this.limit.perSecond) / 1000);
      bucket.at = now;
      this.#buckets.delete(key); // re-inserted below: most recently used last
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      this.#refused++;
      return false;
    }
    bucket.tokens -= 1;
    return true;
  }

  /** Requests refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /** Keys currently tracked (at most maxKeys). */
  get size(): number {
    return this.#buckets.size;
  }
}
