export { ThemisError, isThemisError, type ErrorCode } from './errors.js';
export { Reader, Writer } from './codec.js';
export {
  asBuffer,
  concat,
  copyBytes,
  equalConstantTime,
  fromBase32,
  fromHex,
  leadingZeroBits,
  toBase32,
  toHex,
  utf8,
} from './bytes.js';
export { createLogger, type Logger } from './log.js';
export { Lru } from './lru.js';
export { RateLimiter, type RateLimit } from './rate-limit.js';
