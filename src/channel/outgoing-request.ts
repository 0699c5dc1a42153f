import type { ThemisError } from '../core/errors.js';
import { BodyCollector } from './body.js';
import { ChannelError, WireCode, resetError } from './errors.js';
import { timerDelay } from './limits.js';
import { StreamFlow, type ChannelStream, type StreamHost } from './stream-flow.js';

/**
 * The requester's side of one request/response exchange (§4.5): sends the body with FIN,
 * collects the response body, and settles the caller's promise exactly once.
 */
export class OutgoingRequest implements ChannelStream {
  readonly flow: StreamFlow;
  readonly #host: StreamHost;
  readonly #response: BodyCollector;
  readonly #resolve: (body: Buffer) => void;
  readonly #reject: (err: ThemisError) => void;
  #settled = false;
  #timer: NodeJS.Timeout | null = null;
  #signal: AbortSignal | null = null;
  #onAbort: (() => void) | null = null;

  constructor(
    host: StreamHost,
    id: number,
    body: Buffer,
    windows: { send: number; receive: number; maxResponseBytes: number },
    resolve: (body: Buffer) => void,
    reject: (err: ThemisError) => void,
  ) {
    this.#host = host;
    this.flow = new StreamFlow(id, this, windows.send, windows.receive);
    this.flow.out = body;
    this.flow.outFin = true;
    this.#response = new BodyCollector(windows.maxResponseBytes);
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Gives up with ERR_CHANNEL_CANCELLED when `signal` aborts, with ERR_CHANNEL_TIMEOUT after `timeoutMs` (0: never). */
  watch(signal: AbortSignal | undefined, timeoutMs: number): void {
    if (timeoutMs > 0) {
      this.#timer = setTimeout(() => this.#cancel(new ChannelError('ERR_CHANNEL_TIMEOUT', `no response within ${timeoutMs} ms`)), timerDelay(timeoutMs));
      this.#timer.unref();
    }
    if (signal !== undefined) {
      this.#signal = signal;
      this.#onAbort = () => this.#cancel(new ChannelError('ERR_CHANNEL_CANCELLED', 'the request was cancelled', { cause: signal.reason }));
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  receive(payload: Buffer, fin: boolean): void {
    this.#response.add(payload);
    this.#host.consume(this.flow, payload.length);
    if (!fin) return;
    this.flow.finReceived = true;
    const body = this.#response.take();
    this.#host.release(body.length);
    // A response that arrives before the whole request body went out ends the exchange (§4.5 step 3).
    if (this.flow.finSent) this.#host.finish(this.flow);
    else this.#host.reset(this.flow, WireCode.CANCELLED);
    if (this.#settle()) this.#resolve(body);
  }

  receiveReset(code: number, message: string): void {
    this.abort(resetError(code, message));
  }

  sent(): void {
    // The body is out; the response follows.
  }

  abort(err: ThemisError): void {
    this.#host.release(this.#response.length);
    this.#response.take();
    if (this.#settle()) this.#reject(err);
  }

  /** §4.5 step 3: the requester gives up with RESET CANCELLED. */
  #cancel(err: ThemisError): void {
    if (this.flow.closed) return;
    this.#host.reset(this.flow, WireCode.CANCELLED);
    this.abort(err);
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#onAbort !== null) this.#signal!.removeEventListener('abort', this.#onAbort);
    return true;
  }
}
