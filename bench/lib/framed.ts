/**
 * The baseline wire protocol for plain TCP and TLS: every message is `u32 BE word ‖ payload`.
 * The low 31 bits of the word are the payload length; the top bit asks for an ack instead of an
 * echo. The server answers each message in order: an echo message with the same frame, an ack
 * message with an empty frame (4 bytes), dropping the ack message's payload as it streams in. It is the smallest honest request/response protocol a
 * Node service could run over a byte stream, so Themis is measured against the cost of the
 * transport and not of a framework.
 */
import type { Socket } from 'node:net';

export const ACK_FLAG = 0x8000_0000;
const LENGTH_MASK = 0x7fff_ffff;
/** Largest payload either side accepts; the bench sends at most 1 MiB. */
export const MAX_PAYLOAD = 64 * 1024 * 1024;
/** Below this a header and payload are copied into one buffer, i.e. one write and one TLS record. */
const COALESCE_LIMIT = 64 * 1024;
const EMPTY_FRAME = Buffer.alloc(4);
const EMPTY = Buffer.alloc(0);

/**
 * Reassembles frames from arbitrary chunks; copies only when a frame spans chunks. With
 * `discardAcked`, the payload of an ack frame is dropped as it arrives, never assembled: the sink
 * side of the bulk test then costs the baseline no copy, which keeps the baseline strict.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  /** Header word of the frame being read; -1 while waiting for a header. */
  private word = -1;
  /** Payload bytes still to drop of an ack frame being discarded. */
  private discarding = 0;

  constructor(
    private readonly onFrame: (ack: boolean, payload: Buffer) => void,
    private readonly discardAcked = false,
  ) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.word < 0) {
        if (this.buffered < 4) return;
        this.word = this.take(4).readUInt32BE(0);
        const length = this.word & LENGTH_MASK;
        if (length > MAX_PAYLOAD) throw new RangeError(`frame of ${length} bytes exceeds ${MAX_PAYLOAD}`);
        if (this.discardAcked && (this.word & ACK_FLAG) !== 0) this.discarding = length;
      }
      if (this.discarding > 0) {
        const n = Math.min(this.discarding, this.buffered);
        this.drop(n);
        this.discarding -= n;
        if (this.discarding > 0) return;
        this.word = -1;
        this.onFrame(true, EMPTY);
        continue;
      }
      const length = this.word & LENGTH_MASK;
      if (this.buffered < length) return;
      const ack = (this.word & ACK_FLAG) !== 0;
      this.word = -1;
      this.onFrame(ack, length === 0 ? EMPTY : this.take(length));
    }
  }

  private drop(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const chunk = this.chunks[0] as Buffer;
      if (chunk.length <= n) {
        n -= chunk.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = chunk.subarray(n);
        n = 0;
      }
    }
  }

  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0] as Buffer;
    if (first.length === n) return this.chunks.shift() as Buffer;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0] as Buffer;
      const want = n - filled;
      if (chunk.length <= want) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, want);
        this.chunks[0] = chunk.subarray(want);
        filled = n;
      }
    }
    return out;
  }
}

function writeFrame(socket: Socket, word: number, payload: Buffer): void {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(word >>> 0, 0);
  if (payload.length <= COALESCE_LIMIT) {
    socket.write(payload.length === 0 ? header : Buffer.concat([header, payload], 4 + payload.length));
    return;
  }
  socket.cork();
  socket.write(header);
  socket.write(payload);
  socket.uncork();
}

/** Server side: answers every frame on `socket` (echo, or an empty frame for ack messages). */
export function serveFramed(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  const decoder = new FrameDecoder((ack, payload) => {
    if (ack) socket.write(EMPTY_FRAME);
    else writeFrame(socket, payload.length, payload);
  }, true);
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk);
    } catch {
      socket.destroy();
    }
  });
}

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

/** Client side: pipelined requests over one socket; replies come back in order. */
export class FramedClient {
  /** At most a few dozen in flight, so a plain array queue is fine. */
  private readonly pending: Pending[] = [];
  private failure: Error | null = null;
  private readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    const decoder = new FrameDecoder((_ack, payload) => {
      const waiter = this.pending.shift();
      if (waiter === undefined) return this.fail(new Error('reply without a request'));
      waiter.resolve(payload);
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Sends `payload`; resolves with the echoed payload, or an empty buffer when `ack` is set. */
  request(payload: Buffer, ack = false): Promise<Buffer> {
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      writeFrame(this.socket, (ack ? ACK_FLAG : 0) | payload.length, payload);
    });
  }

  /** Half-closes (TLS close_notify + FIN); resolves once the socket is fully closed. */
  close(): Promise<void> {
    this.socket.end();
    return this.closed;
  }

  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    for (const waiter of this.pending.splice(0)) waiter.reject(err);
    this.socket.destroy();
  }
}
