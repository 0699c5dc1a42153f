import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FunctionError, KV_LIMITS, MAX_TRANSACT_ATTEMPTS, kvContext, openKv, type AppKv } from '../../../src/runtime/index.js';

async function store(t: TestContext): Promise<AppKv> {
  const dir = mkdtempSync(join(tmpdir(), 'themis-kv-'));
  const kv = await openKv(dir);
  t.after(async () => {
    await kv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return kv;
}

const isFunctionError = (status: number, code: string) => (err: unknown) => err instanceof FunctionError && err.status === status && err.code === code;

test('get, list and transact in one namespace; namespaces never see each other', async (t) => {
  const kv = await store(t);
  const users = kvContext(kv, 'users');
  const users2 = kvContext(kv, 'users-2');
  await users.transact((tx) => {
    tx.put('user/b', { name: 'Bo' });
    tx.put('user/a', { name: 'Ada' });
    tx.put('other', 1);
  });
  await users2.transact((tx) => tx.put('user/z', 'not a user of users'));
  assert.deepEqual(await users.get('user/a'), { name: 'Ada' });
  assert.equal(await users.get('missing'), undefined);
  assert.deepEqual(await users.list('user/'), [
    { key: 'user/a', value: { name: 'Ada' } },
    { key: 'user/b', value: { name: 'Bo' } },
  ]);
  assert.deepEqual(await users.list('user/', { limit: 1 }), [{ key: 'user/a', value: { name: 'Ada' } }]);
  assert.equal((await users.list('', { limit: Number.NaN })).length, 3, 'a limit that is no number is the default');
  assert.deepEqual(await users.list('user/', { after: 'user/a' }), [{ key: 'user/b', value: { name: 'Bo' } }], '`after` is exclusive');
  assert.deepEqual(await users.list('user/', { after: 'other' }), await users.list('user/'), 'an `after` before the prefix starts at the prefix');
  assert.deepEqual(await users.list('user/', { after: 'user/b' }), []);
  assert.deepEqual(await users2.list(''), [{ key: 'user/z', value: 'not a user of users' }]);
  assert.equal(await kvContext(kv, 'accounts').get('user/a'), undefined);
  await users.transact((tx) => tx.delete('user/a'));
  assert.equal(await users.get('user/a'), undefined);
});

test('a transaction reads its own writes, sees one snapshot per key, and returns its result', async (t) => {
  const kv = await store(t);
  const ns = kvContext(kv, 'svc');
  await ns.transact((tx) => tx.put('n', 1));
  const result = await ns.transact(async (tx) => {
    const first = await tx.get('n');
    tx.put('n', 2);
    const own = await tx.get('n');
    tx.delete('n');
    return { first, own, deleted: await tx.get('n') };
  });
  assert.deepEqual(result, { first: 1, own: 2, deleted: undefined });
  assert.equal(await ns.get('n'), undefined);
});

test('concurrent transfers conserve the sum and never go negative', async (t) => {
  const kv = await store(t);
  const bank = kvContext(kv, 'accounts');
  const accounts = ['a', 'b', 'c', 'd'];
  await bank.transact((tx) => accounts.forEach((name) => tx.put(`acct/${name}`, 100)));
  let refused = 0;
  const transfer = async (i: number): Promise<void> => {
    const from = `acct/${accounts[i % 4]}`;
    const to = `acct/${accounts[(i * 7 + 1) % 4]}`;
    if (from === to) return;
    try {
      await bank.transact(async (tx) => {
        const balance = (await tx.get(from)) as number;
        const amount = 1 + (i % 13);
        if (balance < amount) throw new FunctionError(409, 'INSUFFICIENT_FUNDS', 'not enough');
        tx.put(from, balance - amount);
        tx.put(to, ((await tx.get(to)) as number) + amount);
      });
    } catch (err) {
      if (err instanceof FunctionError) refused++;
      else throw err;
    }
  };
  await Promise.all(Array.from({ length: 200 }, (_, i) => transfer(i)));
  const rows = await bank.list('acct/');
  assert.equal(rows.reduce((sum, row) => sum + (row.value as number), 0), 400);
  assert.ok(rows.every((row) => (row.value as number) >= 0));
  assert.ok(refused < 200);
});

test('a transaction that always conflicts gives up after the attempt bound with 409 CONFLICT', async (t) => {
  const kv = await store(t);
  const ns = kvContext(kv, 'svc');
  let attempts = 0;
  await assert.rejects(
    ns.transact(async (tx) => {
      attempts++;
      await tx.get('hot');
      // Another writer commits between this attempt's read and its commit.
      await ns.transact((other) => other.put('hot', attempts));
      tx.put('hot', 'mine');
    }),
    isFunctionError(409, 'CONFLICT'),
  );
  assert.equal(attempts, MAX_TRANSACT_ATTEMPTS);
  assert.equal(await ns.get('hot'), MAX_TRANSACT_ATTEMPTS);
});

test('keys and values beyond the limits are refused with a status', async (t) => {
  const kv = await store(t);
  const ns = kvContext(kv, 'svc');
  await assert.rejects(ns.get('k'.repeat(KV_LIMITS.keyBytes + 1)), isFunctionError(400, 'BAD_REQUEST'));
  await assert.rejects(ns.get(''), isFunctionError(400, 'BAD_REQUEST'));
  await assert.rejects(
    ns.transact((tx) => tx.put('big', 'x'.repeat(KV_LIMITS.valueBytes))),
    isFunctionError(413, 'VALUE_TOO_LARGE'),
  );
  await assert.rejects(
    ns.transact((tx) => tx.put('fn', undefined)),
    isFunctionError(400, 'BAD_REQUEST'),
  );
  assert.deepEqual(await ns.list(''), []);
});

test('the store is durable across a reopen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'themis-kv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await openKv(dir);
  await kvContext(first, 'svc').transact((tx) => tx.put('kept', { v: 1 }));
  await first.close();
  const second = await openKv(dir);
  assert.deepEqual(await kvContext(second, 'svc').get('kept'), { v: 1 });
  await second.close();
});
