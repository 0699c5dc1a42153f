/**
 * Channel benchmark: Themis XX and IK against plain TCP and TLS 1.3 with mutual authentication,
 * all measured in one run against a server in another process (bench/channel-server.ts).
 *
 *   npm run bench -- channel [--quick] [--help]
 *
 * Phases, each warmed up per mode and then measured in rounds that rotate through the modes, so
 * that the machine's drift (±30–50% within seconds here) lands on every mode alike:
 *   hs1    new connections one after another: connect + full handshake, then close
 *   hs16   the same with 16 at once
 *   first  connect + handshake + one 1 KiB request/response, latency
 *   rr1    1 KiB request/response on one connection, one in flight
 *   rr64   the same with 64 in flight
 *   bulk   1 MiB requests with an empty reply, 4 in flight; payload MB/s (10^6 bytes)
 * The Themis channel in rr1/rr64/bulk is dialled with IK (`--channel-pattern xx` for XX: the
 * channel after the handshake is the same).
 *
 * Writes bench/results/channel.json with per-mode figures, ratios (Themis ÷ baseline from this run)
 * and the targets they are held to.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ChannelServerInfo, ServerCommand } from './channel-server.js';
import { BENCH_DIR, Cleanup, Progress, RESULTS_DIR, UsageError, machineBusyMs, machineInfo, writeJson, type BenchContext } from './lib/bench.js';
import { TLS_KEY_TYPES, generateTlsMaterial, type TlsKeyType, type TlsMaterial } from './lib/certs.js';
import { MODE_IDS, themisModes, tcpMode, tlsMode, type BenchConnection, type Mode, type ModeId } from './lib/modes.js';
import { SliceProfiler } from './lib/profiler.js';
import { startServerProcess } from './lib/server-process.js';
import { LatencyRecorder, round } from './lib/stats.js';

export const description = 'handshakes/s, first response, request/response and bulk: plain TCP, TLS 1.3 mTLS, Themis XX and IK';

const KiB = 1024;
const MiB = 1024 * KiB;
const RR_BYTES = 1 * KiB;
const BULK_BYTES = 1 * MiB;
const BULK_IN_FLIGHT = 4;
const RR_IN_FLIGHT = 64;
const HANDSHAKE_CONCURRENCY = 16;
/** Closes started but not finished before a handshake loop waits for them (bounded server load). */
const CLOSE_BACKLOG = 64;
/** Warn when the rest of the machine used this much of a core while a figure was measured. */
const BUSY_MACHINE_PERCENT = 25;

interface Timing {
  /** Per mode and phase, before measuring. */
  readonly warmupMs: number;
  /** Per mode, phase and round. */
  readonly measureMs: number;
  readonly rounds: number;
}
const FULL: Timing = { warmupMs: 1000, measureMs: 1800, rounds: 3 };
const QUICK: Timing = { warmupMs: 150, measureMs: 600, rounds: 1 };

type PhaseId = 'hs1' | 'hs16' | 'first' | 'rr1' | 'rr64' | 'bulk';
interface PhaseSpec {
  readonly id: PhaseId;
  readonly title: string;
  /** New connections per operation (all four modes) or one long-lived connection (one Themis mode). */
  readonly fresh: boolean;
}
const PHASES: readonly PhaseSpec[] = [
  { id: 'hs1', title: 'handshakes, sequential', fresh: true },
  { id: 'hs16', title: `handshakes, ${HANDSHAKE_CONCURRENCY} concurrent`, fresh: true },
  { id: 'first', title: 'first response', fresh: true },
  { id: 'rr1', title: '1 KiB req/resp, 1 in flight', fresh: false },
  { id: 'rr64', title: `1 KiB req/resp, ${RR_IN_FLIGHT} in flight`, fresh: false },
  { id: 'bulk', title: '1 MiB bulk', fresh: false },
];
const PHASE_IDS = PHASES.map((p) => p.id);

