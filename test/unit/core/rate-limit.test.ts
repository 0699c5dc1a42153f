import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RateLimiter } from '../../../src/core/rate-limit.js';

test('a token bucket allows its burst, then earns perSecond back', () => {
  const limiter = new RateLimiter({ perSecond: 10, burst: 3 });
  assert.deepEqual([0, 0, 0, 0].map(() => limiter.take('a', 1000)), [true, true, true, false]);
  assert.equal(limiter.take('b', 1000), true, 'another key has its own bucket');
  assert.equal(limiter.take('a', 1050), false, 'half a token after 50 ms');
  assert.equal(limiter.take('a', 1100), true, 'one token after 100 ms');
  assert.equal(limiter.take('a', 10_000), true);
  assert.deepEqual([0, 0, 0].map(() => limiter.take('a', 10_000)), [true, true, false], 'never more than the burst');
  assert.equal(limiter.refused, 3);
});

test('at most maxKeys buckets are kept; the least recently used is forgotten', () => {
  const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, { maxKeys: 2 });
  assert.equal(limiter.take('a', 0), true);
  assert.equal(limiter.take('b', 0), true);
  assert.equal(limiter.take('a', 0), false); // a is now the most recently used
  assert.equal(limiter.take('c', 0), true); // b is forgotten
  assert.equal(limiter.size, 2);
  assert.equal(limiter.take('a', 0), false, 'a was kept with its empty bucket');
  assert.equal(limiter.take('b', 0), true, 'b starts again with a full bucket');
});

test('invalid limits are programmer errors', () => {
  assert.throws(() => new RateLimiter({ perSecond: 0, burst: 1 }), RangeError);
  assert.throws(() => new RateLimiter({ perSecond: 1, burst: 0.5 }), RangeError);
  assert.throws(() => new RateLimiter({ perSecond: Number.NaN, burst: 1 }), RangeError);
});
