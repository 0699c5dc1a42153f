/**
 * An application under the runtime's `startApp` (what `themis up` runs) in its own process, for the
 * benches that measure the runtime (coldstart; the themis mode of microbank). isolated-vm needs
 * `--no-node-snapshot`, which they pass:
 *   node --no-node-snapshot --import tsx bench/app-server.ts --app DIR --data DIR
 * Prints `{"pid","url"}` (the gateway URL). Control lines, one JSON answer each:
 *   {"cmd":"cpu"}                        this process's CPU time so far
 *   {"cmd":"stats"}                      the host's per-service stats (instances, cold starts)
 *   {"cmd":"provision","service","count","parallel"} provisions `count` instance identities of
 *       `service` — all at once, or one after the other — through the host's provisioning seam (fresh identity, code measurement, endorsement,
 *       attestor credentials); each instance then listens as a bare peer with that identity and
 *       proves itself to a trust-domain verifier over a real Noise handshake, which identifies it
 *       under the owner-signed policy (host endorsement, service, code digest). Answers each
 *       instance's start-to-verified time in ms, the wall time of the whole burst, and the CPU
 *       time this process spent on it.
 */
import { parseArgs } from 'node:util';
import { startApp, type RunningApp } from '../src/runtime/index.js';
import { runServerMain } from './lib/server-main.js';

export interface AppServerInfo {
  readonly pid: number;
  readonly url: string;
}

const { values } = parseArgs({ options: { app: { type: 'string' }, data: { type: 'string' } } });

let app: RunningApp | null = null;

async function main(): Promise<void> {
  if (values.app === undefined || values.data === undefined) throw new Error('--app and --data are required');
  app = await startApp({ dir: values.app, dataDir: values.data, port: 0, host: '127.0.0.1' });
  const info: AppServerInfo = { pid: process.pid, url: app.gateway };
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

/** `count` provisionings, started together or one by one; each one's start → verified time, the burst's wall and CPU time. */
async function provisionBurst(running: RunningApp, service: string, count: number, parallel: boolean): Promise<{ ms: number[]; wallMs: number; cpuMs: number }> {
  const { createMesh } = await import('../src/mesh/index.js');
  const { createPeer } = await import('../src/transport/index.js');
  const { fromBase32 } = await import('../src/core/bytes.js');
  const { networkConfig } = await import('../src/identity/index.js');
  // startApp runs on the default network configuration.
  const network = networkConfig();
  const verifier = await createMesh({ network, bootstrap: [running.bootstrap], client: true, trust: { owner: fromBase32(running.owner) }, maintenance: false });
  try {
    if (verifier.authority === null) throw new Error('the verifier has no trust domain');
    await verifier.refreshPolicy();
    const authority = verifier.authority;
    const peers: { close(): Promise<void> }[] = [];
    const one = async (): Promise<number> => {
      const t0 = performance.now();
      const provisioned = await running.host.provisionIdentity(service);
      const peer = await createPeer({ identity: provisioned.identity, credentials: provisioned.credentials, network, listen: 'tcp://127.0.0.1:0', client: true });
      peers.push(peer);
      const address = peer.addresses[0];
      if (address === undefined) throw new Error('the instance peer has no listen address');
      const conn = await verifier.node.peer.dial(address, { expect: provisioned.identity.id });
      const identified = authority.identify(conn.remote);
      if (identified.service !== service || !identified.codeDigest.equals(provisioned.digest)) {
        throw new Error(`the verifier identified ${identified.service} with another code digest, not the ${service} instance provisioned`);
      }
      const elapsed = performance.now() - t0;
      void conn.close();
      return elapsed;
    };
    const cpuBefore = process.cpuUsage();
    const burstStart = performance.now();
    const ms: number[] = [];
    if (parallel) ms.push(...(await Promise.all(Array.from({ length: count }, one))));
    else for (let i = 0; i < count; i++) ms.push(await one());
    const wallMs = performance.now() - burstStart;
    const cpu = process.cpuUsage(cpuBefore);
    await Promise.all(peers.map((peer) => peer.close()));
    return { ms, wallMs, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    await verifier.close();
  }
}

async function command(line: string): Promise<object> {
  const message = JSON.parse(line) as { cmd?: string; service?: string; count?: number; parallel?: boolean };
  if (message.cmd === 'cpu') return { cpu: process.cpuUsage() };
  if (app === null) throw new Error('the application is not running');
  if (message.cmd === 'stats') return { stats: app.host.stats() };
  if (message.cmd === 'provision' && typeof message.service === 'string' && Number.isInteger(message.count)) {
    return provisionBurst(app, message.service, message.count as number, message.parallel !== false);
  }
  throw new Error(`unknown command ${line}`);
}

runServerMain('app-server', main, command);
