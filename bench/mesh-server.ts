/**
 * The server half of `npm run bench -- mesh`, run in its own process by bench/mesh.ts:
 *   node --import tsx bench/mesh-server.ts [--tls-dir DIR]
 * Starts, on 127.0.0.1 with OS-assigned ports:
 *   - an anchor DHT node (the bootstrap of both meshes),
 *   - a mesh instance (open mode, test network) providing `bench.echo`, whose peer also serves the
 *     bare channel handler `echo` — so the call and the bare request reach the same peer,
 *   - with --tls-dir, a TLS 1.3 mTLS server speaking the framed echo protocol (bench/lib/framed.ts).
 * Prints one JSON line (MeshServerInfo), then runs until its stdin closes or SIGTERM/SIGINT.
 *
 * Control commands arrive as JSON lines on stdin, each answered with one JSON line on stdout:
 *   {"cmd":"cpu"}   this process's CPU time so far (process.cpuUsage())
 */
import { parseArgs } from 'node:util';
import { listenTlsEcho, runServerMain } from './lib/server-main.js';

export interface MeshServerInfo {
  readonly pid: number;
  /** `ID@tcp://host:port` of the anchor DHT node. */
  readonly bootstrap: string;
  readonly mesh: { readonly id: string; readonly address: string; readonly noiseStatic: string };
  readonly tlsPort: number | null;
  /** What the mesh instance provides, and the bare channel handler on the same peer. */
  readonly service: string;
  readonly method: string;
  readonly handler: string;
}

const BENCH_SERVICE = 'bench';
const BENCH_METHOD = 'echo';
const CHANNEL_HANDLER = 'echo';

const { values } = parseArgs({ options: { 'tls-dir': { type: 'string' } } });

async function main(): Promise<void> {
  const { createDhtNode } = await import('../src/dht/index.js');
  const { createMesh } = await import('../src/mesh/index.js');
  const { testNetwork } = await import('../src/testing/index.js');
  const network = testNetwork();

  const anchor = await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false });
  const anchorAddress = anchor.peer.addresses[0];
  if (anchorAddress === undefined) throw new Error('the anchor DHT node has no listen address');
  const bootstrap = `${anchor.id}@${anchorAddress}`;

  const mesh = await createMesh({ network, listen: 'tcp://127.0.0.1:0', bootstrap: [bootstrap], maintenance: false });
  await mesh.provide(BENCH_SERVICE, { [BENCH_METHOD]: (payload) => payload });
  mesh.node.peer.handle(CHANNEL_HANDLER, (body: Buffer) => body);
  const address = mesh.addresses[0];
  if (address === undefined) throw new Error('the mesh instance has no listen address');

  const tlsPort = values['tls-dir'] === undefined ? null : await listenTlsEcho(values['tls-dir']);

  const info: MeshServerInfo = {
    pid: process.pid,
    bootstrap,
    mesh: { id: mesh.id, address, noiseStatic: Buffer.from(mesh.node.peer.identity.noiseStatic.publicKey).toString('hex') },
    tlsPort,
    service: BENCH_SERVICE,
    method: BENCH_METHOD,
    handler: CHANNEL_HANDLER,
  };
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

function command(line: string): object {
  const message = JSON.parse(line) as { cmd?: string };
  if (message.cmd === 'cpu') return { cpu: process.cpuUsage() };
  throw new Error(`unknown command ${line}`);
}

runServerMain('mesh-server', main, command);
