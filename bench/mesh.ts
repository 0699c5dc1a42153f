/**
 * Mesh benchmark: what `mesh.call()` adds per call over a bare Themis channel request, with TLS 1.3
 * request/response as the outside baseline, all measured in one run against a server in another
 * process (bench/mesh-server.ts: an anchor DHT node, a mesh instance providing `bench.echo` whose
 * peer also serves the bare channel handler `echo`, and a TLS 1.3 mTLS framed echo server).
 *
 *   npm run bench -- mesh [--quick] [--help]
 *
 * Modes, all 1 KiB of random bytes, one request in flight, on one long-lived connection:
 *   tls      TLS 1.3 with mutual authentication, length-prefixed echo (bench/lib/framed.ts)
 *   channel  `conn.request('echo', body)` on a Themis connection the client mesh's peer dialled
 *   call     `mesh.call('bench', 'echo', body)` from an open-mode client mesh (raw codec: a Buffer
 *            payload travels as bytes), with discovery, balancing, retries and metrics as a user gets them
 * Each mode is warmed up, then measured in rounds that rotate the order of the modes, so the
 * machine's drift lands on every mode alike. Per mode: calls/s and p50/p99 latency.
 *
 * Writes bench/results/mesh.json: `addedMs` {p50, p99} = call − channel latency (goal: p99 ≤ 0.3 ms),
 * `ratios` {call_vs_channel_rps, call_vs_tls_rps}, the raw figures and the machine.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_DIR, Cleanup, Progress, RESULTS_DIR, UsageError, machineBusyMs, machineInfo, writeJson, type BenchContext } from './lib/bench.js';
import { TLS_KEY_TYPES, generateTlsMaterial, type TlsKeyType } from './lib/certs.js';
import { tlsMode, type BenchConnection } from './lib/modes.js';
import { startServerProcess } from './lib/server-process.js';
import { LatencyRecorder, round, type LatencySummary } from './lib/stats.js';
import type { MeshServerInfo } from './mesh-server.js';

export const description = 'added latency of mesh.call() over a bare channel request, with TLS 1.3 req/resp as baseline';

const RR_BYTES = 1024;
/** Goal of the issue: call() adds at most this much p99 latency over the bare channel. */
const ADDED_P99_TARGET_MS = 0.3;
const CALL_DEADLINE_MS = 5_000;
const BUSY_MACHINE_PERCENT = 25;

interface Timing {
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly rounds: number;
}
const FULL: Timing = { warmupMs: 1000, measureMs: 2000, rounds: 5 };
const QUICK: Timing = { warmupMs: 300, measureMs: 1000, rounds: 3 };

type ModeId = 'tls' | 'channel' | 'call';
const MODE_IDS: readonly ModeId[] = ['tls', 'channel', 'call'];

interface Mode {
  readonly id: ModeId;
  readonly label: string;
  echo(body: Buffer): Promise<Buffer>;
}

const USAGE = `usage: npm run bench -- mesh [options]

  --quick                  short run (< 30 s) with the same output
  --tls-key ed25519|p256   TLS certificate keys (default ed25519)
  --warmup-ms N --measure-ms N --rounds N   override the timing
  --out FILE               results file (default bench/results/mesh.json; a run with a timing
                           override writes one only when given)
  --json                   print the results JSON on stdout instead of the table`;

interface Options {
  readonly quick: boolean;
  readonly timing: Timing;
  readonly tlsKey: TlsKeyType;
  readonly out: string | null;
  readonly json: boolean;
}

function positiveInt(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  return n;
}

