// Shared by the channel's unit, property and adversarial tests: real Noise transport ciphers,
// real TCP socket pairs on 127.0.0.1:0, in-memory pairs, and channels over either.
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ThemisError } from '../../../src/core/errors.js';
import { Channel, type ChannelHandlers, type ChannelLimits, type RequestHandler, type StreamHandler } from '../../../src/channel/index.js';
import { HandshakeState, type TransportCipherStates } from '../../../src/handshake/noise/index.js';
import { memoryDuplexPair } from '../../../src/transport/memory.js';

/** The transport cipher states of both sides after a real Noise_NN handshake. */
export function cipherPair(): { initiator: TransportCipherStates; responder: TransportCipherStates } {
  const protocolName = 'Noise_NN_25519_ChaChaPoly_SHA256';
  const prologue = Buffer.from('themis/channel-test');
  const initiator = new HandshakeState({ protocolName, initiator: true, prologue });
  const responder = new HandshakeState({ protocolName, initiator: false, prologue });
  responder.readMessage(initiator.writeMessage(Buffer.alloc(0)));
  initiator.readMessage(responder.writeMessage(Buffer.alloc(0)));
  return { initiator: initiator.split(), responder: responder.split() };
}

export type Transport = 'memory' | 'tcp';
export const TRANSPORTS: readonly Transport[] = ['memory', 'tcp'];

/** A listening TCP server on 127.0.0.1:0 that hands out the accepted sockets in order. */
export async function tcpServer(): Promise<{ port: number; accept(): Promise<Socket>; close(): Promise<void> }> {
  const accepted: Socket[] = [];
  const waiting: ((socket: Socket) => void)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const next = waiting.shift();
    if (next !== undefined) next(socket);
    else accepted.push(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return {
    port: address.port,
    accept: () => {
      const socket = accepted.shift();
      return socket !== undefined ? Promise.resolve(socket) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function dial(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await once(socket, 'connect');
  return socket;
}

/** Two connected duplexes and a function that destroys both (and the TCP listener). */
export async function duplexPair(transport: Transport): Promise<{ a: Duplex; b: Duplex; dispose(): Promise<void> }> {
  if (transport === 'memory') {
    const [a, b] = memoryDuplexPair();
    return { a, b, dispose: async () => void (a.destroy(), b.destroy()) };
  }
  const server = await tcpServer();
  const [a, b] = await Promise.all([dial(server.port), server.accept()]);
  return {
    a,
    b,
    dispose: async () => {
      a.destroy();
      b.destroy();
      await server.close();
    },
  };
}

export interface HandlerTable {
  readonly requests?: Readonly<Record<string, RequestHandler>>;
  readonly streams?: Readonly<Record<string, StreamHandler>>;
}

export function handlers(table: HandlerTable = {}): ChannelHandlers {
  return {
    request: (name) => (Object.hasOwn(table.requests ?? {}, name) ? table.requests![name] : undefined),
    stream: (name) => (Object.hasOwn(table.streams ?? {}, name) ? table.streams![name] : undefined),
  };
}

export interface PairOptions {
  readonly client?: HandlerTable;
  readonly server?: HandlerTable;
  readonly clientLimits?: Partial<ChannelLimits>;
  readonly serverLimits?: Partial<ChannelLimits>;
}

export interface ChannelPair {
  /** The handshake initiator. */
  readonly client: Channel<string>;
  readonly server: Channel<string>;
  /** Destroys both channels and their transport. */
  dispose(): Promise<void>;
}

/** Two channels over a fresh transport of the given kind, keyed with a real handshake. */
export async function channelPair(transport: Transport, options: PairOptions = {}): Promise<ChannelPair> {
  const { a, b, dispose } = await duplexPair(transport);
  const keys = cipherPair();
  const client = new Channel({
    socket: a,
    ...keys.initiator,
    initiator: true,
    remote: 'server',
    handlers: handlers(options.client),
    limits: options.clientLimits ?? {},
  });
  const server = new Channel({
    socket: b,
    ...keys.responder,
    initiator: false,
    remote: 'client',
    handlers: handlers(options.server),
    limits: options.serverLimits ?? {},
  });
  return {
    client,
    server,
    dispose: async () => {
      client.destroy();
      server.destroy();
      await dispose();
    },
  };
}

/** Resolves with the error of the channel's 'close' event (undefined for a clean close). */
export function closeEvent(channel: Channel<unknown>): Promise<ThemisError | undefined> {
  return new Promise((resolve) => channel.once('close', resolve));
}

/**
 * Keeps the event loop alive until the test ends. The channel's timers are unref'd and an
 * in-memory pair holds no handle, so a test waiting only on those would otherwise end early.
 */
export function holdLoop(t: { after(fn: () => void): void }): void {
  const timer = setInterval(() => {}, 60_000);
  t.after(() => clearInterval(timer));
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A deterministic pseudo-random body (fast to make, easy to compare). */
export function body(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
