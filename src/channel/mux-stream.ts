import { Duplex } from 'node:stream';
import type { ThemisError } from '../core/errors.js';
import { ChannelError, WireCode, resetError } from './errors.js';
import { StreamFlow, type ChannelStream, type StreamHost } from './stream-flow.js';

const EMPTY = Buffer.alloc(0);
const U32_MAX = 0xffff_ffff;

type Callback = (err?: Error | null) => void;

/**
 * A byte stream of the channel (§4.6) as a node:stream Duplex. Writes complete only once their
 * bytes are framed, which the flow-control windows allow (§4.4), so `write()` backpressure
 * follows the peer's reading. Received bytes are handed to the reader as it asks for them, and
 * window goes back to the peer only for bytes the reader took.
 *
 * A RESET from the peer destroys the stream with a ChannelError (ERR_CHANNEL_RESET, …), except
 * CANCELLED, which just closes it. Errors are also logged by the channel, so an application that
 * listens for none does not crash.
 */
export class MuxStream extends Duplex implements ChannelStream {
  readonly id: number;
  /** The name the stream was opened under. */
  readonly name: string;
  /** @internal The channel's view of this stream (windows, send state). */
  readonly flow: StreamFlow;
  readonly #host: StreamHost;
  /** Received bytes the reader has not asked for yet. */
  readonly #inbox: Buffer[] = [];
  #inboxBytes = 0;
  #wantsData = false;
  #ended = false;
  #writeCallback: Callback | null = null;

  constructor(host: StreamHost, id: number, name: string, sendWindow: number, receiveWindow: number) {
    super({ allowHalfOpen: true });
    this.id = id;
    this.name = name;
    this.#host = host;
    this.flow = new StreamFlow(id, this, sendWindow, receiveWindow);
    this.on('error', (err: Error) => host.logger.debug({ stream: id, name, err }, 'stream error'));
  }

  /** Aborts both halves with RESET `code` (default CANCELLED; 65536 and above are application codes, §4.8). */
  reset(code: number = WireCode.CANCELLED): void {
    if (!Number.isInteger(code) || code < 0 || code > U32_MAX) throw new RangeError(`a RESET code is a u32, got ${code}`);
    if (!this.flow.closed) this.#host.reset(this.flow, code);
    this.destroy();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#queue(chunk, false, callback);
  }

  override _final(callback: Callback): void {
    this.#queue(EMPTY, true, callback);
  }

  override _read(): void {
    this.#wantsData = true;
    this.#drain();
  }

  override _destroy(err: Error | null, callback: Callback): void {
    if (!this.flow.closed) this.#host.reset(this.flow, WireCode.CANCELLED);
    this.#host.release(this.#inboxBytes);
    this.#inbox.length = 0;
    this.#inboxBytes = 0;
    const pending = this.#writeCallback;
    this.#writeCallback = null;
    pending?.(err);
    callback(err);
  }

  /** @internal */
  receive(payload: Buffer, fin: boolean): void {
    if (payload.length > 0) {
      if (this.#wantsData && this.#inbox.length === 0) this.#deliver(payload);
      else {
        this.#inbox.push(payload);
        this.#inboxBytes += payload.length;
      }
    }
    if (!fin) return;
    this.flow.finReceived = true;
    this.#drain();
    if (this.flow.finSent) this.#host.finish(this.flow);
  }

  /** @internal */
  receiveReset(code: number, message: string): void {
    this.destroy(code === WireCode.CANCELLED ? undefined : resetError(code, message));
  }

  /** @internal */
  sent(): void {
    const callback = this.#writeCallback;
    this.#writeCallback = null;
    if (this.flow.finSent && this.flow.finReceived) this.#host.finish(this.flow);
    callback?.();
  }

  /** @internal */
  abort(err: ThemisError): void {
    this.destroy(err);
  }

  #queue(chunk: Buffer, fin: boolean, callback: Callback): void {
    if (this.flow.closed) {
      callback(new ChannelError('ERR_CHANNEL_CLOSED', 'the stream is closed'));
      return;
    }
    this.flow.out = chunk;
    this.flow.outOffset = 0;
    this.flow.outFin = fin;
    this.#writeCallback = callback;
    this.#host.send(this.flow);
  }

  /** Hands queued bytes to the reader while it wants them; ends the readable side after the peer's FIN. */
  #drain(): void {
    const inbox = this.#inbox;
    while (this.#wantsData && inbox.length > 0) {
      const bytes = inbox.shift()!;
      this.#inboxBytes -= bytes.length;
      this.#deliver(bytes);
    }
    if (inbox.length === 0 && this.flow.finReceived && !this.#ended) {
      this.#ended = true;
      this.push(null);
    }
  }

  #deliver(bytes: Buffer): void {
    this.#host.release(bytes.length);
    this.#host.consume(this.flow, bytes.length);
    this.#wantsData = this.push(bytes);
  }
}
