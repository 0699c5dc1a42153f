/**
 * Cold-start benchmark of the Themis runtime (issue #5):
 *
 *   npm run bench -- coldstart [--quick] [--help]
 *
 * 1. Cold start to first response: a one-function application (a `hello` service with
 *    `instances.min: 0`, `idleSeconds: 1`) runs under the runtime's `startApp` in a server process
 *    (bench/app-server.ts). Each sample waits until the host has scaled the service to zero,
 *    then times one `GET /hello` through the gateway: fresh identity, code measurement,
 *    endorsement, isolate, DHT join, provider record, call, response. Baselines measured in the
 *    same run: the same request warm (an instance already up), and a new plain Node process per
 *    instance (spawn → listening → first HTTP response), what a process-per-function platform
 *    like the microbank bench's plain mode pays.
 * 2. 150 instances provisioned in parallel through the host's provisioning seam, each from start
 *    to verified identity: identity + code measurement + endorsement, then the instance proves
 *    itself to a trust-domain verifier over a real Noise handshake and is identified under the
 *    owner-signed policy. Median and p95 of the per-instance times, against the 252 ms average
 *    the SBRC 2021 paper reports for TPM-based provisioning of 150 microservices in parallel.
 *
 * Goals: provisioning median ≤ 25 ms, cold start to first response ≤ 50 ms (p50). Writes
 * bench/results/coldstart.json with `coldStartMs` {p50, p95} and `provisioning150Ms` {p50, p95}.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AppServerInfo } from './app-server.js';
import { BENCH_DIR, Cleanup, Progress, RESULTS_DIR, machineInfo, parseBenchArgs, positiveInt, runStart, writeJson, type BenchContext } from './lib/bench.js';
import { startServerProcess } from './lib/server-process.js';
import { percentile, round } from './lib/stats.js';

export const description = 'runtime cold start to first response (scale from zero) and 150 instance identities provisioned in parallel';

/** SBRC 2021 (identity provisioning from integrity evidence): 150 microservices, TPM-based, average. */
const REFERENCE_TPM_PROVISIONING_MS = 252;
const GOALS = { provisioningP50Ms: 25, coldStartP50Ms: 50 } as const;
const SERVICE = 'hello';
const SCALE_TO_ZERO_TIMEOUT_MS = 15_000;

interface Timing {
  readonly coldStarts: number;
  readonly warm: number;
  readonly processStarts: number;
  readonly bursts: number;
  readonly instances: number;
  /** Provisionings one after the other: the uncontended time of one. */
  readonly sequential: number;
}
const FULL: Timing = { coldStarts: 20, warm: 200, processStarts: 10, bursts: 3, instances: 150, sequential: 50 };
const QUICK: Timing = { coldStarts: 8, warm: 50, processStarts: 3, bursts: 1, instances: 150, sequential: 20 };

const USAGE = `usage: npm run bench -- coldstart [options]

  --quick            short run (under a minute) with the same output
  --cold-starts N    cold-start samples (default 20; --quick 8)
  --bursts N         bursts of parallel provisioning (default 3; --quick 1)
  --instances N      instances per burst (default 150; a different count writes no file unless --out)
  --out FILE         results file (default bench/results/coldstart.json)
  --json             print the results JSON on stdout instead of the table`;

/** The bench's application: one handler, scaled to zero one second after its last call. */
const MANIFEST = `app: coldstart
trustDomain: coldstart
services:
  ${SERVICE}:
    entry: services/${SERVICE}.js
    handlers: [hello]
    instances: { min: 0, max: 1 }
    idleSeconds: 1
gateway:
  routes:
    - { method: GET, path: /hello, to: ${SERVICE}.hello, auth: false }
`;
const MODULE = `export async function hello(input, ctx) {\n  return { hello: 'world' };\n}\n`;

