/**
 * The server half of `npm run bench -- channel`, run in its own process by bench/channel.ts:
 *   node --import tsx bench/channel-server.ts [--tls-dir DIR] [--no-themis]
 * Serves the length-prefixed echo protocol (bench/lib/framed.ts) over plain TCP and over TLS 1.3
 * with mutual authentication, and a Themis peer with the handlers `echo` (returns the body) and
 * `sink` (returns nothing). Prints one JSON line with its ports and the Themis identity, then runs
 * until its stdin closes or it gets SIGTERM/SIGINT, then exits at once through process.exit so
 * `--cpu-prof` can write its profile.
 *
 * Control commands arrive as JSON lines on stdin, each answered with one JSON line on stdout:
 *   {"cmd":"cpu"}                        this process's CPU time so far (process.cpuUsage())
 *   {"cmd":"profile-start"}              start the in-process CPU profiler
 *   {"cmd":"profile-stop","path":FILE}   stop it and write FILE
 */
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createServer as createTlsServer } from 'node:tls';
import { serveFramed } from './lib/framed.js';
import { readTlsMaterial } from './lib/certs.js';
import { SliceProfiler } from './lib/profiler.js';
import { BENCH_NETWORK, THEMIS_SERVER_LIMITS, themisChannelLimits } from './lib/themis.js';

export interface ChannelServerInfo {
  readonly pid: number;
  readonly tcpPort: number;
  readonly tlsPort: number | null;
  readonly themis: { readonly address: string; readonly id: string; readonly noiseStatic: string } | null;
}

const { values } = parseArgs({
  options: {
    'tls-dir': { type: 'string' },
    'no-themis': { type: 'boolean', default: false },
  },
});

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function main(): Promise<void> {
  const tcpPort = await listen(createTcpServer({ noDelay: true }, serveFramed));

  let tlsPort: number | null = null;
  if (values['tls-dir'] !== undefined) {
    const tls = readTlsMaterial(values['tls-dir']);
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
    tlsPort = await listen(server);
  }

  let themis: ChannelServerInfo['themis'] = null;
  if (!values['no-themis']) {
    const { createPeer } = await import('../src/transport/index.js');
    const peer = await createPeer({
      listen: 'tcp://127.0.0.1:0',
      network: BENCH_NETWORK,
      limits: THEMIS_SERVER_LIMITS,
      channel: themisChannelLimits(),
    });
    const empty = new Uint8Array(0);
    peer.handle('echo', (body: Buffer) => body);
    peer.handle('sink', () => empty);
    const address = peer.addresses[0];
    if (address === undefined) throw new Error('the Themis peer has no listen address');
    themis = { address, id: peer.id, noiseStatic: Buffer.from(peer.identity.noiseStatic.publicKey).toString('hex') };
  }

  const info: ChannelServerInfo = { pid: process.pid, tcpPort, tlsPort, themis };
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

/** No graceful close: the client is gone or done, and a prompt exit lets --cpu-prof write. */
function stop(code: number): void {
  process.exit(code);
}

process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
// The parent holds our stdin open; when it goes away (even by SIGKILL), so do we.
process.stdin.on('end', () => stop(0));
process.stdin.on('error', () => stop(0));

export type ServerCommand = { cmd: 'cpu' } | { cmd: 'profile-start' } | { cmd: 'profile-stop'; path: string };

let profiler: SliceProfiler | null = null;
async function command(line: string): Promise<object> {
  const message = JSON.parse(line) as ServerCommand;
  switch (message.cmd) {
    case 'cpu':
      return { cpu: process.cpuUsage() };
    case 'profile-start':
      profiler ??= new SliceProfiler();
      await profiler.start();
      return {};
    case 'profile-stop':
      if (profiler === null) throw new Error('the profiler was never started');
      await profiler.stop(message.path);
      return {};
    default:
      throw new Error(`unknown command ${line}`);
  }
}
createInterface({ input: process.stdin }).on('line', (line) => {
  command(line).then(
    (result) => process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
  );
});

main().catch((err: unknown) => {
  process.stderr.write(`channel-server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  stop(1);
});
