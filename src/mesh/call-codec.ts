import { randomBytes } from 'node:crypto';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';

/**
 * The bytes of a mesh call on the channel (request `mesh/<service>/<method>`).
 *
 * Request:  u8 version (1) ‖ u8 codec ‖ vec16 principal token (UTF-8, may be empty)
 *           ‖ str8 traceparent (W3C trace context) ‖ payload (the rest).
 * Response: u8 version (1) ‖ u8 codec ‖ payload (the rest).
 *
 * Codec 0: the payload is raw bytes (a Uint8Array in, a Buffer out).
 * Codec 1: the payload is UTF-8 JSON; an empty payload stands for `undefined`.
 */
export const CALL_VERSION = 1;

export const PayloadCodec = Object.freeze({ Raw: 0, Json: 1 } as const);
export type PayloadCodec = (typeof PayloadCodec)[keyof typeof PayloadCodec];

export interface CallRequest {
  readonly codec: PayloadCodec;
  /** The end-user principal token (a compact JWT), '' when none. */
  readonly token: string;
  readonly traceparent: string;
  readonly payload: Buffer;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** A fresh W3C traceparent (version 00, random trace and span ids, sampled). */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

/** The traceparent for the next hop: same trace id, a new span id (W3C trace context §3.2). */
export function childTraceparent(parent: string | undefined): string {
  if (parent === undefined || !TRACEPARENT.test(parent)) return newTraceparent();
  const [version, traceId, , flags] = parent.split('-') as [string, string, string, string];
  return `${version}-${traceId}-${randomBytes(8).toString('hex')}-${flags}`;
}

export function isTraceparent(text: string): boolean {
  return TRACEPARENT.test(text);
}

/** Encodes a value: bytes travel raw, anything else as JSON. */
export function encodePayload(value: unknown): { codec: PayloadCodec; bytes: Buffer } {
  if (value instanceof Uint8Array) return { codec: PayloadCodec.Raw, bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength) };
  if (value === undefined) return { codec: PayloadCodec.Json, bytes: Buffer.alloc(0) };
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError(`a mesh payload must be bytes or JSON-serializable, got ${typeof value}`);
  return { codec: PayloadCodec.Json, bytes: Buffer.from(json, 'utf8') };
}

export function decodePayload(codec: number, bytes: Buffer): unknown {
  if (codec === PayloadCodec.Raw) return bytes;
  if (codec !== PayloadCodec.Json) throw invalid(`unknown payload codec ${codec}`);
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw invalid(`payload is not valid JSON: ${(err as Error).message}`, err);
  }
}

export function encodeCallRequest(payload: unknown, options: { token?: string; traceparent: string }): Buffer {
  const { codec, bytes } = encodePayload(payload);
  return new Writer(bytes.length + 160)
    .u8(CALL_VERSION)
    .u8(codec)
    .vec16(Buffer.from(options.token ?? '', 'utf8'))
    .str8(options.traceparent)
    .raw(bytes)
    .finish();
}

export function decodeCallRequest(body: Uint8Array): CallRequest {
  try {
    const r = new Reader(body, 'mesh call');
    const version = r.u8();
    if (version !== CALL_VERSION) throw invalid(`mesh call version ${version} is not supported (this peer speaks ${CALL_VERSION})`);
    const codec = r.u8();
    if (codec !== PayloadCodec.Raw && codec !== PayloadCodec.Json) throw invalid(`unknown payload codec ${codec}`);
    const token = r.vec16().toString('utf8');
    const traceparent = r.str8();
    const payload = r.rest();
    return { codec, token, traceparent: isTraceparent(traceparent) ? traceparent : newTraceparent(), payload };
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_MESH_CALL_INVALID') throw err;
    throw invalid(`malformed mesh call: ${(err as Error).message}`, err);
  }
}

export function encodeCallResponse(value: unknown): Buffer {
  const { codec, bytes } = encodePayload(value);
  return new Writer(bytes.length + 2).u8(CALL_VERSION).u8(codec).raw(bytes).finish();
}

export function decodeCallResponse(body: Uint8Array): unknown {
  let codec: number;
  let payload: Buffer;
  try {
    const r = new Reader(body, 'mesh response');
    const version = r.u8();
    if (version !== CALL_VERSION) throw invalid(`mesh response version ${version} is not supported`);
    codec = r.u8();
    payload = r.rest();
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_MESH_CALL_INVALID') throw err;
    throw invalid(`malformed mesh response: ${(err as Error).message}`, err);
  }
  return decodePayload(codec, payload);
}

function invalid(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_MESH_CALL_INVALID', message, { expose: true, ...(cause === undefined ? {} : { cause }) });
}