function parseOptions(argv: readonly string[]): Options | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean', default: false },
        'tls-key': { type: 'string', default: 'ed25519' },
        'warmup-ms': { type: 'string' },
        'measure-ms': { type: 'string' },
        rounds: { type: 'string' },
        out: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return null;
  }
  const tlsKey = parsed['tls-key'];
  if (!TLS_KEY_TYPES.includes(tlsKey as TlsKeyType)) throw new UsageError(`--tls-key must be one of ${TLS_KEY_TYPES.join(', ')}, got "${tlsKey}"`);
  const base = parsed.quick ? QUICK : FULL;
  const override = {
    warmupMs: positiveInt('warmup-ms', parsed['warmup-ms']),
    measureMs: positiveInt('measure-ms', parsed['measure-ms']),
    rounds: positiveInt('rounds', parsed.rounds),
  };
  const narrowed = Object.values(override).some((v) => v !== undefined);
  return {
    quick: parsed.quick,
    timing: { warmupMs: override.warmupMs ?? base.warmupMs, measureMs: override.measureMs ?? base.measureMs, rounds: override.rounds ?? base.rounds },
    tlsKey: tlsKey as TlsKeyType,
    out: parsed.out ?? (narrowed ? null : join(RESULTS_DIR, 'mesh.json')),
    json: parsed.json,
  };
}

// ---------------------------------------------------------------------------------------------
// The server process

const SERVER_SCRIPT = join(BENCH_DIR, 'mesh-server.ts');

interface ServerHandle {
  readonly info: MeshServerInfo;
  cpu(): Promise<NodeJS.CpuUsage>;
}

async function startServer(args: string[], cleanup: Cleanup): Promise<ServerHandle> {
  const { info, send } = await startServerProcess<MeshServerInfo>(SERVER_SCRIPT, args, [], cleanup);
  const cpu = async (): Promise<NodeJS.CpuUsage> => {
    const answer = JSON.parse(await send({ cmd: 'cpu' })) as { ok: boolean; error?: string; cpu?: NodeJS.CpuUsage };
    if (answer.ok && answer.cpu !== undefined) return answer.cpu;
    throw new Error(`server: cpu failed: ${answer.error ?? 'no CPU time in the reply'}`);
  };
  return { info, cpu };
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Slice {
  ops: number;
  elapsedMs: number;
  readonly latency: LatencyRecorder;
}

/** One request in flight until `ms` have passed. */
async function timed(mode: Mode, body: Buffer, ms: number): Promise<Slice> {
  const slice: Slice = { ops: 0, elapsedMs: 0, latency: new LatencyRecorder() };
  const start = performance.now();
  const deadline = start + ms;
  while (performance.now() < deadline) {
    const t0 = performance.now();
    const reply = await mode.echo(body);
    slice.latency.add(performance.now() - t0);
    if (reply.length !== body.length) throw new Error(`${mode.label}: echo of ${body.length} bytes came back with ${reply.length}`);
    slice.ops++;
  }
  slice.elapsedMs = performance.now() - start;
  return slice;
}

class Cell {
  ops = 0;
  elapsedMs = 0;
  readonly latency = new LatencyRecorder();
  readonly rounds: { perSec: number; p50Ms: number; p99Ms: number }[] = [];
  clientCpuMs = 0;
  serverCpuMs = 0;
  otherCpuMs = 0;

  add(slice: Slice, cpu: { clientMs: number; serverMs: number; otherMs: number }): void {
    this.ops += slice.ops;
    this.elapsedMs += slice.elapsedMs;
    this.latency.addAll(slice.latency);
    const s = slice.latency.summary();
    this.rounds.push({ perSec: slice.ops / (slice.elapsedMs / 1000), p50Ms: s.p50Ms, p99Ms: s.p99Ms });
    this.clientCpuMs += cpu.clientMs;
    this.serverCpuMs += cpu.serverMs;
    this.otherCpuMs += cpu.otherMs;
  }

  get perSec(): number {
    return this.ops / (this.elapsedMs / 1000);
  }

  get cpu(): { clientPercent: number | null; serverPercent: number | null; otherPercent: number | null } {
    const percent = (ms: number): number | null => round((100 * ms) / this.elapsedMs, 3);
    return { clientPercent: percent(this.clientCpuMs), serverPercent: percent(this.serverCpuMs), otherPercent: percent(Math.max(0, this.otherCpuMs)) };
  }
}

async function measure(mode: Mode, body: Buffer, ms: number, server: ServerHandle): Promise<{ slice: Slice; cpu: { clientMs: number; serverMs: number; otherMs: number } }> {
  const serverBefore = await server.cpu();
  const machineBefore = machineBusyMs();
  const clientBefore = process.cpuUsage();
  const slice = await timed(mode, body, ms);
  const clientSpent = process.cpuUsage(clientBefore);
  const machineSpent = machineBusyMs() - machineBefore;
  const serverAfter = await server.cpu();
  const clientMs = (clientSpent.user + clientSpent.system) / 1000;
  const serverMs = (serverAfter.user + serverAfter.system - serverBefore.user - serverBefore.system) / 1000;
  return { slice, cpu: { clientMs, serverMs, otherMs: machineSpent - clientMs - serverMs } };
}

// ---------------------------------------------------------------------------------------------
// Output

const fmtInt = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const fmtMs = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : Math.abs(v) < 1 ? v.toFixed(3) : Math.abs(v) < 10 ? v.toFixed(2) : v.toFixed(1));
const fmtSigned = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : `${v >= 0 ? '+' : ''}${fmtMs(v)}`);
const fmtPercent = (v: number | null): string => (v === null ? '—' : v.toFixed(0));

