import { KeyObject, createPrivateKey, createPublicKey, diffieHellman, randomBytes } from 'node:crypto';
import { asBuffer } from '../../core/bytes.js';
import { ThemisError } from '../../core/errors.js';

/** Noise §12.1: the `25519` DH functions (X25519, RFC 7748). */
export const DHLEN = 32;

/** A local X25519 key pair: the raw public key as it goes on the wire, the private key as a KeyObject. */
export interface KeyPair25519 {
  /** 32 raw bytes. */
  readonly publicKey: Buffer;
  readonly privateKey: KeyObject;
}

function assertKeyLength(bytes: Uint8Array, what: string): void {
  if (bytes.length !== DHLEN) throw new RangeError(`${what} must be ${DHLEN} bytes, got ${bytes.length}`);
}

function assertX25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key.type !== type || key.asymmetricKeyType !== 'x25519') {
    throw new TypeError(`expected an X25519 ${type} KeyObject, got a ${key.asymmetricKeyType ?? key.type} ${key.type} key`);
  }
}

/**
 * Noise §4.1 `GENERATE_KEYPAIR()`.
 * @example const { publicKey, privateKey } = generateKeyPair25519();
 */
export function generateKeyPair25519(): KeyPair25519 {
  return keyPair25519FromPrivate(randomBytes(DHLEN));
}

/**
 * The key pair of 32 raw private-key bytes (clamped by X25519 itself).
 * Built through a JWK import and an SPKI DER export: on Node 20.20.2 `generateKeyPairSync('x25519')`
 * followed by a JWK export deadlocks the process (docs: shared FIELD-NOTES.md), DER export does not.
 * The JWK importer ignores `x` for private keys but requires the property, hence `x: ''`.
 * @example const pair = keyPair25519FromPrivate(fromHex('4a3a…4893'));
 */
export function keyPair25519FromPrivate(privateKeyBytes: Uint8Array): KeyPair25519 {
  assertKeyLength(privateKeyBytes, 'an X25519 private key');
  const d = asBuffer(privateKeyBytes).toString('base64url');
  const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: '' }, format: 'jwk' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return { publicKey: spki.subarray(spki.length - DHLEN), privateKey };
}

/**
 * A remote raw public key as a KeyObject, to be reused for every DH with it. Imported as JWK:
 * about 15× faster than a DER import here. Every 32-byte string is accepted (RFC 7748 §5).
 * @example const remote = importPublicKey25519(message.subarray(0, 32));
 */
export function importPublicKey25519(publicKeyBytes: Uint8Array): KeyObject {
  assertKeyLength(publicKeyBytes, 'an X25519 public key');
  const x = asBuffer(publicKeyBytes).toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
}

function lowOrderPoint(): ThemisError {
  return new ThemisError('ERR_HANDSHAKE_MESSAGE', 'the remote X25519 public key is a low-order point (all-zero shared secret)');
}

/**
 * Noise §4.1 / §12.1 `DH(key_pair, public_key)`. An all-zero result (a low-order remote key) is
 * refused with ERR_HANDSHAKE_MESSAGE, which §12.1 allows. OpenSSL signals that case itself;
 * the explicit check keeps the guarantee independent of the crypto library Node links.
 * Pass a KeyObject from importPublicKey25519 to skip the import when a key is used more than once.
 * @example const shared = dh25519(local.privateKey, remotePublicKeyBytes);
 */
export function dh25519(privateKey: KeyObject, remotePublic: Uint8Array | KeyObject): Buffer {
  assertX25519(privateKey, 'private');
  let publicKey: KeyObject;
  if (remotePublic instanceof KeyObject) {
    assertX25519(remotePublic, 'public');
    publicKey = remotePublic;
  } else {
    publicKey = importPublicKey25519(remotePublic);
  }
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    // Both keys are checked X25519 keys above, so derivation can only fail on a low-order point.
    throw lowOrderPoint();
  }
  let bits = 0;
  for (const byte of shared) bits |= byte;
  if (bits === 0) throw lowOrderPoint();
  return shared;
}
