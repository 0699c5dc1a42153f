import { randomBytes, type KeyObject } from 'node:crypto';
import { decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';
import { fromBase32, toBase32 } from '../core/bytes.js';
import { ThemisError } from '../core/errors.js';
import { Lru } from '../core/lru.js';
import { publicKeyFromRaw, type Identity } from '../identity/index.js';

/**
 * Principal propagation without a central token service (MiSSFIRE's reverse STS, run by the
 * services themselves): an edge service turns an authenticated end user into a short-lived JWT
 * (RFC 7519) signed with EdDSA (RFC 8037) by the issuing instance's identity key, bound to ONE
 * callee service (`aud`). The callee verifies it with `jose` and asks the mesh layer whether the
 * signing key is a currently endorsed instance of a service allowed to issue tokens. A service
 * that calls further down re-issues the principal for its own callee (`reissueForAudience`).
 *
 * Issuing builds the compact JWS here (RFC 7515 §7.1) and has Identity.signJwsInput sign it, so
 * the private key never leaves the Identity; verifying is jose's, restricted to EdDSA.
 */

/** Explicit typing (RFC 8725 §3.11): a principal token is never mistaken for another JWT. */
export const PRINCIPAL_TOKEN_TYPE = 'themis-principal+jwt';
export const DEFAULT_TOKEN_TTL_SECONDS = 60;
export const MAX_TOKEN_TTL_SECONDS = 5 * 60;
/** Longest token accepted or issued, in characters: fits an HTTP header with room to spare. */
export const MAX_TOKEN_LENGTH = 4096;
/** Longest `sub`, `aud`, `iss` an issuer writes. */
const MAX_NAME_LENGTH = 255;
/** Longest `jti` a verifier remembers. */
const MAX_JTI_LENGTH = 64;
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;
const MAX_CLOCK_TOLERANCE_SECONDS = 60;
const HEADER = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: PRINCIPAL_TOKEN_TYPE })).toString('base64url');
/** Claims the issuer sets itself; `nbf` is refused too, so a token is valid from `iat`. */
const RESERVED_CLAIMS = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'nbf', 'jti', 'iss_key']);

export interface IssueInit {
  /** The end user (principal) id. */
  readonly subject: string;
  /** The callee service the token is for; no other service accepts it. */
  readonly audience: string;
  /** The service of the issuing instance. */
  readonly issuerService: string;
  /** Lifetime. Default 60 s; at most 300 s. */
  readonly ttlSeconds?: number;
  /** Further claims, e.g. `scope` (RFC 8693 §4.2); JSON values, no reserved claim names. */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** Current time in ms. Default `Date.now()`. */
  readonly now?: number;
}

export interface VerifyInit {
  /** This service's name: the token's `aud` must be exactly it. */
  readonly audience: string;
  /**
   * Throws (or rejects) unless `issPub` is a currently endorsed instance of `issuerService`
   * and that service may issue tokens. The mesh layer supplies it from the policy.
   */
  readonly issuerKey: (issPub: Buffer, issuerService: string) => void | Promise<void>;
  /** Refuses a token id seen before within its lifetime. */
  readonly replay?: ReplayCache;
  /** Current time in ms. Default `Date.now()`. */
  readonly now?: number;
  /** Clock skew tolerated on `exp` and `iat`. Default 5 s; at most 60 s. */
  readonly clockToleranceSeconds?: number;
}

/** A verified principal, as handlers read it from their call context. */
export interface VerifiedPrincipal {
  readonly subject: string;
  readonly audience: string;
  readonly issuerService: string;
  /** Raw Ed25519 public key of the issuing instance. */
  readonly issuerKey: Buffer;
  /** Expiry in ms since the epoch. */
  readonly expiresAt: number;
  /** The claims that are not reserved (e.g. `scope`). */
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * Issues a principal token signed by `identity` (the key stays inside the Identity).
 *
 * @example
 * const token = issuePrincipalToken(edge, { subject: 'user-42', audience: 'orders', issuerService: 'gateway', claims: { scope: 'orders:read' } });
 */
export function issuePrincipalToken(identity: Identity, init: IssueInit): string {
  assertName(init.subject, 'subject');
  assertName(init.audience, 'audience');
  assertName(init.issuerService, 'issuerService');
  const ttl = init.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new RangeError(`ttlSeconds must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS}, got ${ttl}`);
  }
  const claims = init.claims ?? {};
  for (const name of Object.keys(claims)) {
    if (RESERVED_CLAIMS.has(name)) throw new TypeError(`claim "${name}" is set by the issuer and cannot be passed in claims`);
  }
  const iat = Math.floor((init.now ?? Date.now()) / 1000);
  const payload: JWTPayload = {
    ...claims,
    iss: init.issuerService,
    sub: init.subject,
    aud: init.audience,
    iat,
    exp: iat + ttl,
    jti: randomBytes(16).toString('base64url'),
    iss_key: toBase32(identity.publicKey),
  };
  const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const token = `${signingInput}.${identity.signJwsInput(signingInput).toString('base64url')}`;
  if (token.length > MAX_TOKEN_LENGTH) throw new RangeError(`principal token is ${token.length} characters; the limit is ${MAX_TOKEN_LENGTH}`);
  return token;
}

