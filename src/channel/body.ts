import { ThemisError } from '../core/errors.js';

const EMPTY = Buffer.alloc(0);

/**
 * A payload view keeps its whole transport plaintext (up to 64 KiB) alive. Keep the view when
 * it covers most of that memory; copy it out when it is a small part, so retained memory stays
 * within twice the bytes accounted for.
 */
export function detach(payload: Buffer): Buffer {
  return payload.length * 2 >= payload.buffer.byteLength ? payload : Buffer.from(payload);
}

/** Collects a request or response body from DATA payloads, up to `limit` bytes (§4.3 maxMessageBytes). */
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
    const part = detach(payload);
    if (this.#first === null) this.#first = part;
    else (this.#more ??= []).push(part);
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
