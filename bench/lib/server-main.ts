/**
 * The server side of a bench server process (bench/channel-server.ts, bench/mesh-server.ts; the
 * client side is bench/lib/server-process.ts): listening helpers, and the process lifecycle —
 * exit when stdin closes or on SIGTERM/SIGINT, answer JSON control lines on stdin with one JSON
 * line each on stdout.
 */
import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';
import { createInterface } from 'node:readline';
import { createServer as createTlsServer } from 'node:tls';
import { readTlsMaterial } from './certs.js';
import { serveFramed } from './framed.js';

/** Listens on 127.0.0.1 with an OS-assigned port; resolves with the port. */
export async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A TLS 1.3 mTLS server speaking the framed echo protocol, with the material in `tlsDir`; resolves with its port. */
export function listenTlsEcho(tlsDir: string): Promise<number> {
  const tls = readTlsMaterial(tlsDir);
  const server = createTlsServer(
    {
      key: tls.serverKey,
      cert: tls.serverCert,
      ca: tls.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      noDelay: true,
    },
    serveFramed,
  );
  server.on('tlsClientError', () => {
    // A client that closes mid-handshake is normal at the end of a timed phase.
  });
  return listen(server);
}

/** No graceful close: the client is gone or done, and a prompt exit lets --cpu-prof write. */
function stop(code: number): void {
  process.exit(code);
}

/**
 * Runs `main` (which prints the ready JSON line) and answers each control line on stdin with
 * `{"ok":true,...result}` or `{"ok":false,"error":...}` when `command` throws or rejects.
 */
export function runServerMain(name: string, main: () => Promise<void>, command: (line: string) => Promise<object> | object): void {
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
  // The parent holds our stdin open; when it goes away (even by SIGKILL), so do we.
  process.stdin.on('end', () => stop(0));
  process.stdin.on('error', () => stop(0));

  createInterface({ input: process.stdin }).on('line', (line) => {
    Promise.resolve()
      .then(() => command(line))
      .then(
        (result) => process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`),
        (err: unknown) => process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
      );
  });

  main().catch((err: unknown) => {
    process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    stop(1);
  });
}
