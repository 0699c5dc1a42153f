import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { kvNamespace, openKv } from '../../src/runtime/kv.js';
import { Sandbox, callToken, type HostOp } from '../../src/runtime/sandbox.js';

// Real isolates (isolated-vm) and a real LMDB store; run with node --no-node-snapshot.

const MODULE = `
export async function echo(input, ctx) { return { input, principal: ctx.principal ?? null }; }
export async function refuse(input, ctx) { throw ctx.error(402, 'INSUFFICIENT_FUNDS', 'balance too low'); }
export async function crash() { throw new Error('internal detail'); }
export async function spinNow() { for (;;) {} }
export async function spinLater(input, ctx) { await ctx.kv.get('x'); for (;;) {} }
export async function hog() { const keep = []; for (;;) keep.push(new Array(1e5).fill(keep.length)); }
export async function probe({ what }) {
  const probes = {
    process: () => process.pid,
    require: () => require('node:fs'),
    fetch: () => fetch('http://127.0.0.1:1/'),
    setTimeout: () => setTimeout(() => {}, 1),
    constructor: () => (function () {}).constructor('return process')().pid,
    import: () => import('node:fs'),
    bridge: () => { if (globalThis.$bridge || globalThis.$dispatch || globalThis.$bind) return 'found'; throw new Error('no bridge in reach'); },
  };
  try {
    await probes[what]();
    return { reached: true };
  } catch (err) {
    return { reached: false, error: String(err && err.message) };
  }
}
export async function transfer({ from, to, amount }, ctx) {
  return ctx.kv.transact(async (tx) => {
    const balance = await tx.get(from);
    if (balance < amount) throw ctx.error(409, 'INSUFFICIENT_FUNDS', 'not enough');
    tx.put(from, balance - amount);
    tx.put(to, (await tx.get(to)) + amount);
    return balance - amount;
  });
}
`;
const HANDLERS = ['echo', 'refuse', 'crash', 'spinNow', 'spinLater', 'hog', 'probe', 'transfer'];

