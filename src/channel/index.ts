/**
 * Protocol 2 of docs/protocol.md (§4): the secure multiplexed channel that runs over a
 * connection once the identity handshake (protocol 1) has produced its transport ciphers.
 */
export {
  Channel,
  type ChannelLogger,
  type ChannelOptions,
  type ChannelStats,
  type CloseOptions,
  type RequestOptions,
  type StreamOptions,
} from './channel.js';
export { ChannelError, FIRST_APPLICATION_CODE, WireCode } from './errors.js';
export type { ChannelHandlers, RequestContext, RequestHandler, StreamContext, StreamHandler } from './handlers.js';
export { CONNECTION_WINDOW, DEFAULT_CHANNEL_LIMITS, DEFAULT_SETTINGS, MAX_WINDOW, type ChannelLimits, type Settings } from './limits.js';
export { MuxStream } from './mux-stream.js';
export type { MessageCipher } from './secure-framer.js';
