import { ThemisError } from './errors.js';

/**
 * A small explicit binary codec: big-endian integers and length-prefixed byte strings in a
 * fixed field order. Every signed structure in Themis is encoded with it, so encodings are
 * deterministic by construction. docs/protocol.md §1 names the notation (u8, u16, vec16 …).
 */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** Unsigned 64-bit from a safe integer (timestamps in ms, sequence numbers). */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 expects a non-negative safe integer, got ${v}`);
    this.reserve(8);
    this.buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), this.pos);
    this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }

  /** Raw bytes of a length both sides already know. */
  fixed(bytes: Uint8Array, length: number): this {
    if (bytes.length !== length) throw new RangeError(`expected ${length} bytes, got ${bytes.length}`);
    return this.raw(bytes);
  }

  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  /** u8 length, then bytes. */
  vec8(bytes: Uint8Array): this {
    if (bytes.length > 0xff) throw new RangeError(`vec8 holds at most 255 bytes, got ${bytes.length}`);
    return this.u8(bytes.length).raw(bytes);
  }

  /** u16 length, then bytes. */
  vec16(bytes: Uint8Array): this {
    if (bytes.length > 0xffff) throw new RangeError(`vec16 holds at most 65535 bytes, got ${bytes.length}`);
    return this.u16(bytes.length).raw(bytes);
  }

  /** u32 length, then bytes. */
  vec32(bytes: Uint8Array): this {
    return this.u32(bytes.length).raw(bytes);
  }

  /** vec8 of UTF-8. */
  str8(text: string): this {
    return this.vec8(Buffer.from(text, 'utf8'));
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Reads what Writer wrote; every read is bounds-checked and fails with ERR_DECODE_*. */
export class Reader {
  private pos = 0;
  private readonly buf: Buffer;

  constructor(
    bytes: Uint8Array,
    private readonly what = 'message',
  ) {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new ThemisError('ERR_DECODE_TRUNCATED', `${this.what} is truncated: needed ${n} more bytes at offset ${this.pos}`);
    }
  }

  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    const v = hi * 0x1_0000_0000 + lo;
    if (!Number.isSafeInteger(v)) throw new ThemisError('ERR_DECODE_INVALID', `${this.what} has a 64-bit value above 2^53`);
    return v;
  }

  /** A view of the next n bytes (no copy). */
  fixed(n: number): Buffer {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  vec8(max = 0xff): Buffer {
    return this.bounded(this.u8(), max);
  }

  vec16(max = 0xffff): Buffer {
    return this.bounded(this.u16(), max);
  }

  vec32(max: number): Buffer {
    return this.bounded(this.u32(), max);
  }

  str8(): string {
    const bytes = this.vec8();
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes)) throw new ThemisError('ERR_DECODE_INVALID', `${this.what} has a string that is not valid UTF-8`);
    return text;
  }

  rest(): Buffer {
    return this.fixed(this.remaining);
  }

  /** Call when the structure is complete: trailing bytes make an encoding non-canonical. */
  end(): void {
    if (this.pos !== this.buf.length) {
      throw new ThemisError('ERR_DECODE_TRAILING', `${this.what} has ${this.buf.length - this.pos} unexpected trailing bytes`);
    }
  }

  private bounded(n: number, max: number): Buffer {
    if (n > max) throw new ThemisError('ERR_DECODE_TOO_LARGE', `${this.what} has a field of ${n} bytes; the limit is ${max}`);
    return this.fixed(n);
  }
}
