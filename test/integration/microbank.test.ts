/**
 * MicroBank (examples/microbank) end to end: startApp in this process, every request over real
 * HTTP through the gateway, the functions in isolates calling each other over Themis, balances
 * in LMDB. Invariants are checked twice: through the public API (balances, histories) in each
 * test, and at the end, after a graceful close, with the shared audit (examples/microbank/audit.mjs)
 * over every account, ledger entry and transaction in the store.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openKv, startApp, type RunningApp } from '../../src/runtime/index.js';
import { MICROBANK, audit, plainMicrobank } from './helpers/microbank.js';

const OPENING = 10000;

interface Reply {
  status: number;
  body: any;
}

interface User {
  id: string;
  token: string;
  account: string;
}

interface Paid {
  id: string;
  from: string;
  to: string;
  amount: number;
  balance: number;
}

describe('MicroBank through the gateway', () => {
  let app: RunningApp;
  let dataDir: string;
  /** Every payment the gateway acknowledged (200 bodies), for the final audit. */
  const acked: Paid[] = [];

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'themis-microbank-'));
    app = await startApp({ dir: MICROBANK, dataDir, port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function http(method: string, path: string, init: { body?: unknown; token?: string; key?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    if (init.token !== undefined) headers['authorization'] = `Bearer ${init.token}`;
    if (init.key !== undefined) headers['idempotency-key'] = init.key;
    const res = await fetch(app.gateway + path, { method, headers, body: init.body === undefined ? null : JSON.stringify(init.body) });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  }

  async function ok(method: string, path: string, init: { body?: unknown; token?: string; key?: string; status?: number } = {}): Promise<any> {
    const reply = await http(method, path, init);
    assert.equal(reply.status, init.status ?? 200, `${method} ${path}: ${JSON.stringify(reply.body)}`);
    return reply.body;
  }

  /** Registers, logs in and opens one account. */
  async function user(id: string): Promise<User> {
    const password = `${id} secret words`;
    await ok('POST', '/users', { body: { id, name: id.toUpperCase(), password }, status: 201 });
    const { token } = await ok('POST', '/login', { body: { id, password } });
    const { id: account } = await ok('POST', `/users/${id}/accounts`, { token, body: {} });
    return { id, token, account };
  }

  /**
   * What a careful client does: pays with one Idempotency-Key and retries it (same key) after a
   * 5xx, a 409 CONFLICT or a dropped connection, until the answer is definitive.
   */
  async function payRetrying(payer: User, to: string, amount: number, key: string, retried = { count: 0 }): Promise<Reply> {
    for (let attempt = 0; attempt < 40; attempt++) {
      const reply = await http('POST', `/users/${payer.id}/pay`, { token: payer.token, key, body: { from: payer.account, to, amount } }).catch(() => undefined);
      if (reply !== undefined && reply.status < 500 && reply.body?.error?.code !== 'CONFLICT') return reply;
      retried.count++;
      await new Promise((resolve) => setTimeout(resolve, 20 * Math.min(attempt + 1, 10)));
    }
    throw new Error(`payment ${payer.id}:${key} got no definitive answer in 40 attempts`);
  }

  async function balance(owner: User): Promise<number> {
    const { accounts } = await ok('GET', `/users/${owner.id}/accounts`, { token: owner.token });
    return accounts.find((account: { id: string }) => account.id === owner.account).balance;
  }

  test('the scripted session: register, login, accounts, pay, replay, declines, history — with their status codes', async () => {
    assert.equal((await http('POST', '/users', { body: { id: 'Alice!', name: 'x', password: 'pw pw pw pw' } })).status, 400);
    const alice = await user('alice');
    const bob = await user('bob');
    const again = await http('POST', '/users', { body: { id: 'alice', name: 'again', password: 'other password' } });
    assert.deepEqual([again.status, again.body.error.code], [409, 'USER_EXISTS']);
    assert.equal((await http('POST', '/login', { body: { id: 'alice', password: 'wrong password' } })).status, 401);
    assert.equal((await http('GET', '/users/alice/accounts')).status, 401);
    assert.equal((await http('GET', '/users/alice/accounts', { token: 'not-a-token' })).status, 401);
    const me = await ok('GET', '/users/alice', { token: alice.token });
    assert.deepEqual([me.id, me.name], ['alice', 'ALICE']);

    // user-scoped routes belong to the token's user
    for (const [method, path] of [['GET', '/users/bob'], ['GET', '/users/bob/accounts'], ['POST', '/users/bob/accounts'], ['GET', '/users/bob/transactions'], ['POST', '/users/bob/pay']] as const) {
      const reply = await http(method, path, { token: alice.token, key: 'k', body: method === 'POST' ? { from: bob.account, to: alice.account, amount: 1 } : undefined });
      assert.equal(reply.status, 403, `${method} ${path} as alice`);
      assert.equal(reply.body.error.code, 'FORBIDDEN');
    }
    const { accounts } = await ok('GET', '/users/alice/accounts', { token: alice.token });
    assert.deepEqual(accounts.map((a: { id: string; owner: string; balance: number; opening: number }) => [a.id, a.owner, a.balance, a.opening]), [['alice.1', 'alice', OPENING, OPENING]]);

    const body = { from: alice.account, to: bob.account, amount: 2500 };
    const paid = await ok('POST', '/users/alice/pay', { token: alice.token, key: 'k-001', body });
    acked.push(paid);
    assert.deepEqual(paid, { id: 'alice:k-001', status: 'completed', ...body, balance: OPENING - 2500 });
    assert.deepEqual(await ok('POST', '/users/alice/pay', { token: alice.token, key: 'k-001', body }), paid, 'a replay answers the same');
    const reused = await http('POST', '/users/alice/pay', { token: alice.token, key: 'k-001', body: { ...body, amount: 2600 } });
    assert.equal(reused.status, 409);
    assert.equal(reused.body.error.code, 'IDEMPOTENCY_KEY_REUSED');

    const declines: [string, unknown, number, string][] = [
      ['k-002', { ...body, amount: 900000 }, 422, 'INSUFFICIENT_FUNDS'],
      ['k-003', { from: bob.account, to: alice.account, amount: 100 }, 403, 'FORBIDDEN'],
      ['k-004', { from: alice.account, to: 'bob.9', amount: 100 }, 404, 'NOT_FOUND'],
      ['k-005', { from: alice.account, to: bob.account, amount: 1.5 }, 400, 'BAD_REQUEST'],
      ['k-006', { from: alice.account, to: alice.account, amount: 1 }, 400, 'BAD_REQUEST'],
      ['k-007', { from: alice.account, to: bob.account, amount: -100 }, 400, 'BAD_REQUEST'],
      ['k-008', { from: alice.account, to: bob.account, amount: '100' }, 400, 'BAD_REQUEST'],
    ];
    for (const [key, declined, status, code] of declines) {
      const reply = await http('POST', '/users/alice/pay', { token: alice.token, key, body: declined });
      assert.equal(reply.status, status, `${key}: ${JSON.stringify(reply.body)}`);
      assert.equal(reply.body.error.code, code);
      assert.deepEqual(await http('POST', '/users/alice/pay', { token: alice.token, key, body: declined }), reply, `${key} replays its decline`);
    }
    const noKey = await http('POST', '/users/alice/pay', { token: alice.token, body });
    assert.equal(noKey.status, 400);
    assert.match(noKey.body.error.message, /Idempotency-Key/);
    assert.equal(await balance(alice), OPENING - 2500, 'declines moved nothing; the payment to a missing account was refunded');
    assert.equal(await balance(bob), OPENING + 2500);

    const history = await ok('GET', '/users/alice/transactions', { token: alice.token });
    assert.deepEqual(history.transactions.map((t: any) => [t.id, t.status, t.direction, t.error?.code ?? null, t.refunded ?? null]), [
      ['alice:k-004', 'failed', 'out', 'NOT_FOUND', true],
      ['alice:k-003', 'failed', 'out', 'FORBIDDEN', false],
      ['alice:k-002', 'failed', 'out', 'INSUFFICIENT_FUNDS', false],
      ['alice:k-001', 'completed', 'out', null, null],
    ]);
    assert.equal(history.next, null);
    const page1 = await ok('GET', '/users/alice/transactions?limit=3', { token: alice.token });
    const page2 = await ok('GET', `/users/alice/transactions?limit=3&after=${encodeURIComponent(page1.next)}`, { token: alice.token });
    assert.deepEqual([...page1.transactions, ...page2.transactions].map((t: any) => t.id), history.transactions.map((t: any) => t.id));
    const incoming = await ok('GET', '/users/bob/transactions', { token: bob.token });
    assert.deepEqual(incoming.transactions.map((t: any) => [t.id, t.direction, t.payee]), [['alice:k-001', 'in', 'bob']]);
    assert.equal((await http('GET', '/users/alice/transactions?limit=0', { token: alice.token })).status, 400);
  });

  test('40 concurrent payments in both directions conserve money and none is applied twice', async (t) => {
    const a = await user('conc-a');
    const b = await user('conc-b');
    const retried = { count: 0 };
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? payRetrying(a, b.account, 100 + i, `c${i}`, retried) : payRetrying(b, a.account, 100 + i, `c${i}`, retried))),
    );
    for (const reply of replies) assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const paid: Paid[] = replies.map((reply) => reply.body);
    acked.push(...paid);
    const sent = (from: User) => paid.filter((p) => p.from === from.account).reduce((sum, p) => sum + p.amount, 0);
    assert.equal(await balance(a), OPENING - sent(a) + sent(b));
    assert.equal(await balance(b), OPENING - sent(b) + sent(a));
    const history = await ok('GET', '/users/conc-a/transactions?limit=100', { token: a.token });
    assert.equal(history.transactions.length, 40, 'each payment once in the history of either side');
    assert.equal(new Set(history.transactions.map((t: any) => t.id)).size, 40);
    assert.ok(history.transactions.every((t: any) => t.status === 'completed'));
    t.diagnostic(`${retried.count} retries (store conflicts) were answered by the first outcome`);
  });

  test('concurrent replays of one Idempotency-Key pay once and all get the same answer', async () => {
    const a = await user('replay-a');
    const b = await user('replay-b');
    const replies = await Promise.all(Array.from({ length: 10 }, () => payRetrying(a, b.account, 777, 'once')));
    for (const reply of replies) assert.deepEqual(reply, replies[0]);
    assert.equal(replies[0]!.status, 200);
    acked.push(replies[0]!.body);
    assert.equal(await balance(a), OPENING - 777);
    assert.equal(await balance(b), OPENING + 777);
  });

  test('killing instances mid-load loses no acknowledged payment (clients retry with the same key)', async (t) => {
    const pairs = await Promise.all([0, 1, 2, 3].map(async (i) => [await user(`kill-${i}a`), await user(`kill-${i}b`)] as const));
    const paid: Paid[] = [];
    const retried = { count: 0 };
    const kills = new Map<number, string>([[8, 'payment'], [20, 'accounts'], [32, 'transactions'], [44, 'payment']]);
    const killed: string[] = [];
    let killing = Promise.resolve();
    const onAck = (body: Paid) => {
      paid.push(body);
      const service = kills.get(paid.length);
      if (service !== undefined) killing = killing.then(() => killOne(service)).then(() => void killed.push(service));
    };
    await Promise.all(
      pairs.map(async ([a, b], pair) => {
        for (let n = 0; n < 15; n++) {
          const [payer, payee] = n % 2 === 0 ? [a, b] : [b, a];
          const reply = await payRetrying(payer, payee.account, 1 + n, `p${pair}-${n}`, retried);
          assert.equal(reply.status, 200, JSON.stringify(reply.body));
          onAck(reply.body);
        }
      }),
    );
    await killing;
    assert.deepEqual(killed, ['payment', 'accounts', 'transactions', 'payment']);
    for (const [a, b] of pairs) assert.equal((await balance(a)) + (await balance(b)), 2 * OPENING);
    assert.equal(paid.length, 60);
    acked.push(...paid);
    const report = await audit(await plainMicrobank(app.kv), acked); // the live store, read beside the running app
    assert.deepEqual([report.conserved, report.ledgerConsistent, report.exactlyOnce, report.inFlight], [true, true, true, 0], report.problems.join('\n'));
    const replaced = Object.entries(app.host.stats()).map(([service, stats]) => `${service} ${stats.replaced}`).join(', ');
    t.diagnostic(`${retried.count} retries after the kills; instances replaced: ${replaced}`);
  });

  test('after a graceful close, the store conserves money and holds every acknowledged payment exactly once', async () => {
    await app.close();
    const kv = await openKv(join(app.dataDir, 'kv')); // where startApp keeps it
    try {
      const report = await audit(await plainMicrobank(kv), acked);
      assert.deepEqual([report.conserved, report.ledgerConsistent, report.exactlyOnce, report.inFlight], [true, true, true, 0], report.problems.join('\n'));
      assert.equal(report.payments.completed, acked.length);
      assert.equal(report.payments.pending, 0);
    } finally {
      await kv.close();
    }
  });

  /**
   * Kills instance #0 of `service` once it has one (it may still be replacing the last one killed)
   * and, within 2 s, once that instance has requests in flight — a crash in the middle of sagas.
   */
  async function killOne(service: string): Promise<void> {
    for (let waited = 0; ; waited++) {
      const stats = app.host.stats()[service]!;
      if (stats.instances > 0 && (stats.inFlight > 0 || waited >= 400)) break;
      assert.ok(waited < 2000, `${service} has had no instance for 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await app.host.killInstance(service, 0);
  }
});