/**
 * Re-binds a verified principal to a downstream audience: the service that received the token
 * (its audience) issues a new one for its own callee. The new token never outlives the old one.
 *
 * @example
 * // checkIssuer: the callback of verifyPrincipalToken's example
 * const principal = await verifyPrincipalToken(token, { audience: 'orders', issuerKey: checkIssuer });
 * const downstream = reissueForAudience(ordersInstance, principal, 'billing', 'orders');
 */
export function reissueForAudience(
  identity: Identity,
  verified: VerifiedPrincipal,
  audience: string,
  issuerService: string,
  options: { ttlSeconds?: number; now?: number } = {},
): string {
  if (issuerService !== verified.audience) {
    throw new TypeError(`only "${verified.audience}", the token's audience, may re-issue it; got issuerService "${issuerService}"`);
  }
  const now = options.now ?? Date.now();
  const remaining = Math.floor(verified.expiresAt / 1000) - Math.floor(now / 1000);
  if (remaining <= 0) throw new ThemisError('ERR_MESH_TOKEN_EXPIRED', 'principal token has expired; it cannot be re-issued');
  const ttlSeconds = Math.min(options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS, remaining);
  return issuePrincipalToken(identity, { subject: verified.subject, audience, issuerService, ttlSeconds, claims: verified.claims, now });
}

/**
 * Verifies a principal token, in this order: size and shape; EdDSA signature under the key in
 * `iss_key` (no other `alg`, no `none`); type, audience, expiry and lifetime (≤ 5 min); the
 * issuer callback, which only ever hears of authentic tokens; replay. Refusals are ThemisErrors: ERR_MESH_TOKEN_INVALID,
 * ERR_MESH_TOKEN_EXPIRED, ERR_MESH_TOKEN_AUDIENCE, ERR_MESH_TOKEN_REPLAYED,
 * ERR_MESH_REPLAY_CACHE_FULL — or whatever `issuerKey` throws.
 *
 * @example
 * const replay = new ReplayCache();
 * const principal = await verifyPrincipalToken(token, {
 *   audience: 'orders',
 *   issuerKey: (pub, service) => {
 *     if (service !== 'gateway' || !pub.equals(edge.publicKey)) throw new Error('not a token issuer');
 *   },
 *   replay,
 * });
 * principal.subject; // 'user-42'
 */
export async function verifyPrincipalToken(token: string, init: VerifyInit): Promise<VerifiedPrincipal> {
  const now = init.now ?? Date.now();
  const tolerance = init.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > MAX_CLOCK_TOLERANCE_SECONDS) {
    throw new RangeError(`clockToleranceSeconds must be an integer from 0 to ${MAX_CLOCK_TOLERANCE_SECONDS}, got ${tolerance}`);
  }
  if (typeof token !== 'string') throw invalid('principal token is not a string');
  if (token.length > MAX_TOKEN_LENGTH) throw invalid(`principal token is longer than ${MAX_TOKEN_LENGTH} characters`);
  let issuer: IssuerKey;
  let payload: JWTPayload;
  try {
    issuer = issuerKeyOf(decodeJwt(token).iss_key);
    ({ payload } = await jwtVerify(token, issuer.key, {
      algorithms: ['EdDSA'],
      typ: PRINCIPAL_TOKEN_TYPE,
      audience: init.audience,
      requiredClaims: ['iss', 'sub', 'iat', 'exp', 'jti', 'iss_key'],
      maxTokenAge: MAX_TOKEN_TTL_SECONDS,
      clockTolerance: tolerance,
      currentDate: new Date(now),
    }));
  } catch (err) {
    throw refusal(err);
  }
  const subject = stringClaim(payload, 'sub');
  const audience = stringClaim(payload, 'aud');
  const issuerService = stringClaim(payload, 'iss');
  const jti = stringClaim(payload, 'jti');
  if (jti.length > MAX_JTI_LENGTH) throw invalid(`principal token "jti" is longer than ${MAX_JTI_LENGTH} characters`);
  const exp = payload.exp!;
  const iat = payload.iat!;
  if (exp <= iat || exp - iat > MAX_TOKEN_TTL_SECONDS) throw invalid(`principal token lifetime must be 1 to ${MAX_TOKEN_TTL_SECONDS} s; it is ${exp - iat} s`);
  await init.issuerKey(Buffer.from(issuer.raw), issuerService);
  init.replay?.remember(`${issuer.text}.${jti}`, (exp + tolerance) * 1000, now);
  const claims = Object.freeze(Object.fromEntries(Object.entries(payload).filter(([name]) => !RESERVED_CLAIMS.has(name))));
  return { subject, audience, issuerService, issuerKey: Buffer.from(issuer.raw), expiresAt: exp * 1000, claims };
}

