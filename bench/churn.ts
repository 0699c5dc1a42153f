/**
 * `npm run churn -- [--nodes N] [--seconds S] [--rate R] [--json]` (also `npm run bench -- churn`):
 * runChurn (src/testing/churn.ts) on loopback — DHT servers and mesh instances killed and started
 * at R per second for S seconds while clients look up stored records and nodes and call the
 * service. The phase before the churn is the baseline, measured in the same run. Prints lookup
 * success, call error rates, latency and recovery; writes bench/results/churn.json.
 */
import { join } from 'node:path';
import { runChurn, type ChurnOptions, type ChurnReport, type OperationFigures } from '../src/testing/churn.js';
import { Cleanup, Progress, RESULTS_DIR, UsageError, machineInfo, parseBenchArgs, writeJson, type BenchContext } from './lib/bench.js';

export const description = 'churn on loopback: DHT servers and mesh instances killed and started under lookup and call load';

const USAGE = `usage: npm run churn -- [options]      (or: npm run bench -- churn [options])

  --nodes N            DHT server nodes (default 40)
  --instances N        instances of the called service (default 8)
  --seconds S          length of the churn (default 60)
  --rate R             churn events per second, each one kill and one start (default 1)
  --warmup S           load before the churn: the baseline (default 10)
  --after S            load after the churn: recovery (default 15)
  --lookups R          lookups started per second, records and nodes alternately (default 10)
  --calls R            calls started per second (default 40)
  --mode trust-domain|open   (default trust-domain)
  --quick              about the CI test's size: 30 nodes, 6 instances, 6 s at 2/s
  --out FILE           results file (default bench/results/churn.json)
  --json               print the results JSON on stdout instead of the table`;

interface Options {
  readonly churn: ChurnOptions;
  readonly out: string;
  readonly json: boolean;
}

