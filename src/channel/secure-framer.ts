import { ThemisError } from '../core/errors.js';

/**
 * docs/protocol.md §4.1: each direction of the channel is a sequence of transport messages,
 * `u16 length (16..65535) ‖ EncryptWithAd(empty, plaintext)`, with counter nonces, a rekey after
 * every 65,536 messages and a hard stop before the nonce runs out.
 */

/** The part of a Noise CipherState (Noise §5.1) the channel uses, after `Split()`. */
export interface MessageCipher {
  /** Encrypts with the current nonce and advances it. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Buffer;
  /** Decrypts with the current nonce and advances it; throws on an authentication failure without advancing. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Buffer;
  /** Noise §11.3 `Rekey()`; the nonce is left as it is. */
  rekey(): void;
  /** The nonce the next message will use. */
  readonly nonce: number;
}

/** §4.1: the AEAD tag; also the smallest transport message (an empty plaintext). */
export const TAG_BYTES = 16;
export const MAX_TRANSPORT_MESSAGE = 0xffff;
/** §4.1: both sides rekey after every 65,536 messages of a direction. */
export const REKEY_INTERVAL = 65_536;
/** §4.1: this implementation closes at nonce 2^53 − 1. */
export const NONCE_LIMIT = Number.MAX_SAFE_INTEGER;

const EMPTY = Buffer.alloc(0);

function exhausted(direction: string): ThemisError {
  return new ThemisError('ERR_CHANNEL_NONCE_EXHAUSTED', `the ${direction} nonce is exhausted; the connection must be replaced`);
}

/** Encrypts plaintexts into transport messages. */
export class TransportSealer {
  constructor(
    private readonly cipher: MessageCipher,
    private readonly nonceLimit = NONCE_LIMIT,
  ) {}

  /**
   * The ciphertext of one plaintext (1..65519 bytes, §4.1); the caller sends it after its u16 length.
   * Throws ERR_CHANNEL_NONCE_EXHAUSTED when no nonce is left.
   */
  seal(plaintext: Buffer): Buffer {
    const cipher = this.cipher;
    if (cipher.nonce >= this.nonceLimit) throw exhausted('sending');
    const ciphertext = cipher.encryptWithAd(EMPTY, plaintext);
    // The message just sent used nonce n = cipher.nonce − 1; rekey when (n + 1) mod 65536 = 0.
    if (cipher.nonce % REKEY_INTERVAL === 0) cipher.rekey();
    return ciphertext;
  }
}

/** Called with each decrypted plaintext; returns false to stop reading the rest of the input. */
export type PlaintextSink = (plaintext: Buffer) => boolean;

/**
 * Reassembles transport messages from a byte stream split at any boundary, decrypts them in
 * order and hands each plaintext to the sink. Whole messages inside a chunk are decrypted in
 * place; only a message that spans chunks is copied, into one reusable buffer.
 * Throws ERR_CHANNEL_DECRYPT (a message that fails authentication, or is shorter than a tag) or
 * ERR_CHANNEL_NONCE_EXHAUSTED; each is fatal for the connection.
 */
export class TransportOpener {
  readonly #cipher: MessageCipher;
  readonly #nonceLimit: number;
  readonly #sink: PlaintextSink;
  /** The ciphertext being assembled across chunks; allocated the first time a message spans two
   * chunks (many connections never need it), then reused. */
  #partialBuffer: Buffer | null = null;
  /** Its length, or 0 when no message is being assembled. */
  #expected = 0;
  #have = 0;
  /** The first byte of a length prefix split from its second, or −1. */
  #lengthHigh = -1;

  constructor(cipher: MessageCipher, sink: PlaintextSink, nonceLimit = NONCE_LIMIT) {
    this.#cipher = cipher;
    this.#sink = sink;
    this.#nonceLimit = nonceLimit;
  }

  /** True when the input stopped inside a message (a truncated stream if it ends here). */
  get midMessage(): boolean {
    return this.#expected > 0 || this.#lengthHigh >= 0;
  }

  push(chunk: Buffer): void {
    const end = chunk.length;
    let at = 0;
    if (this.#lengthHigh >= 0) {
      if (end === 0) return;
      const length = this.#checkLength((this.#lengthHigh << 8) | chunk[0]!);
      this.#lengthHigh = -1;
      this.#expected = length;
      this.#have = 0;
      at = 1;
    }
    if (this.#expected > 0) {
      const take = Math.min(this.#expected - this.#have, end - at);
      chunk.copy(this.#partial(), this.#have, at, at + take);
      this.#have += take;
      at += take;
      if (this.#have < this.#expected) return;
      const ciphertext = this.#partial().subarray(0, this.#expected);
      this.#expected = 0;
      if (!this.#open(ciphertext)) return;
    }
    while (at < end) {
      if (end - at === 1) {
        this.#lengthHigh = chunk[at]!;
        return;
      }
      const length = this.#checkLength(chunk.readUInt16BE(at));
      at += 2;
      if (end - at < length) {
        chunk.copy(this.#partial(), 0, at, end);
        this.#expected = length;
        this.#have = end - at;
        return;
      }
      if (!this.#open(chunk.subarray(at, at + length))) return;
      at += length;
    }
  }

  #partial(): Buffer {
    this.#partialBuffer ??= Buffer.allocUnsafe(MAX_TRANSPORT_MESSAGE);
    return this.#partialBuffer;
  }

  #checkLength(length: number): number {
    if (length < TAG_BYTES) throw new ThemisError('ERR_CHANNEL_DECRYPT', `transport message length ${length} is below ${TAG_BYTES}: it cannot be authenticated`);
    return length;
  }

  #open(ciphertext: Buffer): boolean {
    const cipher = this.#cipher;
    if (cipher.nonce >= this.#nonceLimit) throw exhausted('receiving');
    let plaintext: Buffer;
    try {
      plaintext = cipher.decryptWithAd(EMPTY, ciphertext);
    } catch (err) {
      throw new ThemisError('ERR_CHANNEL_DECRYPT', `transport message ${cipher.nonce} failed authentication`, { cause: err });
    }
    if (cipher.nonce % REKEY_INTERVAL === 0) cipher.rekey();
    return this.#sink(plaintext);
  }
}
