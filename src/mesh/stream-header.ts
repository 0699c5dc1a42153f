import type { Duplex } from 'node:stream';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';

/**
 * The metadata of a mesh stream (docs/mesh.md §5). A channel stream carries only a name, so the
 * caller's metadata travels as the first bytes of the stream, before any application byte:
 *
 *   caller → callee:  u16 length ‖ header, header = u8 version (1) ‖ vec16 principal token (UTF-8,
 *                     may be empty) ‖ str8 traceparent (W3C trace context)
 *   callee → caller:  u8 0x01 ("accepted"), written once the callee admitted the stream (trust
 *                     domain, revocation, principal token). A refused stream gets no byte: it is
 *                     reset with HANDLER_ERROR whose message is "ERR_MESH_…: reason", as for calls.
 *
 * Only after these bytes do both sides hand the stream to the application.
 */
export const STREAM_HEADER_VERSION = 1;
/** The byte the callee writes once it admitted the stream. */
export const STREAM_ACCEPTED = 0x01;
/** Most bytes of a stream header (a principal token is a few hundred bytes). */
export const MAX_STREAM_HEADER_BYTES = 8192;

export interface StreamHeader {
  readonly token: string;
  readonly traceparent: string;
}

export function encodeStreamHeader(header: StreamHeader): Buffer {
  const body = new Writer(64 + header.token.length).u8(STREAM_HEADER_VERSION).vec16(Buffer.from(header.token, 'utf8')).str8(header.traceparent).finish();
  if (body.length > MAX_STREAM_HEADER_BYTES) throw new RangeError(`a stream header is at most ${MAX_STREAM_HEADER_BYTES} bytes, got ${body.length}`);
  return new Writer(2 + body.length).vec16(body).finish();
}

export function decodeStreamHeader(body: Buffer): StreamHeader {
  const r = new Reader(body, 'stream header');
  const version = r.u8();
  if (version !== STREAM_HEADER_VERSION) throw new ThemisError('ERR_MESH_CALL_INVALID', `stream header version ${version} is not supported`, { expose: true });
  const token = r.vec16().toString('utf8');
  const traceparent = r.str8();
  r.end();
  return { token, traceparent };
}

/**
 * Reads exactly `n` bytes from the start of a paused-mode readable; the bytes after them stay
 * buffered in the stream for the application. Rejects when the stream ends, fails, or `signal` aborts.
 */
export function readExactly(stream: Duplex, n: number, signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('readable', tryRead);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new ThemisError('ERR_MESH_CALL_INVALID', `the stream ended before its ${n}-byte header`));
    };
    const onAbort = (): void => {
      cleanup();
      reject(new ThemisError('ERR_MESH_DEADLINE', `the first ${n} bytes of the stream did not arrive in time`, { cause: signal?.reason }));
    };
    function tryRead(): void {
      const chunk = stream.read(n) as Buffer | null;
      // An ended stream hands out what is left, however short, and emits 'end' only once: a
      // stream that ended before (or inside) the header fails now, not at the deadline.
      if (chunk === null) {
        if (stream.readableEnded) onEnd();
        return;
      }
      if (chunk.length < n) return onEnd();
      cleanup();
      resolve(chunk);
    }
    if (stream.errored !== null && stream.errored !== undefined) return reject(stream.errored);
    if (signal?.aborted === true) return onAbort();
    stream.on('readable', tryRead);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    tryRead();
  });
}
