import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startApp, type RunningApp } from '../../src/runtime/index.js';

// One whole app (fixtures/runtime-app) through startApp: anchor, owner-signed policy, host with
// isolates and per-instance mesh peers, and the gateway, over real HTTP and real sockets.

const APP = fileURLToPath(new URL('./fixtures/runtime-app', import.meta.url));
let app: RunningApp;
let dataDir: string;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'themis-app-'));
  app = await startApp({ dir: APP, dataDir });
});

after(async () => {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function http(method: string, path: string, json?: unknown, token?: string): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (json !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${app.gateway}${path}`, { method, headers, ...(json === undefined ? {} : { body: JSON.stringify(json) }) });
  return { status: res.status, body: await res.json() };
}

/** Polls until `check` holds (scaling happens in the background); fails after `ms`. */
async function eventually(what: string, check: () => boolean, ms = 8_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what} (stats ${JSON.stringify(app.host.stats())})`);
    await sleep(50);
  }
}

test('the policy comes from the manifest: digests of the modules, calls as rules, gateway as token issuer', () => {
  const services = Object.fromEntries(app.policy.services.map((s) => [s.name, s.digests.length]));
  assert.deepEqual(services, { gateway: 1, notes: 1, users: 1 });
  const rules = app.policy.rules.map((r) => `${r.from}->${r.to}:${r.methods.join(',')}`).sort();
  assert.deepEqual(rules, ['gateway->notes:add,count,escape,hog,list,slow,spin', 'gateway->users:create,me', 'notes->users:*']);
  assert.deepEqual(app.policy.tokenIssuers, ['gateway', 'notes']);
  assert.match(app.anchor, /^tcp:\/\/127\.0\.0\.1:\d+$/);
});

test('register, login and a call chain that carries the end user: gateway → notes → users', async () => {
  assert.equal((await http('POST', '/users', { name: 'Ada', password: 'correct horse battery' })).status, 201);
  const login = await http('POST', '/login', { id: 'u-ada', password: 'correct horse battery' });
  assert.equal(login.status, 200);
  const token = login.body.token as string;
  assert.deepEqual(await http('GET', '/me', undefined, token), { status: 200, body: { id: 'u-ada', name: 'Ada' } });
  const added = await http('POST', '/notes', { text: 'hello' }, token);
  assert.equal(added.status, 200);
  assert.equal(added.body.owner, 'u-ada', 'users.me saw the principal the notes instance passed on');
  assert.equal((await http('POST', '/notes', { text: 'world' }, token)).status, 200);
  assert.deepEqual(await http('GET', '/notes', undefined, token), { status: 200, body: ['hello', 'world'] });
  assert.deepEqual(await http('GET', '/notes?limit=1', undefined, token), { status: 200, body: ['hello'] });
  assert.deepEqual(await http('GET', '/notes?limit=1&page=2', undefined, token), { status: 200, body: ['world'] }, 'the isolate pages with kv.list after');
  assert.equal((await http('GET', '/me')).status, 401);
  const duplicate = await http('POST', '/users', { name: 'Ada', password: 'correct horse battery' });
  assert.deepEqual(duplicate, { status: 409, body: { error: { code: 'CONFLICT', message: 'user u-ada exists' } } });
});

test('RunningApp.invoke goes through the gateway peer and its policy; app.kv reads the store', async () => {
  assert.deepEqual(await app.invoke('notes', 'count', { body: { by: 0 } }), await app.invoke('notes', 'count', { body: { by: 0 } }));
  const { kvContext } = await import('../../src/runtime/index.js');
  assert.equal(typeof (await kvContext(app.kv, 'notes').get('counter')), 'number');
  await assert.rejects(app.invoke('users', 'census', {}), (err: unknown) => (err as { status?: number }).status === 403, 'no route: the policy refuses the gateway');
  await assert.rejects(app.invoke('users', 'nothing', {}), (err: unknown) => (err as { status?: number }).status === 404);
});

test('concurrent transactions through the gateway count every acknowledged increment exactly once', async () => {
  const start = (await http('POST', '/count', { by: 0 })).body as number;
  const results = await Promise.all(Array.from({ length: 24 }, () => http('POST', '/count', { by: 1 })));
  const acknowledged = results.filter((r) => r.status === 200).length;
  for (const r of results) if (r.status !== 200) assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.ok(acknowledged > 0);
  assert.equal((await http('POST', '/count', { by: 0 })).body, start + acknowledged);
});

test('metrics count cold starts, instances and gateway requests by route and status', async () => {
  assert.equal((await http('POST', '/count', { by: 0 })).status, 200);
  assert.equal((await http('GET', '/nowhere')).status, 404);
  const text = await app.metrics();
  assert.match(text, /themis_runtime_cold_start_seconds_count\{service="notes"\} [1-9]/);
  assert.match(text, /themis_runtime_instances\{service="notes"\} [1-9]/);
  assert.match(text, /themis_gateway_requests_total\{route="POST \/count",status="200"\} [1-9]/);
  assert.match(text, /themis_gateway_requests_total\{route="unmatched",status="404"\} 1/);
});

