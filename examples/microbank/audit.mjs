// MicroBank's audit, shared by the tests and `npm run bench -- microbank`: reads every account,
// ledger entry and transaction through the unrouted `accounts.audit` / `transactions.audit`
// handlers and checks the bank's invariants (the KV layout is described in services/accounts.js).

/** Every value of one audit listing, page by page. */
async function readAll(invoke, service, prefix) {
  const items = [];
  for (let after; ;) {
    const page = await invoke(service, 'audit', after === undefined ? { prefix } : { prefix, after });
    items.push(...page.items);
    if (page.next === null || page.next === undefined) return items;
    after = page.next;
  }
}

/**
 * `invoke(service, method, input) → Promise<result>` calls a MicroBank handler; `acked` are the
 * 200 bodies ({ id, from, to, amount }) of the payments clients saw succeed. Returns:
 * - `conserved`: the balances plus the money of payments still in flight (debited, neither
 *   credited nor refunded) add up to the opening balances, and no balance is negative;
 * - `ledgerConsistent`: every balance equals its opening balance minus its debits plus its credits
 *   and refunds in the ledger (a step applied twice, or without its ledger entry, breaks this);
 * - `exactlyOnce`: every acknowledged payment has exactly one ledger entry, debited and credited once,
 *   not refunded, with the acknowledged accounts and amount, and its transaction is `completed`;
 *   every transaction's status agrees with its ledger entry;
 * - `problems`: what broke, one line each (the first 20).
 */
export async function auditMicrobank(invoke, { acked = [] } = {}) {
  const [accounts, ledger, transactions] = await Promise.all([
    readAll(invoke, 'accounts', 'acct/'), readAll(invoke, 'accounts', 'pay/'), readAll(invoke, 'transactions', 'tx/'),
  ]);
  const problems = [];
  const expected = new Map(accounts.map((account) => [account.id, account.opening]));
  const add = (id, amount) => expected.set(id, (expected.get(id) ?? Number.NaN) + amount);
  let inFlight = 0;
  for (const entry of ledger) {
    if (entry.debited) add(entry.from, -entry.amount);
    if (entry.credited) add(entry.to, entry.amount);
    if (entry.refunded) add(entry.from, entry.amount);
    if (entry.credited && entry.refunded) problems.push(`payment ${entry.id} was both credited and refunded`);
    if (entry.debited && !entry.credited && !entry.refunded) inFlight += entry.amount;
  }
  let total = 0;
  let opening = 0;
  let ledgerConsistent = true;
  for (const account of accounts) {
    total += account.balance;
    opening += account.opening;
    if (account.balance < 0) problems.push(`account ${account.id} is negative: ${account.balance}`);
    if (account.balance !== expected.get(account.id)) {
      ledgerConsistent = false;
      problems.push(`account ${account.id} holds ${account.balance}, its ledger says ${expected.get(account.id)}`);
    }
  }
  const conserved = total + inFlight === opening && accounts.every((account) => account.balance >= 0);
  if (total + inFlight !== opening) problems.push(`balances ${total} + in flight ${inFlight} ≠ opening ${opening}`);

  const entries = new Map(ledger.map((entry) => [entry.id, entry]));
  const byId = new Map(transactions.map((transaction) => [transaction.id, transaction]));
  let exactlyOnce = true;
  const wrong = (line) => { exactlyOnce = false; problems.push(line); };
  for (const transaction of transactions) {
    const entry = entries.get(transaction.id);
    const moved = entry !== undefined && entry.credited && !entry.refunded;
    if (transaction.status === 'completed' && !moved) wrong(`transaction ${transaction.id} is completed but its ledger entry is not credited`);
    if (transaction.status === 'failed' && (moved || (entry?.debited && !entry.refunded))) wrong(`transaction ${transaction.id} failed but money moved`);
  }
  for (const ack of new Map(acked.map((body) => [body.id, body])).values()) {
    const entry = entries.get(ack.id);
    if (entry === undefined) wrong(`acknowledged payment ${ack.id} has no ledger entry`);
    else if (!entry.debited || !entry.credited || entry.refunded) wrong(`acknowledged payment ${ack.id} is not debited and credited once`);
    else if (entry.from !== ack.from || entry.to !== ack.to || entry.amount !== ack.amount) wrong(`acknowledged payment ${ack.id} differs from its ledger entry`);
    if (byId.get(ack.id)?.status !== 'completed') wrong(`acknowledged payment ${ack.id} has no completed transaction`);
  }
  const count = (status) => transactions.filter((transaction) => transaction.status === status).length;
  return {
    accounts: accounts.length, total, opening, inFlight, conserved, ledgerConsistent, exactlyOnce,
    payments: { completed: count('completed'), failed: count('failed'), pending: count('pending') },
    problems: problems.slice(0, 20),
  };
}
