import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker, EwmaLatency, RetryBudget, backoff, pickPowerOfTwo, type Candidate } from '../../../src/mesh/balancer.js';

const T0 = 1_700_000_000_000;

/** A random source that returns the given values in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

const near = (actual: number, expected: number): void => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} ≈ ${expected}`);

test('EwmaLatency: the first sample sets the estimate; a slower one replaces it at once', () => {
  const latency = new EwmaLatency({ decayMs: 1000 });
  assert.equal(latency.estimate(T0), 0);
  latency.observe(10, T0);
  assert.equal(latency.estimate(T0), 10);
  latency.observe(50, T0 + 1);
  assert.equal(latency.estimate(T0 + 1), 50);
});

test('EwmaLatency: a faster sample is blended in by 1 − e^(−Δt/τ), and the estimate decays between samples', () => {
  const latency = new EwmaLatency({ decayMs: 1000 });
  latency.observe(100, T0);
  near(latency.estimate(T0 + 1000), 100 / Math.E);
  latency.observe(10, T0 + 1000);
  near(latency.estimate(T0 + 1000), 100 / Math.E + 10 * (1 - 1 / Math.E));
  // A faster sample in the same millisecond carries no weight, as in Finagle's PeakEwma.
  latency.observe(1, T0 + 1000);
  near(latency.estimate(T0 + 1000), 100 / Math.E + 10 * (1 - 1 / Math.E));
  assert.ok(latency.estimate(T0 + 60_000) < 1e-9);
});

test('EwmaLatency checks its options and samples', () => {
  for (const decayMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => new EwmaLatency({ decayMs }), RangeError);
  const latency = new EwmaLatency();
  for (const sample of [-1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => latency.observe(sample, T0), RangeError);
});

test('pickPowerOfTwo: none, one, or only unavailable instances', () => {
  const up: Candidate = { latencyMs: 5, inFlight: 0, available: true };
  const down: Candidate = { latencyMs: 1, inFlight: 0, available: false };
  assert.equal(pickPowerOfTwo([], Math.random), undefined);
  assert.equal(pickPowerOfTwo([down, down], Math.random), undefined);
  assert.equal(pickPowerOfTwo([up], Math.random), up);
  assert.equal(pickPowerOfTwo([down, up, down], Math.random), up);
});

test('pickPowerOfTwo draws two distinct instances and keeps the cheaper: latency × (in flight + 1)', () => {
  const a = { id: 'a', latencyMs: 4, inFlight: 3, available: true };
  const b = { id: 'b', latencyMs: 9, inFlight: 0, available: true };
  const c = { id: 'c', latencyMs: 1, inFlight: 0, available: true };
  assert.equal(pickPowerOfTwo([a, b, c], sequence(0, 0))?.id, 'b', 'a (16) against b (9): the second draw skips the first');
  assert.equal(pickPowerOfTwo([a, b, c], sequence(0.99, 0.99))?.id, 'c', 'c (1) against b (9)');
  assert.equal(pickPowerOfTwo([a, { ...a, id: 'a2' }], sequence(0, 0))?.id, 'a', 'a tie keeps the first drawn');
});

test('pickPowerOfTwo: an unmeasured instance is tried first, but not piled on while its first call runs', () => {
  const measured = { id: 'measured', latencyMs: 20, inFlight: 2, available: true };
  const fresh = { id: 'fresh', latencyMs: 0, inFlight: 0, available: true };
  assert.equal(pickPowerOfTwo([measured, fresh], sequence(0, 0))?.id, 'fresh');
  assert.equal(pickPowerOfTwo([measured, { ...fresh, inFlight: 1 }], sequence(0, 0))?.id, 'measured');
});

test('pickPowerOfTwo never picks the single most expensive of several instances', () => {
  const instances = [5, 7, 3, 40, 6].map((latencyMs, i) => ({ id: i, latencyMs, inFlight: 0, available: true }));
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(pickPowerOfTwo(instances, Math.random)!.id);
  assert.ok(!seen.has(3));
  assert.equal(seen.size, 4);
});

test('pickPowerOfTwo refuses a random source outside [0, 1)', () => {
  const two = [
    { latencyMs: 1, inFlight: 0, available: true },
    { latencyMs: 2, inFlight: 0, available: true },
  ];
  for (const r of [1, -0.1, Number.NaN]) assert.throws(() => pickPowerOfTwo(two, () => r), RangeError);
});

test('CircuitBreaker opens after N consecutive failures; a success in between resets the count', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 3, windowSize: 100 });
  breaker.onFailure(T0);
  breaker.onFailure(T0);
  breaker.onSuccess(T0);
  breaker.onFailure(T0);
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'closed');
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'open');
  assert.equal(breaker.available(T0), false);
  assert.equal(breaker.tryAcquire(T0), false);
});

test('CircuitBreaker opens when the failure rate over a full window reaches the threshold', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 100, failureRate: 0.5, windowSize: 10 });
  for (let i = 0; i < 4; i++) {
    breaker.onFailure(T0);
    breaker.onSuccess(T0);
  }
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'closed', '5 failures in 9 calls: the window is not full yet');
  breaker.onSuccess(T0);
  assert.equal(breaker.state(T0), 'closed', 'a success does not open it');
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'open', '5 failures in the last 10 calls');
});

test('CircuitBreaker: old outcomes leave the window', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 100, failureRate: 0.5, windowSize: 4 });
  breaker.onFailure(T0);
  for (let i = 0; i < 4; i++) breaker.onSuccess(T0);
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'closed', '1 failure in the last 4');
  breaker.onFailure(T0);
  assert.equal(breaker.state(T0), 'open', '2 failures in the last 4');
});

test('CircuitBreaker: after the cool-down exactly one probe goes through; its success closes the circuit', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 1, coolDownMs: 1000 });
  breaker.onFailure(T0);
  assert.equal(breaker.tryAcquire(T0 + 999), false);
  assert.equal(breaker.state(T0 + 1000), 'half-open');
  assert.equal(breaker.available(T0 + 1000), true);
  assert.equal(breaker.tryAcquire(T0 + 1000), true);
  assert.equal(breaker.available(T0 + 1001), false);
  assert.equal(breaker.tryAcquire(T0 + 1001), false, 'one probe at a time');
  breaker.onSuccess(T0 + 1100);
  assert.equal(breaker.state(T0 + 1100), 'closed');
  assert.equal(breaker.tryAcquire(T0 + 1100), true);
});

test('CircuitBreaker: a failed probe opens the circuit for another cool-down', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 1, coolDownMs: 1000 });
  breaker.onFailure(T0);
  assert.equal(breaker.tryAcquire(T0 + 1000), true);
  breaker.onFailure(T0 + 1500);
  assert.equal(breaker.state(T0 + 2499), 'open');
  assert.equal(breaker.state(T0 + 2500), 'half-open');
});

test('CircuitBreaker ignores outcomes that arrive while open, or half-open before its probe', () => {
  const breaker = new CircuitBreaker({ consecutiveFailures: 1, coolDownMs: 1000 });
  breaker.onFailure(T0);
  breaker.onSuccess(T0 + 10);
  assert.equal(breaker.state(T0 + 10), 'open');
  breaker.onSuccess(T0 + 1000);
  assert.equal(breaker.state(T0 + 1000), 'half-open');
  breaker.onFailure(T0 + 1000);
  assert.equal(breaker.state(T0 + 1000), 'half-open');
  assert.equal(breaker.tryAcquire(T0 + 1000), true);
});

test('CircuitBreaker checks its options', () => {
  for (const init of [
    { consecutiveFailures: 0 },
    { consecutiveFailures: 1.5 },
    { failureRate: 0 },
    { failureRate: 1.1 },
    { failureRate: Number.NaN },
    { windowSize: 0 },
    { coolDownMs: -1 },
    { coolDownMs: Number.POSITIVE_INFINITY },
  ]) {
    assert.throws(() => new CircuitBreaker(init), RangeError, JSON.stringify(init));
  }
});

test('RetryBudget: starts with its burst, earns percent per call, and spends one per retry', () => {
  const budget = new RetryBudget({ percent: 0.5, minPerSecond: 0, burst: 2 });
  assert.equal(budget.tryRetry(T0), true);
  assert.equal(budget.tryRetry(T0), true);
  assert.equal(budget.tryRetry(T0), false);
  budget.recordCall(T0);
  assert.equal(budget.tryRetry(T0), false, 'half a retry');
  budget.recordCall(T0);
  assert.equal(budget.tryRetry(T0), true);
  for (let i = 0; i < 100; i++) budget.recordCall(T0);
  assert.equal(budget.balance(T0), 2, 'capped at the burst');
});

test('RetryBudget: time earns minPerSecond retries, up to the burst', () => {
  const budget = new RetryBudget({ percent: 0, minPerSecond: 2, burst: 5 });
  for (let i = 0; i < 5; i++) assert.equal(budget.tryRetry(T0), true);
  assert.equal(budget.tryRetry(T0 + 499), false);
  assert.equal(budget.tryRetry(T0 + 500), true);
  assert.equal(budget.tryRetry(T0 + 500), false);
  near(budget.balance(T0 + 1000), 1);
  assert.equal(budget.balance(T0 + 60_000), 5);
  // A clock that steps back earns nothing and breaks nothing.
  assert.equal(budget.balance(T0), 5);
});

test('RetryBudget checks its options', () => {
  for (const init of [{ percent: -0.1 }, { percent: 1.5 }, { percent: Number.NaN }, { minPerSecond: -1 }, { minPerSecond: Number.POSITIVE_INFINITY }, { burst: 0.5 }, { burst: Number.POSITIVE_INFINITY }]) {
    assert.throws(() => new RetryBudget(init), RangeError, JSON.stringify(init));
  }
});

test('backoff: full jitter within min(maxMs, baseMs × 2^attempt)', () => {
  const init = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoff(0, { ...init, random: () => 0 }), 0);
  assert.equal(backoff(0, { ...init, random: () => 0.5 }), 50);
  assert.equal(backoff(2, { ...init, random: () => 0.5 }), 200);
  assert.equal(backoff(3, { ...init, random: () => 0.999999 }), 799);
  assert.equal(backoff(4, { ...init, random: () => 0.999999 }), 999, 'capped');
  assert.equal(backoff(5000, { ...init, random: () => 0.5 }), 500, 'no overflow');
  const delay = backoff(1, init);
  assert.ok(Number.isInteger(delay) && delay >= 0 && delay < 200);
});

test('backoff checks its arguments', () => {
  const init = { baseMs: 100, maxMs: 1000 };
  for (const attempt of [-1, 1.5, Number.NaN]) assert.throws(() => backoff(attempt, init), RangeError);
  assert.throws(() => backoff(0, { baseMs: 0, maxMs: 10 }), RangeError);
  assert.throws(() => backoff(0, { baseMs: 100, maxMs: 99 }), RangeError);
  assert.throws(() => backoff(0, { baseMs: 100, maxMs: Number.POSITIVE_INFINITY }), RangeError);
  assert.throws(() => backoff(0, { ...init, random: () => 1 }), RangeError);
});
