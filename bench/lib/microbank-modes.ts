/**
 * The three ways the microbank bench runs the SAME application (examples/microbank: the same
 * function modules, the same manifest, the runtime's gateway), each in processes of its own:
 *   plain     one plain Node HTTP server process per service + a gateway process, no security
 *   mtls-jwt  the same processes, MiSSFIRE's design: CA-issued certificates, mTLS on every hop,
 *             a per-hop JWT checked by every service (bench/lib/microbank-wire.ts)
 *   themis    one process running the runtime's `startApp` (what `themis up` runs)
 * Each exposes its gateway URL, the CPU time its processes used so far, where its services' KV
 * stores are (for the audit); the run's Cleanup stops the processes and removes the files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_DIR, type Cleanup } from './bench.js';
import type { TlsKeyType } from './certs.js';
import type { BaselineProcessInfo } from './microbank-baseline-main.js';
import { issueServiceCertificates } from './microbank-pki.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

export type MicrobankModeId = 'plain' | 'mtls-jwt' | 'themis';
export const MICROBANK_MODE_IDS: readonly MicrobankModeId[] = ['plain', 'mtls-jwt', 'themis'];

export const MODE_LABELS: Readonly<Record<MicrobankModeId, string>> = {
  plain: 'plain HTTP',
  'mtls-jwt': 'mTLS + JWT (MiSSFIRE)',
  themis: 'Themis',
};

export interface RunningMode {
  readonly id: MicrobankModeId;
  readonly gateway: string;
  /** Processes serving the application (the gateway's included). */
  readonly processes: number;
  /** Data directory of the mode's application state. */
  readonly dataDir: string;
  /** Set-up time: certificates (mtls-jwt), processes started and listening. */
  readonly setupMs: number;
  /** The LMDB store `service`'s ctx.kv lives in (the audit reads the ledgers there with the app's own handlers). */
  kvPath(service: string): string;
  /** What the mode reports about itself after the load (themis: the host's per-service instances and cold starts). */
  details(): Promise<Record<string, unknown>>;
  /** CPU time (user + system) all the mode's processes used so far, ms. */
  cpuMs(): Promise<number>;
}

const BASELINE_SCRIPT = join(BENCH_DIR, 'lib', 'microbank-baseline-main.ts');
const THEMIS_SCRIPT = join(BENCH_DIR, 'app-server.ts');

/** Sends one control line to a mode process; resolves with its answer, throws on `ok: false`. */
async function ask(proc: ServerProcess<BaselineProcessInfo>, message: object): Promise<{ cpu?: NodeJS.CpuUsage; stats?: unknown }> {
  const answer = JSON.parse(await proc.send(message)) as { ok: boolean; error?: string; cpu?: NodeJS.CpuUsage; stats?: unknown };
  if (!answer.ok) throw new Error(`process ${proc.info.pid}: ${JSON.stringify(message).slice(0, 100)} failed: ${answer.error ?? ''}`);
  return answer;
}

async function cpuOf(proc: ServerProcess<BaselineProcessInfo>): Promise<number> {
  const { cpu } = await ask(proc, { cmd: 'cpu' });
  if (cpu === undefined) throw new Error(`process ${proc.info.pid}: no CPU time in the reply`);
  return (cpu.user + cpu.system) / 1000;
}

async function sumCpu(procs: readonly ServerProcess<BaselineProcessInfo>[]): Promise<number> {
  return (await Promise.all(procs.map(cpuOf))).reduce((a, b) => a + b, 0);
}

/**
 * Starts the plain or mtls-jwt baseline: every service's process, then the gateway, then tells
 * each where the others are. `nodeArgs` go to every process (e.g. --cpu-prof); `cleanup` stops
 * them and removes the data and certificates.
 */
export async function startBaseline(
  mode: 'plain' | 'mtls-jwt',
  appDir: string,
  services: readonly string[],
  tlsKey: TlsKeyType,
  cleanup: Cleanup,
  nodeArgs: readonly string[] = [],
): Promise<RunningMode> {
  const started = performance.now();
  const dataDir = mkdtempSync(join(tmpdir(), `themis-bench-microbank-${mode}-`));
  cleanup.add('remove the data directory', () => rmSync(dataDir, { recursive: true, force: true }));
  const tlsArgs: string[] = [];
  if (mode === 'mtls-jwt') {
    const tlsDir = issueServiceCertificates(tlsKey, [...services, 'gateway']);
    cleanup.add('remove the certificates', () => rmSync(tlsDir, { recursive: true, force: true }));
    tlsArgs.push('--tls-dir', tlsDir, '--tls-key', tlsKey);
  }
  const common = ['--mode', mode, '--app', appDir, '--data', dataDir, ...tlsArgs];
  const procs = await Promise.all(services.map((service) => startServerProcess<BaselineProcessInfo>(BASELINE_SCRIPT, [...common, '--service', service], nodeArgs, cleanup)));
  const peers = Object.fromEntries(services.map((service, i) => [service, (procs[i] as ServerProcess<BaselineProcessInfo>).info.url]));
  const gateway = await startServerProcess<BaselineProcessInfo>(BASELINE_SCRIPT, [...common, '--gateway'], nodeArgs, cleanup);
  const all = [...procs, gateway];
  for (const proc of all) await ask(proc, { cmd: 'peers', peers });
  return {
    id: mode,
    gateway: gateway.info.url,
    processes: all.length,
    dataDir,
    setupMs: performance.now() - started,
    // One store per service process (bench/lib/microbank-baseline-main.ts).
    kvPath: (service) => join(dataDir, service),
    details: async () => ({}),
    cpuMs: () => sumCpu(all),
  };
}

/** Starts the application with the runtime's startApp in one process (isolated-vm needs --no-node-snapshot). */
export async function startThemis(appDir: string, cleanup: Cleanup, nodeArgs: readonly string[] = []): Promise<RunningMode> {
  const started = performance.now();
  const dataDir = mkdtempSync(join(tmpdir(), 'themis-bench-microbank-themis-'));
  cleanup.add('remove the data directory', () => rmSync(dataDir, { recursive: true, force: true }));
  const proc = await startServerProcess<BaselineProcessInfo>(THEMIS_SCRIPT, ['--app', appDir, '--data', dataDir], ['--no-node-snapshot', ...nodeArgs], cleanup);
  return {
    id: 'themis',
    gateway: proc.info.url,
    processes: 1,
    dataDir,
    setupMs: performance.now() - started,
    // startApp keeps one store for all services, namespaced, at <dataDir>/kv.
    kvPath: () => join(dataDir, 'kv'),
    details: async () => ({ hostStats: (await ask(proc, { cmd: 'stats' })).stats }),
    cpuMs: () => cpuOf(proc),
  };
}
