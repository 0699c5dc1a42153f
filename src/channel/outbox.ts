import type { Duplex } from 'node:stream';
import type { Settings } from './limits.js';
import {
  FRAME_HEADER_BYTES,
  MAX_FRAME_PAYLOAD,
  MAX_PLAINTEXT,
  PING_FRAME_BYTES,
  SETTINGS_FRAME_BYTES,
  WINDOW_FRAME_BYTES,
  encodeData,
  encodeGoaway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeSettings,
  encodeWindow,
  goawayFrameBytes,
  openFrameBytes,
  resetFrameBytes,
} from './frames.js';
import type { TransportSealer } from './secure-framer.js';

/**
 * A plaintext this large is sealed and sent after the DATA frame that filled it, without waiting
 * for the end of the turn, so the peer starts on it while this side frames the rest (bulk data
 * still fills whole 65519-byte plaintexts: a DATA frame takes all the room left).
 */
const SEAL_AT = 32 * 1024;
/** Initial size of the plaintext buffer. */
const INITIAL_PLAINTEXT = 2048;
/** Below this size a sealed message is copied behind its length prefix; above, both go out in one writev. */
const COPY_BELOW = 16 * 1024;

/**
 * Batches frames into transport plaintexts (§4.1: several frames per message, none spanning
 * two), seals them and writes each sealed message to the socket at once. Frames are encoded
 * straight into one reusable plaintext buffer. A plaintext is sealed when the next frame does
 * not fit or a DATA frame brings it to SEAL_AT; the channel seals the last partial one once per
 * event-loop turn.
 */
export class Outbox {
  readonly #sealer: TransportSealer;
  readonly #socket: Duplex;
  /** Grows on demand up to MAX_PLAINTEXT: most connections only ever send small frames, and a
   * process holds thousands of them (the DHT simulator), so none starts with 64 KiB. */
  #plain = Buffer.allocUnsafe(INITIAL_PLAINTEXT);
  #length = 0;
  /** A sealing failure (nonce exhaustion): nothing more is sent; the channel reads it after each turn. */
  failure: unknown = null;
  /** Totals for ChannelStats. */
  messages = 0;
  bytes = 0;

  constructor(sealer: TransportSealer, socket: Duplex) {
    this.#sealer = sealer;
    this.#socket = socket;
  }

  /** True when no frame waits to be sealed. */
  get empty(): boolean {
    return this.#length === 0;
  }

  /** Payload bytes a DATA frame can carry in the current plaintext (a fresh one when it is full). */
  dataRoom(): number {
    const room = MAX_PLAINTEXT - this.#length - FRAME_HEADER_BYTES;
    return room > 0 ? room : MAX_FRAME_PAYLOAD;
  }

  data(streamId: number, fin: boolean, source: Uint8Array, start: number, end: number): void {
    const at = this.#room(FRAME_HEADER_BYTES + end - start);
    this.#length = encodeData(this.#plain, at, streamId, fin, source, start, end);
    if (this.#length >= SEAL_AT) this.seal();
  }

  open(streamId: number, kind: number, name: Uint8Array, timeoutMs: number): void {
    const at = this.#room(openFrameBytes(name.length));
    this.#length = encodeOpen(this.#plain, at, streamId, kind, name, timeoutMs);
  }

  reset(streamId: number, code: number, message: Uint8Array): void {
    const at = this.#room(resetFrameBytes(message.length));
    this.#length = encodeReset(this.#plain, at, streamId, code, message);
  }

  window(streamId: number, increment: number): void {
    const at = this.#room(WINDOW_FRAME_BYTES);
    this.#length = encodeWindow(this.#plain, at, streamId, increment);
  }

  ping(ack: boolean, opaque: Uint8Array): void {
    const at = this.#room(PING_FRAME_BYTES);
    this.#length = encodePing(this.#plain, at, ack, opaque);
  }

  goaway(lastStreamId: number, code: number, reason: Uint8Array): void {
    const at = this.#room(goawayFrameBytes(reason.length));
    this.#length = encodeGoaway(this.#plain, at, lastStreamId, code, reason);
  }

  settings(settings: Settings): void {
    const at = this.#room(SETTINGS_FRAME_BYTES);
    this.#length = encodeSettings(this.#plain, at, settings);
  }

  /**
   * Seals the frames written so far into one transport message and writes it. A sealing
   * failure is kept in `failure`, not thrown, so writing a frame never throws.
   */
  seal(): void {
    if (this.#length === 0) return;
    const plaintext = this.#plain.subarray(0, this.#length);
    this.#length = 0;
    if (this.failure !== null || !this.#socket.writable) return;
    let ciphertext: Buffer;
    try {
      ciphertext = this.#sealer.seal(plaintext);
    } catch (err) {
      this.failure = err;
      return;
    }
    const socket = this.#socket;
    const length = ciphertext.length;
    if (length < COPY_BELOW) {
      const message = Buffer.allocUnsafe(2 + length);
      message.writeUInt16BE(length, 0);
      ciphertext.copy(message, 2);
      socket.write(message);
    } else {
      const prefix = Buffer.allocUnsafe(2);
      prefix.writeUInt16BE(length, 0);
      socket.cork();
      socket.write(prefix);
      socket.write(ciphertext);
      socket.uncork();
    }
    this.messages++;
    this.bytes += 2 + ciphertext.length;
  }

  /**
   * Offset where a frame of `size` bytes fits, sealing the current plaintext first if it would
   * overflow, and growing the buffer if needed: call it before reading #plain.
   */
  #room(size: number): number {
    if (this.#length + size > MAX_PLAINTEXT) this.seal();
    const needed = this.#length + size;
    if (needed > this.#plain.length) {
      const grown = Buffer.allocUnsafe(Math.min(MAX_PLAINTEXT, Math.max(needed, this.#plain.length * 4)));
      this.#plain.copy(grown, 0, 0, this.#length);
      this.#plain = grown;
    }
    return this.#length;
  }
}
