import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { toBase32 } from '../../../src/core/bytes.js';
import { ThemisError, isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { Identity, networkConfig } from '../../../src/identity/index.js';
import {
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  PRINCIPAL_TOKEN_TYPE,
  ReplayCache,
  issuePrincipalToken,
  reissueForAudience,
  verifyPrincipalToken,
  type VerifyInit,
} from '../../../src/mesh/tokens.js';

const network = networkConfig({ c1: 0, c2: 0 });
const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);
const gateway = Identity.generate(network);
const orders = Identity.generate(network);
const T0 = 1_700_000_000_000;

/** The mesh layer's answer, reduced to a table: endorsed instance key → its service, and who may issue. */
function issuers(endorsed: ReadonlyMap<Identity, string>, mayIssue: ReadonlySet<string>): VerifyInit['issuerKey'] {
  return (pub, service) => {
    const known = [...endorsed].some(([identity, s]) => identity.publicKey.equals(pub) && s === service);
    if (!known) throw new ThemisError('ERR_MESH_UNENDORSED', `${toBase32(pub)} is not an endorsed instance of ${service}`);
    if (!mayIssue.has(service)) throw new ThemisError('ERR_MESH_FORBIDDEN', `${service} may not issue tokens`);
  };
}

const issuerKey = issuers(
  new Map([
    [gateway, 'gateway'],
    [orders, 'orders'],
  ]),
  new Set(['gateway', 'orders']),
);

test('an issued token verifies at its audience and carries the principal, issuer and claims', async () => {
  const token = issuePrincipalToken(gateway, { subject: 'user-42', audience: 'orders', issuerService: 'gateway', claims: { scope: 'orders:read', tenant: 7 }, now: T0 });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'EdDSA', typ: PRINCIPAL_TOKEN_TYPE });
  const payload = decodeJwt(token);
  assert.equal(payload.iss_key, toBase32(gateway.publicKey));
  assert.equal(payload.iat, T0 / 1000);
  assert.equal(payload.exp, T0 / 1000 + DEFAULT_TOKEN_TTL_SECONDS);
  assert.match(payload.jti ?? '', /^[A-Za-z0-9_-]{22}$/);

  const principal = await verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: T0 + 1000 });
  assert.equal(principal.subject, 'user-42');
  assert.equal(principal.audience, 'orders');
  assert.equal(principal.issuerService, 'gateway');
  assert.deepEqual(principal.issuerKey, gateway.publicKey);
  assert.equal(principal.expiresAt, T0 + DEFAULT_TOKEN_TTL_SECONDS * 1000);
  assert.deepEqual(principal.claims, { scope: 'orders:read', tenant: 7 });
  assert.ok(Object.isFrozen(principal.claims));
});

test('every token has a fresh jti, so two tokens for the same principal differ', () => {
  const init = { subject: 'user-42', audience: 'orders', issuerService: 'gateway', now: T0 };
  assert.notEqual(decodeJwt(issuePrincipalToken(gateway, init)).jti, decodeJwt(issuePrincipalToken(gateway, init)).jti);
});

test('the issuer callback sees the signing key and the claimed issuer service, and may be async', async () => {
  const seen: [string, string][] = [];
  const token = issuePrincipalToken(gateway, { subject: 'u', audience: 'orders', issuerService: 'gateway', now: T0 });
  await verifyPrincipalToken(token, {
    audience: 'orders',
    now: T0,
    issuerKey: async (pub, service) => {
      await Promise.resolve();
      seen.push([toBase32(pub), service]);
    },
  });
  assert.deepEqual(seen, [[toBase32(gateway.publicKey), 'gateway']]);
  await assert.rejects(
    verifyPrincipalToken(token, { audience: 'orders', now: T0, issuerKey: async () => Promise.reject(new ThemisError('ERR_MESH_FORBIDDEN', 'no')) }),
    is('ERR_MESH_FORBIDDEN'),
  );
});

