/**
 * The four ways the channel bench reaches the server, behind one small interface: plain TCP and
 * TLS 1.3 mTLS (both with the framed echo protocol of ./framed.ts), and Themis with the XX or the
 * IK handshake.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, createSecureContext, type SecureContext } from 'node:tls';
import type { ChannelServerInfo } from '../channel-server.js';
import { FramedClient } from './framed.js';
import type { TlsMaterial } from './certs.js';
import { BENCH_NETWORK, themisChannelLimits } from './themis.js';

export type ModeId = 'tcp' | 'tls' | 'xx' | 'ik';
export const MODE_IDS: readonly ModeId[] = ['tcp', 'tls', 'xx', 'ik'];

export interface BenchConnection {
  /** Sends `body`, resolves with the server's copy of it. */
  echo(body: Buffer): Promise<Buffer>;
  /** Sends `body`, resolves once the server acknowledged it with an empty reply. */
  sink(body: Buffer): Promise<void>;
  /** Starts an orderly close; resolves when this side is done. */
  close(): Promise<void>;
  /** What was negotiated (protocol, cipher, pattern), for the results file. */
  describe(): Record<string, string>;
}

export interface Mode {
  readonly id: ModeId;
  readonly label: string;
  /** Opens a connection and completes its handshake (TCP: 'connect'; TLS: 'secureConnect'; Themis: dial). */
  connect(): Promise<BenchConnection>;
}

function framed(socket: Socket, describe: () => Record<string, string> = () => ({})): BenchConnection {
  const client = new FramedClient(socket);
  return {
    describe,
    echo: (body) => client.request(body),
    sink: async (body) => {
      await client.request(body, true);
    },
    close: () => client.close(),
  };
}

/** Waits for `event`, failing on 'error' or an early 'close'. */
function ready(socket: Socket, event: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      socket.off('error', onError);
      socket.off('close', onClose);
      resolve(socket);
    };
    const onError = (err: Error): void => {
      socket.off(event, onReady);
      socket.off('close', onClose);
      socket.destroy();
      reject(err);
    };
    const onClose = (): void => onError(new Error(`connection closed before '${event}'`));
    socket.once(event, onReady);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

export function tcpMode(port: number): Mode {
  return {
    id: 'tcp',
    label: 'plain TCP',
    connect: async () => framed(await ready(connectTcp({ host: '127.0.0.1', port, noDelay: true }), 'connect')),
  };
}

export function tlsMode(port: number, material: TlsMaterial): Mode {
  // One context for every connection, as a long-running client would hold; no session reuse, so
  // each connection is a full handshake with certificate verification on both sides.
  const secureContext: SecureContext = createSecureContext({
    ca: material.ca,
    cert: material.clientCert,
    key: material.clientKey,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  return {
    id: 'tls',
    label: `TLS 1.3 mTLS (${material.keyType === 'ed25519' ? 'Ed25519' : 'P-256'})`,
    connect: async () => {
      // Nagle off from the first byte, as for the other modes: TLS gets an already connected socket.
      const tcp = await ready(connectTcp({ host: '127.0.0.1', port, noDelay: true }), 'connect');
      const socket = connectTls({ socket: tcp, servername: 'localhost', secureContext, rejectUnauthorized: true });
      await ready(socket, 'secureConnect');
      return framed(socket, () => {
        const key = socket.getEphemeralKeyInfo();
        return {
          protocol: socket.getProtocol() ?? 'unknown',
          cipher: socket.getCipher().name,
          keyExchange: key !== null && 'name' in key && typeof key.name === 'string' ? key.name : 'unknown',
        };
      });
    },
  };
}

export interface ThemisModes {
  readonly xx: Mode;
  readonly ik: Mode;
  close(): Promise<void>;
}

/**
 * One client peer for both patterns. XX dials without `expect` (with `expect`, the peer would
 * switch to IK after its first handshake, from its static-key cache) and checks the NodeId itself;
 * IK dials with `expect` and the server's static key. Each connection's pattern is checked.
 */
export async function themisModes(server: NonNullable<ChannelServerInfo['themis']>): Promise<ThemisModes> {
  const { createPeer } = await import('../../src/transport/index.js');
  const client = await createPeer({ network: BENCH_NETWORK, channel: themisChannelLimits() });
  const remoteStatic = Buffer.from(server.noiseStatic, 'hex');
  type Conn = Awaited<ReturnType<typeof client.dial>>;
  const wrap = (conn: Conn, pattern: 'XX' | 'IK'): BenchConnection => {
    if (conn.remote.pattern !== pattern) throw new Error(`asked for a Themis ${pattern} handshake, got ${conn.remote.pattern}`);
    if (conn.remote.id !== server.id) throw new Error(`dialled ${server.id}, reached ${conn.remote.id}`);
    return {
      describe: () => ({ pattern: conn.remote.pattern }),
      echo: (body) => conn.request('echo', body),
      sink: async (body) => {
        await conn.request('sink', body);
      },
      close: () => conn.close(),
    };
  };
  return {
    xx: { id: 'xx', label: 'Themis XX', connect: async () => wrap(await client.dial(server.address), 'XX') },
    ik: { id: 'ik', label: 'Themis IK', connect: async () => wrap(await client.dial(server.address, { expect: server.id, remoteStatic }), 'IK') },
    close: () => client.close(),
  };
}
