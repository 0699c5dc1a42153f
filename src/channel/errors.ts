import { ThemisError, type ErrorCode } from '../core/errors.js';

/** docs/protocol.md §4.8: the error codes carried by RESET and GOAWAY. */
export const WireCode = Object.freeze({
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  STREAM_LIMIT: 4,
  CANCELLED: 5,
  NO_HANDLER: 6,
  HANDLER_ERROR: 7,
  MESSAGE_TOO_LARGE: 8,
  TIMEOUT: 9,
  REFUSED: 10,
  IDLE_TIMEOUT: 11,
});

/** §4.8: RESET codes from here up belong to applications. */
export const FIRST_APPLICATION_CODE = 65_536;

const WIRE_NAMES = Object.keys(WireCode) as readonly string[];

function wireName(code: number): string {
  return WIRE_NAMES[code] ?? (code >= FIRST_APPLICATION_CODE ? `application code ${code}` : `unknown code ${code}`);
}

/**
 * A channel error. `wireCode` is the §4.8 code the peer sent when the error comes from its RESET
 * or GOAWAY; `retryable` is true when the peer did not process the request (REFUSED, or a stream
 * above a GOAWAY's lastStreamId), so it may safely be sent again on another connection.
 */
export class ChannelError extends ThemisError {
  readonly wireCode: number | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; wireCode?: number; retryable?: boolean } = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ChannelError';
    this.wireCode = options.wireCode;
    this.retryable = options.retryable ?? false;
  }
}

const RESET_ERRORS: Readonly<Record<number, ErrorCode>> = {
  [WireCode.STREAM_LIMIT]: 'ERR_CHANNEL_STREAM_LIMIT',
  [WireCode.CANCELLED]: 'ERR_CHANNEL_CANCELLED',
  [WireCode.NO_HANDLER]: 'ERR_CHANNEL_NO_HANDLER',
  [WireCode.HANDLER_ERROR]: 'ERR_CHANNEL_HANDLER',
  [WireCode.MESSAGE_TOO_LARGE]: 'ERR_CHANNEL_MESSAGE_TOO_LARGE',
  [WireCode.TIMEOUT]: 'ERR_CHANNEL_TIMEOUT',
  [WireCode.REFUSED]: 'ERR_CHANNEL_GOAWAY',
};

/** The local error for a RESET the peer sent on a stream (§4.5, §4.8). */
export function resetError(code: number, message: string): ChannelError {
  const local = RESET_ERRORS[code] ?? 'ERR_CHANNEL_RESET';
  const text =
    code === WireCode.HANDLER_ERROR ? (message === '' ? 'the remote handler failed' : message)
    : `the peer reset the stream: ${wireName(code)}${message === '' ? '' : ` (${message})`}`;
  return new ChannelError(local, text, { wireCode: code, retryable: code === WireCode.REFUSED });
}

/** The error of a request or stream the peer will not process because of its GOAWAY (§4.7). */
export function refusedError(): ChannelError {
  return new ChannelError('ERR_CHANNEL_GOAWAY', 'the peer is going away and did not process this stream; retry on another connection', {
    wireCode: WireCode.REFUSED,
    retryable: true,
  });
}

/** The channel error for a GOAWAY that reports a failure (any code but NO_ERROR and IDLE_TIMEOUT). */
export function goawayError(code: number, reason: string): ChannelError {
  return new ChannelError('ERR_CHANNEL_GOAWAY', `the peer closed the connection: ${wireName(code)}${reason === '' ? '' : ` (${reason})`}`, { wireCode: code });
}

/** A violation by the peer: the connection is closed with GOAWAY carrying `goawayCode` (§4.8). */
const VIOLATION_CODES: Partial<Readonly<Record<ErrorCode, number>>> = {
  ERR_CHANNEL_FRAME: WireCode.PROTOCOL_ERROR,
  ERR_CHANNEL_PROTOCOL: WireCode.PROTOCOL_ERROR,
  ERR_CHANNEL_FLOW_CONTROL: WireCode.FLOW_CONTROL_ERROR,
  ERR_CHANNEL_STREAM_LIMIT: WireCode.STREAM_LIMIT,
  ERR_CHANNEL_MESSAGE_TOO_LARGE: WireCode.MESSAGE_TOO_LARGE,
};

/**
 * The GOAWAY code to send when the channel fails with `err`, or undefined to close without a
 * word: authentication and nonce failures (§4.1), dead peers and local errors get no GOAWAY.
 */
export function goawayCodeFor(err: ThemisError): number | undefined {
  return VIOLATION_CODES[err.code];
}
