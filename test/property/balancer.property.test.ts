import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CircuitBreaker, RetryBudget, backoff, pickPowerOfTwo } from '../../src/mesh/balancer.js';

const T0 = 1_700_000_000_000;

/** fast-check's doubles in [0, 1), as a random source would return them. */
const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
/** A random source replaying drawn values. */
const source = fc.array(unit, { minLength: 2, maxLength: 2 }).map((values) => {
  let i = 0;
  return () => values[i++ % values.length]!;
});

/** What can happen to a breaker: an outcome or a call attempt, after some time passes. */
const breakerEvent = fc.record({
  kind: fc.constantFrom('success', 'failure', 'failure', 'acquire'),
  afterMs: fc.integer({ min: 0, max: 400 }),
});
type BreakerEvent = { kind: string; afterMs: number };

/** A breaker that lived through `history`, its last event at `end`. */
function breakerAfter(history: readonly BreakerEvent[], end: number): CircuitBreaker {
  const breaker = new CircuitBreaker({ consecutiveFailures: 3, windowSize: 6, coolDownMs: 1000 });
  let now = end - history.reduce((sum, event) => sum + event.afterMs, 0);
  for (const event of history) {
    now += event.afterMs;
    if (event.kind === 'acquire') breaker.tryAcquire(now);
    else if (event.kind === 'success') breaker.onSuccess(now);
    else breaker.onFailure(now);
  }
  return breaker;
}

test('P2C never picks an instance whose circuit is open while another is available', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          latencyMs: fc.double({ min: 0, max: 1e4, noNaN: true }),
          inFlight: fc.nat(50),
          history: fc.array(breakerEvent, { maxLength: 30 }),
        }),
        { maxLength: 8 },
      ),
      fc.integer({ min: 0, max: 1500 }),
      source,
      (specs, laterMs, random) => {
        const at = T0 + laterMs;
        const candidates = specs.map((spec, id) => {
          const breaker = breakerAfter(spec.history, T0);
          return { id, breaker, latencyMs: spec.latencyMs, inFlight: spec.inFlight, available: breaker.available(at) };
        });
        const picked = pickPowerOfTwo(candidates, random);
        const anyAvailable = candidates.some((candidate) => candidate.available);
        assert.equal(picked !== undefined, anyAvailable);
        if (picked !== undefined) {
          assert.notEqual(picked.breaker.state(at), 'open');
          assert.ok(picked.breaker.tryAcquire(at), 'the picked instance lets the call through');
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('P2C never picks the strictly most expensive of two or more available instances', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ latencyMs: fc.double({ min: 0.001, max: 1e4, noNaN: true }), inFlight: fc.nat(20) }), { minLength: 2, maxLength: 10 }), source, (specs, random) => {
      const candidates = specs.map((spec, id) => ({ id, ...spec, available: true, cost: spec.latencyMs * (spec.inFlight + 1) }));
      const costs = candidates.map((candidate) => candidate.cost).sort((a, b) => b - a);
      const picked = pickPowerOfTwo(candidates, random)!;
      if (costs[0]! > costs[1]!) assert.ok(picked.cost < costs[0]!);
    }),
    { numRuns: 500 },
  );
});

test('a half-open circuit lets at most one call through until that call ends', () => {
  fc.assert(
    fc.property(fc.array(breakerEvent, { maxLength: 60 }), (events) => {
      const breaker = new CircuitBreaker({ consecutiveFailures: 2, windowSize: 4, coolDownMs: 500 });
      let now = T0;
      let probes = 0;
      for (const event of events) {
        now += event.afterMs;
        const state = breaker.state(now);
        if (event.kind === 'acquire') {
          if (breaker.tryAcquire(now) && state === 'half-open') probes += 1;
        } else {
          probes = 0;
          if (event.kind === 'success') breaker.onSuccess(now);
          else breaker.onFailure(now);
        }
        assert.ok(probes <= 1);
        if (breaker.state(now) === 'open') assert.equal(breaker.tryAcquire(now), false);
      }
    }),
    { numRuns: 500 },
  );
});

test('the retry budget never allows more than burst + percent × calls + minPerSecond × seconds', () => {
  fc.assert(
    fc.property(
      fc.record({
        percent: fc.double({ min: 0, max: 1, noNaN: true }),
        minPerSecond: fc.double({ min: 0, max: 50, noNaN: true }),
        burst: fc.double({ min: 1, max: 200, noNaN: true }),
      }),
      fc.array(fc.record({ retry: fc.boolean(), afterMs: fc.integer({ min: 0, max: 2000 }) }), { maxLength: 300 }),
      (init, events) => {
        const budget = new RetryBudget(init);
        let now = T0;
        let calls = 0;
        let retries = 0;
        for (const event of events) {
          now += event.afterMs;
          if (event.retry) {
            if (budget.tryRetry(now)) retries += 1;
          } else {
            budget.recordCall(now);
            calls += 1;
          }
          const allowed = init.burst + init.percent * calls + (init.minPerSecond * (now - T0)) / 1000;
          assert.ok(retries <= allowed + 1e-9, `${retries} retries > ${allowed}`);
          assert.ok(budget.balance(now) <= init.burst + 1e-9);
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('backoff stays within [0, min(maxMs, baseMs × 2^attempt)) and is a whole number of ms', () => {
  fc.assert(
    fc.property(
      fc.nat(2000),
      fc.double({ min: 0.001, max: 1e5, noNaN: true }),
      fc.double({ min: 0, max: 1e7, noNaN: true }),
      unit,
      (attempt, baseMs, extraMs, r) => {
        const maxMs = baseMs + extraMs;
        const delay = backoff(attempt, { baseMs, maxMs, random: () => r });
        assert.ok(Number.isInteger(delay));
        assert.ok(delay >= 0);
        assert.ok(delay < Math.min(maxMs, baseMs * 2 ** attempt));
      },
    ),
    { numRuns: 2000 },
  );
});
