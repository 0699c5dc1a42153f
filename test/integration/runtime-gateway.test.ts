import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FunctionError, createBearerTokens, createGateway, openKv, parseManifest, type AppKv, type EndUser, type Gateway } from '../../src/runtime/index.js';

// The gateway over real HTTP with its own `invoke` (as the benches use it): the routing, auth,
// limits and status codes, independent of the transport behind it.

const manifest = parseManifest(
  `app: shop
services:
  users: { entry: users.js, handlers: [create, get] }
  orders: { entry: orders.js, handlers: [place, slow, boom, echo] }
gateway:
  maxBodyBytes: 256
  timeoutMs: 1500
  auth:
    register: { path: /users, to: users.create }
    login: { path: /login }
    tokenTtlSeconds: 60
  routes:
    - { method: GET, path: /users/:id, to: users.get, auth: true }
    - { method: POST, path: /orders/:id/items, to: orders.place, auth: true }
    - { method: GET, path: /slow, to: orders.slow }
    - { method: GET, path: /boom, to: orders.boom }
    - { method: PUT, path: /echo/:a/:b, to: orders.echo }
`,
  '/shop/themis.yaml',
);

const calls: { service: string; method: string; input: unknown; principal: EndUser | undefined }[] = [];
let dir: string;
let kv: AppKv;
let gateway: Gateway;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'themis-gateway-'));
  kv = await openKv(dir);
  gateway = await createGateway({
    config: manifest.gateway,
    kv,
    tokens: createBearerTokens({ app: 'shop', ttlSeconds: 60 }),
    invoke: async (service, method, input, principal) => {
      calls.push({ service, method, input, principal });
      const body = (input as { body?: Record<string, unknown> }).body;
      if (method === 'create') {
        if (body?.name === 'taken') throw new FunctionError(409, 'CONFLICT', 'name taken');
        return { id: `u-${String(body?.name)}`, name: body?.name };
      }
      if (method === 'slow') await sleep(4_000, undefined, { ref: false });
      if (method === 'boom') throw new Error('database password is hunter2');
      return { service, method, input, subject: principal?.subject ?? null };
    },
  });
});

after(async () => {
  await gateway.close();
  await kv.close();
  rmSync(dir, { recursive: true, force: true });
});

async function http(method: string, path: string, init: { body?: string; json?: unknown; token?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token !== undefined) headers['authorization'] = `Bearer ${init.token}`;
  const body = init.json === undefined ? init.body : JSON.stringify(init.json);
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${gateway.url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return { status: res.status, body: await res.json() };
}

async function loginAs(name: string): Promise<string> {
  assert.equal((await http('POST', '/users', { json: { name, password: 'long enough secret' } })).status, 201);
  const login = await http('POST', '/login', { json: { id: `u-${name}`, password: 'long enough secret' } });
  assert.equal(login.status, 200);
  assert.equal(login.body.expiresIn, 60);
  return login.body.token as string;
}

test('register strips the password, stores a scrypt hash, and login issues a bearer token for the returned id', async () => {
  const token = await loginAs('ada');
  const create = calls.find((c) => c.method === 'create')!;
  assert.deepEqual(create.input, { params: {}, query: {}, body: { name: 'ada' }, idempotencyKey: undefined });
  const stored = (await import('../../src/runtime/kv.js')).kvContext(kv, 'gateway');
  const hash = (await stored.get('user/u-ada')) as Record<string, unknown>;
  assert.equal(hash['alg'], 'scrypt');
  assert.ok(!JSON.stringify(hash).includes('long enough secret'));
  const me = await http('GET', '/users/u-ada', { token });
  assert.equal(me.status, 200);
  assert.equal(me.body.subject, 'u-ada');
  assert.deepEqual(me.body.input.params, { id: 'u-ada' });
});

test('401 for a missing, malformed or forged bearer token, and for a wrong password or unknown user', async () => {
  await loginAs('bo');
  assert.equal((await http('GET', '/users/u-bo')).status, 401);
  assert.equal((await http('GET', '/users/u-bo', { headers: { authorization: 'Basic Ym86cHc=' } })).status, 401);
  assert.equal((await http('GET', '/users/u-bo', { token: 'not.a.token' })).status, 401);
  const forged = await createBearerTokens({ app: 'shop', ttlSeconds: 60 }).issue('u-bo'); // another key
  const refused = await http('GET', '/users/u-bo', { token: forged.token });
  assert.deepEqual([refused.status, refused.body.error.code], [401, 'UNAUTHORIZED']);
  assert.equal((await http('POST', '/login', { json: { id: 'u-bo', password: 'wrong password' } })).status, 401);
  const unknown = await http('POST', '/login', { json: { id: 'u-nobody', password: 'long enough secret' } });
  assert.deepEqual(unknown.body, { error: { code: 'UNAUTHORIZED', message: 'unknown user or wrong password' } });
});

test('register: 400 for a short password, the function\'s 409 passed through, 409 for an id that already has a password', async () => {
  assert.equal((await http('POST', '/users', { json: { name: 'cy', password: 'short' } })).status, 400);
  const taken = await http('POST', '/users', { json: { name: 'taken', password: 'long enough secret' } });
  assert.deepEqual(taken, { status: 409, body: { error: { code: 'CONFLICT', message: 'name taken' } } });
  await loginAs('dee');
  assert.equal((await http('POST', '/users', { json: { name: 'dee', password: 'another long secret' } })).status, 409);
  assert.equal((await http('POST', '/login', { json: { id: 'u-dee', password: 'another long secret' } })).status, 401, 'the first password stays');
});

test('routes pass params, query, body and the Idempotency-Key header', async () => {
  const token = await loginAs('eve');
  const placed = await http('POST', '/orders/o%2F1/items?x=1&y=two', { json: { sku: 'a' }, token, headers: { 'idempotency-key': 'k-123' } });
  assert.equal(placed.status, 200);
  assert.deepEqual(placed.body.input, { params: { id: 'o/1' }, query: { x: '1', y: 'two' }, body: { sku: 'a' }, idempotencyKey: 'k-123' });
  const echo = await http('PUT', '/echo/1/2', { json: [1] });
  assert.deepEqual(echo.body.input.params, { a: '1', b: '2' });
});

test('404 unknown route, 405 wrong method, 400 bad JSON, 413 body too large, 504 timeout, 500 without internals', async () => {
  assert.deepEqual(await http('GET', '/nothing'), { status: 404, body: { error: { code: 'NOT_FOUND', message: 'no route for GET /nothing' } } });
  assert.equal((await http('DELETE', '/slow')).status, 405);
  assert.equal((await http('PUT', '/echo/1/2', { body: '{"unclosed": ' })).status, 400);
  const big = await http('PUT', '/echo/1/2', { json: { pad: 'x'.repeat(300) } });
  assert.deepEqual([big.status, big.body.error.code], [413, 'PAYLOAD_TOO_LARGE']);
  const slow = await http('GET', '/slow');
  assert.deepEqual([slow.status, slow.body.error.code], [504, 'TIMEOUT']);
  const boom = await http('GET', '/boom');
  assert.deepEqual(boom, { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } });
});

test('a body streamed past the limit without a content-length is cut off with 413', async () => {
  const stream = new ReadableStream({
    start(controller) {
      for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(100)));
      controller.close();
    },
  });
  const res = await fetch(`${gateway.url}/echo/1/2`, { method: 'PUT', body: stream, duplex: 'half' } as RequestInit);
  assert.equal(res.status, 413);
});
