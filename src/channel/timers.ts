import { performance } from 'node:perf_hooks';
import type { ChannelLimits } from './limits.js';

export interface TimerEvents {
  /** Nothing received for keepAliveMs (and every keepAliveMs after): send a PING. */
  keepAlive(): void;
  /** Nothing received for deadPeerMs: close. */
  deadPeer(): void;
  /** No open stream for idleTimeoutMs: close with GOAWAY IDLE_TIMEOUT. */
  idle(): void;
}

/**
 * The connection timers of docs/protocol.md §4.7. The hot paths only record timestamps;
 * each timer re-arms itself from them when it fires, so there is no per-message timer work.
 * Timers are unref'd: they never keep a process alive.
 */
export class ConnectionTimers {
  readonly #limits: Pick<ChannelLimits, 'keepAliveMs' | 'deadPeerMs' | 'idleTimeoutMs'>;
  readonly #events: TimerEvents;
  #lastReceived = performance.now();
  /** When the last stream closed, or −1 while streams are open. */
  #idleSince = performance.now();
  #keepAliveTimer: NodeJS.Timeout | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(limits: Pick<ChannelLimits, 'keepAliveMs' | 'deadPeerMs' | 'idleTimeoutMs'>, events: TimerEvents) {
    this.#limits = limits;
    this.#events = events;
    this.#keepAliveTimer = arm(() => this.#checkLiveness(), limits.keepAliveMs);
    this.#idleTimer = arm(() => this.#checkIdle(), limits.idleTimeoutMs);
  }

  received(): void {
    this.#lastReceived = performance.now();
  }

  streamsOpen(): void {
    this.#idleSince = -1;
  }

  streamsClosed(): void {
    if (this.#stopped) return;
    this.#idleSince = performance.now();
    this.#idleTimer ??= arm(() => this.#checkIdle(), this.#limits.idleTimeoutMs);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#keepAliveTimer !== null) clearTimeout(this.#keepAliveTimer);
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#keepAliveTimer = null;
    this.#idleTimer = null;
  }

  #checkLiveness(): void {
    const { keepAliveMs, deadPeerMs } = this.#limits;
    const silent = performance.now() - this.#lastReceived;
    if (silent >= deadPeerMs) {
      this.#keepAliveTimer = null;
      return this.#events.deadPeer();
    }
    let next = keepAliveMs - silent;
    if (silent >= keepAliveMs) {
      this.#events.keepAlive();
      next = Math.min(keepAliveMs, deadPeerMs - silent);
    }
    if (!this.#stopped) this.#keepAliveTimer = arm(() => this.#checkLiveness(), next);
  }

  #checkIdle(): void {
    this.#idleTimer = null;
    if (this.#idleSince < 0 || this.#stopped) return;
    const idle = performance.now() - this.#idleSince;
    if (idle >= this.#limits.idleTimeoutMs) return this.#events.idle();
    this.#idleTimer = arm(() => this.#checkIdle(), this.#limits.idleTimeoutMs - idle);
  }
}

function arm(callback: () => void, delayMs: number): NodeJS.Timeout {
  return setTimeout(callback, Math.max(1, Math.ceil(delayMs))).unref();
}