test('lifetime: 60 s by default, up to 5 min, refused after exp plus the clock tolerance', async () => {
  const token = issuePrincipalToken(gateway, { subject: 'u', audience: 'orders', issuerService: 'gateway', ttlSeconds: MAX_TOKEN_TTL_SECONDS, now: T0 });
  const exp = T0 + MAX_TOKEN_TTL_SECONDS * 1000;
  assert.equal((await verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: exp - 1 })).expiresAt, exp);
  assert.ok(await verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: exp + 4999 }));
  await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: exp + 5000 }), is('ERR_MESH_TOKEN_EXPIRED'));
  await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: exp, clockToleranceSeconds: 0 }), is('ERR_MESH_TOKEN_EXPIRED'));
  // Issued a little in the future (the issuer's clock is ahead): within the tolerance only.
  assert.ok(await verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: T0 - 5000 }));
  await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: T0 - 6000 }), is('ERR_MESH_TOKEN_INVALID'));
});

test('issue options are checked: ttl range, names, reserved claims, size', () => {
  const base = { subject: 'u', audience: 'orders', issuerService: 'gateway' };
  for (const ttlSeconds of [0, -1, 1.5, MAX_TOKEN_TTL_SECONDS + 1, Number.NaN]) {
    assert.throws(() => issuePrincipalToken(gateway, { ...base, ttlSeconds }), RangeError, `ttl ${ttlSeconds}`);
  }
  for (const name of ['subject', 'audience', 'issuerService'] as const) {
    assert.throws(() => issuePrincipalToken(gateway, { ...base, [name]: '' }), TypeError);
    assert.throws(() => issuePrincipalToken(gateway, { ...base, [name]: 'x'.repeat(256) }), TypeError);
  }
  for (const claim of ['sub', 'aud', 'iss', 'exp', 'iat', 'nbf', 'jti', 'iss_key']) {
    assert.throws(() => issuePrincipalToken(gateway, { ...base, claims: { [claim]: 'x' } }), TypeError, claim);
  }
  assert.throws(() => issuePrincipalToken(gateway, { ...base, claims: { blob: 'x'.repeat(4000) } }), RangeError);
});

test('verify options are checked', async () => {
  const token = issuePrincipalToken(gateway, { subject: 'u', audience: 'orders', issuerService: 'gateway' });
  for (const clockToleranceSeconds of [-1, 0.5, 61]) {
    await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey, clockToleranceSeconds }), RangeError);
  }
});

test('reissueForAudience re-binds the principal to a downstream audience, never for longer', async () => {
  const edgeToken = issuePrincipalToken(gateway, { subject: 'user-42', audience: 'orders', issuerService: 'gateway', ttlSeconds: 30, claims: { scope: 'orders:read' }, now: T0 });
  const atOrders = await verifyPrincipalToken(edgeToken, { audience: 'orders', issuerKey, now: T0 + 10_000 });

  const downstream = reissueForAudience(orders, atOrders, 'billing', 'orders', { now: T0 + 10_000 });
  const atBilling = await verifyPrincipalToken(downstream, { audience: 'billing', issuerKey, now: T0 + 10_000 });
  assert.equal(atBilling.subject, 'user-42');
  assert.equal(atBilling.issuerService, 'orders');
  assert.deepEqual(atBilling.issuerKey, orders.publicKey);
  assert.deepEqual(atBilling.claims, { scope: 'orders:read' });
  assert.equal(atBilling.expiresAt, atOrders.expiresAt, 'capped at the original expiry (20 s left < 60 s default)');
  await assert.rejects(verifyPrincipalToken(downstream, { audience: 'orders', issuerKey, now: T0 + 10_000 }), is('ERR_MESH_TOKEN_AUDIENCE'));

  const short = reissueForAudience(orders, atOrders, 'billing', 'orders', { ttlSeconds: 5, now: T0 + 10_000 });
  assert.equal((await verifyPrincipalToken(short, { audience: 'billing', issuerKey, now: T0 + 10_000 })).expiresAt, T0 + 15_000);

  assert.throws(() => reissueForAudience(orders, atOrders, 'billing', 'gateway', { now: T0 + 10_000 }), TypeError, 'only the audience re-issues');
  assert.throws(() => reissueForAudience(orders, atOrders, 'billing', 'orders', { now: T0 + 30_000 }), is('ERR_MESH_TOKEN_EXPIRED'));
});