function latencyFigures(s: LatencySummary): Record<string, number | null> {
  return { p50: round(s.p50Ms), p99: round(s.p99Ms), mean: round(s.meanMs), max: round(s.maxMs) };
}

function renderTable(modes: readonly Mode[], cells: Map<ModeId, Cell>, added: { p50: number | null; p99: number | null }, ratios: Record<string, number | null>): string {
  const header = ['', ...modes.map((m) => m.label)];
  const rows: string[][] = [];
  const row = (label: string, show: (c: Cell, id: ModeId) => string): void => {
    rows.push([label, ...modes.map((m) => show(cells.get(m.id) as Cell, m.id))]);
  };
  const channel = (cells.get('channel') as Cell).latency.summary();
  row('1 KiB req/resp/s, 1 in flight', (c) => fmtInt(c.perSec));
  row('p50 (ms)', (c) => fmtMs(c.latency.summary().p50Ms));
  row('p99 (ms)', (c) => fmtMs(c.latency.summary().p99Ms));
  row('mean / max (ms)', (c) => `${fmtMs(c.latency.summary().meanMs)} / ${fmtMs(c.latency.summary().maxMs)}`);
  row('vs channel p50 / p99 (ms)', (c, id) => (id === 'channel' ? '—' : `${fmtSigned(c.latency.summary().p50Ms - channel.p50Ms)} / ${fmtSigned(c.latency.summary().p99Ms - channel.p99Ms)}`));
  row('samples', (c) => fmtInt(c.latency.size));
  row('CPU % client/server/other', (c) => `${fmtPercent(c.cpu.clientPercent)} / ${fmtPercent(c.cpu.serverPercent)} / ${fmtPercent(c.cpu.otherPercent)}`);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line), ''];
  const met = added.p99 === null ? '' : added.p99 <= ADDED_P99_TARGET_MS ? 'met' : 'NOT MET';
  out.push(`added by call() over the bare channel: p50 ${fmtSigned(added.p50)} ms, p99 ${fmtSigned(added.p99)} ms   (target p99 <= ${ADDED_P99_TARGET_MS} ms: ${met})`);
  out.push('ratios (rate of call() ÷ rate of baseline, same run):');
  for (const [name, value] of Object.entries(ratios)) out.push(`  ${name.padEnd(24)} ${value === null ? '—' : value.toFixed(2)}`);
  const busiest = Math.max(0, ...[...cells.values()].map((c) => c.cpu.otherPercent ?? 0));
  if (busiest >= BUSY_MACHINE_PERCENT) {
    out.push(`warning: other processes used up to ${busiest.toFixed(0)}% of a core during a measurement; absolute figures are noisy, the modes alternate so comparisons less so`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The run

export async function run(context: BenchContext): Promise<void> {
  const options = parseOptions(context.argv);
  if (options === null) return;
  const started = performance.now();
  const timestamp = new Date().toISOString();
  const loadAtStart = machineInfo().loadAverage1m;
  const cleanup = new Cleanup();
  let progress: Progress | null = null;
  try {
    const setupStart = performance.now();
    const tls = generateTlsMaterial(options.tlsKey);
    cleanup.add('remove the temp certificate directory', () => rmSync(tls.dir, { recursive: true, force: true }));
    const server = await startServer(['--tls-dir', tls.dir], cleanup);
    const { info } = server;
    const { service: BENCH_SERVICE, method: BENCH_METHOD, handler: CHANNEL_HANDLER } = info;
    if (info.tlsPort === null) throw new Error('the server process did not start its TLS server');

    // TLS: one long-lived mTLS connection.
    const tlsConn: BenchConnection = await tlsMode(info.tlsPort, tls).connect();
    cleanup.add('close the TLS connection', () => tlsConn.close());

    // The client mesh (open mode, joined as a DHT client through the anchor).
    const { createMesh } = await import('../src/mesh/index.js');
    const { testNetwork } = await import('../src/testing/index.js');
    const caller = await createMesh({ network: testNetwork(), bootstrap: [info.bootstrap], client: true, maintenance: false });
    cleanup.add('close the client mesh', () => caller.close());

    // Bare channel: the same client peer dials the same server peer (IK, expecting its NodeId).
    const conn = await caller.node.peer.dial(info.mesh.address, { expect: info.mesh.id, remoteStatic: Buffer.from(info.mesh.noiseStatic, 'hex') });
    cleanup.add('close the bare channel connection', () => conn.close());

    const modes: Mode[] = [
      { id: 'tls', label: `TLS 1.3 mTLS (${tls.keyType === 'ed25519' ? 'Ed25519' : 'P-256'})`, echo: (body) => tlsConn.echo(body) },
      { id: 'channel', label: 'Themis channel', echo: (body) => conn.request(CHANNEL_HANDLER, body) },
      {
        id: 'call',
        label: 'mesh.call()',
        echo: async (body) => {
          const reply = await caller.call(BENCH_SERVICE, BENCH_METHOD, body, { deadlineMs: CALL_DEADLINE_MS });
          if (!Buffer.isBuffer(reply)) throw new Error('mesh.call() did not return the raw bytes it sent');
          return reply;
        },
      },
    ];

    // Payload: random bytes; one exchange per mode first, so a broken mode fails with its own message.
    const body = randomBytes(RR_BYTES);
    const negotiated: Record<string, Record<string, string>> = { tls: tlsConn.describe(), channel: { pattern: conn.remote.pattern } };
    for (const mode of modes) {
      try {
        const reply = await mode.echo(body);
        if (!reply.equals(body)) throw new Error('the echo differs from the request');
      } catch (err) {
        throw new Error(`${mode.label}: check exchange failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    const setupMs = performance.now() - setupStart;

    const { timing } = options;
    progress = new Progress('mesh', modes.length * (1 + timing.rounds));
    for (const mode of modes) {
      progress.step(`${mode.label} · warm-up`);
      await timed(mode, body, timing.warmupMs);
      progress.tick();
    }
    const cells = new Map<ModeId, Cell>(MODE_IDS.map((id) => [id, new Cell()]));
    const measureStart = performance.now();
    for (let r = 0; r < timing.rounds; r++) {
      const order = modes.map((_, i) => modes[(i + r) % modes.length] as Mode);
      for (const mode of order) {
        progress.step(`${mode.label} · round ${r + 1}/${timing.rounds}`);
        const { slice, cpu } = await measure(mode, body, timing.measureMs, server);
        (cells.get(mode.id) as Cell).add(slice, cpu);
        progress.tick();
      }
    }
    const measureMs = performance.now() - measureStart;
    progress.stop();

    const summary = (id: ModeId): LatencySummary => (cells.get(id) as Cell).latency.summary();
    const rate = (id: ModeId): number => (cells.get(id) as Cell).perSec;
    const ratio = (a: number, b: number): number | null => round(a / b, 3);
    const call = summary('call');
    const channel = summary('channel');
    const tlsSummary = summary('tls');
    const addedMs = { p50: round(call.p50Ms - channel.p50Ms), p99: round(call.p99Ms - channel.p99Ms) };
    const ratios = { call_vs_channel_rps: ratio(rate('call'), rate('channel')), call_vs_tls_rps: ratio(rate('call'), rate('tls')) };
    const callRounds = (cells.get('call') as Cell).rounds;
    const channelRounds = (cells.get('channel') as Cell).rounds;

    const results: Record<string, unknown> = {};
    for (const mode of modes) {
      const cell = cells.get(mode.id) as Cell;
      const s = cell.latency.summary();
      results[mode.id] = {
        label: mode.label,
        perSec: round(cell.perSec),
        latencyMs: latencyFigures(s),
        samples: s.samples,
        elapsedMs: Math.round(cell.elapsedMs),
        rounds: cell.rounds.map((x) => ({ perSec: round(x.perSec), p50Ms: round(x.p50Ms), p99Ms: round(x.p99Ms) })),
        cpu: cell.cpu,
      };
    }
    const document = {
      bench: 'mesh',
      timestamp,
      quick: options.quick,
      addedMs,
      ratios,
      target: { addedP99Ms: { value: addedMs.p99, target: `<= ${ADDED_P99_TARGET_MS}`, met: addedMs.p99 === null ? null : addedMs.p99 <= ADDED_P99_TARGET_MS } },
      addedMsNote: 'mesh.call() latency − bare channel request latency, percentiles over all measured rounds of each; perRound pairs the rounds in order',
      addedMsPerRound: callRounds.map((c, i) => ({
        p50: round(c.p50Ms - (channelRounds[i]?.p50Ms ?? Number.NaN)),
        p99: round(c.p99Ms - (channelRounds[i]?.p99Ms ?? Number.NaN)),
      })),
      addedMsVsTls: { p50: round(call.p50Ms - tlsSummary.p50Ms), p99: round(call.p99Ms - tlsSummary.p99Ms) },
      ratioNote: 'requests/s of mesh.call() ÷ requests/s of the baseline, one in flight, same run',
      results,
      machine: { ...machineInfo(), loadAverage1mAtStart: loadAtStart },
      config: {
        payloadBytes: RR_BYTES,
        inFlight: 1,
        payload: 'random bytes; mesh.call() gets a Buffer (raw codec), the channel and TLS the same bytes',
        tls: `TLS 1.3, mutual authentication, ${options.tlsKey === 'ed25519' ? 'Ed25519' : 'ECDSA P-256'} certificates from a throwaway CA, one long-lived connection, framed echo`,
        tlsKey: options.tlsKey,
        negotiated,
        channel: `conn.request('${CHANNEL_HANDLER}', body) on a connection the client mesh's peer dialled to the server mesh's peer (${conn.remote.pattern})`,
        call: `mesh.call('${BENCH_SERVICE}', '${BENCH_METHOD}', body, { deadlineMs: ${CALL_DEADLINE_MS} }) from an open-mode client mesh (DHT client), default discovery cache and balancer`,
        serverProcess: 'separate process (bench/mesh-server.ts): anchor DHT node, mesh instance providing bench.echo (its peer also serves the bare echo handler), TLS server',
        ...timing,
      },
      durationsMs: { setup: Math.round(setupMs), measure: Math.round(measureMs), total: Math.round(performance.now() - started) },
    };

    const table = renderTable(modes, cells, addedMs, ratios);
    if (options.json) {
      process.stderr.write(`${table}\n`);
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    } else {
      process.stdout.write(`\nmesh bench — ${document.machine.cpus} CPUs, Node ${document.machine.node}${options.quick ? ', --quick' : ''}\n\n${table}\n`);
    }
    if (options.out !== null) process.stderr.write(`\nwrote ${writeJson(options.out, document)} (${(document.durationsMs.total / 1000).toFixed(1)} s)\n`);
  } finally {
    progress?.stop();
    await cleanup.run();
  }
}
