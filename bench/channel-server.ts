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
import { createServer as createTcpServer } from 'node:net';
import { parseArgs } from 'node:util';
import { serveFramed } from './lib/framed.js';
import { SliceProfiler } from './lib/profiler.js';
import { listen, listenTlsEcho, runServerMain } from './lib/server-main.js';
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

async function main(): Promise<void> {
  const tcpPort = await listen(createTcpServer({ noDelay: true }, serveFramed));

  const tlsPort = values['tls-dir'] === undefined ? null : await listenTlsEcho(values['tls-dir']);

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
runServerMain('channel-server', main, command);