async function kvHost(t: TestContext): Promise<{ host: HostOp; ns: ReturnType<typeof kvNamespace> }> {
  const dir = mkdtempSync(join(tmpdir(), 'themis-sandbox-'));
  const kv = await openKv(dir);
  t.after(async () => {
    await kv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ns = kvNamespace(kv, 'bank');
  const host: HostOp = async (_token, op, args) => {
    if (op === 'kv.read') return ns.read(args[0] as string);
    if (op === 'kv.commit') return ns.commit(args[0] as [string, string | null][], args[1] as [string, string | null][]);
    return null;
  };
  return { host, ns };
}

async function sandbox(t: TestContext, host: HostOp, options: { timeoutMs?: number; memoryMb?: number } = {}): Promise<Sandbox> {
  const created = await Sandbox.create({ source: MODULE, filename: 'bank.js', handlers: HANDLERS, memoryMb: options.memoryMb ?? 16, timeoutMs: options.timeoutMs ?? 400, host });
  t.after(() => created.dispose());
  return created;
}

test('a handler gets its input and principal; ctx.error keeps status and code; other errors are INTERNAL', async (t) => {
  const { host } = await kvHost(t);
  const box = await sandbox(t, host);
  assert.deepEqual(await box.run('echo', { a: [1, 'two'] }, { subject: 'u-1', claims: {} }, callToken()), {
    ok: { input: { a: [1, 'two'] }, principal: { subject: 'u-1', claims: {} } },
  });
  assert.deepEqual(await box.run('refuse', {}, undefined, callToken()), { error: { status: 402, code: 'INSUFFICIENT_FUNDS', message: 'balance too low' } });
  assert.deepEqual(await box.run('crash', {}, undefined, callToken()), { error: { status: 500, code: 'INTERNAL', message: 'internal detail' } });
});

test('fs, network, process, require, timers, import and the host bridge are out of reach', async (t) => {
  const { host } = await kvHost(t);
  const box = await sandbox(t, host);
  for (const what of ['process', 'require', 'fetch', 'setTimeout', 'constructor', 'import', 'bridge']) {
    const outcome = (await box.run('probe', { what }, undefined, callToken())) as { ok: { reached: boolean; error: string } };
    assert.equal(outcome.ok.reached, false, `${what} was reachable`);
  }
  const outcome = (await box.run('probe', { what: 'process' }, undefined, callToken())) as { ok: { error: string } };
  assert.match(outcome.ok.error, /process is not defined/);
});

test('a synchronous infinite loop is stopped at the timeout and the isolate keeps serving', async (t) => {
  const { host } = await kvHost(t);
  const box = await sandbox(t, host);
  assert.deepEqual(await box.run('spinNow', {}, undefined, callToken()), { error: { status: 504, code: 'TIMEOUT', message: 'the handler did not finish within 400 ms' } });
  assert.equal(box.disposed, null);
  assert.ok('ok' in (await box.run('echo', 1, undefined, callToken())));
});

test('a loop after an await is stopped by disposing that isolate only; another isolate is unharmed', async (t) => {
  const { host } = await kvHost(t);
  const stuck = await sandbox(t, host);
  const other = await sandbox(t, host);
  const reasons: string[] = [];
  stuck.onDispose((reason) => reasons.push(reason));
  const [outcome, meanwhile] = await Promise.all([stuck.run('spinLater', {}, undefined, callToken()), other.run('echo', 'still here', undefined, callToken())]);
  assert.equal((outcome as { error: { status: number } }).error.status, 504);
  assert.deepEqual(reasons, ['timeout']);
  assert.deepEqual(meanwhile, { ok: { input: 'still here', principal: null } });
  assert.equal((await stuck.run('echo', 1, undefined, callToken()) as { error: { code: string } }).error.code, 'INSTANCE_GONE');
  assert.deepEqual(await other.run('echo', 2, undefined, callToken()), { ok: { input: 2, principal: null } });
});

test('unbounded allocation hits the memory limit: that isolate is disposed, another is unharmed', async (t) => {
  const { host } = await kvHost(t);
  const hog = await sandbox(t, host, { timeoutMs: 5_000 });
  const other = await sandbox(t, host);
  const outcome = (await hog.run('hog', {}, undefined, callToken())) as { error: { status: number; code: string } };
  assert.deepEqual([outcome.error.status, outcome.error.code], [503, 'INSTANCE_GONE']);
  assert.equal(hog.disposed, 'memory');
  assert.deepEqual(await other.run('echo', 'fine', undefined, callToken()), { ok: { input: 'fine', principal: null } });
});

test('concurrent transactions from two isolates conserve the sum (the same transact loop runs inside isolates)', async (t) => {
  const { host, ns } = await kvHost(t);
  await ns.commit([], [
    ['a', '500'],
    ['b', '500'],
  ]);
  const boxes = [await sandbox(t, host, { timeoutMs: 10_000 }), await sandbox(t, host, { timeoutMs: 10_000 })];
  const outcomes = await Promise.all(
    Array.from({ length: 60 }, (_, i) => boxes[i % 2]!.run('transfer', i % 3 === 0 ? { from: 'b', to: 'a', amount: 7 } : { from: 'a', to: 'b', amount: 5 }, undefined, callToken())),
  );
  for (const outcome of outcomes) if ('error' in outcome) assert.ok(['CONFLICT', 'INSUFFICIENT_FUNDS'].includes(outcome.error.code), JSON.stringify(outcome));
  const a = Number(await ns.read('a'));
  const b = Number(await ns.read('b'));
  assert.equal(a + b, 1000);
  assert.ok(outcomes.filter((o) => 'ok' in o).length > 0);
});

test('a module that imports, or lacks a handler, is refused with what to fix', async (t) => {
  const { host } = await kvHost(t);
  await assert.rejects(
    Sandbox.create({ source: `import fs from 'node:fs';\nexport async function a() {}`, filename: 'imports.js', handlers: ['a'], memoryMb: 16, timeoutMs: 400, host }),
    (err: unknown) => isThemisError(err, 'ERR_RUNTIME_MODULE') && /cannot import "node:fs"/.test(err.message),
  );
  await assert.rejects(
    Sandbox.create({ source: 'export async function a() {}', filename: 'partial.js', handlers: ['a', 'b'], memoryMb: 16, timeoutMs: 400, host }),
    (err: unknown) => isThemisError(err, 'ERR_RUNTIME_MODULE') && /does not export .* b named in its handlers/.test(err.message),
  );
  await assert.rejects(
    Sandbox.create({ source: 'for (;;) {}', filename: 'toplevel.js', handlers: [], memoryMb: 16, timeoutMs: 200, host }),
    (err: unknown) => isThemisError(err, 'ERR_RUNTIME_MODULE') && /failed to load/.test(err.message),
  );
});
