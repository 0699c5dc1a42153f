import { ThemisError } from '../core/errors.js';

const EMPTY = Buffer.alloc(0);

/**
 * Collects a request or response body from DATA payloads (FrameReader.detachedPayload), up to
 * `limit` bytes (§4.3 maxMessageBytes).
 */
export class BodyCollector {
  readonly #limit: number;
  /** Most bodies arrive in one frame: the first part needs no array. */
  #first: Buffer | null = null;
  #more: Buffer[] | null = null;
  #length = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Bytes collected and not yet taken. */
  get length(): number {
    return this.#length;
  }

  /** Adds a payload; a body beyond the limit is a violation (GOAWAY MESSAGE_TOO_LARGE, §4.3). */
  add(payload: Buffer): void {
    if (payload.length === 0) return;
    if (this.#length + payload.length > this.#limit) {
      throw new ThemisError('ERR_CHANNEL_MESSAGE_TOO_LARGE', `a body exceeds maxMessageBytes (${this.#limit})`);
    }
    if (this.#first === null) this.#first = payload;
    else (this.#more ??= []).push(payload);
    this.#length += payload.length;
  }

  /** The whole body; the collector is empty afterwards. */
  take(): Buffer {
    const first = this.#first;
    const body = first === null ? EMPTY : this.#more === null ? first : Buffer.concat([first, ...this.#more], this.#length);
    this.#first = null;
    this.#more = null;
    this.#length = 0;
    return body;
  }
}
