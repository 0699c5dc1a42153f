import { Reader, Writer } from '../core/codec.js';
import { ThemisError, isThemisError } from '../core/errors.js';
import { DEFAULT_RECORD_LIMITS, RecordType, createRecord, revocationKey, verifyRecord } from '../dht/record.js';
import { KEY_LENGTH, type Identity, type NetworkConfig } from '../identity/index.js';

/**
 * Revocation. A revocation is a DHT record of type Revocation under `revocationKey(revokedPub)`
 * whose value is `bytes[32] revokedPub ‖ u8 reason ‖ u64 revokedAt` (ms). Anyone may publish
 * one; a peer believes it only when signed by the key itself, its endorsing host, or the
 * trust-domain owner — the mesh layer decides through `isAuthority`.
 *
 * Bound: the mesh layer polls the DHT for the revocations of the keys it trusts, so a peer
 * refuses a revoked key at most one polling interval (plus one DHT lookup) after the record
 * is published. A learned revocation is kept for good: the record expiring in the DHT (it
 * lives up to 48 h and is republished by its signer) does not un-revoke the key.
 */

/** Reasons after RFC 5280 §5.3.1; other values are kept as they are and still revoke. */
export const RevocationReason = Object.freeze({
  Unspecified: 0,
  KeyCompromise: 1,
  Superseded: 2,
  CessationOfOperation: 3,
} as const);

/** A verified revocation record. */
export interface Revocation {
  readonly revokedPub: Buffer;
  readonly reason: number;
  /** When the signer revoked the key, in ms since the epoch. */
  readonly revokedAt: number;
  /** Ed25519 public key that signed the record. */
  readonly signerPub: Buffer;
}

/**
 * A signed revocation record of `revokedPub`, living the longest a DHT holder accepts (48 h);
 * its sequence number is `revokedAt`, so a later republication replaces it in its DHT slot.
 *
 * @example
 * const record = createRevocation(host, instance.publicKey, RevocationReason.KeyCompromise);
 * await dht.store(record);
 */
export function createRevocation(signer: Identity, revokedPub: Uint8Array, reason: number, now: number = Date.now()): Buffer {
  if (revokedPub.length !== KEY_LENGTH) throw new RangeError(`revoked public key must be ${KEY_LENGTH} bytes, got ${revokedPub.length}`);
  if (!Number.isInteger(reason) || reason < 0 || reason > 0xff) throw new RangeError(`revocation reason must be an integer from 0 to 255, got ${reason}`);
  const value = new Writer(KEY_LENGTH + 9).fixed(revokedPub, KEY_LENGTH).u8(reason).u64(now).finish();
  return createRecord(signer, { type: RecordType.Revocation, key: revocationKey(revokedPub), value, seq: now, ttlMs: DEFAULT_RECORD_LIMITS.maxTtlMs, now });
}

/**
 * Verifies a revocation record (signature, key binding, expiry) and decodes it. It says who
 * signed, not whether that signer may revoke the key: RevocationList.add decides that.
 * Any failure is ERR_MESH_REVOCATION_INVALID.
 *
 * @example
 * const revocation = openRevocation(record, network);
 * revocation.signerPub.equals(host.publicKey); // true
 */
export function openRevocation(recordBytes: Uint8Array, network: NetworkConfig, now: number = Date.now()): Revocation {
  try {
    const record = verifyRecord(recordBytes, network, { now });
    if (record.type !== RecordType.Revocation) throw invalid(`record type ${record.type} is not a revocation`);
    const r = new Reader(record.value, 'revocation record value');
    const revocation = { revokedPub: r.fixed(KEY_LENGTH), reason: r.u8(), revokedAt: r.u64(), signerPub: record.publisher };
    r.end();
    return revocation;
  } catch (err) {
    if (isThemisError(err, 'ERR_MESH_REVOCATION_INVALID')) throw err;
    throw invalid(`revocation record: ${(err as Error).message}`, err);
  }
}

function invalid(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_MESH_REVOCATION_INVALID', message, cause === undefined ? undefined : { cause });
}

/** A revocation this peer believes, and when it learned of it. */
export interface RevocationEntry extends Revocation {
  /** When this peer added it, in ms since the epoch. */
  readonly learnedAt: number;
}

export interface AddRevocationInit {
  /**
   * Whether `signerPub` may revoke `revokedPub`: its endorsing host, or the owner through the
   * policy. Not asked when a key revokes itself, which it always may.
   */
  readonly isAuthority: (signerPub: Buffer, revokedPub: Buffer) => boolean;
  /** Current time in ms. Default `Date.now()`. */
  readonly now?: number;
}

/**
 * The keys this peer holds revoked. It grows only by revocations from an authority for keys
 * the caller asked about, and keeps them until the process ends.
 *
 * @example
 * const revoked = new RevocationList();
 * revoked.add(openRevocation(record, network), { isAuthority: (signer) => signer.equals(host.publicKey) });
 * revoked.isRevoked(instance.publicKey); // true
 */
export class RevocationList {
  readonly #entries = new Map<string, RevocationEntry>();

  /**
   * Adds a verified revocation when its signer is the key itself or an authority for it;
   * otherwise throws ERR_MESH_REVOCATION_UNAUTHORIZED. Returns false when the key was already
   * revoked (the first entry, and when it was learned, stay).
   */
  add(revocation: Revocation, init: AddRevocationInit): boolean {
    const { revokedPub, signerPub } = revocation;
    if (!signerPub.equals(revokedPub) && !init.isAuthority(signerPub, revokedPub)) {
      throw new ThemisError('ERR_MESH_REVOCATION_UNAUTHORIZED', 'revocation is signed by a key with no authority over the revoked key');
    }
    const id = revokedPub.toString('hex');
    if (this.#entries.has(id)) return false;
    const entry = { ...revocation, revokedPub: Buffer.from(revokedPub), signerPub: Buffer.from(signerPub), learnedAt: init.now ?? Date.now() };
    this.#entries.set(id, Object.freeze(entry));
    return true;
  }

  isRevoked(pub: Uint8Array): boolean {
    return this.#entries.has(Buffer.from(pub).toString('hex'));
  }

  /** The revocation of `pub`, if this peer believes one. */
  get(pub: Uint8Array): RevocationEntry | undefined {
    return this.#entries.get(Buffer.from(pub).toString('hex'));
  }

  get size(): number {
    return this.#entries.size;
  }
}
