import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { asBuffer } from '../core/bytes.js';
import { ThemisError } from '../core/errors.js';
import { ChannelError, WireCode, goawayCodeFor, goawayError, refusedError } from './errors.js';
import { FLAG_ACK, FLAG_FIN, FrameReader, FrameType, MAX_TEXT_BYTES, StreamKind, str8Bytes } from './frames.js';
import { exposedMessage, isPromiseLike, type ChannelHandlers, type StreamHandler } from './handlers.js';
import { ConnectionWindow } from './connection-window.js';
import { IncomingRequest } from './incoming-request.js';
import { DEFAULT_SETTINGS, MAX_WINDOW, resolveLimits, type ChannelLimits, type Settings } from './limits.js';
import { MuxStream } from './mux-stream.js';
import { OutgoingRequest } from './outgoing-request.js';
import { Outbox } from './outbox.js';
import { NONCE_LIMIT, TransportOpener, TransportSealer, type MessageCipher } from './secure-framer.js';
import type { ChannelStream, StreamFlow, StreamHost, StreamLogger } from './stream-flow.js';
import { ConnectionTimers } from './timers.js';

export type ChannelLogger = StreamLogger;

export interface ChannelOptions<R> {
  /** The connected transport, right after the handshake. */
  readonly socket: Duplex;
  /** Bytes already read from `socket` past the last handshake message. */
  readonly head?: Buffer;
  /** The transport cipher states from Noise `Split()` (§3.6). */
  readonly send: MessageCipher;
  readonly recv: MessageCipher;
  /** True on the handshake initiator, which opens odd stream ids (§4.2). */
  readonly initiator: boolean;
  /** The verified peer, as the handshake layer describes it. */
  readonly remote: R;
  readonly handlers: ChannelHandlers;
  readonly limits?: Partial<ChannelLimits>;
  readonly logger?: ChannelLogger;
  /** @internal For tests: the nonce at which the channel stops (§4.1); default 2^53 − 1. */
  readonly nonceLimit?: number;
}

export interface RequestOptions {
  /** Aborting cancels the request: RESET CANCELLED, and the promise rejects with ERR_CHANNEL_CANCELLED. */
  readonly signal?: AbortSignal;
  /** Sent in OPEN so the responder stops in time (§4.5); locally the promise rejects with ERR_CHANNEL_TIMEOUT. 0: none. */
  readonly timeoutMs?: number;
}

export interface StreamOptions {
  /** Aborting resets the stream with CANCELLED. */
  readonly signal?: AbortSignal;
}

export interface CloseOptions {
  /** How long open streams may take to finish after GOAWAY; default `limits.graceMs`. */
  readonly graceMs?: number;
}

export interface ChannelStats {
  readonly openStreams: number;
  /** Received stream bytes the application has not consumed yet. */
  readonly pendingBytes: number;
  /** Wire bytes and transport messages, each direction. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
}

interface PendingPing {
  readonly resolve: (rttMs: number) => void;
  readonly reject: (err: ThemisError) => void;
  readonly sentAt: number;
}

const OPEN = 0;
/** GOAWAY sent or received: no new streams; the socket ends when the last one is gone (§4.7). */
const DRAINING = 1;
const CLOSED = 2;

/** Stream data is framed while the socket holds less than this; the rest waits for 'drain'. */
const SEND_BUDGET = 256 * 1024;
/** How long an ended socket waits for the peer to close its side before it is destroyed. */
const LINGER_MS = 2_000;
const U32_MAX = 0xffff_ffff;
const EMPTY = Buffer.alloc(0);
const KEEPALIVE_PING = Buffer.alloc(8);
const NAME_CACHE_SIZE = 1024;
const SILENT: ChannelLogger = { debug() {}, warn() {} };
const noop = (): void => {};

/**
 * Protocol 2, the secure multiplexed channel (docs/protocol.md §4), over any connected duplex:
 * request/response exchanges and byte streams in both directions, flow control, keep-alive,
 * idle timeout and GOAWAY. Frames queued in one event-loop turn leave in as few transport
 * messages as possible; each sealed message is written at once.
 *
 * Emits `'close'` once, with the ThemisError that ended the channel or undefined for a clean close.
 *
 * @example
 * const channel = new Channel({ socket, head, send, recv, initiator: true, remote, handlers });
 * const reply = await channel.request('echo', Buffer.from('hi'), { timeoutMs: 5000 });
 * await channel.close();
 */
export class Channel<R = unknown> extends EventEmitter {
  readonly limits: ChannelLimits;
  readonly #remote: R;
  readonly #socket: Duplex;
  readonly #handlers: ChannelHandlers;
  readonly #logger: ChannelLogger;
  /** The parity of the stream ids this side opens: 1 on the initiator, 0 on the responder. */
  readonly #parity: number;
  readonly #outbox: Outbox;
  readonly #opener: TransportOpener;
  readonly #reader = new FrameReader();
  readonly #timers: ConnectionTimers;
  readonly #host: StreamHost;
  readonly #streams = new Map<number, ChannelStream>();
  readonly #pings = new Map<string, PendingPing>();
  #nextId: number;
  #lastPeerId = 0;
  /** After this side's GOAWAY: the peer's streams above this id are refused (§4.7). */
  #refuseAbove = U32_MAX;
  #localOpen = 0;
  #peerOpen = 0;
  /** True once the peer's first transport message (its SETTINGS) was authenticated: the peer holds
   * the session keys, which a replayed IK message 1 alone does not prove (docs/protocol.md §7).
   * The 'authenticated' event fires at that moment. */
  get authenticated(): boolean {
    return this.#peerSettingsSeen;
  }

