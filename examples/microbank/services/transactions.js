// MicroBank `transactions`: the payment history users see. KV layout (namespace `transactions`):
//   tx/<payment>                  → { id, user, from, to, amount, status, createdAt, updatedAt, payee?, error?, refunded? }
//   user/<user>/<newest>/<payment> → payment id; <newest> = 10^13 − createdAt in ms, 13 digits, so a
//                                    listing in key order is newest first. The payer is indexed when the
//                                    payment is recorded, the payee (owner of `to`) when it completes.
// status: pending → completed | failed (once; a later different outcome is a bug and throws).

const NEWEST_FIRST = 1e13;

/** Saga step 0 (from `payment` only): record the payment as pending; a retry returns the first record. */
export async function record(input, ctx) {
  const { id, user, from, to, amount } = input;
  return ctx.kv.transact(async (tx) => {
    const seen = await tx.get(`tx/${id}`);
    if (seen !== undefined) return seen;
    const now = Date.now();
    const created = { id, user, from, to, amount, status: 'pending', createdAt: new Date(now).toISOString(), updatedAt: new Date(now).toISOString() };
    tx.put(`tx/${id}`, created);
    tx.put(indexKey(user, created), id);
    return created;
  });
}

/** Saga end: the payment completed; `payee` (owner of `to`) sees it in their history from now on. */
export async function complete(input, ctx) {
  return conclude(ctx, input.id, { status: 'completed', payee: input.payee });
}

/** Saga end: the payment failed with `error` ({ code, message }); `refunded` when its debit was given back. */
export async function fail(input, ctx) {
  return conclude(ctx, input.id, { status: 'failed', error: input.error, refunded: input.refunded });
}

async function conclude(ctx, id, outcome) {
  return ctx.kv.transact(async (tx) => {
    const current = await tx.get(`tx/${id}`);
    if (current === undefined) throw new Error(`payment ${id} was never recorded`);
    if (current.status === outcome.status) return current;
    if (current.status !== 'pending') throw new Error(`payment ${id} is ${current.status}, cannot become ${outcome.status}`);
    const concluded = { ...current, ...outcome, updatedAt: new Date().toISOString() };
    tx.put(`tx/${id}`, concluded);
    if (outcome.payee !== undefined && outcome.payee !== current.user) tx.put(indexKey(outcome.payee, current), id);
    return concluded;
  });
}

function indexKey(user, transaction) {
  const newest = String(NEWEST_FIRST - Date.parse(transaction.createdAt)).padStart(13, '0');
  return `user/${user}/${newest}/${transaction.id}`;
}

/** Route GET /users/:id/transactions?limit=N&after=CURSOR: newest first, `next` is the cursor of the next page. */
export async function list(input, ctx) {
  const user = input.params.id;
  if (ctx.principal?.subject !== user) throw ctx.error(403, 'FORBIDDEN', 'you can only list your own transactions');
  const limit = input.query?.limit === undefined ? 50 : Number(input.query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw ctx.error(400, 'BAD_REQUEST', 'limit must be an integer from 1 to 100');
  const prefix = `user/${user}/`;
  const after = input.query?.after;
  if (after !== undefined && (typeof after !== 'string' || !after.startsWith(prefix))) {
    throw ctx.error(400, 'BAD_REQUEST', 'after must be the `next` cursor of a previous page');
  }
  const rows = await ctx.kv.list(prefix, after === undefined ? { limit } : { limit, after });
  const transactions = await Promise.all(rows.map(async (row) => {
    const transaction = await ctx.kv.get(`tx/${row.value}`);
    return { ...transaction, direction: transaction.user === user ? 'out' : 'in' };
  }));
  return { transactions, next: rows.length === limit ? rows[limit - 1].key : null };
}

/** Audit (no route; tests and benches): one page of `tx/` values, `next` to continue. */
export async function audit(input, ctx) {
  const limit = 1000;
  const rows = await ctx.kv.list('tx/', input.after === undefined ? { limit } : { limit, after: input.after });
  return { items: rows.map((row) => row.value), next: rows.length === limit ? rows[limit - 1].key : null };
}
