/**
 * The Themis mode of the microbank bench in its own process (started by bench/microbank.ts with
 * `--no-node-snapshot`, which isolated-vm needs):
 *   node --no-node-snapshot --import tsx bench/lib/microbank-themis-main.ts --app DIR --data DIR
 * Runs the application exactly as `themis up` does — R1's `startApp`: an anchor, the host with
 * per-instance identities, endorsements and the trust-domain policy, the gateway — and prints
 * `{"pid", "url"}` (the gateway URL). Control lines: {"cmd":"cpu"}, {"cmd":"stats"} (host stats).
 */
import { parseArgs } from 'node:util';
import { startApp, type RunningApp } from '../../src/runtime/index.js';
import { runServerMain } from './server-main.js';
import type { BaselineProcessInfo } from './microbank-baseline-main.js';

const { values } = parseArgs({ options: { app: { type: 'string' }, data: { type: 'string' } } });

let app: RunningApp | null = null;

async function main(): Promise<void> {
  if (values.app === undefined || values.data === undefined) throw new Error('--app and --data are required');
  app = await startApp({ dir: values.app, dataDir: values.data, port: 0, host: '127.0.0.1' });
  const info: BaselineProcessInfo = { pid: process.pid, url: app.gateway };
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

function command(line: string): object {
  const message = JSON.parse(line) as { cmd?: string };
  if (message.cmd === 'cpu') return { cpu: process.cpuUsage() };
  if (message.cmd === 'stats') return { stats: app?.host.stats() ?? null };
  throw new Error(`unknown command ${line}`);
}

runServerMain('microbank-themis', main, command);
