import { isUtf8 } from 'node:buffer';
import { ThemisError } from '../core/errors.js';
import { MAX_WINDOW, type Settings } from './limits.js';

/**
 * The mux frame codec of docs/protocol.md §4.2: pure functions that encode one frame into a
 * caller-provided buffer, and a reader that walks the frames of one decrypted plaintext and
 * validates every structural rule of the §4.2 table. Stream-state rules (which ids may be
 * opened, windows, limits) belong to the channel.
 *
 * Frame: u8 type ‖ u8 flags ‖ u32 streamId ‖ u16 length ‖ bytes[length] payload.
 */

export const FrameType = Object.freeze({
  DATA: 0x00,
  OPEN: 0x01,
  RESET: 0x02,
  WINDOW: 0x03,
  PING: 0x04,
  GOAWAY: 0x05,
  SETTINGS: 0x06,
});

/** DATA flag: the sender's half of the stream ends after this payload. */
export const FLAG_FIN = 0x01;
/** PING flag: this PING is a reply. */
export const FLAG_ACK = 0x01;

/** OPEN kinds (§4.5, §4.6). */
export const StreamKind = Object.freeze({ REQUEST: 1, STREAM: 2 });

export const FRAME_HEADER_BYTES = 8;
/** §4.1: a transport plaintext holds at most 65519 bytes (65535 minus the 16-byte tag). */
export const MAX_PLAINTEXT = 65_519;
/** The largest payload one frame can carry: a whole plaintext minus its header. */
export const MAX_FRAME_PAYLOAD = MAX_PLAINTEXT - FRAME_HEADER_BYTES;
export const PING_PAYLOAD_BYTES = 8;
export const WINDOW_FRAME_BYTES = FRAME_HEADER_BYTES + 4;
export const PING_FRAME_BYTES = FRAME_HEADER_BYTES + PING_PAYLOAD_BYTES;
export const SETTINGS_FRAME_BYTES = FRAME_HEADER_BYTES + 12;
/** Names (OPEN) are 1..255 bytes; messages and reasons (RESET, GOAWAY) 0..255. */
export const MAX_TEXT_BYTES = 255;

/** Flags allowed per type; a type outside this table is unknown. */
const ALLOWED_FLAGS = [FLAG_FIN, 0, 0, 0, FLAG_ACK, 0, 0] as const;
const TYPE_NAMES = ['DATA', 'OPEN', 'RESET', 'WINDOW', 'PING', 'GOAWAY', 'SETTINGS'] as const;

/** UTF-8 of `text` for a str8 field (RESET message, GOAWAY reason), cut at a code point to 255 bytes. */
export function str8Bytes(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= MAX_TEXT_BYTES) return bytes;
  let end = MAX_TEXT_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

export function openFrameBytes(nameLength: number): number {
  return FRAME_HEADER_BYTES + 1 + 1 + nameLength + 4;
}

export function resetFrameBytes(messageLength: number): number {
  return FRAME_HEADER_BYTES + 4 + 1 + messageLength;
}

export function goawayFrameBytes(reasonLength: number): number {
  return FRAME_HEADER_BYTES + 4 + 4 + 1 + reasonLength;
}

// --- encoding: each writes one frame at `offset` and returns the offset after it -------------

function header(buf: Buffer, offset: number, type: number, flags: number, streamId: number, length: number): number {
  buf[offset] = type;
  buf[offset + 1] = flags;
  buf.writeUInt32BE(streamId, offset + 2);
  buf.writeUInt16BE(length, offset + 6);
  return offset + FRAME_HEADER_BYTES;
}

/** DATA carrying `source[start, end)`; the caller keeps end − start ≤ MAX_FRAME_PAYLOAD. */
export function encodeData(buf: Buffer, offset: number, streamId: number, fin: boolean, source: Uint8Array, start: number, end: number): number {
  const at = header(buf, offset, FrameType.DATA, fin ? FLAG_FIN : 0, streamId, end - start);
  buf.set(source.subarray(start, end), at);
  return at + end - start;
}

/** OPEN: u8 kind ‖ str8 name ‖ u32 timeoutMs. `name` is UTF-8, 1..255 bytes. */
export function encodeOpen(buf: Buffer, offset: number, streamId: number, kind: number, name: Uint8Array, timeoutMs: number): number {
  let at = header(buf, offset, FrameType.OPEN, 0, streamId, 1 + 1 + name.length + 4);
  buf[at++] = kind;
  buf[at++] = name.length;
  buf.set(name, at);
  return buf.writeUInt32BE(timeoutMs, at + name.length);
}

/** RESET: u32 errorCode ‖ str8 message. */
export function encodeReset(buf: Buffer, offset: number, streamId: number, code: number, message: Uint8Array): number {
  const at = header(buf, offset, FrameType.RESET, 0, streamId, 4 + 1 + message.length);
  buf.writeUInt32BE(code, at);
  buf[at + 4] = message.length;
  buf.set(message, at + 5);
  return at + 5 + message.length;
}

