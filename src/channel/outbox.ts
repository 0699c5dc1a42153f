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

/** Below this size a sealed message is copied behind its length prefix; above, both go out in one writev. */
const COPY_BELOW = 16 * 1024;

/**
 * Batches frames into transport plaintexts (§4.1: several frames per message, none spanning
 * two), seals them and writes each sealed message to the socket at once. Frames are encoded
 * straight into one reusable plaintext buffer; a full plaintext is sealed as soon as the next
 * frame does not fit, and the channel seals the last partial one once per event-loop turn.
 */
export class Outbox {
  readonly #sealer: TransportSealer;
  readonly #socket: Duplex;
  readonly #plain = Buffer.allocUnsafe(MAX_PLAINTEXT);
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
    this.#length = encodeData(this.#plain, this.#room(FRAME_HEADER_BYTES + end - start), streamId, fin, source, start, end);
  }

  open(streamId: number, kind: number, name: Uint8Array, timeoutMs: number): void {
    this.#length = encodeOpen(this.#plain, this.#room(openFrameBytes(name.length)), streamId, kind, name, timeoutMs);
  }

  reset(streamId: number, code: number, message: Uint8Array): void {
    this.#length = encodeReset(this.#plain, this.#room(resetFrameBytes(message.length)), streamId, code, message);
  }

  window(streamId: number, increment: number): void {
    this.#length = encodeWindow(this.#plain, this.#room(WINDOW_FRAME_BYTES), streamId, increment);
  }

  ping(ack: boolean, opaque: Uint8Array): void {
    this.#length = encodePing(this.#plain, this.#room(PING_FRAME_BYTES), ack, opaque);
  }

  goaway(lastStreamId: number, code: number, reason: Uint8Array): void {
    this.#length = encodeGoaway(this.#plain, this.#room(goawayFrameBytes(reason.length)), lastStreamId, code, reason);
  }

  settings(settings: Settings): void {
    this.#length = encodeSettings(this.#plain, this.#room(SETTINGS_FRAME_BYTES), settings);
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

  /** Offset where a frame of `size` bytes fits, sealing the current plaintext first if it would overflow. */
  #room(size: number): number {
    if (this.#length + size > MAX_PLAINTEXT) this.seal();
    return this.#length;
  }
}
