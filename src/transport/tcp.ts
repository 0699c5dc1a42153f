import { connect, createServer, type Server, type Socket } from 'node:net';
import { ThemisError } from '../core/errors.js';
import { formatTcpAddress, parseTcpAddress } from './address.js';

/** Opens a TCP connection to `tcp://host:port`, with Nagle off (the channel batches itself). */
export function dialTcp(address: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<Socket> {
  const { host, port } = parseTcpAddress(address);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      options.signal?.removeEventListener('abort', onAbort);
      if (err === undefined) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => done();
    const onError = (err: Error): void =>
      done(new ThemisError('ERR_TRANSPORT_CONNECT', `cannot connect to ${address}: ${err.message}; check that a peer listens there`, { cause: err }));
    const onAbort = (): void => done(new ThemisError('ERR_TRANSPORT_CONNECT', `connecting to ${address} was aborted`));
    const timer = setTimeout(() => done(new ThemisError('ERR_TRANSPORT_CONNECT', `connecting to ${address} timed out after ${options.timeoutMs} ms`)), options.timeoutMs);
    if (options.signal?.aborted === true) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', onConnect);
    socket.once('error', onError);
  });
}

/** Listens on `tcp://host:port` (port 0 picks a free port); resolves with the bound address. */
export function listenTcp(address: string, onSocket: (socket: Socket) => void): Promise<{ server: Server; address: string }> {
  const { host, port } = parseTcpAddress(address);
  const server = createServer({ noDelay: true }, onSocket);
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new ThemisError('ERR_TRANSPORT_ADDRESS', `cannot listen on ${address}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => {
      const bound = server.address();
      if (bound === null || typeof bound === 'string') return reject(new ThemisError('ERR_TRANSPORT_ADDRESS', `cannot listen on ${address}`));
      resolve({ server, address: formatTcpAddress({ host: bound.address, port: bound.port }) });
    });
  });
}
