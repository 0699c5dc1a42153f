// MicroBank `payment`: the payment saga behind POST /users/:id/pay. KV layout (namespace `payment`):
//   saga/<payment> → { id, user, from, to, amount, state: pending|completed|failed, result?, error?, createdAt }
// The payment id is `<user>:<Idempotency-Key>`. A request whose saga is pending (a first attempt,
// or a retry after an instance died mid-flow) runs every step again: each step is idempotent by the
// payment id (transactions.record, accounts.debit/credit/refund, transactions.complete/fail) and
// returns the decision made the first time, so concurrent and repeated runs reach the same end.
// A concluded saga answers with its stored result or error: replays get the first answer.

const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;
const ACCOUNT_ID = /^[a-z0-9_-]{1,32}\.[0-9]{1,3}$/;
const MAX_AMOUNT = 100000000; // cents: 1,000,000.00 per payment

/** Route POST /users/:id/pay, header Idempotency-Key, body { from, to, amount } (amount in cents). */
export async function pay(input, ctx) {
  const user = input.params.id;
  if (ctx.principal?.subject !== user) throw ctx.error(403, 'FORBIDDEN', 'you can only pay as yourself');
  const key = input.idempotencyKey;
  if (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)) {
    throw ctx.error(400, 'BAD_REQUEST', 'the Idempotency-Key header is required: 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  const { from, to, amount } = input.body ?? {};
  if (typeof from !== 'string' || !ACCOUNT_ID.test(from) || typeof to !== 'string' || !ACCOUNT_ID.test(to)) {
    throw ctx.error(400, 'BAD_REQUEST', 'from and to must be account ids such as "alice.1"');
  }
  if (from === to) throw ctx.error(400, 'BAD_REQUEST', 'from and to must be different accounts');
  if (!Number.isSafeInteger(amount) || amount < 1 || amount > MAX_AMOUNT) {
    throw ctx.error(400, 'BAD_REQUEST', `amount must be an integer number of cents from 1 to ${MAX_AMOUNT}`);
  }
  const id = `${user}:${key}`;
  let saga = await ctx.kv.transact(async (tx) => {
    const seen = await tx.get(`saga/${id}`);
    if (seen !== undefined) return seen;
    const started = { id, user, from, to, amount, state: 'pending', createdAt: new Date().toISOString() };
    tx.put(`saga/${id}`, started);
    return started;
  });
  if (saga.from !== from || saga.to !== to || saga.amount !== amount) {
    throw ctx.error(409, 'IDEMPOTENCY_KEY_REUSED', `Idempotency-Key ${key} was used for a different payment; use a new key`);
  }
  if (saga.state === 'pending') saga = await run(saga, ctx);
  if (saga.state === 'completed') return saga.result;
  throw ctx.error(saga.error.status, saga.error.code, saga.error.message);
}

/** The steps: record → debit → credit, or record → debit → (credit declined) refund → failed. */
async function run(saga, ctx) {
  const { id, user, from, to, amount } = saga;
  await ctx.call('transactions', 'record', { id, user, from, to, amount });
  let entry = await ctx.call('accounts', 'debit', { payment: id, from, to, amount });
  if (entry.debited && entry.declined === undefined) entry = await ctx.call('accounts', 'credit', { payment: id });
  if (entry.debited && entry.declined !== undefined) entry = await ctx.call('accounts', 'refund', { payment: id });
  let end;
  if (entry.credited) {
    await ctx.call('transactions', 'complete', { id, payee: entry.payee });
    end = { state: 'completed', result: { id, status: 'completed', from, to, amount, balance: entry.balance } };
  } else {
    const error = { ...entry.declined, message: entry.refunded ? `${entry.declined.message}; the debit was refunded` : entry.declined.message };
    await ctx.call('transactions', 'fail', { id, error, refunded: entry.refunded });
    end = { state: 'failed', error };
  }
  ctx.log.info('payment concluded', { payment: id, state: end.state });
  return ctx.kv.transact(async (tx) => {
    const current = await tx.get(`saga/${id}`);
    if (current.state !== 'pending') return current; // a concurrent run of the same payment concluded first, identically
    const concluded = { ...current, ...end };
    tx.put(`saga/${id}`, concluded);
    return concluded;
  });
}
