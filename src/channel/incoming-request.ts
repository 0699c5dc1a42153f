import { ThemisError } from '../core/errors.js';
import { asBuffer } from '../core/bytes.js';
import { BodyCollector } from './body.js';
import type { Channel } from './channel.js';
import { ChannelError, WireCode } from './errors.js';
import { exposedMessage, isPromiseLike, type RequestContext, type RequestHandler } from './handlers.js';
import { timerDelay } from './limits.js';
import { StreamFlow, type ChannelStream, type StreamHost } from './stream-flow.js';

/**
 * The responder's side of one request (§4.5): collects the body, runs the handler once the
 * FIN arrives, and answers with the response body and FIN, or with RESET. The handler's
 * AbortSignal is made only if the handler asks for it.
 */
export class IncomingRequest implements ChannelStream {
  readonly flow: StreamFlow;
  readonly #host: StreamHost;
  readonly #context: HandlerContext;
  readonly #handler: RequestHandler;
  readonly #body: BodyCollector;
  readonly #maxResponseBytes: number;
  #timer: NodeJS.Timeout | null = null;
  /** Set once the exchange is over for the handler: it may stop, and its result is dropped. */
  #endReason: ThemisError | null = null;
  #controller: AbortController | null = null;

  constructor(
    host: StreamHost,
    channel: Channel<unknown>,
    id: number,
    name: string,
    handler: RequestHandler,
    limits: { send: number; receive: number; maxBodyBytes: number; maxResponseBytes: number; timeoutMs: number },
  ) {
    this.#host = host;
    this.flow = new StreamFlow(id, this, limits.send, limits.receive);
    this.#context = new HandlerContext(name, channel, this);
    this.#handler = handler;
    this.#body = new BodyCollector(limits.maxBodyBytes);
    this.#maxResponseBytes = limits.maxResponseBytes;
    if (limits.timeoutMs > 0) {
      this.#timer = setTimeout(() => this.#timedOut(limits.timeoutMs), timerDelay(limits.timeoutMs));
      this.#timer.unref();
    }
  }

  /** The handler's signal, made on first use (already aborted if the exchange has ended). */
  signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#endReason !== null) this.#controller.abort(this.#endReason);
    }
    return this.#controller.signal;
  }

  receive(payload: Buffer, fin: boolean): void {
    this.#body.add(payload);
    this.#host.consume(this.flow, payload.length);
    if (!fin) return;
    this.flow.finReceived = true;
    const body = this.#body.take();
    this.#host.release(body.length);
    let result: Uint8Array | PromiseLike<Uint8Array>;
    try {
      result = this.#handler(body, this.#context);
    } catch (err) {
      return this.#failed(err);
    }
    if (isPromiseLike(result)) {
      result.then(
        (value) => this.#respond(value),
        (err: unknown) => this.#failed(err),
      );
    } else {
      this.#respond(result);
    }
  }

  receiveReset(code: number): void {
    this.#end(new ChannelError('ERR_CHANNEL_CANCELLED', 'the requester cancelled the request', { wireCode: code }));
  }

  sent(): void {
    this.#end(null);
    this.#host.finish(this.flow);
  }

  abort(err: ThemisError): void {
    this.#host.release(this.#body.length);
    this.#body.take();
    this.#end(err);
  }

  #respond(value: Uint8Array): void {
    if (this.#endReason !== null || this.flow.closed) return;
    if (!(value instanceof Uint8Array)) {
      return this.#failed(new TypeError(`request handler "${this.#context.name}" returned ${typeof value}, not a Uint8Array`));
    }
    if (value.length > this.#maxResponseBytes) {
      this.#host.logger.warn({ name: this.#context.name, bytes: value.length, limit: this.#maxResponseBytes }, 'response exceeds the peer maxMessageBytes');
      return this.#resetWith(WireCode.MESSAGE_TOO_LARGE, undefined);
    }
    this.flow.out = asBuffer(value);
    this.flow.outFin = true;
    this.#host.send(this.flow);
  }

  #failed(err: unknown): void {
    if (this.#endReason !== null || this.flow.closed) return;
    const message = exposedMessage(err);
    if (message.length === 0) this.#host.logger.warn({ name: this.#context.name, err }, 'request handler failed');
    this.#resetWith(WireCode.HANDLER_ERROR, message);
  }

  /** §4.5 step 3: the responder gives up when timeoutMs has passed. */
  #timedOut(timeoutMs: number): void {
    this.#timer = null;
    if (this.flow.closed) return;
    this.#resetWith(WireCode.TIMEOUT, undefined, new ChannelError('ERR_CHANNEL_TIMEOUT', `the request did not complete within its ${timeoutMs} ms`));
  }

  #resetWith(code: number, message: Uint8Array | undefined, reason: ThemisError | null = null): void {
    this.#host.reset(this.flow, code, message);
    this.#end(reason ?? new ChannelError('ERR_CHANNEL_RESET', 'the request was reset', { wireCode: code }));
  }

  /** The exchange is over; a non-null reason aborts the handler's signal. */
  #end(reason: ThemisError | null): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (reason === null || this.#endReason !== null) return;
    this.#endReason = reason;
    this.#controller?.abort(reason);
  }
}

/** The `ctx` a request handler receives. */
class HandlerContext implements RequestContext {
  readonly name: string;
  readonly channel: Channel<unknown>;
  readonly #request: IncomingRequest;

  constructor(name: string, channel: Channel<unknown>, request: IncomingRequest) {
    this.name = name;
    this.channel = channel;
    this.#request = request;
  }

  get signal(): AbortSignal {
    return this.#request.signal();
  }
}
