import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SignJWT } from 'jose';
import { keyPairFromRaw } from '../../src/identity/index.js';
import { createBearerTokens, createGateway, openKv, parseManifest, type AppKv, type Gateway } from '../../src/runtime/index.js';

// Bearer tokens and requests an attacker can make against the gateway: each is refused with the
// right status and never reaches a function.

const SEED = Buffer.alloc(32, 7);
const manifest = parseManifest(
  `app: vault
services:
  vault: { entry: vault.js, handlers: [open, create] }
gateway:
  maxBodyBytes: 1024
  timeoutMs: 2000
  auth:
    register: { path: /users, to: vault.create }
    login: { path: /login }
  routes:
    - { method: GET, path: /vault/:id, to: vault.open, auth: true }
`,
  '/vault/themis.yaml',
);

let dir: string;
let kv: AppKv;
let gateway: Gateway;
let reached = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'themis-gw-adv-'));
  kv = await openKv(dir);
  gateway = await createGateway({
    config: manifest.gateway,
    kv,
    tokens: createBearerTokens({ app: 'vault', ttlSeconds: 60, seed: SEED }),
    invoke: async (_service, method, input) => {
      reached++;
      return method === 'create' ? { id: (input as { body: { id: string } }).body.id } : { secret: 42 };
    },
  });
});

after(async () => {
  await gateway.close();
  await kv.close();
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const ISSUER = 'themis-gateway:vault';
const now = (): number => Math.floor(Date.now() / 1000);

async function open(token: string): Promise<number> {
  const res = await fetch(`${gateway.url}/vault/1`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

test('forged, unsigned, expired, foreign and altered tokens are refused with 401 before any function runs', async () => {
  const key = keyPairFromRaw('Ed25519', SEED).privateKey;
  const valid = await createBearerTokens({ app: 'vault', ttlSeconds: 60, seed: SEED }).issue('alice');
  const before = reached;
  const claims = { sub: 'alice', iss: ISSUER, aud: ISSUER, iat: now(), exp: now() + 60 };
  const tokens: Record<string, string> = {
    'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
    'HS256 with a guessable secret': await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('secret')),
    expired: await new SignJWT({ ...claims, iat: now() - 120, exp: now() - 60 }).setProtectedHeader({ alg: 'EdDSA' }).sign(key),
    'another app': await new SignJWT({ ...claims, iss: 'themis-gateway:other', aud: 'themis-gateway:other' }).setProtectedHeader({ alg: 'EdDSA' }).sign(key),
    'no subject': await new SignJWT({ iss: ISSUER, aud: ISSUER, iat: now(), exp: now() + 60 }).setProtectedHeader({ alg: 'EdDSA' }).sign(key),
    'payload swapped': `${valid.token.split('.')[0]}.${b64({ ...claims, sub: 'mallory' })}.${valid.token.split('.')[2]}`,
    'signature cut': valid.token.slice(0, -4),
  };
  for (const [name, token] of Object.entries(tokens)) assert.equal(await open(token), 401, name);
  assert.equal(reached, before, 'no refused request reached a function');
  assert.equal(await open(valid.token), 200);
});

test('hostile request shapes get 4xx, never a 500', async () => {
  const cases: [string, RequestInit, number][] = [
    ['/users', { method: 'POST', body: '[1,2,3]', headers: { 'content-type': 'application/json' } }, 400],
    ['/users', { method: 'POST', body: JSON.stringify({ id: 'x', password: 12345678 }) }, 400],
    ['/login', { method: 'POST', body: JSON.stringify({ id: { $ne: null }, password: 'whatever12' }) }, 400],
    ['/login', { method: 'POST', body: 'null' }, 400],
    ['/vault/%E0%A4%A', { method: 'GET', headers: { authorization: 'Bearer x' } }, 400],
    ['/vault/../../etc/passwd', { method: 'GET' }, 404],
    ['/users', { method: 'POST', body: JSON.stringify({ id: 'big', password: 'p'.repeat(2000) }) }, 413],
  ];
  for (const [path, init, status] of cases) {
    const res = await fetch(`${gateway.url}${path}`, init);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(res.status, status, `${init.method} ${path}: ${JSON.stringify(body)}`);
    assert.equal(typeof body.error.code, 'string');
  }
});
