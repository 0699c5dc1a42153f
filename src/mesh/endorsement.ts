import { toBase32 } from '../core/bytes.js';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import { hour, minute } from '../dht/constants.js';
import { CredentialType, type Credential } from '../handshake/index.js';
import { KEY_LENGTH, openEnvelope, sealEnvelope, type Identity } from '../identity/index.js';
import { isName } from './policy.js';

/**
 * A host endorses each instance it starts (issue 4; DESIGN.md "Mesh"): a signed envelope under
 * ENDORSEMENT_TAG, signed by the host's identity key, whose body is
 *
 *   bytes[32] instancePub ‖ str8 trustDomain ‖ str8 service ‖ bytes[32] codeDigest ‖ u64 issuedAt ‖ u64 expiresAt
 *
 * (times in ms since the epoch). The instance carries it in its handshake as a credential of type
 * CredentialType.HostEndorsement; the callee checks it against the policy (authorize.ts).
 */
export const ENDORSEMENT_TAG = 'themis/endorsement/v1';
export const DEFAULT_ENDORSEMENT_TTL = 24 * hour;
/** The longest lifetime an endorsement may claim; a longer one is refused as invalid. */
export const MAX_ENDORSEMENT_TTL = 7 * 24 * hour;
/** Clock difference tolerated between host and verifier, on both ends of the lifetime. */
export const ENDORSEMENT_CLOCK_SKEW = 5 * minute;
const DIGEST_LENGTH = 32;

export interface Endorsement {
  /** The endorsing host's Ed25519 public key (the envelope's signer). */
  readonly hostPub: Buffer;
  readonly instancePub: Buffer;
  readonly trustDomain: string;
  readonly service: string;
  /** SHA-256 of the code the instance runs. */
  readonly codeDigest: Buffer;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

export interface EndorsementInit {
  readonly instancePub: Uint8Array;
  readonly trustDomain: string;
  readonly service: string;
  readonly codeDigest: Uint8Array;
  /** Lifetime; default DEFAULT_ENDORSEMENT_TTL (24 h), at most MAX_ENDORSEMENT_TTL (7 days). */
  readonly ttlMs?: number;
  readonly now?: number;
}

/**
 * Signs an endorsement of an instance the host started.
 *
 * @example
 * const bytes = endorse(host, { instancePub: instance.publicKey, trustDomain: 'microbank', service: 'users', codeDigest });
 * encodeProof(instance, { credentials: [endorsementCredential(bytes)] });
 */
export function endorse(host: Identity, init: EndorsementInit): Buffer {
  const ttlMs = init.ttlMs ?? DEFAULT_ENDORSEMENT_TTL;
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_ENDORSEMENT_TTL) {
    throw new RangeError(`endorsement ttlMs must be an integer from 1 to ${MAX_ENDORSEMENT_TTL}, got ${ttlMs}`);
  }
  assertName('trustDomain', init.trustDomain);
  assertName('service', init.service);
  const issuedAt = init.now ?? Date.now();
  const body = new Writer(160)
    .fixed(init.instancePub, KEY_LENGTH)
    .str8(init.trustDomain)
    .str8(init.service)
    .fixed(init.codeDigest, DIGEST_LENGTH)
    .u64(issuedAt)
    .u64(issuedAt + ttlMs)
    .finish();
  return sealEnvelope(host, ENDORSEMENT_TAG, body);
}

function assertName(what: string, name: string): void {
  if (!isName(name)) throw new RangeError(`endorsement ${what} ${JSON.stringify(name)} is not a valid name (1..64 characters a-z, 0-9 and -)`);
}

/**
 * Decodes an endorsement and checks its signature and lifetime bounds, but not the clock: the
 * result depends on the bytes alone, so callers may cache it (then call checkEndorsementTime).
 * Any failure is ERR_MESH_ENDORSEMENT_INVALID; the input is copied first (by openEnvelope).
 */
export function openEndorsement(bytes: Uint8Array): Endorsement {
  let endorsement: Endorsement;
  try {
    const envelope = openEnvelope(bytes, ENDORSEMENT_TAG);
    const r = new Reader(envelope.body, 'endorsement');
    endorsement = {
      // fields in wire order: an object literal evaluates its properties in order
      hostPub: envelope.signer,
      instancePub: r.fixed(KEY_LENGTH),
      trustDomain: r.str8(),
      service: r.str8(),
      codeDigest: r.fixed(DIGEST_LENGTH),
      issuedAt: r.u64(),
      expiresAt: r.u64(),
    };
    r.end();
  } catch (err) {
    throw new ThemisError('ERR_MESH_ENDORSEMENT_INVALID', `host endorsement does not verify: ${(err as Error).message}`, { cause: err });
  }
  const lifetime = endorsement.expiresAt - endorsement.issuedAt;
  if (lifetime <= 0 || lifetime > MAX_ENDORSEMENT_TTL) {
    throw new ThemisError('ERR_MESH_ENDORSEMENT_INVALID', `host endorsement claims a lifetime of ${lifetime} ms; it must be from 1 ms to ${MAX_ENDORSEMENT_TTL} ms`);
  }
  return endorsement;
}

/** Refuses an endorsement used before it was issued or after it expired, give or take the clock skew. */
export function checkEndorsementTime(endorsement: Endorsement, now: number): void {
  if (now < endorsement.issuedAt - ENDORSEMENT_CLOCK_SKEW) {
    throw new ThemisError(
      'ERR_MESH_ENDORSEMENT_INVALID',
      `host endorsement of instance ${toBase32(endorsement.instancePub)} is issued in the future (${new Date(endorsement.issuedAt).toISOString()}); check the host's clock`,
    );
  }
  if (now >= endorsement.expiresAt + ENDORSEMENT_CLOCK_SKEW) {
    throw new ThemisError(
      'ERR_MESH_ENDORSEMENT_EXPIRED',
      `host endorsement of instance ${toBase32(endorsement.instancePub)} expired at ${new Date(endorsement.expiresAt).toISOString()}; its host must endorse it again`,
    );
  }
}

/** openEndorsement, then checkEndorsementTime. */
export function verifyEndorsement(bytes: Uint8Array, now = Date.now()): Endorsement {
  const endorsement = openEndorsement(bytes);
  checkEndorsementTime(endorsement, now);
  return endorsement;
}

/** The handshake credential that carries an endorsement (docs/protocol.md §3.4). */
export function endorsementCredential(bytes: Uint8Array): Credential {
  return { type: CredentialType.HostEndorsement, data: Buffer.from(bytes) };
}