const USAGE = `usage: npm run bench -- channel [options]

  --quick                  short run (< 30 s) with the same output
  --tls-key ed25519|p256   TLS certificate keys (default ed25519, the faster TLS baseline here)
  --channel-pattern ik|xx  handshake of the Themis connection used for rr1/rr64/bulk (default ik)
  --only PHASES            comma list of ${PHASE_IDS.join(',')}
  --modes MODES            comma list of ${MODE_IDS.join(',')}
  --warmup-ms N --measure-ms N --rounds N   override the timing
  --profile DIR            write CPU profiles of every measured slice, client and server, to
                           DIR/<phase>-<mode>-r<round>-{client,server}.cpuprofile (warm-up and
                           set-up excluded); summarise with bench/tools/cpuprofile-top.ts
  --server-node-arg ARG    extra node flag for the server process (repeatable)
  --out FILE               results file (default bench/results/channel.json; runs narrowed by
                           --only/--modes or with a timing override write one only when given)
  --json                   print the results JSON on stdout instead of the table`;

/** One measured slice: operations and bytes completed, and per-operation latency. */
interface Slice {
  ops: number;
  bytes: number;
  elapsedMs: number;
  readonly latency: LatencyRecorder;
}

/** CPU time (user + system) each process spent during a slice, and what the rest of the machine used, in ms. */
interface CpuSpent {
  readonly clientMs: number;
  readonly serverMs: number;
  readonly otherMs: number;
}

interface Runner {
  slice(ms: number): Promise<Slice>;
  dispose(): Promise<void>;
}

/** Runs `lanes` loops of `op` until `ms` have passed; the slice ends when the last one returns and `finish` resolves. */
async function timed(ms: number, lanes: number, op: (slice: Slice) => Promise<void>, finish?: () => Promise<void>): Promise<Slice> {
  const slice: Slice = { ops: 0, bytes: 0, elapsedMs: 0, latency: new LatencyRecorder() };
  const start = performance.now();
  const deadline = start + ms;
  const lane = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await op(slice);
      slice.ops++;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  if (finish !== undefined) await finish();
  slice.elapsedMs = performance.now() - start;
  return slice;
}

/** New connection per operation; closes run in the background (bounded) and are drained inside the slice. */
function freshRunner(mode: Mode, lanes: number, request: Buffer | null): Runner {
  const closing = new Set<Promise<void>>();
  const closeLater = (conn: BenchConnection): void => {
    const done: Promise<void> = conn
      .close()
      .catch(() => undefined)
      .then(() => {
        closing.delete(done);
      });
    closing.add(done);
  };
  const drain = async (): Promise<void> => {
    while (closing.size > 0) await Promise.all(closing);
  };
  const op = async (slice: Slice): Promise<void> => {
    if (closing.size >= CLOSE_BACKLOG) await drain();
    const t0 = performance.now();
    const conn = await mode.connect();
    if (request !== null) {
      const reply = await conn.echo(request);
      if (reply.length !== request.length) throw new Error(`${mode.label}: echo of ${request.length} bytes came back with ${reply.length}`);
    }
    slice.latency.add(performance.now() - t0);
    closeLater(conn);
  };
  return { slice: (ms) => timed(ms, lanes, op, drain), dispose: drain };
}

/** One long-lived connection, `lanes` operations in flight on it. */
async function connectionRunner(mode: Mode, lanes: number, op: (conn: BenchConnection, slice: Slice) => Promise<void>): Promise<Runner> {
  const conn = await mode.connect();
  return { slice: (ms) => timed(ms, lanes, (slice) => op(conn, slice)), dispose: () => conn.close() };
}

function makeRunner(phase: PhaseId, mode: Mode, rrPayload: Buffer, bulkPayload: Buffer): Promise<Runner> | Runner {
  const echo = async (conn: BenchConnection, slice: Slice): Promise<void> => {
    const t0 = performance.now();
    const reply = await conn.echo(rrPayload);
    slice.latency.add(performance.now() - t0);
    if (reply.length !== rrPayload.length) throw new Error(`${mode.label}: echo of ${rrPayload.length} bytes came back with ${reply.length}`);
  };
  switch (phase) {
    case 'hs1':
      return freshRunner(mode, 1, null);
    case 'hs16':
      return freshRunner(mode, HANDSHAKE_CONCURRENCY, null);
    case 'first':
      return freshRunner(mode, 1, rrPayload);
    case 'rr1':
      return connectionRunner(mode, 1, echo);
    case 'rr64':
      return connectionRunner(mode, RR_IN_FLIGHT, echo);
    case 'bulk':
      return connectionRunner(mode, BULK_IN_FLIGHT, async (conn, slice) => {
        const t0 = performance.now();
        await conn.sink(bulkPayload);
        slice.latency.add(performance.now() - t0);
        slice.bytes += bulkPayload.length;
      });
  }
}

