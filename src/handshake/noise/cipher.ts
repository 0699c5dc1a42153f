import { createCipheriv, createDecipheriv, type BinaryLike, type CipherGCM, type CipherKey, type DecipherGCM } from 'node:crypto';
import { asBuffer } from '../../core/bytes.js';
import { ThemisError } from '../../core/errors.js';

/** The Noise cipher names this implementation supports (Noise §12.3, §12.4). */
export type CipherName = 'ChaChaPoly' | 'AESGCM';

/** Noise §4.2: cipher keys are 32 bytes. */
export const cipherKeyLength = 32;
/** Noise §4.2: every ciphertext is the plaintext plus 16 bytes of authentication data. */
export const TAGLEN = 16;

type AeadAlgorithm = 'chacha20-poly1305' | 'aes-256-gcm';
// Both AEADs share the setAAD/setAuthTag/getAuthTag API; @types/node only declares it per
// algorithm literal, so the two factories are typed once here for the pair.
const newCipher = createCipheriv as (algorithm: AeadAlgorithm, key: CipherKey, iv: BinaryLike, options: object) => CipherGCM;
const newDecipher = createDecipheriv as (algorithm: AeadAlgorithm, key: CipherKey, iv: BinaryLike, options: object) => DecipherGCM;
const AEAD_OPTIONS = Object.freeze({ authTagLength: TAGLEN });

/** How a cipher name maps to a node:crypto AEAD and lays the 64-bit counter `n` into its 96-bit nonce. */
interface AeadSuite {
  readonly algorithm: AeadAlgorithm;
  readonly littleEndian: boolean;
}

const SUITES: Readonly<Record<CipherName, AeadSuite>> = {
  // Noise §12.3: AEAD_CHACHA20_POLY1305; nonce = 32 zero bits ‖ little-endian n.
  ChaChaPoly: { algorithm: 'chacha20-poly1305', littleEndian: true },
  // Noise §12.4: AES-256-GCM; nonce = 32 zero bits ‖ big-endian n.
  AESGCM: { algorithm: 'aes-256-gcm', littleEndian: false },
};

/**
 * Nonces are refused from here on. Noise §5.1 allows n up to 2^64-2; keeping `n` an exact JS
 * number caps it at 2^53-1 instead — stricter than the spec and still never reusing a nonce.
 */
const MAX_NONCE = Number.MAX_SAFE_INTEGER;
/** Noise §4.2 REKEY: `maxnonce` = 2^64-1 is all one bits, so it reads the same in either byte order. */
const REKEY_NONCE = Buffer.from('00000000ffffffffffffffff', 'hex');
const EMPTY = Buffer.alloc(0);
const ZEROS_32 = Buffer.alloc(32);

function writeCounter(nonce: Buffer, n: number, littleEndian: boolean): void {
  const low = n >>> 0;
  const high = (n - low) / 0x1_0000_0000;
  if (littleEndian) {
    nonce.writeUInt32LE(low, 4);
    nonce.writeUInt32LE(high, 8);
  } else {
    nonce.writeUInt32BE(high, 4);
    nonce.writeUInt32BE(low, 8);
  }
}

/**
 * Noise §5.1 `CipherState`: a key `k` (possibly empty) and a counter nonce `n`. Also the
 * transport cipher after `split()`. Decryption failures throw ERR_HANDSHAKE_DECRYPT and leave
 * `n` unchanged; nonce exhaustion throws ERR_HANDSHAKE_NONCE_EXHAUSTED, after which the
 * session must end (§5).
 * @example
 * const c = new CipherState('ChaChaPoly', key);
 * const wire = c.encrypt(utf8('hello'));
 */
export class CipherState {
  readonly cipher: CipherName;
  readonly #suite: AeadSuite;
  #k: Buffer | null = null;
  #n = 0;
  /** Rewritten for each message; node:crypto copies the IV, so one buffer serves every call. */
  readonly #nonce = Buffer.alloc(12);

  constructor(cipher: CipherName, key: Uint8Array | null = null) {
    const suite = SUITES[cipher];
    if (suite === undefined) throw new RangeError(`unsupported Noise cipher ${JSON.stringify(cipher)}; expected ChaChaPoly or AESGCM`);
    this.cipher = cipher;
    this.#suite = suite;
    this.initializeKey(key);
  }

