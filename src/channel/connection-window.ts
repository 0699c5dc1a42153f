import { ThemisError } from '../core/errors.js';
import { CONNECTION_WINDOW, MAX_WINDOW } from './limits.js';

/**
 * The connection-level windows of docs/protocol.md §4.4, both directions, and the bound on
 * received bytes held unconsumed. Connection window goes back to the peer once half of it is
 * consumed, and only while what is held plus what the peer may still send stays within
 * `maxPendingBytes`: a peer can make this side hold more only by breaking flow control.
 */
export class ConnectionWindow {
  /** Bytes this side may still send. */
  send = CONNECTION_WINDOW;
  /** Received stream bytes not yet consumed by the application. */
  pending = 0;
  /** Bytes the peer may still send. */
  #credit = CONNECTION_WINDOW;
  /** Bytes consumed since the last WINDOW this side sent. */
  #unacked = 0;
  readonly #maxPending: number;

  constructor(maxPendingBytes: number) {
    this.#maxPending = maxPendingBytes;
  }

  /** WINDOW on stream 0 from the peer. */
  grow(increment: number): void {
    if (this.send + increment > MAX_WINDOW) throw new ThemisError('ERR_CHANNEL_FLOW_CONTROL', 'WINDOW makes the connection window exceed 2^31-1 (§4.4)');
    this.send += increment;
  }

  /** DATA of `n` bytes arrived; beyond the window it is a violation. */
  receive(n: number): void {
    if (n > this.#credit) throw new ThemisError('ERR_CHANNEL_FLOW_CONTROL', `DATA of ${n} bytes exceeds the connection window (${this.#credit} bytes left)`);
    this.#credit -= n;
  }

  /** `n` received bytes were consumed (or dropped): their window may go back. */
  consume(n: number): void {
    this.#unacked += n;
  }

  /** The increment to announce in a WINDOW on stream 0 now, or 0. */
  grant(): number {
    const unacked = this.#unacked;
    if (unacked < CONNECTION_WINDOW / 2 || this.pending + this.#credit + unacked > this.#maxPending) return 0;
    this.#credit += unacked;
    this.#unacked = 0;
    return unacked;
  }
}