/** The process-per-instance baseline: a plain Node HTTP server answering the same JSON. */
const PLAIN_PROCESS = `const http = require('node:http');
const server = http.createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"hello":"world"}'); });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;

interface Options {
  readonly quick: boolean;
  readonly timing: Timing;
  readonly out: string | null;
  readonly json: boolean;
}

function parseOptions(argv: readonly string[]): Options | null {
  const parsed = parseBenchArgs(
    argv,
    {
      quick: { type: 'boolean', default: false },
      'cold-starts': { type: 'string' },
      bursts: { type: 'string' },
      instances: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (parsed === null) return null;
  const base = parsed.quick ? QUICK : FULL;
  const instances = positiveInt('instances', parsed.instances) ?? base.instances;
  return {
    quick: parsed.quick,
    timing: {
      ...base,
      coldStarts: positiveInt('cold-starts', parsed['cold-starts']) ?? base.coldStarts,
      bursts: positiveInt('bursts', parsed.bursts) ?? base.bursts,
      instances,
    },
    out: parsed.out ?? (instances === FULL.instances ? join(RESULTS_DIR, 'coldstart.json') : null),
    json: parsed.json,
  };
}

/** One GET on a fresh connection (no keep-alive: the cold sample must not ride a warm socket); resolves with its time in ms. */
async function timedGet(url: string): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200 || !body.includes('world')) reject(new Error(`GET ${url} answered ${res.statusCode}: ${body.slice(0, 200)}`));
        else resolve();
      });
    });
    req.on('error', reject);
    req.end();
  });
  return performance.now() - t0;
}

/** Spawns a plain Node HTTP server process and times spawn → first response; then stops it. */
async function plainProcessStart(): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', PLAIN_PROCESS], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: child.stdout });
    const [port] = (await once(lines, 'line')) as [string];
    await timedGet(`http://127.0.0.1:${port}/`);
    return performance.now() - t0;
  } finally {
    child.kill();
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
}

function summary(samples: readonly number[]): { p50: number | null; p95: number | null; min: number | null; max: number | null; mean: number | null; n: number } {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: round(percentile(sorted, 50)), p95: round(percentile(sorted, 95)), min: round(sorted[0] ?? Number.NaN), max: round(sorted[sorted.length - 1] ?? Number.NaN), mean: round(mean), n: samples.length };
}

const fmt = (v: number | null): string => (v === null ? '—' : v < 10 ? v.toFixed(2) : v.toFixed(1));