/** Everything measured for one phase and mode, over all rounds. */
class Cell {
  ops = 0;
  bytes = 0;
  elapsedMs = 0;
  readonly latency = new LatencyRecorder();
  readonly roundRates: number[] = [];
  readonly roundMBps: number[] = [];
  clientCpuMs = 0;
  serverCpuMs = 0;
  otherCpuMs = 0;

  add(slice: Slice, cpu: CpuSpent): void {
    this.clientCpuMs += cpu.clientMs;
    this.serverCpuMs += cpu.serverMs;
    this.otherCpuMs += cpu.otherMs;
    this.ops += slice.ops;
    this.bytes += slice.bytes;
    this.elapsedMs += slice.elapsedMs;
    this.latency.addAll(slice.latency);
    this.roundRates.push(slice.ops / (slice.elapsedMs / 1000));
    this.roundMBps.push(slice.bytes / 1e6 / (slice.elapsedMs / 1000));
  }

  get perSec(): number {
    return this.ops / (this.elapsedMs / 1000);
  }

  get mbPerSec(): number {
    return this.bytes / 1e6 / (this.elapsedMs / 1000);
  }

  /**
   * Share of one core each process used while measured: near 100% marks the side that bounds the
   * figure. `otherPercent` is everything else on the machine (other processes, the kernel's
   * softirq work is not in it): high values mean the figure was measured on a busy machine.
   */
  get cpu(): { clientPercent: number | null; serverPercent: number | null; otherPercent: number | null } {
    const percent = (ms: number): number | null => round((100 * ms) / this.elapsedMs, 3);
    return { clientPercent: percent(this.clientCpuMs), serverPercent: percent(this.serverCpuMs), otherPercent: percent(Math.max(0, this.otherCpuMs)) };
  }
}

// ---------------------------------------------------------------------------------------------
// The server process

const SERVER_SCRIPT = join(BENCH_DIR, 'channel-server.ts');

/** The running server process: its ports, and a line-based control channel (profiling). */
interface ServerHandle {
  readonly info: ChannelServerInfo;
  command(message: ServerCommand): Promise<ServerReply>;
}

interface ServerReply {
  readonly ok: boolean;
  readonly error?: string;
  readonly cpu?: NodeJS.CpuUsage;
}

async function startServer(args: string[], nodeArgs: string[], cleanup: Cleanup): Promise<ServerHandle> {
  const { info, send } = await startServerProcess<ChannelServerInfo>(SERVER_SCRIPT, args, nodeArgs, cleanup);
  const command = async (message: ServerCommand): Promise<ServerReply> => {
    const answer = JSON.parse(await send(message)) as ServerReply;
    if (!answer.ok) throw new Error(`server: ${message.cmd} failed: ${answer.error ?? 'no reason given'}`);
    return answer;
  };
  return { info, command };
}

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly quick: boolean;
  readonly timing: Timing;
  readonly tlsKey: TlsKeyType;
  readonly channelPattern: 'xx' | 'ik';
  readonly phases: readonly PhaseSpec[];
  readonly modes: readonly ModeId[];
  readonly serverNodeArgs: string[];
  /** Directory for CPU profiles of each measured slice (client and server); null: no profiling. */
  readonly profile: string | null;
  /** Where to write the results; null: a narrowed run that writes none. */
  readonly out: string | null;
  readonly json: boolean;
}