function positive(flag: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UsageError(`--${flag} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  return n;
}

function parseOptions(argv: readonly string[]): Options | null {
  const parsed = parseBenchArgs(
    argv,
    {
      nodes: { type: 'string' },
      instances: { type: 'string' },
      seconds: { type: 'string' },
      rate: { type: 'string' },
      warmup: { type: 'string' },
      after: { type: 'string' },
      lookups: { type: 'string' },
      calls: { type: 'string' },
      mode: { type: 'string', default: 'trust-domain' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (parsed === null) return null;
  if (parsed.mode !== 'trust-domain' && parsed.mode !== 'open') throw new UsageError(`--mode must be trust-domain or open, got "${parsed.mode}"`);
  const base = parsed.quick
    ? { nodes: 30, instances: 6, seconds: 6, rate: 2, warmupSeconds: 1, afterSeconds: 2 }
    : { nodes: 40, instances: 8, seconds: 60, rate: 1, warmupSeconds: 10, afterSeconds: 15 };
  return {
    churn: {
      nodes: positive('nodes', parsed.nodes, true) ?? base.nodes,
      instances: positive('instances', parsed.instances, true) ?? base.instances,
      seconds: positive('seconds', parsed.seconds, false) ?? base.seconds,
      rate: positive('rate', parsed.rate, false) ?? base.rate,
      warmupSeconds: positive('warmup', parsed.warmup, false) ?? base.warmupSeconds,
      afterSeconds: positive('after', parsed.after, false) ?? base.afterSeconds,
      lookupsPerSecond: positive('lookups', parsed.lookups, false) ?? 10,
      callsPerSecond: positive('calls', parsed.calls, false) ?? 40,
      mode: parsed.mode,
    },
    out: parsed.out ?? join(RESULTS_DIR, 'churn.json'),
    json: parsed.json,
  };
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(2)}%`;
}

function row(label: string, phase: string, f: OperationFigures, baseline: OperationFigures): string {
  const errors = Object.entries(f.errors)
    .map(([code, n]) => `${code}×${n}`)
    .join(' ');
  const ratio = baseline.latencyMs.p50 > 0 ? (f.latencyMs.p50 / baseline.latencyMs.p50).toFixed(2) : '-';
  return `${label.padEnd(15)} ${phase.padEnd(7)} ${String(f.attempts).padStart(7)} ${percent(f.successRate).padStart(8)} ${String(f.latencyMs.p50).padStart(6)} ${String(f.latencyMs.p99).padStart(6)} ${ratio.padStart(7)}  ${errors}`;
}

function table(report: ChurnReport): string {
  const o = report.options;
  const e = report.events;
  const phases = ['before', 'during', 'after'] as const;
  const lines = [
    `churn: ${o.nodes} servers + ${o.instances} instances (${o.mode}), ${o.rate}/s for ${o.seconds} s: ${e.serverKills} server and ${e.instanceKills} instance kills (${e.crashes} crashes, ${e.leaves} leaves), ${e.restarts} restarts from LMDB, ${e.freshStarts} fresh servers, ${e.failedStarts} failed starts`,
    `killed ${percent(report.killedShare)} of the population; ${percent(report.originalServersLostShare)} of the original servers gone for good; at the fewest ${report.minLive.servers} servers and ${report.minLive.instances} instances alive at once; ${e.skipped} events found no victim`,
    `offered load: ${o.lookupsPerSecond} lookups/s, ${o.callsPerSecond} calls/s`,
    ...phases.map((phase) => `${phase}: ${report.phases[phase].seconds} s, CPU ${percent(report.phases[phase].cpuShare)} of one core (every peer runs in this process)`),
    '',
    `${'operation'.padEnd(15)} ${'phase'.padEnd(7)} ${'ops'.padStart(7)} ${'ok'.padStart(8)} ${'p50 ms'.padStart(6)} ${'p99 ms'.padStart(6)} ${'p50 ÷ before'.padStart(7)}  errors`,
  ];
  for (const kind of ['recordLookups', 'nodeLookups', 'calls'] as const) {
    for (const phase of phases) lines.push(row(kind, phase, report.phases[phase][kind], report.phases.before[kind]));
  }
  const recovery = (ms: number | null): string => (ms === null ? 'not recovered' : `${ms} ms`);
  lines.push(
    '',
    `recovery after the churn: record lookups ${recovery(report.recoveryMs.recordLookups)}, node lookups ${recovery(report.recoveryMs.nodeLookups)}, calls ${recovery(report.recoveryMs.calls)}`,
    `after: ${report.final.records.found}/${report.final.records.stored} records found, ${report.final.calls.ok}/${report.final.calls.attempts} calls ok`,
  );
  return lines.join('\n');
}

export async function run(context: BenchContext): Promise<void> {
  const options = parseOptions(context.argv);
  if (options === null) return;
  const timestamp = new Date().toISOString();
  const machine = machineInfo();
  const c = options.churn;
  const progress = new Progress('churn', Math.round(c.seconds! * c.rate!) + 4);
  const cleanup = new Cleanup();
  cleanup.add('stop the progress bar', () => progress.stop());
  try {
    const report = await runChurn({
      ...c,
      onEvent: (event) => {
        if (event.type === 'phase') progress.step(event.phase === 'during' ? `churn at ${c.rate}/s` : event.phase);
        if (event.type === 'phase' && event.phase !== 'during') progress.tick();
        if (event.type === 'start') progress.tick();
      },
    });
    progress.stop();
    const command = `npm run churn -- ${context.argv.join(' ')}`.trim();
    // The machine is shared: its load says how much CPU this single process could get.
    const loadAverage1m = { start: machine.loadAverage1m, end: machineInfo().loadAverage1m };
    const results = { timestamp, command, machine, loadAverage1m, ...report };
    writeJson(options.out, results);
    const load = `machine load average (1 min, ${machine.cpus} cores): ${loadAverage1m.start} at the start, ${loadAverage1m.end} at the end`;
    process.stdout.write(options.json ? `${JSON.stringify(results, null, 2)}\n` : `${table(report)}\n${load}\n\nresults: ${options.out}\n`);
  } finally {
    await cleanup.run();
  }
}
