import { CipherState, type CipherName } from './cipher.js';
import { HASHLEN, hash, hkdf } from './hash.js';

const ZEROLEN = Buffer.alloc(0);

/**
 * Noise §5.2 `SymmetricState`: a CipherState plus the chaining key `ck` and the handshake
 * hash `h`. Buffers held in `ck` and `h` are replaced, never written into, so sharing them is safe.
 * @example
 * const ss = new SymmetricState('Noise_XX_25519_ChaChaPoly_SHA256', 'ChaChaPoly');
 * ss.mixHash(prologue);
 */
export class SymmetricState {
  readonly #cipherState: CipherState;
  #ck: Buffer;
  #h: Buffer;

  /** Noise §5.2 `InitializeSymmetric(protocol_name)`. */
  constructor(protocolName: string, cipher: CipherName) {
    const name = Buffer.from(protocolName, 'ascii');
    if (name.length <= HASHLEN) {
      // A name of at most HASHLEN bytes becomes h directly, zero-padded.
      this.#h = Buffer.alloc(HASHLEN);
      name.copy(this.#h);
    } else {
      this.#h = hash(name);
    }
    this.#ck = this.#h;
    this.#cipherState = new CipherState(cipher);
  }

  /** Noise §5.2 `MixKey(input_key_material)`. */
  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, tempK] = hkdf(this.#ck, inputKeyMaterial, 2);
    this.#ck = ck;
    this.#cipherState.initializeKey(tempK);
  }

  /** Noise §5.2 `MixHash(data)`: `h = HASH(h || data)`. */
  mixHash(data: Uint8Array): void {
    this.#h = hash(this.#h, data);
  }

  /** Noise §5.2 `MixKeyAndHash(input_key_material)`, used for PSKs (§9.2). */
  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const [ck, tempH, tempK] = hkdf(this.#ck, inputKeyMaterial, 3);
    this.#ck = ck;
    this.mixHash(tempH);
    this.#cipherState.initializeKey(tempK);
  }

  /** Noise §5.1 `HasKey()` of the inner CipherState. */
  hasKey(): boolean {
    return this.#cipherState.hasKey();
  }

  /** Noise §5.2 `GetHandshakeHash()` (a copy). Meaningful as a channel binding once the handshake is complete (§11.2). */
  get handshakeHash(): Buffer {
    return Buffer.from(this.#h);
  }

  /** Noise §5.2 `EncryptAndHash(plaintext)`. */
  encryptAndHash(plaintext: Uint8Array): Buffer {
    const ciphertext = this.#cipherState.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /** Noise §5.2 `DecryptAndHash(ciphertext)`. */
  decryptAndHash(ciphertext: Uint8Array): Buffer {
    const plaintext = this.#cipherState.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** Noise §5.2 `Split()`: `(c1, c2)`, c1 for initiator → responder, c2 for the other direction. */
  split(): [CipherState, CipherState] {
    const [tempK1, tempK2] = hkdf(this.#ck, ZEROLEN, 2);
    const cipher = this.#cipherState.cipher;
    return [new CipherState(cipher, tempK1), new CipherState(cipher, tempK2)];
  }
}
