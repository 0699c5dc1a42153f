/**
 * Instance selection and call resilience for `call()`: latency estimates, power-of-two-choices
 * selection, circuit breaking, a retry budget and jittered backoff. Pure: the caller passes the
 * time (ms) and the random source, so every decision can be replayed in a test.
 */

const second = 1000;

/** Randomness in [0, 1), such as Math.random. */
export type RandomSource = () => number;

export interface EwmaLatencyInit {
  /** Time constant τ (ms): a sample's weight in the estimate falls to 1/e after τ. Default 10 s. */
  readonly decayMs?: number;
}

/**
 * Peak-EWMA latency, as in Finagle's and Linkerd's balancers: a sample slower than the estimate
 * replaces it at once; a faster one is blended in with weight 1 − e^(−Δt/τ), Δt being the time
 * since the previous sample. Between samples the estimate decays toward 0, so an instance that
 * was slow is tried again later. 0 means nothing was measured.
 *
 * @example
 * const latency = new EwmaLatency({ decayMs: 5_000 });
 * latency.observe(12, Date.now());
 * latency.estimate(Date.now()); // ≈ 12
 */
export class EwmaLatency {
  readonly #decayMs: number;
  #value = 0;
  #at = 0;

  constructor(init: EwmaLatencyInit = {}) {
    this.#decayMs = init.decayMs ?? 10 * second;
    assertPositive('decayMs', this.#decayMs);
  }

  /** Records the latency of one call that ended at `now`. */
  observe(latencyMs: number, now: number): void {
    assertNonNegative('latencyMs', latencyMs);
    if (latencyMs > this.estimate(now)) {
      this.#value = latencyMs;
    } else {
      const weight = this.#weight(now);
      this.#value = this.#value * weight + latencyMs * (1 - weight);
    }
    this.#at = Math.max(this.#at, now);
  }

  /** The estimate at `now`, in ms. */
  estimate(now: number): number {
    return this.#value * this.#weight(now);
  }

  /** e^(−Δt/τ): how much of the last estimate still counts at `now`. */
  #weight(now: number): number {
    return Math.exp(-Math.max(0, now - this.#at) / this.#decayMs);
  }
}

/** What pickPowerOfTwo needs to know of an instance. */
export interface Candidate {
  /** Latency estimate in ms (EwmaLatency.estimate); 0 when nothing was measured yet. */
  readonly latencyMs: number;
  /** Calls to it in flight now. */
  readonly inFlight: number;
  /** False while its circuit is open (CircuitBreaker.available). */
  readonly available: boolean;
}

/** Cost of an unmeasured instance that already has calls in flight (Finagle's penalty). */
const UNMEASURED_PENALTY = 1e9;

/** Expected wait at an instance: its latency times the calls it would be serving. */
function cost(candidate: Candidate): number {
  if (candidate.latencyMs === 0 && candidate.inFlight > 0) return UNMEASURED_PENALTY + candidate.inFlight;
  return candidate.latencyMs * (candidate.inFlight + 1);
}

/**
 * Power of two choices (Mitzenmacher): draws two distinct available instances at random and
 * returns the cheaper one, cost being latency × (in-flight calls + 1). An instance whose
 * circuit is open is never picked; undefined when none is available.
 *
 * @example
 * const instance = pickPowerOfTwo(
 *   [
 *     { id: 'a', latencyMs: 4, inFlight: 3, available: true },
 *     { id: 'b', latencyMs: 9, inFlight: 0, available: true },
 *   ],
 *   Math.random,
 * ); // b: 9 × 1 < 4 × 4
 */
export function pickPowerOfTwo<T extends Candidate>(instances: readonly T[], random: RandomSource): T | undefined {
  const available = instances.filter((instance) => instance.available);
  if (available.length <= 1) return available[0];
  const i = Math.floor(draw(random) * available.length);
  let j = Math.floor(draw(random) * (available.length - 1));
  if (j >= i) j += 1;
  const a = available[i]!;
  const b = available[j]!;
  return cost(b) < cost(a) ? b : a;
}

export interface CircuitBreakerInit {
  /** Consecutive failures that open the circuit. Default 5. */
  readonly consecutiveFailures?: number;
  /** Failure rate over the last `windowSize` calls that opens the circuit, in (0, 1]. Default 0.5. */
  readonly failureRate?: number;
  /** Calls the failure rate is measured over; it counts once that many are recorded. Default 20. */
  readonly windowSize?: number;
  /** Time (ms) an open circuit waits before it lets one probe call through. Default 5 s. */
  readonly coolDownMs?: number;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * A circuit breaker per instance. Closed: calls go through; it opens after `consecutiveFailures`
 * failures in a row, or when at least `failureRate` of the last `windowSize` calls failed.
 * Open: no calls, for `coolDownMs`. Half-open: one probe call goes through; its success closes
 * the circuit, its failure opens it for another cool-down.
 *
 * Every call let through by tryAcquire must end in onSuccess or onFailure — a deadline or a
 * cancellation is a failure — or a half-open circuit waits for its probe for ever.
 *
 * @example
 * const breaker = new CircuitBreaker({ consecutiveFailures: 3, coolDownMs: 1_000 });
 * if (breaker.tryAcquire(Date.now())) {
 *   try {
 *     await send();
 *     breaker.onSuccess(Date.now());
 *   } catch (err) {
 *     breaker.onFailure(Date.now());
 *   }
 * }
 */
export class CircuitBreaker {
  readonly #consecutiveLimit: number;
  readonly #failureRate: number;
  readonly #coolDownMs: number;
  /** The last windowSize outcomes, 1 for a failure, as a ring. */
  readonly #window: Uint8Array;
  #windowNext = 0;
  #windowCount = 0;
  #windowFailures = 0;
  #consecutive = 0;
  #state: CircuitState = 'closed';
  #openedAt = 0;
  #probeInFlight = false;

  constructor(init: CircuitBreakerInit = {}) {
    this.#consecutiveLimit = init.consecutiveFailures ?? 5;
    this.#failureRate = init.failureRate ?? 0.5;
    this.#coolDownMs = init.coolDownMs ?? 5 * second;
    const windowSize = init.windowSize ?? 20;
    assertPositiveInteger('consecutiveFailures', this.#consecutiveLimit);
    if (!(this.#failureRate > 0 && this.#failureRate <= 1)) throw new RangeError(`failureRate must be in (0, 1], got ${this.#failureRate}`);
    assertPositiveInteger('windowSize', windowSize);
    assertNonNegative('coolDownMs', this.#coolDownMs);
    this.#window = new Uint8Array(windowSize);
  }

  /** The state at `now`; an open circuit turns half-open once its cool-down has passed. */
  state(now: number): CircuitState {
    if (this.#state === 'open' && now - this.#openedAt >= this.#coolDownMs) {
      this.#state = 'half-open';
      this.#probeInFlight = false;
    }
    return this.#state;
  }

  /** Whether a call could go through now: closed, or half-open with its probe not yet sent. */
  available(now: number): boolean {
    const state = this.state(now);
    return state === 'closed' || (state === 'half-open' && !this.#probeInFlight);
  }

  /** Lets a call through if available; in half-open, that call is the probe. */
  tryAcquire(now: number): boolean {
    if (!this.available(now)) return false;
    if (this.#state === 'half-open') this.#probeInFlight = true;
    return true;
  }

  onSuccess(now: number): void {
    const state = this.state(now);
    if (state === 'half-open' && this.#probeInFlight) this.#close();
    else if (state === 'closed') {
      this.#consecutive = 0;
      this.#record(0);
    }
  }

  onFailure(now: number): void {
    const state = this.state(now);
    if (state === 'half-open' && this.#probeInFlight) this.#open(now);
    else if (state === 'closed') {
      this.#consecutive += 1;
      this.#record(1);
      const windowFull = this.#windowCount === this.#window.length;
      if (this.#consecutive >= this.#consecutiveLimit || (windowFull && this.#windowFailures >= this.#failureRate * this.#window.length)) this.#open(now);
    }
  }

  #record(failure: 0 | 1): void {
    if (this.#windowCount === this.#window.length) this.#windowFailures -= this.#window[this.#windowNext]!;
    else this.#windowCount += 1;
    this.#window[this.#windowNext] = failure;
    this.#windowFailures += failure;
    this.#windowNext = (this.#windowNext + 1) % this.#window.length;
  }

  #open(now: number): void {
    this.#reset();
    this.#state = 'open';
    this.#openedAt = now;
  }

  #close(): void {
    this.#reset();
    this.#state = 'closed';
  }

  #reset(): void {
    this.#consecutive = 0;
    this.#windowNext = 0;
    this.#windowCount = 0;
    this.#windowFailures = 0;
    this.#probeInFlight = false;
  }
}

export interface RetryBudgetInit {
  /** Retries earned per call, in [0, 1]. Default 0.2: retries add at most 20 % to the load. */
  readonly percent?: number;
  /** Retries earned per second whatever the traffic, so quiet clients can retry too. Default 10. */
  readonly minPerSecond?: number;
  /** Most retries saved up, and the balance at the start. Default 100. */
  readonly burst?: number;
}

/**
 * A retry budget as a token bucket (after Finagle's and Envoy's): each call earns `percent` of a
 * retry, time earns `minPerSecond`, the balance holds at most `burst`, and each retry spends one.
 * Over any run, retries ≤ burst + percent × calls + minPerSecond × seconds elapsed, so retries
 * cannot multiply the load an overloaded service sees.
 *
 * @example
 * const budget = new RetryBudget({ percent: 0.1, minPerSecond: 5 });
 * budget.recordCall(Date.now()); // once per call, not per retry
 * if (failed && budget.tryRetry(Date.now())) retry();
 */
export class RetryBudget {
  readonly #percent: number;
  readonly #minPerSecond: number;
  readonly #burst: number;
  #balance: number;
  #at: number | null = null;

  constructor(init: RetryBudgetInit = {}) {
    this.#percent = init.percent ?? 0.2;
    this.#minPerSecond = init.minPerSecond ?? 10;
    this.#burst = init.burst ?? 100;
    if (!(this.#percent >= 0 && this.#percent <= 1)) throw new RangeError(`percent must be in [0, 1], got ${this.#percent}`);
    assertNonNegative('minPerSecond', this.#minPerSecond);
    if (!(this.#burst >= 1 && Number.isFinite(this.#burst))) throw new RangeError(`burst must be a finite number ≥ 1, got ${this.#burst}`);
    this.#balance = this.#burst;
  }

  /** Retries that could be spent at `now` (fractional). */
  balance(now: number): number {
    this.#refill(now);
    return this.#balance;
  }

  /** Earns `percent` of a retry for one call (not for a retry). */
  recordCall(now: number): void {
    this.#refill(now);
    this.#balance = Math.min(this.#burst, this.#balance + this.#percent);
  }

  /** Spends one retry if the budget has it. */
  tryRetry(now: number): boolean {
    this.#refill(now);
    if (this.#balance < 1) return false;
    this.#balance -= 1;
    return true;
  }

  #refill(now: number): void {
    if (this.#at !== null && now > this.#at) {
      this.#balance = Math.min(this.#burst, this.#balance + (this.#minPerSecond * (now - this.#at)) / second);
    }
    this.#at = Math.max(this.#at ?? now, now);
  }
}

export interface BackoffInit {
  /** Delay cap of the first retry (attempt 0), in ms; it doubles per attempt. */
  readonly baseMs: number;
  /** Largest delay, in ms. */
  readonly maxMs: number;
  /** Default Math.random. */
  readonly random?: RandomSource;
}

/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and
 * Jitter"): a whole number of ms drawn uniformly from [0, min(maxMs, baseMs × 2^attempt)).
 *
 * @example
 * const delayMs = backoff(2, { baseMs: 50, maxMs: 2_000 }); // 0 ≤ delayMs < 200
 */
export function backoff(attempt: number, init: BackoffInit): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`attempt must be a non-negative integer, got ${attempt}`);
  assertPositive('baseMs', init.baseMs);
  if (!(init.maxMs >= init.baseMs && Number.isFinite(init.maxMs))) throw new RangeError(`maxMs must be finite and ≥ baseMs (${init.baseMs}), got ${init.maxMs}`);
  return Math.floor(draw(init.random ?? Math.random) * Math.min(init.maxMs, init.baseMs * 2 ** attempt));
}

function draw(random: RandomSource): number {
  const r = random();
  if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
  return r;
}

function assertPositive(name: string, value: number): void {
  if (!(value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a finite number > 0, got ${value}`);
}

function assertNonNegative(name: string, value: number): void {
  if (!(value >= 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a finite number ≥ 0, got ${value}`);
}

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
}