test('a token verified with a ReplayCache is accepted once', async () => {
  const replay = new ReplayCache();
  const token = issuePrincipalToken(gateway, { subject: 'u', audience: 'orders', issuerService: 'gateway', now: T0 });
  await verifyPrincipalToken(token, { audience: 'orders', issuerKey, replay, now: T0 });
  assert.equal(replay.size, 1);
  await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey, replay, now: T0 + 1 }), is('ERR_MESH_TOKEN_REPLAYED'));
  // Without the cache, replay protection is the caller's business.
  assert.ok(await verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: T0 + 1 }));
});

test('a refused token does not take a place in the ReplayCache', async () => {
  const replay = new ReplayCache();
  const token = issuePrincipalToken(gateway, { subject: 'u', audience: 'orders', issuerService: 'gateway', now: T0 });
  await assert.rejects(verifyPrincipalToken(token, { audience: 'billing', issuerKey, replay, now: T0 }), is('ERR_MESH_TOKEN_AUDIENCE'));
  const refuse = (): never => {
    throw new ThemisError('ERR_MESH_UNENDORSED', 'no');
  };
  await assert.rejects(verifyPrincipalToken(token, { audience: 'orders', issuerKey: refuse, replay, now: T0 }), is('ERR_MESH_UNENDORSED'));
  assert.equal(replay.size, 0);
  assert.ok(await verifyPrincipalToken(token, { audience: 'orders', issuerKey, replay, now: T0 }));
});

test('ReplayCache drops ids when they expire, in any insertion order, and fails closed when full of live ids', () => {
  const cache = new ReplayCache({ maxEntries: 3 });
  cache.remember('c', T0 + 300, T0);
  cache.remember('a', T0 + 100, T0);
  cache.remember('b', T0 + 200, T0);
  assert.throws(() => cache.remember('d', T0 + 50, T0 + 99), is('ERR_MESH_REPLAY_CACHE_FULL'));
  assert.throws(() => cache.remember('a', T0 + 100, T0 + 99), is('ERR_MESH_TOKEN_REPLAYED'));
  cache.remember('d', T0 + 400, T0 + 100); // 'a' left at its expiry
  assert.equal(cache.size, 3);
  assert.throws(() => cache.remember('b', T0 + 500, T0 + 199), is('ERR_MESH_TOKEN_REPLAYED'));
  cache.remember('x', T0 + 600, T0 + 300); // 'b' and 'c' left
  assert.equal(cache.size, 2);
  cache.remember('a', T0 + 700, T0 + 500); // 'd' left; an expired id may come again
  assert.equal(cache.size, 2);
  for (const maxEntries of [0, -1, 1.5]) assert.throws(() => new ReplayCache({ maxEntries }), RangeError);
});

test('ReplayCache keeps exactly the ids not yet expired, for many random expiries', () => {
  const cache = new ReplayCache({ maxEntries: 10_000 });
  const untils = new Map<string, number>();
  let state = 7;
  const next = (): number => (state = (state * 48271) % 0x7fffffff);
  for (let now = 0; now < 2000; now += 1) {
    const id = `t${now}`;
    const until = now + 1 + (next() % 500);
    cache.remember(id, until, now);
    untils.set(id, until);
    if (now % 97 === 0) {
      const live = [...untils.values()].filter((u) => u > now).length;
      assert.equal(cache.size, live, `at ${now}`);
    }
  }
});

test('Identity.signJwsInput signs only JWS signing input, never a tagged message', () => {
  assert.equal(gateway.signJwsInput('eyJhbGciOiJFZERTQSJ9.e30').length, 64);
  for (const input of ['', 'abc', 'a.b.c', 'a.', '.b', 'a b.c', 'themis/record/v1\0body', 'a+/.b']) {
    assert.throws(() => gateway.signJwsInput(input), TypeError, JSON.stringify(input));
  }
});