function list<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T[] | null {
  if (value === undefined) return null;
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new UsageError(`--${flag}: unknown "${item}"; choose from ${allowed.join(', ')}`);
  }
  return items as T[];
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
        'channel-pattern': { type: 'string', default: 'ik' },
        only: { type: 'string' },
        modes: { type: 'string' },
        'warmup-ms': { type: 'string' },
        'measure-ms': { type: 'string' },
        rounds: { type: 'string' },
        'server-node-arg': { type: 'string', multiple: true, default: [] },
        profile: { type: 'string' },
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
  const channelPattern = parsed['channel-pattern'];
  if (channelPattern !== 'ik' && channelPattern !== 'xx') throw new UsageError(`--channel-pattern must be ik or xx, got "${channelPattern}"`);
  const only = list('only', parsed.only, PHASE_IDS);
  const modes = list('modes', parsed.modes, MODE_IDS);
  const base = parsed.quick ? QUICK : FULL;
  const override = {
    warmupMs: positiveInt('warmup-ms', parsed['warmup-ms']),
    measureMs: positiveInt('measure-ms', parsed['measure-ms']),
    rounds: positiveInt('rounds', parsed.rounds),
  };
  const timing: Timing = {
    warmupMs: override.warmupMs ?? base.warmupMs,
    measureMs: override.measureMs ?? base.measureMs,
    rounds: override.rounds ?? base.rounds,
  };
  const narrowed = only !== null || modes !== null || parsed.profile !== undefined || Object.values(override).some((v) => v !== undefined);
  return {
    quick: parsed.quick,
    timing,
    tlsKey: tlsKey as TlsKeyType,
    channelPattern,
    phases: only === null ? PHASES : PHASES.filter((p) => only.includes(p.id)),
    modes: modes ?? MODE_IDS,
    serverNodeArgs: parsed['server-node-arg'],
    profile: parsed.profile === undefined ? null : resolve(parsed.profile),
    out: parsed.out ?? (narrowed ? null : join(RESULTS_DIR, 'channel.json')),
    json: parsed.json,
  };
}

/** The modes measured in a phase: all four for new connections, one Themis pattern on a long-lived channel. */
function modesFor(phase: PhaseSpec, options: Options): ModeId[] {
  const themis: ModeId[] = phase.fresh ? ['xx', 'ik'] : [options.channelPattern];
  return (['tcp', 'tls', ...themis] as ModeId[]).filter((m) => options.modes.includes(m));
}

// ---------------------------------------------------------------------------------------------
// Results

const RESULT_KEY: Record<ModeId, string> = { tcp: 'tcp', tls: 'tls', xx: 'themisXX', ik: 'themisIK' };
const PHASE_KEY: Record<PhaseId, string> = { hs1: 'handshakes', hs16: 'handshakes16', first: 'firstResponse', rr1: 'rr1', rr64: 'rr64', bulk: 'bulk' };

function figures(phase: PhaseId, cell: Cell): Record<string, unknown> {
  return { ...phaseFigures(phase, cell), cpu: cell.cpu };
}

function phaseFigures(phase: PhaseId, cell: Cell): Record<string, unknown> {
  const lat = cell.latency.summary();
  const rounds = cell.roundRates.map((r) => round(r));
  switch (phase) {
    case 'hs1':
    case 'hs16':
      return {
        perSec: round(cell.perSec),
        concurrency: phase === 'hs1' ? 1 : HANDSHAKE_CONCURRENCY,
        handshakeP50Ms: round(lat.p50Ms),
        handshakeP99Ms: round(lat.p99Ms),
        connections: cell.ops,
        roundsPerSec: rounds,
      };
    case 'first':
      return { p50Ms: round(lat.p50Ms), p99Ms: round(lat.p99Ms), meanMs: round(lat.meanMs), samples: lat.samples, requestBytes: RR_BYTES };
    case 'rr1':
    case 'rr64':
      return {
        perSec: round(cell.perSec),
        p50Ms: round(lat.p50Ms),
        p99Ms: round(lat.p99Ms),
        meanMs: round(lat.meanMs),
        requests: cell.ops,
        inFlight: phase === 'rr1' ? 1 : RR_IN_FLIGHT,
        requestBytes: RR_BYTES,
        roundsPerSec: rounds,
      };
    case 'bulk':
      return {
        mbPerSec: round(cell.mbPerSec),
        messagesPerSec: round(cell.perSec),
        p50Ms: round(lat.p50Ms),
        messageBytes: BULK_BYTES,
        inFlight: BULK_IN_FLIGHT,
        roundsMBPerSec: cell.roundMBps.map((r) => round(r)),
      };
  }
}

type CellMap = Map<PhaseId, Map<ModeId, Cell>>;