export interface ReplayCacheInit {
  /** Most token ids remembered at once; beyond it, tokens are refused (fail closed). Default 100 000. */
  readonly maxEntries?: number;
}

/**
 * The token ids (`iss_key.jti`) seen within their lifetime, dropped once they expire. Bounded:
 * when full of live ids it refuses new tokens with ERR_MESH_REPLAY_CACHE_FULL rather than forget
 * one that could then be replayed. Size it for the peak token rate × 5 min.
 *
 * @example
 * const replay = new ReplayCache({ maxEntries: 10_000 });
 * replay.remember('key.jti', Date.now() + 60_000, Date.now());
 * replay.remember('key.jti', Date.now() + 60_000, Date.now()); // throws ERR_MESH_TOKEN_REPLAYED
 */
export class ReplayCache {
  readonly #maxEntries: number;
  readonly #seen = new Set<string>();
  /** Min-heap on `until`, so expired ids leave in O(log n) each. */
  readonly #byExpiry: { until: number; id: string }[] = [];

  constructor(init: ReplayCacheInit = {}) {
    const maxEntries = init.maxEntries ?? 100_000;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`);
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#seen.size;
  }

  /**
   * Remembers `id` until `until` (ms). Throws ERR_MESH_TOKEN_REPLAYED if it is remembered
   * already, ERR_MESH_REPLAY_CACHE_FULL if `maxEntries` live ids leave no room.
   */
  remember(id: string, until: number, now: number): void {
    this.#dropExpired(now);
    if (this.#seen.has(id)) throw new ThemisError('ERR_MESH_TOKEN_REPLAYED', 'principal token was already used');
    if (this.#seen.size >= this.#maxEntries) {
      throw new ThemisError('ERR_MESH_REPLAY_CACHE_FULL', `replay cache holds ${this.#maxEntries} live token ids; refusing until some expire`);
    }
    this.#seen.add(id);
    this.#push({ until, id });
  }

  #dropExpired(now: number): void {
    const heap = this.#byExpiry;
    while (heap.length > 0 && heap[0]!.until <= now) this.#seen.delete(this.#popMin().id);
  }

  #push(entry: { until: number; id: string }): void {
    const heap = this.#byExpiry;
    let i = heap.length;
    heap.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.until <= entry.until) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = entry;
  }

  #popMin(): { until: number; id: string } {
    const heap = this.#byExpiry;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.until < heap[left]!.until ? right : left;
      if (heap[child]!.until >= last.until) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/** An `iss_key` claim decoded: base32 text, raw bytes, and the KeyObject jose verifies with. */
interface IssuerKey {
  readonly text: string;
  readonly raw: Buffer;
  readonly key: KeyObject;
}

/** Recent issuers, reused so jose also caches its imported form of each key. */
const issuerKeys = new Lru<string, IssuerKey>(1024);

function issuerKeyOf(text: unknown): IssuerKey {
  if (typeof text !== 'string') throw invalid('principal token has no "iss_key" claim');
  const cached = issuerKeys.get(text);
  if (cached !== undefined) return cached;
  let issuer: IssuerKey;
  try {
    const raw = fromBase32(text);
    issuer = { text, raw, key: publicKeyFromRaw('Ed25519', raw) };
  } catch (err) {
    throw invalid('principal token "iss_key" is not a base32 Ed25519 public key', err);
  }
  issuerKeys.set(text, issuer);
  return issuer;
}

function stringClaim(payload: JWTPayload, name: string): string {
  const value = payload[name];
  if (typeof value !== 'string' || value.length === 0) throw invalid(`principal token "${name}" must be a non-empty string`);
  return value;
}

function assertName(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
    throw new TypeError(`${what} must be a string of 1 to ${MAX_NAME_LENGTH} characters`);
  }
}

function invalid(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_MESH_TOKEN_INVALID', message, cause === undefined ? undefined : { cause });
}

/** jose's errors as ThemisErrors; anything else (a bug) passes through. */
function refusal(err: unknown): unknown {
  if (err instanceof ThemisError) return err;
  if (err instanceof errors.JWTExpired) return new ThemisError('ERR_MESH_TOKEN_EXPIRED', 'principal token has expired', { cause: err });
  if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud' && err.reason === 'check_failed') {
    return new ThemisError('ERR_MESH_TOKEN_AUDIENCE', 'principal token is for another audience', { cause: err });
  }
  if (err instanceof errors.JOSEError) return invalid(`principal token refused: ${err.message}`, err);
  return err;
}
