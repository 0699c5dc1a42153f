/**
 * Protocol constants of docs/protocol.md §4.3–§4.4 and the local limits of a channel.
 * One frozen defaults object; `resolveLimits` validates overrides once, in the constructor.
 */

/** What a side announces in SETTINGS (§4.3). */
export interface Settings {
  /** Streams the sender accepts open at once from the peer. */
  readonly maxStreams: number;
  /** Initial per-stream receive window, bytes. */
  readonly initialWindow: number;
  /** Largest request or response body it accepts, bytes. */
  readonly maxMessageBytes: number;
}

/** §4.3: what a side assumes until the peer's SETTINGS has arrived. */
export const DEFAULT_SETTINGS: Settings = Object.freeze({
  maxStreams: 256,
  initialWindow: 262_144,
  maxMessageBytes: 4_194_304,
});

/** §4.4: the connection window starts at 1 MiB in each direction. */
export const CONNECTION_WINDOW = 1_048_576;
/** §4.4: no window may exceed 2^31 − 1. */
export const MAX_WINDOW = 0x7fff_ffff;

const U32_MAX = 0xffff_ffff;
/** setTimeout's largest delay. */
export const MAX_DELAY_MS = 0x7fff_ffff;

/**
 * A u32 `timeoutMs` of OPEN (§4.2) as a timer delay: setTimeout turns anything above 2^31 − 1 into
 * 1 ms, so a peer's larger value would fire at once; past ~24.8 days it waits the longest it can.
 */
export function timerDelay(timeoutMs: number): number {
  return Math.min(timeoutMs, MAX_DELAY_MS);
}

export interface ChannelLimits extends Settings {
  /**
   * Bytes received on streams and not yet consumed (unread stream data, request and response
   * bodies still arriving), across all streams. The channel grants connection window only while
   * this bound holds, so a peer can exceed it only by breaking flow control (§4.4). It also caps
   * the replies (PING ACK, RESET, WINDOW) queued for a peer that does not read: past it the
   * channel closes with ERR_CHANNEL_PENDING_LIMIT. Default 16 MiB.
   */
  readonly maxPendingBytes: number;
  /** §4.7: PING after this long without receiving anything. Default 15 s. */
  readonly keepAliveMs: number;
  /** §4.7: close after this long without receiving anything. Default 45 s. */
  readonly deadPeerMs: number;
  /** §4.7: close with GOAWAY IDLE_TIMEOUT after this long with no open stream. Default 300 s. */
  readonly idleTimeoutMs: number;
  /** How long `close()` lets open streams finish by default. Default 5 s. */
  readonly graceMs: number;
}

export const DEFAULT_CHANNEL_LIMITS: ChannelLimits = Object.freeze({
  ...DEFAULT_SETTINGS,
  maxPendingBytes: 16 * 1024 * 1024,
  keepAliveMs: 15_000,
  deadPeerMs: 45_000,
  idleTimeoutMs: 300_000,
  graceMs: 5_000,
});

const RANGES: Readonly<Record<keyof ChannelLimits, readonly [min: number, max: number]>> = {
  maxStreams: [0, U32_MAX],
  initialWindow: [1, MAX_WINDOW],
  maxMessageBytes: [0, U32_MAX],
  maxPendingBytes: [CONNECTION_WINDOW, Number.MAX_SAFE_INTEGER],
  keepAliveMs: [1, MAX_DELAY_MS],
  deadPeerMs: [2, MAX_DELAY_MS],
  idleTimeoutMs: [1, MAX_DELAY_MS],
  graceMs: [0, MAX_DELAY_MS],
};

/** The defaults with `overrides` applied; throws RangeError on an unknown key or a value out of range. */
export function resolveLimits(overrides: Partial<ChannelLimits> = {}): ChannelLimits {
  for (const key of Object.keys(overrides)) {
    if (!Object.hasOwn(RANGES, key)) throw new RangeError(`unknown channel limit ${JSON.stringify(key)}; known: ${Object.keys(RANGES).join(', ')}`);
  }
  const limits: ChannelLimits = { ...DEFAULT_CHANNEL_LIMITS, ...overrides };
  for (const [key, [min, max]] of Object.entries(RANGES)) {
    const value = limits[key as keyof ChannelLimits];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`channel limit ${key} must be an integer from ${min} to ${max}, got ${String(value)}`);
    }
  }
  if (limits.deadPeerMs <= limits.keepAliveMs) {
    throw new RangeError(`deadPeerMs (${limits.deadPeerMs}) must exceed keepAliveMs (${limits.keepAliveMs}) so a PING can be answered`);
  }
  if (limits.maxPendingBytes < limits.maxMessageBytes + CONNECTION_WINDOW) {
    throw new RangeError(
      `maxPendingBytes (${limits.maxPendingBytes}) must be at least maxMessageBytes + ${CONNECTION_WINDOW} (${limits.maxMessageBytes + CONNECTION_WINDOW}) so a largest body can arrive`,
    );
  }
  return Object.freeze(limits);
}