test('a function cannot reach process, require, timers or modules', async () => {
  for (const what of ['process', 'require', 'fetch', 'timers', 'constructor', 'import']) {
    const res = await http('GET', `/escape/${what}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.reached, false, `${what}: ${JSON.stringify(res.body)}`);
  }
});

test('an infinite loop and unbounded allocation are stopped; only that instance is replaced, other services keep serving', async () => {
  const spin = await http('GET', '/spin');
  assert.deepEqual([spin.status, spin.body.error.code], [504, 'TIMEOUT']);
  const before = app.host.stats();
  const login = await http('POST', '/login', { id: 'u-ada', password: 'correct horse battery' });
  const [hog, me] = await Promise.all([http('GET', '/hog'), http('GET', '/me', undefined, login.body.token)]);
  assert.deepEqual([hog.status, hog.body.error.code], [503, 'INSTANCE_GONE']);
  assert.equal(me.status, 200, 'the users service is unharmed');
  await eventually('the hog instance replaced', () => app.host.stats()['notes']!.replaced > before['notes']!.replaced);
  assert.equal((await http('POST', '/count', { by: 0 })).status, 200);
  assert.equal(app.host.stats()['users']!.replaced, before['users']!.replaced, 'no users instance was replaced');
});

test('scale to zero after idleSeconds, and a request at zero waits for a cold start', async () => {
  assert.equal((await http('POST', '/count', { by: 0 })).status, 200);
  await eventually('notes scaled to zero', () => app.host.stats()['notes']!.instances === 0);
  const coldStarts = app.host.stats()['notes']!.coldStarts;
  const res = await http('POST', '/count', { by: 0 });
  assert.equal(res.status, 200);
  const stats = app.host.stats()['notes']!;
  assert.equal(stats.coldStarts, coldStarts + 1);
  assert.ok(stats.coldStartMs !== null && stats.coldStartMs.last > 0);
});

test('scale up under load: in-flight calls above concurrency start more instances, up to max', async () => {
  let peak = 0;
  const load = Promise.all(Array.from({ length: 12 }, () => http('GET', '/slow/600')));
  const watch = (async () => {
    const end = Date.now() + 5_000;
    while (Date.now() < end && peak < 2) {
      peak = Math.max(peak, app.host.stats()['notes']!.instances);
      await sleep(20);
    }
  })();
  const results = await load;
  await watch;
  for (const r of results) assert.ok(r.status === 200 || r.status === 504, JSON.stringify(r.body));
  assert.ok(peak >= 2, `expected a second instance under load; peak ${peak}`);
  assert.ok(app.host.stats()['notes']!.instances <= 3);
});

test('killInstance: the instance is replaced and the service keeps answering', async () => {
  assert.equal((await http('POST', '/count', { by: 0 })).status, 200);
  const before = app.host.stats()['notes']!.replaced;
  await app.host.killInstance('notes');
  await eventually('a replacement instance', () => app.host.stats()['notes']!.replaced === before + 1 && app.host.stats()['notes']!.instances >= 1);
  let ok = false;
  for (let i = 0; i < 5 && !ok; i++) ok = (await http('POST', '/count', { by: 0 })).status === 200;
  assert.ok(ok);
});

test('a request at zero waits for the cold start only up to its bound: 503, and the instance still comes up', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'themis-app-bound-'));
  const bounded = await startApp({ dir: APP, dataDir: data, coldStartTimeoutMs: 1 });
  t.after(async () => {
    await bounded.close();
    rmSync(data, { recursive: true, force: true });
  });
  const res = await fetch(`${bounded.gateway}/count`, { method: 'POST', body: '{"by":0}' });
  assert.deepEqual([res.status, ((await res.json()) as { error: { code: string } }).error.code], [503, 'UNAVAILABLE']);
  const end = Date.now() + 8_000;
  while (bounded.host.stats()['notes']!.instances === 0 && Date.now() < end) await sleep(20);
  assert.equal(bounded.host.stats()['notes']!.instances, 1, 'the cold start went on after the bound');
  assert.equal((await fetch(`${bounded.gateway}/count`, { method: 'POST', body: '{"by":0}' })).status, 200);
});

test('a second app joins the first one\'s anchor: its own trust domain, and calls land only on its own instances', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'themis-app-joined-'));
  const joined = await startApp({ dir: APP, dataDir: data, anchor: app.bootstrap });
  t.after(async () => {
    await joined.close();
    rmSync(data, { recursive: true, force: true });
  });
  assert.equal(joined.anchor, app.anchor);
  assert.notEqual(joined.owner, app.owner);
  const before = (await http('POST', '/count', { by: 0 })).body as number;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${joined.gateway}/count`, { method: 'POST', body: '{"by":1000}' });
    assert.equal(res.status, 200);
  }
  assert.equal((await http('POST', '/count', { by: 0 })).body, before, 'no call of the second app reached the first app\'s instances');
  assert.equal(await (await fetch(`${joined.gateway}/count`, { method: 'POST', body: '{"by":0}' })).json(), 3000);
});
