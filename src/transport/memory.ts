import { Duplex } from 'node:stream';

/**
 * An in-memory duplex pair: what one side writes the other reads, in order, asynchronously
 * (like a socket). Used by tests and the DHT simulator instead of TCP; the protocols above run
 * unchanged over it. Destroying one side ends the other.
 */
export function memoryDuplexPair(options?: { highWaterMark?: number }): [Duplex, Duplex] {
  const a = new MemoryDuplex(options?.highWaterMark);
  const b = new MemoryDuplex(options?.highWaterMark);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class MemoryDuplex extends Duplex {
  peer: MemoryDuplex | null = null;
  private pendingCallback: ((error?: Error | null) => void) | null = null;

  constructor(highWaterMark = 64 * 1024) {
    super({ allowHalfOpen: false, highWaterMark });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === null || peer.destroyed) {
      callback(new Error('memory duplex: the other side is closed'));
      return;
    }
    // Deliver on a later tick, as a socket would; honour the reader's backpressure.
    setImmediate(() => {
      if (peer.destroyed) return callback();
      if (peer.push(chunk)) callback();
      else peer.waiting(callback);
    });
  }

  override _final(callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    setImmediate(() => {
      if (peer !== null && !peer.destroyed) peer.push(null);
      callback();
    });
  }

  override _read(): void {
    const cb = this.pendingCallback;
    this.pendingCallback = null;
    cb?.();
  }

  /** The writer on the other side waits here until this side's reader drains. */
  private waiting(callback: (error?: Error | null) => void): void {
    this.pendingCallback = callback;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    this.peer = null;
    const cb = this.pendingCallback;
    this.pendingCallback = null;
    cb?.(error ?? new Error('memory duplex closed'));
    if (peer !== null && !peer.destroyed) setImmediate(() => peer.destroy());
    callback(error);
  }
}
