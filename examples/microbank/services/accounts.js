// MicroBank `accounts`: balances and the payment ledger. KV layout (namespace `accounts`):
//   owner/<user>   → how many accounts the user has opened (account ids are `<user>.<n>`)
//   acct/<account> → { id, owner, name, balance, opening, createdAt }          balances in cents
//   pay/<payment>  → { id, from, to, amount, debited, credited, refunded, balance?, payee?, declined? }
// `pay/<payment>` is the ledger entry of one payment. Every step of the payment saga reads and
// writes it in the same transaction as the balance it changes, so each step happens at most once
// per payment, the first decision of a step (done or declined) is final, and a credit and a refund
// of the same payment exclude each other. Invariant checked by examples/microbank/audit.mjs:
//   balance = opening − debited + credited + refunded (summed over the ledger entries of the account).

const OPENING_BALANCE = 10000; // cents: a new account starts with 100.00 (a demo grant) so payments can happen
const MAX_ACCOUNTS = 10; // per user: the opening grant must not be a money printer

/** Route POST /users/:id/accounts, body { name? }. */
export async function open(input, ctx) {
  const owner = input.params.id;
  if (ctx.principal?.subject !== owner) throw ctx.error(403, 'FORBIDDEN', 'you can only open accounts for yourself');
  const name = input.body?.name ?? 'checking';
  if (typeof name !== 'string' || name.length < 1 || name.length > 100) {
    throw ctx.error(400, 'BAD_REQUEST', 'name must be a string of 1-100 characters');
  }
  const createdAt = new Date().toISOString();
  const account = await ctx.kv.transact(async (tx) => {
    const count = (await tx.get(`owner/${owner}`)) ?? 0;
    if (count >= MAX_ACCOUNTS) return undefined;
    const opened = { id: `${owner}.${count + 1}`, owner, name, balance: OPENING_BALANCE, opening: OPENING_BALANCE, createdAt };
    tx.put(`owner/${owner}`, count + 1);
    tx.put(`acct/${opened.id}`, opened);
    return opened;
  });
  if (account === undefined) throw ctx.error(409, 'ACCOUNT_LIMIT', `a user can open at most ${MAX_ACCOUNTS} accounts`);
  ctx.log.info('account opened', { account: account.id });
  return account;
}

/** Route GET /users/:id/accounts. */
export async function list(input, ctx) {
  const owner = input.params.id;
  if (ctx.principal?.subject !== owner) throw ctx.error(403, 'FORBIDDEN', 'you can only list your own accounts');
  const rows = await ctx.kv.list(`acct/${owner}.`, { limit: MAX_ACCOUNTS });
  const number = (account) => Number(account.id.slice(owner.length + 1));
  return { accounts: rows.map((row) => row.value).sort((a, b) => number(a) - number(b)) };
}

/**
 * Saga step 1 (from `payment` only): take `amount` from `from`, which must belong to the end user
 * on whose behalf the payment runs (ctx.principal). Returns the ledger entry; a decline is recorded
 * in it (`declined: { status, code, message }`) and returned again on every retry.
 */
export async function debit(input, ctx) {
  const { payment, from, to, amount } = input;
  if (!Number.isSafeInteger(amount) || amount <= 0) throw ctx.error(400, 'BAD_REQUEST', 'amount must be a positive integer');
  return ctx.kv.transact(async (tx) => {
    const seen = await tx.get(`pay/${payment}`);
    if (seen !== undefined) return seen;
    const entry = { id: payment, from, to, amount, debited: false, credited: false, refunded: false };
    const account = await tx.get(`acct/${from}`);
    if (account === undefined) {
      entry.declined = { status: 404, code: 'NOT_FOUND', message: `no account ${from}` };
    } else if (account.owner !== ctx.principal?.subject) {
      entry.declined = { status: 403, code: 'FORBIDDEN', message: `account ${from} is not yours` };
    } else if (account.balance < amount) {
      entry.declined = { status: 422, code: 'INSUFFICIENT_FUNDS', message: `account ${from} holds ${account.balance}, the payment needs ${amount}` };
    } else {
      account.balance -= amount;
      tx.put(`acct/${from}`, account);
      entry.debited = true;
      entry.balance = account.balance;
    }
    tx.put(`pay/${payment}`, entry);
    return entry;
  });
}

/** Saga step 2: give the debited amount to `to` (any user's account); a missing account is a recorded decline. */
export async function credit(input, ctx) {
  return settle(ctx, input.payment, 'credit');
}

/** Compensation: a debited payment whose credit was declined gives the amount back to `from`. */
export async function refund(input, ctx) {
  return settle(ctx, input.payment, 'refund');
}

/**
 * The steps after the debit, each applied once. A credit is due only while the payment is
 * undecided, a refund only after a declined credit, so the two never both happen to one payment.
 */
async function settle(ctx, payment, step) {
  return ctx.kv.transact(async (tx) => {
    const entry = await tx.get(`pay/${payment}`);
    if (entry === undefined || !entry.debited) throw new Error(`payment ${payment} was not debited`);
    const due = step === 'credit' ? !entry.credited && entry.declined === undefined : entry.declined !== undefined && !entry.refunded;
    if (!due) return entry;
    const id = step === 'credit' ? entry.to : entry.from;
    const account = await tx.get(`acct/${id}`);
    if (account === undefined) {
      entry.declined = { status: 404, code: 'NOT_FOUND', message: `no account ${id}` }; // accounts are never deleted: only `to` can be missing
    } else {
      account.balance += entry.amount;
      tx.put(`acct/${id}`, account);
      if (step === 'credit') Object.assign(entry, { credited: true, payee: account.owner });
      else entry.refunded = true;
    }
    tx.put(`pay/${payment}`, entry);
    return entry;
  });
}

/** Audit (no route; tests and benches): one page of `acct/` or `pay/` values, `next` to continue. */
export async function audit(input, ctx) {
  const prefix = input.prefix === 'pay/' ? 'pay/' : 'acct/';
  const limit = 1000;
  const rows = await ctx.kv.list(prefix, input.after === undefined ? { limit } : { limit, after: input.after });
  return { items: rows.map((row) => row.value), next: rows.length === limit ? rows[limit - 1].key : null };
}
