import type { Duplex } from 'node:stream';
import { ThemisError, isThemisError } from '../core/errors.js';
import type { HandshakeResult, ThemisHandshake } from '../handshake/index.js';

/** A handshake message on the wire is u16 length ‖ Noise message (docs/protocol.md §3.2). */
const MAX_HANDSHAKE_MESSAGE = 0xffff;

export interface HandshakeOutcome {
  readonly result: HandshakeResult;
  /** Bytes that arrived after the last handshake message: the start of the channel. */
  readonly head: Buffer;
}

/**
 * Drives a pure handshake machine over a socket: frames outgoing messages, reassembles incoming
 * ones from arbitrary chunks, and enforces a deadline so a stalled peer cannot hold the socket.
 * On failure the socket is destroyed; the error (for local logs only) says why.
 */
export function runHandshake(socket: Duplex, machine: ThemisHandshake, options: { timeoutMs: number; signal?: AbortSignal }): Promise<HandshakeOutcome> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;

    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: unknown): void => {
      if (settled) return;
      cleanup();
      socket.destroy();
      reject(isThemisError(err) ? err : new ThemisError('ERR_HANDSHAKE_MESSAGE', 'handshake failed', { cause: err }));
    };
    const send = (message: Buffer): void => {
      const header = Buffer.allocUnsafe(2);
      header.writeUInt16BE(message.length, 0);
      socket.write(Buffer.concat([header, message]));
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      try {
        while (!settled && buffered.length >= 2) {
          const length = buffered.readUInt16BE(0);
          if (length === 0) throw new ThemisError('ERR_HANDSHAKE_MESSAGE', 'empty handshake message');
          if (buffered.length < 2 + length) return;
          const message = buffered.subarray(2, 2 + length);
          buffered = buffered.subarray(2 + length);
          const step = machine.receive(message);
          if (step.send !== null) send(step.send);
          if (step.result !== null) {
            cleanup();
            socket.pause();
            resolve({ result: step.result, head: Buffer.from(buffered) });
          }
        }
      } catch (err) {
        fail(err);
      }
    };
    const onClose = (): void => fail(new ThemisError('ERR_HANDSHAKE_CLOSED', 'the peer closed the connection during the handshake'));
    const onError = (err: Error): void => fail(new ThemisError('ERR_HANDSHAKE_CLOSED', `socket error during the handshake: ${err.message}`, { cause: err }));
    const onAbort = (): void => fail(new ThemisError('ERR_HANDSHAKE_TIMEOUT', 'the handshake was aborted'));
    const timer = setTimeout(
      () => fail(new ThemisError('ERR_HANDSHAKE_TIMEOUT', `the handshake did not complete within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );

    if (options.signal?.aborted === true) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    try {
      const first = machine.start();
      if (first !== null) {
        if (first.length > MAX_HANDSHAKE_MESSAGE) throw new RangeError('handshake message too large');
        send(first);
      }
    } catch (err) {
      fail(err);
    }
  });
}