  /** Noise §5.1 `InitializeKey(key)`: sets `k` (a copy; null = empty) and `n = 0`. */
  initializeKey(key: Uint8Array | null): void {
    if (key !== null && key.length !== cipherKeyLength) {
      throw new RangeError(`a cipher key must be ${cipherKeyLength} bytes, got ${key.length}`);
    }
    this.#k = key === null ? null : Buffer.from(key);
    this.#n = 0;
  }

  /** Noise §5.1 `HasKey()`. */
  hasKey(): boolean {
    return this.#k !== null;
  }

  /** Noise §5.1 `SetNonce(nonce)`, for out-of-order transport messages (§11.4). */
  setNonce(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`a nonce must be an integer from 0 to 2^53-1, got ${n}`);
    this.#n = n;
  }

  /** The nonce `n` the next encryption or decryption will use. */
  get nonce(): number {
    return this.#n;
  }

  /** Noise §5.1 `EncryptWithAd(ad, plaintext)`: `ENCRYPT(k, n++, ad, plaintext)`, or the plaintext itself while `k` is empty. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Buffer {
    const k = this.#k;
    if (k === null) return asBuffer(plaintext);
    const ciphertext = this.#seal(k, this.#currentNonce(), ad, plaintext);
    this.#n++;
    return ciphertext;
  }

  /**
   * Noise §5.1 `DecryptWithAd(ad, ciphertext)`: `DECRYPT(k, n++, ad, ciphertext)`, or the
   * ciphertext itself while `k` is empty. On an authentication failure `n` is not incremented.
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Buffer {
    const k = this.#k;
    if (k === null) return asBuffer(ciphertext);
    const nonce = this.#currentNonce();
    const bodyLength = ciphertext.length - TAGLEN;
    if (bodyLength < 0) throw authenticationFailed();
    const decipher = newDecipher(this.#suite.algorithm, k, nonce, AEAD_OPTIONS);
    decipher.setAuthTag(ciphertext.subarray(bodyLength));
    if (ad.length > 0) decipher.setAAD(ad);
    const plaintext = decipher.update(ciphertext.subarray(0, bodyLength));
    try {
      decipher.final();
    } catch {
      throw authenticationFailed();
    }
    this.#n++;
    return plaintext;
  }

  /** Transport-message encryption (Noise §5: zero-length associated data). */
  encrypt(plaintext: Uint8Array): Buffer {
    return this.encryptWithAd(EMPTY, plaintext);
  }

  /** Transport-message decryption (Noise §5: zero-length associated data). */
  decrypt(ciphertext: Uint8Array): Buffer {
    return this.decryptWithAd(EMPTY, ciphertext);
  }

  /**
   * Noise §5.1 `Rekey()` / §11.3: `k = REKEY(k)`, the first 32 bytes of
   * `ENCRYPT(k, 2^64-1, zerolen, zeros)` (§4.2). `n` is left as it is.
   */
  rekey(): void {
    const k = this.#k;
    if (k === null) throw new ThemisError('ERR_HANDSHAKE_STATE', 'cannot rekey a CipherState that has no key');
    this.#k = this.#seal(k, REKEY_NONCE, EMPTY, ZEROS_32).subarray(0, cipherKeyLength);
  }

  /** Writes `n` into the nonce buffer, refusing it once the counter is exhausted. */
  #currentNonce(): Buffer {
    if (this.#n >= MAX_NONCE) {
      throw new ThemisError('ERR_HANDSHAKE_NONCE_EXHAUSTED', 'the cipher nonce is exhausted; the session must end');
    }
    writeCounter(this.#nonce, this.#n, this.#suite.littleEndian);
    return this.#nonce;
  }

  /** Noise §4.2 `ENCRYPT(k, n, ad, plaintext)`: ciphertext ‖ 16-byte tag. */
  #seal(k: Buffer, nonce: Buffer, ad: Uint8Array, plaintext: Uint8Array): Buffer {
    const cipher = newCipher(this.#suite.algorithm, k, nonce, AEAD_OPTIONS);
    if (ad.length > 0) cipher.setAAD(ad);
    const body = cipher.update(plaintext);
    cipher.final();
    return Buffer.concat([body, cipher.getAuthTag()], body.length + TAGLEN);
  }
}

function authenticationFailed(): ThemisError {
  return new ThemisError('ERR_HANDSHAKE_DECRYPT', 'a Noise message failed authentication');
}