interface Target {
  readonly ratio: string;
  readonly better: 'higher' | 'lower';
  readonly bound: number;
}
const TARGETS: readonly Target[] = [
  { ratio: 'handshakeXX_vs_tls', better: 'higher', bound: 2 },
  { ratio: 'handshakeIK_vs_tls', better: 'higher', bound: 2 },
  { ratio: 'handshake16XX_vs_tls', better: 'higher', bound: 2 },
  { ratio: 'handshake16IK_vs_tls', better: 'higher', bound: 2 },
  { ratio: 'firstResponseIK_vs_tls', better: 'lower', bound: 0.5 },
  { ratio: 'rr1_vs_tls', better: 'higher', bound: 1 },
  { ratio: 'rr1_vs_plain', better: 'higher', bound: 0.8 },
  { ratio: 'rr64_vs_tls', better: 'higher', bound: 1 },
  { ratio: 'rr64_vs_plain', better: 'higher', bound: 0.8 },
  { ratio: 'bulk_vs_tls', better: 'higher', bound: 0.9 },
];

function computeRatios(cells: CellMap, options: Options): Record<string, number | null> {
  const value = (phase: PhaseId, mode: ModeId): number | null => {
    const cell = cells.get(phase)?.get(mode);
    if (cell === undefined || cell.ops === 0) return null;
    if (phase === 'first') return cell.latency.summary().p50Ms;
    if (phase === 'bulk') return cell.mbPerSec;
    return cell.perSec;
  };
  const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : round(a / b));
  const ch = options.channelPattern;
  return {
    handshakeXX_vs_tls: ratio(value('hs1', 'xx'), value('hs1', 'tls')),
    handshakeIK_vs_tls: ratio(value('hs1', 'ik'), value('hs1', 'tls')),
    handshake16XX_vs_tls: ratio(value('hs16', 'xx'), value('hs16', 'tls')),
    handshake16IK_vs_tls: ratio(value('hs16', 'ik'), value('hs16', 'tls')),
    handshakeXX_vs_plain: ratio(value('hs1', 'xx'), value('hs1', 'tcp')),
    firstResponseIK_vs_tls: ratio(value('first', 'ik'), value('first', 'tls')),
    firstResponseXX_vs_tls: ratio(value('first', 'xx'), value('first', 'tls')),
    rr1_vs_tls: ratio(value('rr1', ch), value('rr1', 'tls')),
    rr1_vs_plain: ratio(value('rr1', ch), value('rr1', 'tcp')),
    rr64_vs_tls: ratio(value('rr64', ch), value('rr64', 'tls')),
    rr64_vs_plain: ratio(value('rr64', ch), value('rr64', 'tcp')),
    bulk_vs_tls: ratio(value('bulk', ch), value('bulk', 'tls')),
    bulk_vs_plain: ratio(value('bulk', ch), value('bulk', 'tcp')),
  };
}

