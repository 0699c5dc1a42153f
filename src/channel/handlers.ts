import { ThemisError } from '../core/errors.js';
import type { Channel } from './channel.js';
import { str8Bytes } from './frames.js';
import type { MuxStream } from './mux-stream.js';

/** What a request handler gets besides the body. */
export interface RequestContext {
  /** The name the request was opened under. */
  readonly name: string;
  /** Aborted when the requester cancels, its timeoutMs passes, or the channel closes. */
  readonly signal: AbortSignal;
  /** The channel the request came on; `channel.remote` is the verified peer. */
  readonly channel: Channel<any>;
}

/**
 * Answers one request (§4.5). To fail with a message the requester sees, throw a ThemisError
 * created with `expose: true`; anything else reaches the requester as HANDLER_ERROR with no message.
 */
export type RequestHandler = (body: Buffer, ctx: RequestContext) => Uint8Array | Promise<Uint8Array>;

export interface StreamContext {
  readonly name: string;
  readonly channel: Channel<any>;
}

/** Serves one byte stream (§4.6); a throw or rejection resets the stream with HANDLER_ERROR. */
export type StreamHandler = (stream: MuxStream, ctx: StreamContext) => void | Promise<void>;

/** Where a channel looks up the handler for each stream the peer opens. */
export interface ChannelHandlers {
  request(name: string): RequestHandler | undefined;
  stream(name: string): StreamHandler | undefined;
}

const EMPTY = Buffer.alloc(0);

/**
 * The RESET message for a failed handler (§4.8 HANDLER_ERROR): the error's own message when it
 * is a ThemisError marked `expose`; otherwise empty, so internals never leak.
 */
export function exposedMessage(err: unknown): Buffer {
  return err instanceof ThemisError && err.expose ? str8Bytes(err.message) : EMPTY;
}

export function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}