/** WINDOW: u32 increment (1..2^31 − 1); stream 0 is the connection window. */
export function encodeWindow(buf: Buffer, offset: number, streamId: number, increment: number): number {
  const at = header(buf, offset, FrameType.WINDOW, 0, streamId, 4);
  return buf.writeUInt32BE(increment, at);
}

/** PING on stream 0 with 8 opaque bytes, echoed in the ACK. */
export function encodePing(buf: Buffer, offset: number, ack: boolean, opaque: Uint8Array): number {
  const at = header(buf, offset, FrameType.PING, ack ? FLAG_ACK : 0, 0, PING_PAYLOAD_BYTES);
  buf.set(opaque.subarray(0, PING_PAYLOAD_BYTES), at);
  return at + PING_PAYLOAD_BYTES;
}

/** GOAWAY: u32 lastStreamId ‖ u32 errorCode ‖ str8 reason. */
export function encodeGoaway(buf: Buffer, offset: number, lastStreamId: number, code: number, reason: Uint8Array): number {
  let at = header(buf, offset, FrameType.GOAWAY, 0, 0, 4 + 4 + 1 + reason.length);
  at = buf.writeUInt32BE(lastStreamId, at);
  at = buf.writeUInt32BE(code, at);
  buf[at] = reason.length;
  buf.set(reason, at + 1);
  return at + 1 + reason.length;
}

/** SETTINGS: u32 maxStreams ‖ u32 initialWindow ‖ u32 maxMessageBytes. */
export function encodeSettings(buf: Buffer, offset: number, settings: Settings): number {
  let at = header(buf, offset, FrameType.SETTINGS, 0, 0, 12);
  at = buf.writeUInt32BE(settings.maxStreams, at);
  at = buf.writeUInt32BE(settings.initialWindow, at);
  return buf.writeUInt32BE(settings.maxMessageBytes, at);
}

// --- decoding ---------------------------------------------------------------------------------

function frameError(message: string): ThemisError {
  return new ThemisError('ERR_CHANNEL_FRAME', message);
}

const EMPTY = Buffer.alloc(0);

/**
 * Walks the frames of one transport plaintext without copying. After `next()` returns true, the
 * header fields and the fields of that frame's type are set (the others keep stale values);
 * `payload()` is a view into the plaintext. Any structural violation throws ERR_CHANNEL_FRAME
 * (a window above 2^31 − 1 in SETTINGS: ERR_CHANNEL_FLOW_CONTROL).
 */
export class FrameReader {
  type = 0;
  flags = 0;
  streamId = 0;
  /** OPEN */
  kind = 0;
  name = '';
  timeoutMs = 0;
  /** RESET and GOAWAY */
  code = 0;
  /** RESET message, GOAWAY reason */
  message = '';
  /** WINDOW */
  increment = 0;
  /** GOAWAY */
  lastStreamId = 0;
  /** SETTINGS */
  settings: Settings = { maxStreams: 0, initialWindow: 0, maxMessageBytes: 0 };
  #buf: Buffer = EMPTY;
  #pos = 0;
  #payloadStart = 0;
  #payloadEnd = 0;
  #lastNameBytes: Buffer = EMPTY;
  #lastName = '';

  /** Starts on a new plaintext, which §4.1 requires to hold at least one frame. */
  reset(plaintext: Buffer): void {
    if (plaintext.length === 0) throw frameError('a transport message must carry at least one frame');
    this.#buf = plaintext;
    this.#pos = 0;
  }

  get payloadLength(): number {
    return this.#payloadEnd - this.#payloadStart;
  }

  /** The payload of the current frame (a view, no copy). */
  payload(): Buffer {
    return this.#buf.subarray(this.#payloadStart, this.#payloadEnd);
  }

  /**
   * The payload to keep beyond this plaintext. A view keeps the whole plaintext (up to 64 KiB)
   * alive, so it is returned only when it covers at least half of it; a smaller payload is
   * copied out, so retained memory stays within twice the bytes a receiver accounts for.
   */
  detachedPayload(): Buffer {
    const start = this.#payloadStart;
    const end = this.#payloadEnd;
    const buf = this.#buf;
    if ((end - start) * 2 >= buf.buffer.byteLength) return buf.subarray(start, end);
    const copy = Buffer.allocUnsafe(end - start);
    buf.copy(copy, 0, start, end);
    return copy;
  }