function judge(ratios: Record<string, number | null>): Record<string, { value: number | null; target: string; met: boolean | null }> {
  const out: Record<string, { value: number | null; target: string; met: boolean | null }> = {};
  for (const t of TARGETS) {
    const v = ratios[t.ratio] ?? null;
    out[t.ratio] = {
      value: v,
      target: `${t.better === 'higher' ? '>=' : '<='} ${t.bound}`,
      met: v === null ? null : t.better === 'higher' ? v >= t.bound : v <= t.bound,
    };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Table

const fmtInt = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const fmtPercent = (v: number | null): string => (v === null ? '—' : v.toFixed(0));
const fmtMs = (v: number): string => (!Number.isFinite(v) ? '—' : v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v.toFixed(1));

function renderTable(cells: CellMap, modes: readonly Mode[], ratios: Record<string, number | null>, options: Options): string {
  const header = ['', ...modes.map((m) => m.label)];
  const rows: string[][] = [];
  const cell = (phase: PhaseId, mode: ModeId): Cell | undefined => {
    const c = cells.get(phase)?.get(mode);
    return c === undefined || c.ops === 0 ? undefined : c;
  };
  const row = (label: string, phase: PhaseId, show: (c: Cell) => string): void => {
    if (!cells.has(phase)) return;
    rows.push([label, ...modes.map((m) => {
      const c = cell(phase, m.id);
      return c === undefined ? '—' : show(c);
    })]);
  };
  row('handshakes/s, sequential', 'hs1', (c) => fmtInt(c.perSec));
  row(`handshakes/s, ${HANDSHAKE_CONCURRENCY} concurrent`, 'hs16', (c) => fmtInt(c.perSec));
  row('first response p50 (ms)', 'first', (c) => fmtMs(c.latency.summary().p50Ms));
  row('1 KiB req/resp/s, 1 in flight', 'rr1', (c) => fmtInt(c.perSec));
  row('  p50 / p99 (ms)', 'rr1', (c) => `${fmtMs(c.latency.summary().p50Ms)} / ${fmtMs(c.latency.summary().p99Ms)}`);
  row(`1 KiB req/resp/s, ${RR_IN_FLIGHT} in flight`, 'rr64', (c) => fmtInt(c.perSec));
  row('  p50 / p99 (ms)', 'rr64', (c) => `${fmtMs(c.latency.summary().p50Ms)} / ${fmtMs(c.latency.summary().p99Ms)}`);
  row(`bulk MB/s, 1 MiB x ${BULK_IN_FLIGHT} in flight`, 'bulk', (c) => fmtInt(c.mbPerSec));
  const cpuStart = rows.length;
  for (const phase of PHASES) {
    row(phase.title, phase.id, (c) => `${fmtPercent(c.cpu.clientPercent)} / ${fmtPercent(c.cpu.serverPercent)} / ${fmtPercent(c.cpu.otherPercent)}`);
  }

  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = [line(header), rule, ...rows.slice(0, cpuStart).map(line)];
  out.push('', 'CPU, % of one core: client / server / rest of the machine', rule, ...rows.slice(cpuStart).map(line));
  const busiest = Math.max(0, ...[...cells.values()].flatMap((m) => [...m.values()].map((c) => c.cpu.otherPercent ?? 0)));
  if (busiest >= BUSY_MACHINE_PERCENT) {
    out.push(`warning: other processes used up to ${busiest.toFixed(0)}% of a core during a measurement; absolute figures are low and noisy, ratios less so (modes alternate)`);
  }
  const pattern = options.channelPattern.toUpperCase();
  if (!PHASES.every((p) => p.fresh || !cells.has(p.id)) && options.modes.includes(options.channelPattern)) {
    out.push(`(req/resp and bulk: the Themis ${pattern} column is one channel dialled with ${pattern}; the channel is the same after either handshake)`);
  }
  out.push('', 'ratios (Themis ÷ baseline, same run)          value   target');
  for (const [name, value] of Object.entries(ratios)) {
    const target = TARGETS.find((t) => t.ratio === name);
    const verdict = target === undefined || value === null ? '' : (target.better === 'higher' ? value >= target.bound : value <= target.bound) ? 'met' : 'NOT MET';
    const bound = target === undefined ? '' : `${target.better === 'higher' ? '>=' : '<='} ${target.bound}`;
    out.push(`  ${name.padEnd(42)} ${value === null ? '—'.padStart(6) : value.toFixed(2).padStart(6)}   ${bound.padEnd(6)} ${verdict}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Phases

interface Harness {
  readonly timing: Timing;
  readonly progress: Progress;
  modeOf(id: ModeId): Mode;
  serverCpu(): Promise<NodeJS.CpuUsage>;
  command(message: ServerCommand): Promise<ServerReply>;
  readonly profiler: SliceProfiler | null;
  readonly profileDir: string | null;
}

/** Warms up every mode, then measures `timing.rounds` rounds, rotating the order of the modes each round. */
async function runPhase(phase: PhaseSpec, ids: readonly ModeId[], h: Harness, rrPayload: Buffer, bulkPayload: Buffer): Promise<Map<ModeId, Cell>> {
  const cells = new Map<ModeId, Cell>();
  const runners = new Map<ModeId, Runner>();
  const runnerOf = (id: ModeId): Runner => runners.get(id) as Runner;
  try {
    for (const id of ids) runners.set(id, await makeRunner(phase.id, h.modeOf(id), rrPayload, bulkPayload));
    for (const id of ids) {
      h.progress.step(`${phase.title} · ${h.modeOf(id).label} · warm-up`);
      await runnerOf(id).slice(h.timing.warmupMs);
      h.progress.tick();
    }
    for (let r = 0; r < h.timing.rounds; r++) {
      // No mode always follows the same one, so drift and after-effects spread over all of them.
      const order = ids.map((_, i) => ids[(i + r) % ids.length] as ModeId);
      for (const id of order) {
        h.progress.step(`${phase.title} · ${h.modeOf(id).label} · round ${r + 1}/${h.timing.rounds}`);
        const profileBase = h.profileDir === null ? null : join(h.profileDir, `${phase.id}-${id}-r${r + 1}`);
        const { slice, cpu } = await measureSlice(runnerOf(id), h, profileBase);
        let cell = cells.get(id);
        if (cell === undefined) cells.set(id, (cell = new Cell()));
        cell.add(slice, cpu);
        h.progress.tick();
      }
    }
  } finally {
    await Promise.allSettled([...runners.values()].map((runner) => runner.dispose()));
  }
  return cells;
}

/** One measured slice with the CPU time of both processes and of the rest of the machine (and profiles when asked). */
async function measureSlice(runner: Runner, h: Harness, profileBase: string | null): Promise<{ slice: Slice; cpu: CpuSpent }> {
  if (h.profiler !== null && profileBase !== null) await Promise.all([h.profiler.start(), h.command({ cmd: 'profile-start' })]);
  const serverBefore = await h.serverCpu();
  const machineBefore = machineBusyMs();
  const clientBefore = process.cpuUsage();
  const slice = await runner.slice(h.timing.measureMs);
  const clientSpent = process.cpuUsage(clientBefore);
  const machineSpent = machineBusyMs() - machineBefore;
  const serverAfter = await h.serverCpu();
  if (h.profiler !== null && profileBase !== null) {
    await Promise.all([h.profiler.stop(`${profileBase}-client.cpuprofile`), h.command({ cmd: 'profile-stop', path: `${profileBase}-server.cpuprofile` })]);
  }
  const clientMs = (clientSpent.user + clientSpent.system) / 1000;
  const serverMs = (serverAfter.user + serverAfter.system - serverBefore.user - serverBefore.system) / 1000;
  return { slice, cpu: { clientMs, serverMs, otherMs: machineSpent - clientMs - serverMs } };
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
    const wanted = new Set(options.phases.flatMap((p) => modesFor(p, options)));
    const needThemis = wanted.has('xx') || wanted.has('ik');

    let tls: TlsMaterial | null = null;
    if (wanted.has('tls')) {
      tls = generateTlsMaterial(options.tlsKey);
      const dir = tls.dir;
      cleanup.add('remove the temp certificate directory', () => rmSync(dir, { recursive: true, force: true }));
    }
    const serverArgs = [...(tls === null ? [] : ['--tls-dir', tls.dir]), ...(needThemis ? [] : ['--no-themis'])];
    const { info: server, command } = await startServer(serverArgs, options.serverNodeArgs, cleanup);

    const modes = new Map<ModeId, Mode>();
    modes.set('tcp', tcpMode(server.tcpPort));
    if (tls !== null && server.tlsPort !== null) modes.set('tls', tlsMode(server.tlsPort, tls));
    if (needThemis) {
      if (server.themis === null) throw new Error('the server process did not start a Themis peer');
      const themis = await themisModes(server.themis);
      cleanup.add('close the Themis client peer', () => themis.close());
      modes.set('xx', themis.xx);
      modes.set('ik', themis.ik);
    }
    const modeOf = (id: ModeId): Mode => {
      const mode = modes.get(id);
      if (mode === undefined) throw new Error(`mode ${id} is not available`);
      return mode;
    };

    // Payloads: random bytes, so nothing on the path can compress them.
    const rrPayload = randomBytes(RR_BYTES);
    const bulkPayload = randomBytes(BULK_BYTES);
    const negotiated = await sanityCheck([...wanted].map(modeOf), rrPayload, bulkPayload);
    const setupMs = performance.now() - setupStart;

    const { timing } = options;
    const serverCpu = async (): Promise<NodeJS.CpuUsage> => {
      const reply = await command({ cmd: 'cpu' });
      if (reply.cpu === undefined) throw new Error('the server process did not report its CPU time');
      return reply.cpu;
    };
    let profiler: SliceProfiler | null = null;
    if (options.profile !== null) {
      mkdirSync(options.profile, { recursive: true });
      const session = new SliceProfiler();
      profiler = session;
      cleanup.add('close the profiler', () => session.close());
    }
    const steps = options.phases.reduce((n, p) => n + modesFor(p, options).length * (1 + timing.rounds), 0);
    progress = new Progress('channel', steps);
    const harness: Harness = { timing, progress, modeOf, serverCpu, command, profiler, profileDir: options.profile };
    const cells: CellMap = new Map();
    const phaseMs: Partial<Record<PhaseId, number>> = {};
    for (const phase of options.phases) {
      const phaseStart = performance.now();
      cells.set(phase.id, await runPhase(phase, modesFor(phase, options), harness, rrPayload, bulkPayload));
      phaseMs[phase.id] = performance.now() - phaseStart;
    }
    progress.stop();

    const ratios = computeRatios(cells, options);
    const results: Record<string, Record<string, unknown>> = {};
    for (const [phase, perMode] of cells) {
      for (const [mode, cell] of perMode) (results[RESULT_KEY[mode]] ??= { label: modeOf(mode).label })[PHASE_KEY[phase]] = figures(phase, cell);
    }
    const document = {
      bench: 'channel',
      timestamp,
      quick: options.quick,
      machine: { ...machineInfo(), loadAverage1mAtStart: loadAtStart },
      config: {
        tls: `TLS 1.3, mutual authentication, ${options.tlsKey === 'ed25519' ? 'Ed25519' : 'ECDSA P-256'} certificates from a throwaway CA, no session resumption (negotiated parameters below)`,
        tlsKey: options.tlsKey,
        negotiated: Object.fromEntries(Object.entries(negotiated).map(([id, v]) => [RESULT_KEY[id as ModeId], v])),
        themisChannelPattern: options.channelPattern.toUpperCase(),
        themisNote: `rr1, rr64 and bulk for Themis run on one channel dialled with ${options.channelPattern.toUpperCase()} (results under ${RESULT_KEY[options.channelPattern]})`,
        rrBytes: RR_BYTES,
        rrInFlight: RR_IN_FLIGHT,
        bulkBytes: BULK_BYTES,
        bulkInFlight: BULK_IN_FLIGHT,
        handshakeConcurrency: HANDSHAKE_CONCURRENCY,
        mbUnit: '10^6 bytes of payload',
        serverProcess: 'separate process (bench/channel-server.ts)',
        ...timing,
      },
      results,
      ratios,
      ratioNote: 'Themis figure ÷ baseline figure from this run; firstResponse* compares times (lower is better), all others rates (higher is better)',
      targets: judge(ratios),
      durationsMs: {
        setup: Math.round(setupMs),
        ...Object.fromEntries(Object.entries(phaseMs).map(([k, v]) => [k, Math.round(v)])),
        total: Math.round(performance.now() - started),
      },
    };

    const table = renderTable(cells, [...modes.values()].filter((m) => wanted.has(m.id)), ratios, options);
    if (options.json) {
      process.stderr.write(`${table}\n`);
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    } else {
      process.stdout.write(`\nchannel bench — ${document.machine.cpus} CPUs, Node ${document.machine.node}${options.quick ? ', --quick' : ''}\n\n${table}\n`);
    }
    if (options.profile !== null) process.stderr.write(`\nCPU profiles in ${options.profile}\n`);
    if (options.out !== null) process.stderr.write(`\nwrote ${writeJson(options.out, document)} (${(document.durationsMs.total / 1000).toFixed(1)} s)\n`);
  } finally {
    progress?.stop();
    await cleanup.run();
  }
}

/** One exchange per mode before timing anything: a broken mode fails here with its own message. */
async function sanityCheck(modes: Mode[], rrPayload: Buffer, bulkPayload: Buffer): Promise<Partial<Record<ModeId, Record<string, string>>>> {
  const negotiated: Partial<Record<ModeId, Record<string, string>>> = {};
  for (const mode of modes) {
    try {
      const conn = await mode.connect();
      const reply = await conn.echo(rrPayload);
      if (!reply.equals(rrPayload)) throw new Error('the echo differs from the request');
      await conn.sink(bulkPayload);
      negotiated[mode.id] = conn.describe();
      await conn.close();
    } catch (err) {
      throw new Error(`${mode.label}: check exchange failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  return negotiated;
}