  /** The peer's SETTINGS, or the defaults until it arrives (§4.3). */
  #peer: Settings = DEFAULT_SETTINGS;
  #peerSettingsSeen = false;
  /** The peer has answered the PING sent right after this side's SETTINGS, so it has seen them (§4.3). */
  #settingsSeenByPeer = false;
  readonly #window: ConnectionWindow;
  /** FIFO of streams with data to send, linked through StreamFlow.next. */
  #queueHead: StreamFlow | null = null;
  #queueTail: StreamFlow | null = null;
  #flushScheduled = false;
  readonly #flushNow = (): void => this.#flush();
  #state = OPEN;
  #goawaySent = false;
  #goawayReceived = false;
  #closeError: ThemisError | undefined = undefined;
  #closeEmitted = false;
  #closed: Promise<void> | null = null;
  #graceTimer: NodeJS.Timeout | null = null;
  #lingerTimer: NodeJS.Timeout | null = null;
  #bytesIn = 0;
  #messagesIn = 0;

  constructor(options: ChannelOptions<R>) {
    super();
    this.limits = resolveLimits(options.limits);
    this.#remote = options.remote;
    this.#socket = options.socket;
    this.#handlers = options.handlers;
    this.#logger = options.logger ?? SILENT;
    this.#parity = options.initiator ? 1 : 0;
    this.#window = new ConnectionWindow(this.limits.maxPendingBytes);
    this.#nextId = options.initiator ? 1 : 2;
    const nonceLimit = options.nonceLimit ?? NONCE_LIMIT;
    this.#outbox = new Outbox(new TransportSealer(options.send, nonceLimit), options.socket);
    this.#opener = new TransportOpener(options.recv, (plaintext) => this.#onPlaintext(plaintext), nonceLimit);
    this.#host = {
      logger: this.#logger,
      consume: (flow, n) => this.#consume(flow, n),
      release: (n) => this.#release(n),
      send: (flow) => this.#send(flow),
      reset: (flow, code, message) => this.#resetStream(flow, code, message),
      finish: (flow) => this.#forget(flow),
    };
    this.#timers = new ConnectionTimers(this.limits, {
      keepAlive: () => this.#keepAlive(),
      deadPeer: () => this.#terminate(new ChannelError('ERR_CHANNEL_TIMEOUT', `nothing received from the peer for ${this.limits.deadPeerMs} ms`), false),
      idle: () => this.#goAway(WireCode.IDLE_TIMEOUT, 0),
    });
    // §4.3: SETTINGS is the first frame; the ACK of the PING after it proves the peer has seen it.
    this.#outbox.settings(this.limits);
    this.#sendPing({ resolve: () => (this.#settingsSeenByPeer = true), reject: noop, sentAt: performance.now() });
    const socket = this.#socket;
    socket.on('error', (err: Error) => this.#terminate(new ChannelError('ERR_CHANNEL_CLOSED', `connection error: ${err.message}`, { cause: err }), false));
    socket.on('end', () => this.#onSocketEnd());
    socket.on('close', () => this.#onSocketClose());
    socket.on('drain', () => this.#scheduleFlush());
    process.nextTick(() => this.#start(options.head));
  }

  /** The verified peer this channel talks to. */
  get remote(): R {
    return this.#remote;
  }

  /** True once the channel is closed or closing for good; nothing new can start on it. */
  get closed(): boolean {
    return this.#state === CLOSED;
  }

  /** True while new streams may be opened: neither side has sent GOAWAY (§4.7). */
  get open(): boolean {
    return this.#state === OPEN;
  }

  get stats(): ChannelStats {
    return {
      openStreams: this.#streams.size,
      pendingBytes: this.#window.pending,
      bytesIn: this.#bytesIn,
      bytesOut: this.#outbox.bytes,
      messagesIn: this.#messagesIn,
      messagesOut: this.#outbox.messages,
    };
  }

  /**
   * Sends a request to the handler registered under `name` on the peer and resolves with its
   * response body (§4.5). `body` must not change until the promise settles. Rejects with a
   * ChannelError: ERR_CHANNEL_NO_HANDLER, ERR_CHANNEL_HANDLER (with the peer's exposed message),
   * ERR_CHANNEL_TIMEOUT, ERR_CHANNEL_CANCELLED, ERR_CHANNEL_RESET, ERR_CHANNEL_GOAWAY (`retryable`),
   * ERR_CHANNEL_CLOSED, ERR_CHANNEL_MESSAGE_TOO_LARGE or ERR_CHANNEL_STREAM_LIMIT.
   */
  request(name: string, body: Uint8Array, options: RequestOptions = {}): Promise<Buffer> {
    const nameBytes = encodeName(name);
    if (!(body instanceof Uint8Array)) throw new TypeError(`a request body must be a Uint8Array, got ${typeof body}`);
    const timeoutMs = options.timeoutMs ?? 0;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > U32_MAX) throw new RangeError(`timeoutMs must be an integer from 0 to ${U32_MAX}, got ${timeoutMs}`);
    const refusal =
      this.#openRefusal() ??
      (body.length > this.#peer.maxMessageBytes ?
        new ChannelError('ERR_CHANNEL_MESSAGE_TOO_LARGE', `a request body of ${body.length} bytes exceeds the peer's maxMessageBytes (${this.#peer.maxMessageBytes})`)
      : options.signal?.aborted === true ? new ChannelError('ERR_CHANNEL_CANCELLED', 'the request was cancelled', { cause: options.signal.reason })
      : null);
    if (refusal !== null) return Promise.reject(refusal);
    const id = this.#takeId();
    return new Promise<Buffer>((resolve, reject) => {
      const windows = { send: this.#peer.initialWindow, receive: this.limits.initialWindow, maxResponseBytes: this.limits.maxMessageBytes };
      const request = new OutgoingRequest(this.#host, id, asBuffer(body), windows, resolve, reject);
      this.#adopt(request, true);
      this.#outbox.open(id, StreamKind.REQUEST, nameBytes, timeoutMs);
      this.#send(request.flow);
      request.watch(options.signal, timeoutMs);
    });
  }

  /** Opens a byte stream to the stream handler registered under `name` on the peer (§4.6). */
  openStream(name: string, options: StreamOptions = {}): MuxStream {
    const nameBytes = encodeName(name);
    const refusal = this.#openRefusal();
    if (refusal !== null) throw refusal;
    const id = this.#takeId();
    const stream = new MuxStream(this.#host, id, name, this.#peer.initialWindow, this.limits.initialWindow);
    this.#adopt(stream, true);
    this.#outbox.open(id, StreamKind.STREAM, nameBytes, 0);
    this.#scheduleFlush();
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = (): void => void stream.destroy(new ChannelError('ERR_CHANNEL_CANCELLED', 'the stream was cancelled', { cause: signal.reason }));
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
    return stream;
  }

  /** Round-trip time to the peer in milliseconds, measured with PING (§4.7). */
  ping(): Promise<number> {
    if (this.#state === CLOSED) return Promise.reject(new ChannelError('ERR_CHANNEL_CLOSED', 'the channel is closed'));
    return new Promise((resolve, reject) => this.#sendPing({ resolve, reject, sentAt: performance.now() }));
  }

  /**
   * Closes gracefully (§4.7): GOAWAY, open streams get `graceMs` to finish (those still open
   * then fail with ERR_CHANNEL_CLOSED), then the socket ends. Resolves once it is closed.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const graceMs = options.graceMs ?? this.limits.graceMs;
    if (!Number.isInteger(graceMs) || graceMs < 0 || graceMs > 0x7fff_ffff) throw new RangeError(`graceMs must be a non-negative integer of milliseconds, got ${graceMs}`);
    if (this.#state !== CLOSED) this.#goAway(WireCode.NO_ERROR, graceMs);
    this.#closed ??= this.#closeEmitted ? Promise.resolve() : new Promise((resolve) => this.once('close', () => resolve()));
    return this.#closed;
  }

  /** Closes at once: open streams fail with ERR_CHANNEL_CLOSED; `'close'` carries `err`. */
  destroy(err?: Error): void {
    const error = err === undefined || err instanceof ThemisError ? err : new ChannelError('ERR_CHANNEL_CLOSED', err.message, { cause: err });
    if (this.#state === CLOSED) this.#socket.destroy();
    else this.#terminate(error, false);
  }

  // --- receiving ------------------------------------------------------------------------------

  #start(head: Buffer | undefined): void {
    if (this.#state === CLOSED) return;
    const socket = this.#socket;
    if (socket.destroyed) {
      this.#terminate(new ChannelError('ERR_CHANNEL_CLOSED', 'the connection was closed before the channel started'), false);
      return this.#emitClose();
    }
    if (head !== undefined && head.length > 0) this.#onSocketData(head);
    socket.on('data', (chunk: Buffer) => this.#onSocketData(chunk));
    socket.resume();
  }

  #onSocketData(chunk: Buffer): void {
    if (this.#state === CLOSED) return;
    this.#bytesIn += chunk.length;
    this.#timers.received();
    try {
      this.#opener.push(chunk);
    } catch (err) {
      this.#onError(err);
    }
    if (!this.#outbox.empty) this.#scheduleFlush();
  }

  /** Every frame of one transport message, in order; false stops the opener once the channel is closed. */
  #onPlaintext(plaintext: Buffer): boolean {
    this.#messagesIn++;
    const frame = this.#reader;
    frame.reset(plaintext);
    while (frame.next()) {
      if (!this.#peerSettingsSeen && frame.type !== FrameType.SETTINGS) throw protocolError('the first frame must be SETTINGS (§4.3)');
      switch (frame.type) {
        case FrameType.DATA:
          this.#onData(frame, (frame.flags & FLAG_FIN) !== 0);
          break;
        case FrameType.OPEN:
          this.#onOpen(frame.streamId, frame.kind, frame.name, frame.timeoutMs);
          break;
        case FrameType.RESET:
          this.#onReset(frame.streamId, frame.code, frame.message);
          break;
        case FrameType.WINDOW:
          this.#onWindow(frame.streamId, frame.increment);
          break;
        case FrameType.PING:
          this.#onPing((frame.flags & FLAG_ACK) !== 0, frame.payload());
          break;
        case FrameType.GOAWAY:
          this.#onGoaway(frame.lastStreamId, frame.code, frame.message);
          break;
        default:
          this.#onSettings(frame.settings);
      }
      if (this.#state === CLOSED) return false;
    }
    return true;
  }

  #onData(frame: FrameReader, fin: boolean): void {
    const id = frame.streamId;
    const n = frame.payloadLength;
    this.#window.receive(n);
    const stream = this.#streams.get(id);
    if (stream === undefined) {
      this.#checkForgotten(id, 'DATA');
      // Data for a stream already gone is dropped, and its window returned.
      this.#window.consume(n);
      return this.#grantConnection();
    }
    const flow = stream.flow;
    if (flow.finReceived) throw protocolError(`DATA on stream ${id} after its FIN`);
    if (n > flow.recvAllowance) throw flowError(`DATA of ${n} bytes exceeds the window of stream ${id} (${flow.recvAllowance} bytes left)`);
    flow.recvAllowance -= n;
    this.#window.pending += n;
    stream.receive(frame.detachedPayload(), fin);
  }

  #onOpen(id: number, kind: number, name: string, timeoutMs: number): void {
    if (id % 2 === this.#parity) throw protocolError(`the peer opened stream ${id}, an id of this side's parity (§4.2)`);
    if (id <= this.#lastPeerId) throw protocolError(`OPEN of stream ${id} does not increase on the previous id ${this.#lastPeerId} (§4.2)`);
    this.#lastPeerId = id;
    if (id > this.#refuseAbove) return this.#outbox.reset(id, WireCode.REFUSED, EMPTY);
    const maxStreams = this.#inbound('maxStreams');
    if (this.#peerOpen >= maxStreams) throw new ThemisError('ERR_CHANNEL_STREAM_LIMIT', `the peer opened more than maxStreams (${maxStreams}) streams (§4.3)`);
    const receive = this.#inbound('initialWindow');
    if (kind === StreamKind.REQUEST) {
      const handler = this.#handlers.request(name);
      if (handler === undefined) return this.#outbox.reset(id, WireCode.NO_HANDLER, EMPTY);
      const limits = { send: this.#peer.initialWindow, receive, maxBodyBytes: this.#inbound('maxMessageBytes'), maxResponseBytes: this.#peer.maxMessageBytes, timeoutMs };
      this.#adopt(new IncomingRequest(this.#host, this, id, name, handler, limits), false);
      return;
    }
    const handler = this.#handlers.stream(name);
    if (handler === undefined) return this.#outbox.reset(id, WireCode.NO_HANDLER, EMPTY);
    const stream = new MuxStream(this.#host, id, name, this.#peer.initialWindow, receive);
    this.#adopt(stream, false);
    this.#runStreamHandler(handler, stream);
  }

  #onReset(id: number, code: number, message: string): void {
    const stream = this.#streams.get(id);
    if (stream === undefined) return this.#checkForgotten(id, 'RESET');
    this.#forget(stream.flow);
    stream.receiveReset(code, message);
  }

  #onWindow(id: number, increment: number): void {
    if (id === 0) {
      this.#window.grow(increment);
      if (this.#queueHead !== null) this.#scheduleFlush();
      return;
    }
    const stream = this.#streams.get(id);
    if (stream === undefined) return this.#checkForgotten(id, 'WINDOW');
    const flow = stream.flow;
    if (flow.sendWindow + increment > MAX_WINDOW) throw flowError(`WINDOW makes the window of stream ${id} exceed 2^31-1 (§4.4)`);
    flow.sendWindow += increment;
    if (flow.out !== null) this.#send(flow);
  }

  #onPing(ack: boolean, opaque: Buffer): void {
    if (!ack) return this.#outbox.ping(true, opaque);
    const key = opaque.toString('hex');
    const pending = this.#pings.get(key);
    if (pending === undefined) return; // a keep-alive's answer, or unsolicited
    this.#pings.delete(key);
    pending.resolve(performance.now() - pending.sentAt);
  }

  #onGoaway(lastStreamId: number, code: number, reason: string): void {
    this.#goawayReceived = true;
    if (code !== WireCode.NO_ERROR && code !== WireCode.IDLE_TIMEOUT) return this.#terminate(goawayError(code, reason), true);
    // §4.7: streams this side opened above lastStreamId were not processed; they may be retried.
    for (const stream of this.#streams.values()) {
      const id = stream.flow.id;
      if (id % 2 === this.#parity && id > lastStreamId) {
        this.#forget(stream.flow);
        stream.abort(refusedError());
      }
    }
    if (this.#state === OPEN) this.#state = DRAINING;
    this.#scheduleFlush();
  }

  #onSettings(settings: Settings): void {
    if (this.#peerSettingsSeen) throw protocolError('SETTINGS arrived twice; it is sent once, as the first frame (§4.3)');
    this.#peerSettingsSeen = true;
    this.#peer = settings;
    this.emit('authenticated');
    // §4.3: streams opened on the default window gain what the peer announced above it.
    const growth = settings.initialWindow - DEFAULT_SETTINGS.initialWindow;
    if (growth <= 0) return;
    for (const stream of this.#streams.values()) {
      stream.flow.sendWindow += growth;
      if (stream.flow.out !== null) this.#send(stream.flow);
    }
  }

  /**
   * What this side enforces on the peer: its own setting once the peer has seen its SETTINGS,
   * before that the larger of it and the default the peer may have assumed (§4.3).
   */
  #inbound(key: keyof Settings): number {
    const own = this.limits[key];
    return this.#settingsSeenByPeer ? own : Math.max(own, DEFAULT_SETTINGS[key]);
  }

  /** A frame for a stream not open: fine if it existed (frames cross a RESET), a violation if never opened. */
  #checkForgotten(id: number, what: string): void {
    const opened = id % 2 === this.#parity ? id < this.#nextId : id <= this.#lastPeerId;
    if (!opened) throw protocolError(`${what} on stream ${id}, which was never opened`);
  }

  #runStreamHandler(handler: StreamHandler, stream: MuxStream): void {
    const failed = (err: unknown): void => {
      const message = exposedMessage(err);
      if (message.length === 0) this.#logger.warn({ name: stream.name, err }, 'stream handler failed');
      this.#resetStream(stream.flow, WireCode.HANDLER_ERROR, message);
      stream.destroy();
    };
    try {
      const result = handler(stream, { name: stream.name, channel: this });
      if (isPromiseLike(result)) result.then(undefined, failed);
    } catch (err) {
      failed(err);
    }
  }

  // --- flow control (§4.4) --------------------------------------------------------------------

  /** `n` received bytes were consumed: the window returns to the peer once half of it is used. */
  #consume(flow: StreamFlow, n: number): void {
    if (n === 0) return;
    this.#window.consume(n);
    this.#grantConnection();
    if (flow.finReceived || flow.closed) return;
    flow.recvUnacked += n;
    if (flow.recvUnacked < this.limits.initialWindow / 2) return;
    this.#outbox.window(flow.id, flow.recvUnacked);
    flow.recvAllowance += flow.recvUnacked;
    flow.recvUnacked = 0;
    this.#scheduleFlush();
  }

  #release(n: number): void {
    if (n === 0) return;
    this.#window.pending -= n;
    this.#grantConnection();
  }

  #grantConnection(): void {
    if (this.#state === CLOSED) return;
    const increment = this.#window.grant();
    if (increment === 0) return;
    this.#outbox.window(0, increment);
    this.#scheduleFlush();
  }

  // --- sending --------------------------------------------------------------------------------

  #send(flow: StreamFlow): void {
    if (!flow.queued) {
      flow.queued = true;
      if (this.#queueTail === null) this.#queueHead = flow;
      else this.#queueTail.next = flow;
      this.#queueTail = flow;
    }
    this.#scheduleFlush();
  }

  #dequeue(flow: StreamFlow): void {
    this.#queueHead = flow.next;
    if (this.#queueHead === null) this.#queueTail = null;
    flow.next = null;
    flow.queued = false;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#state === CLOSED) return;
    this.#flushScheduled = true;
    queueMicrotask(this.#flushNow);
  }

  /** Once per turn: frame what the windows allow and send the last partial transport message. */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#state === CLOSED) return;
    const socket = this.#socket;
    const more = this.#pump();
    if (this.#state === CLOSED) return;
    this.#outbox.seal();
    if (this.#outbox.failure !== null) return this.#onError(this.#outbox.failure);
    // Stream data waits for 'drain'; only control frames can pile up here, and only when the peer
    // makes this side answer (PING, RESET) without reading.
    if (socket.writableLength > this.limits.maxPendingBytes + SEND_BUDGET) {
      return this.#terminate(new ThemisError('ERR_CHANNEL_PENDING_LIMIT', `the peer does not read: ${socket.writableLength} bytes wait to be sent`), false);
    }
    if (more && !socket.writableNeedDrain) this.#scheduleFlush();
    if (this.#state === DRAINING && this.#streams.size === 0) this.#terminate(undefined, true);
  }

  /**
   * Frames queued stream data, oldest stream first, while the windows allow and the socket holds
   * less than SEND_BUDGET. Returns true when it stopped on the budget with data it could send.
   */
  #pump(): boolean {
    const outbox = this.#outbox;
    const socket = this.#socket;
    const window = this.#window;
    let flow: StreamFlow | null;
    while ((flow = this.#queueHead) !== null) {
      const out = flow.out;
      if (out === null) {
        this.#dequeue(flow);
        continue;
      }
      const remaining = out.length - flow.outOffset;
      let n = remaining;
      if (n > 0) {
        if (socket.writableLength >= SEND_BUDGET) return true;
        n = Math.min(n, flow.sendWindow, window.send, outbox.dataRoom());
        if (n <= 0) {
          if (window.send <= 0) return false; // until the peer returns connection window
          this.#dequeue(flow); // until the peer returns this stream's window
          continue;
        }
      }
      const fin = flow.outFin && n === remaining;
      if (n > 0 || fin) outbox.data(flow.id, fin, out, flow.outOffset, flow.outOffset + n);
      flow.outOffset += n;
      flow.sendWindow -= n;
      window.send -= n;
      if (n === remaining) {
        this.#dequeue(flow);
        flow.out = null;
        if (fin) flow.finSent = true;
        flow.owner.sent();
        if (this.#state === CLOSED) return false;
      }
    }
    return false;
  }

  #sendPing(pending: PendingPing): void {
    const opaque = randomBytes(8);
    this.#pings.set(opaque.toString('hex'), pending);
    this.#outbox.ping(false, opaque);
    this.#scheduleFlush();
  }

  #keepAlive(): void {
    this.#outbox.ping(false, KEEPALIVE_PING);
    this.#scheduleFlush();
  }

  // --- streams --------------------------------------------------------------------------------

  #openRefusal(): ChannelError | null {
    if (this.#state === CLOSED) return new ChannelError('ERR_CHANNEL_CLOSED', 'the channel is closed');
    if (this.#goawayReceived) return refusedError();
    if (this.#state === DRAINING) return new ChannelError('ERR_CHANNEL_CLOSED', 'the channel is closing');
    if (this.#nextId > U32_MAX) {
      this.#goAway(WireCode.NO_ERROR, this.limits.graceMs);
      return new ChannelError('ERR_CHANNEL_GOAWAY', 'this connection has used all its stream ids; retry on a new one', { retryable: true });
    }
    if (this.#localOpen >= this.#peer.maxStreams) {
      return new ChannelError('ERR_CHANNEL_STREAM_LIMIT', `the peer accepts at most ${this.#peer.maxStreams} open streams (§4.3)`);
    }
    return null;
  }

  #takeId(): number {
    const id = this.#nextId;
    this.#nextId += 2;
    return id;
  }

  #adopt(stream: ChannelStream, local: boolean): void {
    this.#streams.set(stream.flow.id, stream);
    if (local) this.#localOpen++;
    else this.#peerOpen++;
    if (this.#streams.size === 1) this.#timers.streamsOpen();
  }

  #forget(flow: StreamFlow): void {
    if (flow.closed) return;
    flow.closed = true;
    flow.out = null;
    this.#streams.delete(flow.id);
    if (flow.id % 2 === this.#parity) this.#localOpen--;
    else this.#peerOpen--;
    if (this.#streams.size > 0) return;
    this.#timers.streamsClosed();
    if (this.#state === DRAINING) this.#scheduleFlush();
  }

  #resetStream(flow: StreamFlow, code: number, message: Uint8Array = EMPTY): void {
    if (flow.closed || this.#state === CLOSED) return;
    this.#outbox.reset(flow.id, code, message);
    this.#forget(flow);
    this.#scheduleFlush();
  }

  // --- closing --------------------------------------------------------------------------------

  /** §4.7: GOAWAY, no new streams; the socket ends once the open ones finish or `graceMs` passes. */
  #goAway(code: number, graceMs: number): void {
    if (!this.#goawaySent) {
      this.#goawaySent = true;
      this.#refuseAbove = this.#lastPeerId;
      this.#outbox.goaway(this.#lastPeerId, code, EMPTY);
    }
    if (this.#state === OPEN) this.#state = DRAINING;
    if (this.#graceTimer === null && this.#streams.size > 0) {
      this.#graceTimer = setTimeout(() => this.#terminate(undefined, true), graceMs).unref();
    }
    this.#scheduleFlush();
  }

  #onError(err: unknown): void {
    if (err instanceof ThemisError) return this.#terminate(err, goawayCodeFor(err) !== undefined);
    this.#logger.warn({ err }, 'channel failed on an unexpected error');
    this.#terminate(new ChannelError('ERR_CHANNEL_CLOSED', 'the channel failed on an internal error', { cause: err }), true, WireCode.INTERNAL_ERROR);
  }

  #onSocketEnd(): void {
    if (this.#state === CLOSED) return;
    if (this.#opener.midMessage) return this.#terminate(new ChannelError('ERR_CHANNEL_CLOSED', 'the connection ended inside a transport message'), false);
    const clean = this.#goawayReceived || this.#goawaySent;
    this.#terminate(clean ? undefined : new ChannelError('ERR_CHANNEL_CLOSED', 'the peer closed the connection without GOAWAY'), true);
  }

  #onSocketClose(): void {
    this.#terminate(new ChannelError('ERR_CHANNEL_CLOSED', 'the connection closed'), false);
    this.#emitClose();
  }

  /**
   * Ends the channel, once: every stream and ping fails, timers stop. With `end`, what is queued
   * goes out — after it GOAWAY with `goawayCode` (by default the one §4.8 gives the error) — and
   * the socket ends, to be destroyed if the peer does not close within LINGER_MS; without, the
   * socket is destroyed at once (§4.1: authentication failures get no reply).
   */
  #terminate(error: ThemisError | undefined, end: boolean, goawayCode: number | undefined = error === undefined ? undefined : goawayCodeFor(error)): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    this.#closeError = error;
    if (error !== undefined) {
      const log = goawayCode === undefined ? this.#logger.debug : this.#logger.warn;
      log.call(this.#logger, { code: error.code, goaway: goawayCode }, `channel closed: ${error.message}`);
    }
    this.#timers.stop();
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
    const streamError =
      error === undefined ? new ChannelError('ERR_CHANNEL_CLOSED', 'the channel closed before the stream finished')
      : new ChannelError('ERR_CHANNEL_CLOSED', `the channel closed: ${error.message}`, { cause: error });
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#queueHead = this.#queueTail = null;
    for (const stream of streams) {
      stream.flow.closed = true;
      stream.flow.out = null;
      stream.abort(streamError);
    }
    for (const ping of this.#pings.values()) ping.reject(streamError);
    this.#pings.clear();
    const socket = this.#socket;
    if (!end || !socket.writable) {
      socket.destroy();
      return;
    }
    if (goawayCode !== undefined) this.#outbox.goaway(this.#lastPeerId, goawayCode, str8Bytes(error?.message ?? ''));
    this.#outbox.seal();
    socket.end();
    this.#lingerTimer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  }

  #emitClose(): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    if (this.#lingerTimer !== null) clearTimeout(this.#lingerTimer);
    this.emit('close', this.#closeError);
  }
}

export interface Channel<R = unknown> {
  on(event: 'close', listener: (error: ThemisError | undefined) => void): this;
  once(event: 'close', listener: (error: ThemisError | undefined) => void): this;
  off(event: 'close', listener: (error: ThemisError | undefined) => void): this;
  on(event: 'authenticated', listener: () => void): this;
  once(event: 'authenticated', listener: () => void): this;
  off(event: 'authenticated', listener: () => void): this;
}

function protocolError(message: string): ThemisError {
  return new ThemisError('ERR_CHANNEL_PROTOCOL', message);
}

function flowError(message: string): ThemisError {
  return new ThemisError('ERR_CHANNEL_FLOW_CONTROL', message);
}

const nameCache = new Map<string, Buffer>();

/** UTF-8 of a handler name, 1..255 bytes (§4.2 OPEN); names are few, so their bytes are cached. */
function encodeName(name: string): Buffer {
  let bytes = nameCache.get(name);
  if (bytes !== undefined) return bytes;
  if (typeof name !== 'string') throw new TypeError(`a handler name must be a string, got ${typeof name}`);
  bytes = Buffer.from(name, 'utf8');
  if (bytes.length < 1 || bytes.length > MAX_TEXT_BYTES) throw new RangeError(`handler names are 1 to ${MAX_TEXT_BYTES} bytes of UTF-8, got ${bytes.length}`);
  if (nameCache.size >= NAME_CACHE_SIZE) nameCache.clear();
  nameCache.set(name, bytes);
  return bytes;
}
