import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { toBase32 } from '../../src/core/bytes.js';
import { ThemisError, isThemisError, type ErrorCode } from '../../src/core/errors.js';
import { Identity, networkConfig } from '../../src/identity/index.js';
import { MAX_TOKEN_LENGTH, PRINCIPAL_TOKEN_TYPE, ReplayCache, issuePrincipalToken, verifyPrincipalToken, type VerifyInit } from '../../src/mesh/tokens.js';

// Attacks on principal tokens, the one peer-supplied input of verifyPrincipalToken. Each token
// below is refused with a typed error, and the issuer callback is never asked about a token
// whose signature does not hold.

const network = networkConfig({ c1: 0, c2: 0 });
const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);
const gateway = Identity.generate(network);
const mallory = Identity.generate(network);
const T0 = 1_700_000_000_000;
const iat = T0 / 1000;

let askedAbout: string[] = [];
/** Only the gateway instance may issue tokens. */
const issuerKey: VerifyInit['issuerKey'] = (pub, service) => {
  askedAbout.push(toBase32(pub));
  if (!pub.equals(gateway.publicKey) || service !== 'gateway') throw new ThemisError('ERR_MESH_UNENDORSED', `${toBase32(pub)} is not an endorsed gateway`);
};

const verify = (token: string, init: Partial<VerifyInit> = {}) => verifyPrincipalToken(token, { audience: 'orders', issuerKey, now: T0, ...init });
const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const valid = (): string => issuePrincipalToken(gateway, { subject: 'user-42', audience: 'orders', issuerService: 'gateway', now: T0 });

/** The claims a genuine gateway token has, to be altered one at a time. */
function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { iss: 'gateway', sub: 'user-42', aud: 'orders', iat, exp: iat + 60, jti: 'j1', iss_key: toBase32(gateway.publicKey), ...extra };
}

/** A token with any header and claims, EdDSA-signed by `signer` (through the only signing door an Identity has). */
function craft(header: Record<string, unknown>, payload: Record<string, unknown>, signer: Identity = gateway): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${signer.signJwsInput(input).toString('base64url')}`;
}

const eddsa = { alg: 'EdDSA', typ: PRINCIPAL_TOKEN_TYPE };

/** Flips one bit of the decoded bytes of segment `index` and re-encodes it. */
function flipBit(token: string, index: number, bit: number): string {
  const parts = token.split('.');
  const bytes = Buffer.from(parts[index]!, 'base64url');
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

async function refused(token: string, code: ErrorCode, init: Partial<VerifyInit> = {}): Promise<void> {
  askedAbout = [];
  await assert.rejects(verify(token, init), is(code));
}

test('control: the crafted genuine token verifies', async () => {
  assert.equal((await verify(craft(eddsa, claims()))).subject, 'user-42');
  assert.equal((await verify(valid())).subject, 'user-42');
});

test('a replayed token is refused while it lives', async () => {
  const replay = new ReplayCache();
  const token = valid();
  await verify(token, { replay });
  await refused(token, 'ERR_MESH_TOKEN_REPLAYED', { replay, now: T0 + 59_000 });
  // The same jti from another accepted issuer is another token.
  await verify(craft(eddsa, claims({ jti: 'j1' })), { replay });
  await refused(craft(eddsa, claims({ jti: 'j1' })), 'ERR_MESH_TOKEN_REPLAYED', { replay });
});

test('a token for another audience is refused', async () => {
  await refused(issuePrincipalToken(gateway, { subject: 'user-42', audience: 'billing', issuerService: 'gateway', now: T0 }), 'ERR_MESH_TOKEN_AUDIENCE');
  // Several audiences are not one audience.
  await refused(craft(eddsa, claims({ aud: ['orders', 'billing'] })), 'ERR_MESH_TOKEN_INVALID');
  await refused(craft(eddsa, claims({ aud: undefined })), 'ERR_MESH_TOKEN_INVALID');
});

test('an expired token is refused', async () => {
  await refused(valid(), 'ERR_MESH_TOKEN_EXPIRED', { now: T0 + 65_000 });
  await refused(craft(eddsa, claims({ iat: iat - 400, exp: iat - 100 })), 'ERR_MESH_TOKEN_EXPIRED');
});

test('a token that lives longer than 5 minutes, or was issued in the future, is refused', async () => {
  await refused(craft(eddsa, claims({ exp: iat + 3600 })), 'ERR_MESH_TOKEN_INVALID');
  await refused(craft(eddsa, claims({ exp: iat })), 'ERR_MESH_TOKEN_INVALID');
  await refused(craft(eddsa, claims({ iat: iat + 120, exp: iat + 180 })), 'ERR_MESH_TOKEN_INVALID');
  // Issued long ago with an exp still ahead: too old.
  await refused(craft(eddsa, claims({ iat: iat - 600, exp: iat + 60 })), 'ERR_MESH_TOKEN_EXPIRED');
});

test('a forged token is refused: any bit flipped in header, payload or signature', async () => {
  const token = valid();
  const [header, payload, signature] = token.split('.').map((part) => Buffer.from(part, 'base64url').length * 8);
  for (const [index, bits] of [header!, payload!, signature!].entries()) {
    for (let bit = 0; bit < bits; bit += 7) await refused(flipBit(token, index, bit), 'ERR_MESH_TOKEN_INVALID');
  }
  assert.deepEqual(askedAbout, []);
});

test('a forged token is refused: claims changed under a valid signature', async () => {
  const [header, , signature] = valid().split('.');
  await refused(`${header}.${b64(claims({ sub: 'admin' }))}.${signature}`, 'ERR_MESH_TOKEN_INVALID');
  await refused(`${header}.${b64(claims({ exp: iat + 300 }))}.${signature}`, 'ERR_MESH_TOKEN_INVALID');
});

test('a forged token is refused: signed by another key while naming the endorsed key', async () => {
  await refused(craft(eddsa, claims(), mallory), 'ERR_MESH_TOKEN_INVALID');
  assert.deepEqual(askedAbout, [], 'the issuer callback only hears of authentic tokens');
});

test('alg none is refused', async () => {
  const payload = b64(claims());
  for (const alg of ['none', 'None', 'NONE']) {
    await refused(`${b64({ alg, typ: PRINCIPAL_TOKEN_TYPE })}.${payload}.`, 'ERR_MESH_TOKEN_INVALID');
  }
  await refused(`${b64({ typ: PRINCIPAL_TOKEN_TYPE })}.${payload}.`, 'ERR_MESH_TOKEN_INVALID');
});

test('HS256 keyed with the public key (algorithm confusion) is refused', async () => {
  const input = `${b64({ alg: 'HS256', typ: PRINCIPAL_TOKEN_TYPE })}.${b64(claims())}`;
  for (const secret of [gateway.publicKey, Buffer.from(toBase32(gateway.publicKey))]) {
    await refused(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`, 'ERR_MESH_TOKEN_INVALID');
  }
});