export async function run(context: BenchContext): Promise<void> {
  const options = parseOptions(context.argv);
  if (options === null) return;
  const { timing } = options;
  const { started, timestamp, loadAtStart } = runStart();
  const cleanup = new Cleanup();
  let progress: Progress | null = null;
  try {
    const appDir = mkdtempSync(join(tmpdir(), 'themis-bench-coldstart-app-'));
    cleanup.add('remove the app directory', () => rmSync(appDir, { recursive: true, force: true }));
    mkdirSync(join(appDir, 'services'));
    writeFileSync(join(appDir, 'themis.yaml'), MANIFEST);
    writeFileSync(join(appDir, 'services', `${SERVICE}.js`), MODULE);
    const dataDir = mkdtempSync(join(tmpdir(), 'themis-bench-coldstart-data-'));
    cleanup.add('remove the data directory', () => rmSync(dataDir, { recursive: true, force: true }));

    progress = new Progress('coldstart', 1 + timing.coldStarts + 1 + timing.processStarts + 1 + timing.bursts);
    progress.step('start the application');
    const server = await startServerProcess<AppServerInfo>(join(BENCH_DIR, 'app-server.ts'), ['--app', appDir, '--data', dataDir], ['--no-node-snapshot'], cleanup);
    const ask = async <T>(message: object): Promise<T> => {
      const answer = JSON.parse(await server.send(message)) as { ok: boolean; error?: string } & T;
      if (!answer.ok) throw new Error(`app-server: ${JSON.stringify(message)} failed: ${answer.error ?? ''}`);
      return answer;
    };
    type Stats = Record<string, { instances: number; starting: number; coldStarts: number; coldStartMs: { last: number } | null }>;
    const serviceStats = async (): Promise<Stats[string]> => {
      const { stats } = await ask<{ stats: Stats }>({ cmd: 'stats' });
      const s = stats[SERVICE];
      if (s === undefined) throw new Error(`the host has no stats for "${SERVICE}"`);
      return s;
    };
    const atZero = async (): Promise<void> => {
      const deadline = performance.now() + SCALE_TO_ZERO_TIMEOUT_MS;
      for (;;) {
        const s = await serviceStats();
        if (s.instances === 0 && s.starting === 0) return;
        if (performance.now() > deadline) throw new Error(`"${SERVICE}" did not scale to zero within ${SCALE_TO_ZERO_TIMEOUT_MS / 1000} s (idleSeconds: 1)`);
        await sleep(100);
      }
    };
    const url = `${server.info.url}/hello`;
    progress.tick();

    // 1. Cold start to first response, from zero each time.
    const cold: number[] = [];
    const hostCold: number[] = [];
    for (let i = 0; i < timing.coldStarts; i++) {
      progress.step(`cold start ${i + 1}/${timing.coldStarts} (waiting for zero instances)`);
      await atZero();
      const before = (await serviceStats()).coldStarts;
      cold.push(await timedGet(url));
      const after = await serviceStats();
      if (after.coldStarts !== before + 1) throw new Error(`expected one cold start for the request, the host counted ${after.coldStarts - before}`);
      if (after.coldStartMs !== null) hostCold.push(after.coldStartMs.last);
      progress.tick();
    }
    // Warm baseline: the same request with an instance up (a fresh connection each, as above).
    progress.step(`${timing.warm} warm requests`);
    const warm: number[] = [];
    for (let i = 0; i < timing.warm; i++) warm.push(await timedGet(url));
    progress.tick();
    // Process-per-instance baseline.
    const processStarts: number[] = [];
    for (let i = 0; i < timing.processStarts; i++) {
      progress.step(`plain Node process start ${i + 1}/${timing.processStarts}`);
      processStarts.push(await plainProcessStart());
      progress.tick();
    }

    // 2. Provisioning through the host's seam: one at a time (uncontended), then bursts all at once.
    type Provisioned = { ms: number[]; wallMs: number; cpuMs: number };
    progress.step(`${timing.sequential} instances provisioned one after the other`);
    const sequential = await ask<Provisioned>({ cmd: 'provision', service: SERVICE, count: timing.sequential, parallel: false });
    progress.tick();
    const provisioning: number[] = [];
    const bursts: { wallMs: number | null; p50: number | null; p95: number | null; cpuMsPerInstance: number | null; instancesPerSec: number | null }[] = [];
    for (let b = 0; b < timing.bursts; b++) {
      progress.step(`burst ${b + 1}/${timing.bursts}: ${timing.instances} instances provisioned in parallel`);
      const { ms, wallMs, cpuMs } = await ask<Provisioned>({ cmd: 'provision', service: SERVICE, count: timing.instances, parallel: true });
      provisioning.push(...ms);
      const s = summary(ms);
      bursts.push({ wallMs: round(wallMs), p50: s.p50, p95: s.p95, cpuMsPerInstance: round(cpuMs / ms.length), instancesPerSec: round(ms.length / (wallMs / 1000)) });
      progress.tick();
    }
    progress.stop();

    const coldStartMs = summary(cold);
    const provisioningMs = summary(provisioning);
    const processStartMs = summary(processStarts);
    const sequentialMs = summary(sequential.ms);
    const met = (value: number | null, goal: number): boolean | null => (value === null ? null : value <= goal);
    const document = {
      bench: 'coldstart',
      timestamp,
      quick: options.quick,
      coldStartMs,
      provisioning150Ms: provisioningMs,
      provisioningSequentialMs: { ...sequentialMs, cpuMsPerInstance: round(sequential.cpuMs / sequential.ms.length) },
      goals: {
        coldStartP50Ms: { value: coldStartMs.p50, target: `<= ${GOALS.coldStartP50Ms}`, met: met(coldStartMs.p50, GOALS.coldStartP50Ms) },
        provisioningP50Ms: { value: provisioningMs.p50, target: `<= ${GOALS.provisioningP50Ms}`, met: met(provisioningMs.p50, GOALS.provisioningP50Ms) },
      },
      baselines: {
        warmRequestMs: summary(warm),
        plainProcessStartMs: processStartMs,
        referenceTpmProvisioningMs: REFERENCE_TPM_PROVISIONING_MS,
      },
      ratios: {
        provisioning_p50_vs_tpm_reference: round((provisioningMs.p50 ?? Number.NaN) / REFERENCE_TPM_PROVISIONING_MS, 3),
        coldstart_p50_vs_plain_process_p50: round((coldStartMs.p50 ?? Number.NaN) / (processStartMs.p50 ?? Number.NaN), 3),
      },
      hostColdStartMs: summary(hostCold),
      bursts,
      machine: { ...machineInfo(), loadAverage1mAtStart: loadAtStart },
      config: {
        ...timing,
        app: `one service "${SERVICE}" (instances.min 0, idleSeconds 1), route GET /hello, under startApp in a separate process`,
        coldStart: 'client-side time of GET /hello on a new connection, the service at zero instances (the host scaled it down after 1 s idle)',
        hostColdStart: "the host's own cold-start time for the same requests (identity, measurement, endorsement, isolate, join, provider record)",
        provisioning: 'per instance, all of a burst started at once (provisioning150Ms), or one after the other (provisioningSequentialMs): host.provisionIdentity (identity + code digest + endorsement + attestor credentials), a bare peer with that identity listening on 127.0.0.1, a trust-domain verifier dialling it (Noise XX) and identifying it under the owner-signed policy; host, instances and verifier share the host process (one thread)',
        plainProcessStart: 'spawn of a plain Node HTTP server process → listening → first response (process-per-instance baseline)',
        reference: 'SBRC 2021: 252 ms average identity provisioning, 150 microservices attested in parallel, TPM-based',
      },
      durationsMs: { total: Math.round(performance.now() - started) },
    };

    const lines = [
      `cold start to first response (n=${coldStartMs.n}): p50 ${fmt(coldStartMs.p50)} ms, p95 ${fmt(coldStartMs.p95)} ms   (goal p50 <= ${GOALS.coldStartP50Ms} ms: ${document.goals.coldStartP50Ms.met ? 'met' : 'NOT MET'})`,
      `  host-side cold start: p50 ${fmt(document.hostColdStartMs.p50)} ms; warm request: p50 ${fmt(document.baselines.warmRequestMs.p50)} ms; plain Node process start: p50 ${fmt(document.baselines.plainProcessStartMs.p50)} ms`,
      `${timing.instances} instances provisioned in parallel (x${timing.bursts}): p50 ${fmt(provisioningMs.p50)} ms, p95 ${fmt(provisioningMs.p95)} ms, burst wall ${bursts.map((b) => fmt(b.wallMs)).join(' / ')} ms   (goal p50 <= ${GOALS.provisioningP50Ms} ms: ${document.goals.provisioningP50Ms.met ? 'met' : 'NOT MET'})`,
      `  per instance: ${fmt(bursts[0]?.cpuMsPerInstance ?? null)} ms CPU; one at a time: p50 ${fmt(sequentialMs.p50)} ms, p95 ${fmt(sequentialMs.p95)} ms`,
      `  reference, TPM-based (SBRC 2021): ${REFERENCE_TPM_PROVISIONING_MS} ms average → p50 ratio ${fmt(document.ratios.provisioning_p50_vs_tpm_reference)}`,
    ];
    if (options.json) {
      process.stderr.write(`${lines.join('\n')}\n`);
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    } else {
      process.stdout.write(`\ncoldstart bench — ${document.machine.cpus} CPUs, Node ${document.machine.node}${options.quick ? ', --quick' : ''}\n\n${lines.join('\n')}\n`);
    }
    if (options.out !== null) process.stderr.write(`\nwrote ${writeJson(options.out, document)} (${(document.durationsMs.total / 1000).toFixed(1)} s)\n`);
  } finally {
    progress?.stop();
    await cleanup.run();
  }
}
