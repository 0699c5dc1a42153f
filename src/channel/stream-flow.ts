import type { ThemisError } from '../core/errors.js';

/**
 * The flow-control and send state of one stream (docs/protocol.md §4.4), the same for every kind
 * of stream so the channel's scheduler and window accounting touch one shape only.
 */
export class StreamFlow {
  readonly id: number;
  readonly owner: ChannelStream;
  /** Bytes this side may still send on the stream. */
  sendWindow: number;
  /** Bytes the peer may still send; DATA beyond it is a violation. */
  recvAllowance: number;
  /** Bytes consumed since the last WINDOW this side sent for the stream. */
  recvUnacked = 0;
  finReceived = false;
  finSent = false;
  /** The stream is gone (both FINs, or a RESET either way) and the channel has forgotten it. */
  closed = false;
  /** The chunk being sent, from `outOffset`; FIN follows its last byte when `outFin`. */
  out: Buffer | null = null;
  outOffset = 0;
  outFin = false;
  /** Membership and link in the channel's FIFO of streams with data to send. */
  queued = false;
  next: StreamFlow | null = null;

  constructor(id: number, owner: ChannelStream, sendWindow: number, recvAllowance: number) {
    this.id = id;
    this.owner = owner;
    this.sendWindow = sendWindow;
    this.recvAllowance = recvAllowance;
  }
}

/** What the channel calls on a stream of any kind. */
export interface ChannelStream {
  readonly flow: StreamFlow;
  /** DATA from the peer (detached from its plaintext), already checked against the windows and counted as pending. */
  receive(payload: Buffer, fin: boolean): void;
  /** RESET from the peer; the channel has already forgotten the stream. */
  receiveReset(code: number, message: string): void;
  /** The chunk in `flow.out` is framed (and FIN with it when `flow.outFin`). */
  sent(): void;
  /** The channel forgot the stream without a word on the wire (closing, or refused by GOAWAY). */
  abort(err: ThemisError): void;
}

export interface StreamLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What a stream calls on its channel. */
export interface StreamHost {
  readonly logger: StreamLogger;
  /** `n` received bytes were consumed by the application: return them to the peer as window (§4.4). */
  consume(flow: StreamFlow, n: number): void;
  /** `n` received bytes are no longer held by the channel (delivered or dropped). */
  release(n: number): void;
  /** `flow.out` holds bytes (or a FIN) to send. */
  send(flow: StreamFlow): void;
  /** Sends RESET with `code` (and a message, empty by default) and forgets the stream. */
  reset(flow: StreamFlow, code: number, message?: Uint8Array): void;
  /** The stream ended normally: forget it. */
  finish(flow: StreamFlow): void;
}
