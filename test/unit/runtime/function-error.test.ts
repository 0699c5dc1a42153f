import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FunctionError, errorOutcome, isOutcome, unwrapOutcome } from '../../../src/runtime/function-error.js';

test('an outcome carries a FunctionError across and back with status, code and message', () => {
  const outcome = errorOutcome(new FunctionError(402, 'INSUFFICIENT_FUNDS', 'balance too low'));
  assert.ok(isOutcome(JSON.parse(JSON.stringify(outcome))));
  assert.throws(() => unwrapOutcome(outcome), (err: unknown) => err instanceof FunctionError && err.status === 402 && err.code === 'INSUFFICIENT_FUNDS' && err.message === 'balance too low');
  assert.equal(unwrapOutcome({ ok: { id: 1 } }) instanceof Object, true);
});

test('any other error is a 500 INTERNAL, and a status outside 400..599 becomes 500', () => {
  assert.deepEqual(errorOutcome(new TypeError('x is undefined')), { error: { status: 500, code: 'INTERNAL', message: 'x is undefined' } });
  for (const status of [200, 302, 600, 404.5, Number.NaN]) {
    assert.throws(() => unwrapOutcome({ error: { status, code: 'ODD', message: 'm' } }), (err: unknown) => err instanceof FunctionError && err.status === 500);
  }
  assert.equal(isOutcome({ error: { status: '404', code: 'X', message: 'm' } }), false);
  assert.equal(isOutcome(null), false);
});
