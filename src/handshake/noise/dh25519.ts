import { KeyObject, diffieHellman, randomBytes } from 'node:crypto';
import { ThemisError } from '../../core/errors.js';
import { keyPairFromRaw, publicKeyFromRaw } from '../../identity/keys.js';

/** Noise §12.1: the `25519` DH functions (X25519, RFC 7748). */
export const DHLEN = 32;

/** A local X25519 key pair: the raw public key as it goes on the wire, the private key as a KeyObject. */
export interface KeyPair25519 {
  /** 32 raw bytes. */
  readonly publicKey: Buffer;
  readonly privateKey: KeyObject;
}

function assertX25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key.type !== type || key.asymmetricKeyType !== 'x25519') {
    throw new TypeError(`expected an X25519 ${type} KeyObject, got a ${key.type} ${key.asymmetricKeyType ?? ''} key`);
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
 * The key pair of 32 raw private-key bytes (X25519 clamps them itself); see identity/keys.ts for
 * why keys are built through JWK and the public key as X25519(private, 9).
 * @example const pair = keyPair25519FromPrivate(fromHex('77076d0a…1db92c2a'));
 */
export function keyPair25519FromPrivate(privateKeyBytes: Uint8Array): KeyPair25519 {
  return keyPairFromRaw('X25519', privateKeyBytes);
}

/**
 * A remote raw public key as a KeyObject, to be reused for every DH with it (JWK import, ~15x
 * faster than DER here). Every 32-byte string is accepted (RFC 7748 §5).
 * @example const remote = importPublicKey25519(message.subarray(0, 32));
 */
export function importPublicKey25519(publicKeyBytes: Uint8Array): KeyObject {
  return publicKeyFromRaw('X25519', publicKeyBytes);
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
