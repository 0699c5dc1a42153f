import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

/**
 * End-user password hashing for the gateway: node:crypto scrypt (RFC 7914) with a random 16-byte
 * salt; the parameters are stored with each hash so they can be raised later without breaking
 * old accounts. Comparison is timing-safe, and an unknown user costs one scrypt too, so the
 * response time does not tell which user ids exist.
 */
export interface PasswordHash {
  readonly alg: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64url */
  readonly salt: string;
  /** base64url, 32 bytes */
  readonly hash: string;
}

/** N = 2^14, r = 8, p = 1: RFC 7914 §2's interactive-login figure; ~16 MiB and tens of ms per hash. */
export const SCRYPT_PARAMS = Object.freeze({ N: 1 << 14, r: 8, p: 1 });
const KEY_LENGTH = 32;
export const PASSWORD_LIMITS = Object.freeze({ minChars: 8, maxBytes: 1024 });

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;

function derive(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  return scryptAsync(password, salt, KEY_LENGTH, { ...params, maxmem: 256 * params.N * params.r });
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(16);
  const hash = await derive(password, salt, SCRYPT_PARAMS);
  return { alg: 'scrypt', ...SCRYPT_PARAMS, salt: salt.toString('base64url'), hash: hash.toString('base64url') };
}

/** Whether `password` matches `stored`; with no stored hash it still spends one scrypt and answers false. */
export async function verifyPassword(password: string, stored: PasswordHash | undefined): Promise<boolean> {
  const salt = stored === undefined ? randomBytes(16) : Buffer.from(stored.salt, 'base64url');
  const expected = stored === undefined ? randomBytes(KEY_LENGTH) : Buffer.from(stored.hash, 'base64url');
  const params = stored === undefined ? SCRYPT_PARAMS : { N: stored.N, r: stored.r, p: stored.p };
  const actual = await derive(password, salt, params);
  return actual.length === expected.length && timingSafeEqual(actual, expected) && stored !== undefined;
}
