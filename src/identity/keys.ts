import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Raw 32-byte Ed25519 / X25519 keys as node:crypto KeyObjects.
 *
 * Two facts measured on Node 20 (FIELD-NOTES.md) shape this file:
 * - generateKeyPairSync('ed25519'|'x25519') followed by a JWK export can deadlock the process,
 *   so private keys are built from 32 random bytes through a JWK import instead;
 * - importing a raw public key as JWK is ~15x faster than through DER.
 * Public keys are read back through SPKI DER, whose export is safe.
 */
export type OkpCurve = 'Ed25519' | 'X25519';

/** SPKI DER of an Ed25519/X25519 key is a fixed 12-byte header followed by the raw key (RFC 8410). */
const SPKI_HEADER_LENGTH = 12;
export const KEY_LENGTH = 32;
export const SIGNATURE_LENGTH = 64;

export function privateKeyFromRaw(curve: OkpCurve, raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_LENGTH) throw new RangeError(`${curve} private key must be ${KEY_LENGTH} bytes, got ${raw.length}`);
  return createPrivateKey({ key: { kty: 'OKP', crv: curve, d: Buffer.from(raw).toString('base64url'), x: '' }, format: 'jwk' });
}

export function publicKeyFromRaw(curve: OkpCurve, raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_LENGTH) throw new RangeError(`${curve} public key must be ${KEY_LENGTH} bytes, got ${raw.length}`);
  return createPublicKey({ key: { kty: 'OKP', crv: curve, x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

/** The raw 32 bytes of a public key (or of the public half of a private key). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return Buffer.from(der.subarray(SPKI_HEADER_LENGTH));
}

export interface OkpKeyPair {
  readonly curve: OkpCurve;
  readonly privateKey: KeyObject;
  /** Raw 32-byte public key. */
  readonly publicKey: Buffer;
}

/** RFC 7748 §4.1: the Curve25519 base point, u = 9. */
let x25519BasePoint: KeyObject | null = null;

/**
 * An X25519 public key is X25519(private, 9) (RFC 7748 §6.1): ~1.6x faster here than deriving a
 * public KeyObject and exporting it as SPKI DER. Ed25519 public keys go through SPKI.
 */
export function keyPairFromRaw(curve: OkpCurve, rawPrivate: Uint8Array): OkpKeyPair {
  const privateKey = privateKeyFromRaw(curve, rawPrivate);
  if (curve === 'Ed25519') return { curve, privateKey, publicKey: rawPublicKey(privateKey) };
  x25519BasePoint ??= publicKeyFromRaw('X25519', Buffer.from([9, ...new Array<number>(31).fill(0)]));
  return { curve, privateKey, publicKey: diffieHellman({ privateKey, publicKey: x25519BasePoint }) };
}

export function generateKeyPair(curve: OkpCurve): { pair: OkpKeyPair; secret: Buffer } {
  const secret = randomBytes(KEY_LENGTH);
  return { pair: keyPairFromRaw(curve, secret), secret };
}

/** The raw private scalar/seed of a key, for writing key files only. */
export function rawPrivateKey(key: KeyObject): Buffer {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return Buffer.from(der.subarray(der.length - KEY_LENGTH));
}

/**
 * Domain-separated Ed25519 signatures (docs/protocol.md §2.3): the signed message is
 * `tag ‖ 0x00 ‖ body`, so a signature made under one tag never verifies under another.
 */
export function signedMessage(tag: string, body: Uint8Array): Buffer {
  if (tag.length === 0 || tag.includes('\0')) throw new TypeError('a signature tag must be non-empty and contain no NUL');
  const tagBytes = Buffer.from(tag, 'ascii');
  const out = Buffer.allocUnsafe(tagBytes.length + 1 + body.length);
  tagBytes.copy(out, 0);
  out[tagBytes.length] = 0;
  out.set(body, tagBytes.length + 1);
  return out;
}

export function signTagged(privateKey: KeyObject, tag: string, body: Uint8Array): Buffer {
  return sign(null, signedMessage(tag, body), privateKey);
}

export function verifyTagged(publicKey: KeyObject | Uint8Array, tag: string, body: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_LENGTH) return false;
  const key = publicKey instanceof Uint8Array ? tryPublicKey('Ed25519', publicKey) : publicKey;
  if (key === null) return false;
  return verify(null, signedMessage(tag, body), key, signature);
}

/** A peer-supplied public key that does not decode is an invalid signature, not a crash. */
function tryPublicKey(curve: OkpCurve, raw: Uint8Array): KeyObject | null {
  if (raw.length !== KEY_LENGTH) return null;
  try {
    return publicKeyFromRaw(curve, raw);
  } catch {
    return null;
  }
}