  /** Advances to the next frame; false at the end of the plaintext. */
  next(): boolean {
    const buf = this.#buf;
    const pos = this.#pos;
    if (pos === buf.length) return false;
    if (buf.length - pos < FRAME_HEADER_BYTES) throw frameError(`truncated frame header: ${buf.length - pos} bytes left in the transport message`);
    const type = buf[pos]!;
    const flags = buf[pos + 1]!;
    const streamId = buf.readUInt32BE(pos + 2);
    const length = buf.readUInt16BE(pos + 6);
    const start = pos + FRAME_HEADER_BYTES;
    const end = start + length;
    if (end > buf.length) throw frameError(`a frame of ${length} bytes runs past the end of its transport message`);
    const allowed = ALLOWED_FLAGS[type];
    if (allowed === undefined) throw frameError(`unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
    if ((flags & ~allowed) !== 0) throw frameError(`${TYPE_NAMES[type]!} does not allow flags 0x${flags.toString(16).padStart(2, '0')}`);
    this.type = type;
    this.flags = flags;
    this.streamId = streamId;
    this.#payloadStart = start;
    this.#payloadEnd = end;
    this.#pos = end;
    switch (type) {
      case FrameType.DATA:
        requireStream(type, streamId);
        break;
      case FrameType.OPEN:
        requireStream(type, streamId);
        this.#decodeOpen(buf, start, length);
        break;
      case FrameType.RESET:
        requireStream(type, streamId);
        requireMinimum(type, length, 5);
        requireLength(type, length, 5 + buf[start + 4]!);
        this.code = buf.readUInt32BE(start);
        this.message = decodeText(buf, start + 5, end, 'RESET message');
        break;
      case FrameType.WINDOW:
        requireLength(type, length, 4);
        this.increment = buf.readUInt32BE(start);
        if (this.increment === 0 || this.increment > MAX_WINDOW) throw frameError(`WINDOW increment ${this.increment} is outside 1..2^31-1`);
        break;
      case FrameType.PING:
        requireConnection(type, streamId);
        requireLength(type, length, PING_PAYLOAD_BYTES);
        break;
      case FrameType.GOAWAY:
        requireConnection(type, streamId);
        requireMinimum(type, length, 9);
        requireLength(type, length, 9 + buf[start + 8]!);
        this.lastStreamId = buf.readUInt32BE(start);
        this.code = buf.readUInt32BE(start + 4);
        this.message = decodeText(buf, start + 9, end, 'GOAWAY reason');
        break;
      default: // SETTINGS
        requireConnection(type, streamId);
        requireLength(type, length, 12);
        this.#decodeSettings(buf, start);
    }
    return true;
  }

  #decodeOpen(buf: Buffer, start: number, length: number): void {
    requireMinimum(FrameType.OPEN, length, 1 + 1 + 4);
    const nameLength = buf[start + 1]!;
    requireLength(FrameType.OPEN, length, 1 + 1 + nameLength + 4);
    const kind = buf[start]!;
    if (kind !== StreamKind.REQUEST && kind !== StreamKind.STREAM) throw frameError(`OPEN kind ${kind} is neither 1 (request) nor 2 (stream)`);
    if (nameLength === 0) throw frameError('OPEN name is empty; names are 1..255 bytes');
    const timeoutMs = buf.readUInt32BE(start + 2 + nameLength);
    if (kind === StreamKind.STREAM && timeoutMs !== 0) throw frameError(`OPEN of a stream (kind 2) carries timeoutMs ${timeoutMs}; it must be 0`);
    this.kind = kind;
    this.name = this.#decodeName(buf, start + 2, start + 2 + nameLength);
    this.timeoutMs = timeoutMs;
  }

  /** Peers open most streams under a few names: the last one is kept, decoded, for reuse. */
  #decodeName(buf: Buffer, start: number, end: number): string {
    const last = this.#lastNameBytes;
    const length = end - start;
    if (last.length === length) {
      let i = 0;
      while (i < length && buf[start + i] === last[i]) i++;
      if (i === length) return this.#lastName;
    }
    const name = decodeText(buf, start, end, 'OPEN name');
    this.#lastNameBytes = Buffer.from(buf.subarray(start, end));
    this.#lastName = name;
    return name;
  }

  #decodeSettings(buf: Buffer, start: number): void {
    const initialWindow = buf.readUInt32BE(start + 4);
    if (initialWindow > MAX_WINDOW) throw new ThemisError('ERR_CHANNEL_FLOW_CONTROL', `SETTINGS initialWindow ${initialWindow} exceeds 2^31-1`);
    this.settings = { maxStreams: buf.readUInt32BE(start), initialWindow, maxMessageBytes: buf.readUInt32BE(start + 8) };
  }
}

function requireStream(type: number, streamId: number): void {
  if (streamId === 0) throw frameError(`${TYPE_NAMES[type]!} on stream 0; it needs a stream id`);
}

function requireConnection(type: number, streamId: number): void {
  if (streamId !== 0) throw frameError(`${TYPE_NAMES[type]!} on stream ${streamId}; it belongs on stream 0`);
}

function requireLength(type: number, length: number, expected: number): void {
  if (length !== expected) throw frameError(`${TYPE_NAMES[type]!} payload is ${length} bytes; expected ${expected}`);
}

function requireMinimum(type: number, length: number, minimum: number): void {
  if (length < minimum) throw frameError(`${TYPE_NAMES[type]!} payload is ${length} bytes; expected at least ${minimum}`);
}

function decodeText(buf: Buffer, start: number, end: number, what: string): string {
  if (end === start) return '';
  const bytes = buf.subarray(start, end);
  if (!isUtf8(bytes)) throw frameError(`${what} is not valid UTF-8`);
  return bytes.toString('utf8');
}