test('other algorithms, even over a genuine Ed25519 signature, are refused', async () => {
  for (const alg of ['Ed25519', 'ES256', 'RS256', 'PS256', 'EdDsa']) await refused(craft({ alg, typ: PRINCIPAL_TOKEN_TYPE }, claims()), 'ERR_MESH_TOKEN_INVALID');
});

test('a JWT of another type from the same key is refused (no cross-JWT confusion)', async () => {
  for (const typ of ['JWT', 'at+jwt', undefined]) await refused(craft({ alg: 'EdDSA', typ }, claims()), 'ERR_MESH_TOKEN_INVALID');
});

test('unknown critical header parameters and unencoded payloads are refused', async () => {
  await refused(craft({ ...eddsa, crit: ['exp-x'], 'exp-x': 1 }, claims()), 'ERR_MESH_TOKEN_INVALID');
  await refused(craft({ ...eddsa, crit: ['b64'], b64: false }, claims()), 'ERR_MESH_TOKEN_INVALID');
});

test('a token from a key the issuer callback refuses is refused with the callback’s error', async () => {
  await refused(issuePrincipalToken(mallory, { subject: 'user-42', audience: 'orders', issuerService: 'gateway', now: T0 }), 'ERR_MESH_UNENDORSED');
  assert.deepEqual(askedAbout, [toBase32(mallory.publicKey)]);
  // The endorsed gateway key claiming another service is refused as well.
  await refused(issuePrincipalToken(gateway, { subject: 'user-42', audience: 'orders', issuerService: 'accounts', now: T0 }), 'ERR_MESH_UNENDORSED');
});

test('missing or malformed claims are refused', async () => {
  for (const name of ['sub', 'iss', 'iat', 'exp', 'jti', 'iss_key']) await refused(craft(eddsa, claims({ [name]: undefined })), 'ERR_MESH_TOKEN_INVALID');
  for (const [name, value] of [
    ['sub', ''],
    ['sub', 42],
    ['iss', ['gateway']],
    ['jti', 'j'.repeat(65)],
    ['exp', '9999999999'],
    ['iat', null],
    ['iss_key', 'not base32!'],
    ['iss_key', toBase32(gateway.publicKey.subarray(0, 31))],
    ['iss_key', 42],
  ] as const) {
    await refused(craft(eddsa, claims({ [name]: value })), 'ERR_MESH_TOKEN_INVALID');
  }
});

test('an oversized token is refused before any parsing', async () => {
  const huge = craft(eddsa, claims({ pad: 'x'.repeat(MAX_TOKEN_LENGTH) }));
  await refused(huge, 'ERR_MESH_TOKEN_INVALID');
  await refused('a'.repeat(10_000_000), 'ERR_MESH_TOKEN_INVALID');
  assert.deepEqual(askedAbout, []);
});

test('garbage strings and non-strings are refused', async () => {
  const garbage = [
    '',
    '.',
    '..',
    '...',
    'a',
    'a.b',
    'a.b.c',
    'a.b.c.d.e',
    '🙂.🙂.🙂',
    `${b64(eddsa)}..`,
    `${b64(eddsa)}.${b64('[]')}.`,
    `${b64(eddsa)}.${b64('null')}.AAAA`,
    `${b64('not json')}.${b64(claims())}.AAAA`,
    `${b64(eddsa)}.${b64(claims())}.${randomBytes(64).toString('base64url')}`,
    `${b64(eddsa)}.${b64(claims())}.${randomBytes(63).toString('base64url')}`,
    randomBytes(300).toString('base64'),
    valid().replace(/\./g, ''),
    `${valid()}.`,
    ` ${valid()}`,
  ];
  for (const token of garbage) await refused(token, 'ERR_MESH_TOKEN_INVALID');
  for (const token of [null, undefined, 42, {}, ['a', 'b', 'c'], Buffer.from(valid())]) await refused(token as unknown as string, 'ERR_MESH_TOKEN_INVALID');
  assert.deepEqual(askedAbout, []);
});
