/**
 * MicroBank load test (MiSSFIRE, SOSE 2018) on the same application three ways, in one run:
 *
 *   npm run bench -- microbank [--clients 50] [--seconds S] [--quick] [--help]
 *
 * The same function modules (examples/microbank/services/*.js), the same manifest and the same
 * gateway (the runtime's createGateway) serve every mode; only the service-to-service path differs
 * (bench/lib/microbank-modes.ts):
 *   plain     every service a plain Node HTTP server process, no security (the baseline)
 *   mtls-jwt  MiSSFIRE's design: a CA issuing each service a certificate at start, mTLS on every
 *             hop, a JWT checked by every service per request
 *   themis    `startApp`: per-instance identities in isolates, Noise channel, owner-signed
 *             policy, principal tokens
 * Every client creates two users, each with an account, logs them in and pays alternately A→B,
 * B→A, one payment at a time, each with its own Idempotency-Key (bench/lib/microbank-load.ts).
 * The three applications run side by side; after a warm-up of each, the measured time of each
 * mode is split into rounds that rotate the order of the modes, so the machine's drift lands on
 * every mode alike. Then each mode's stores are audited with the app's own audit
 * (examples/microbank/audit.mjs, through its unrouted audit handlers; bench/lib/microbank-audit.ts):
 * balances conserved, every acknowledged payment recorded exactly once.
 *
 * Writes bench/results/microbank.json: `modes` {plain, mtls-jwt, themis} each with
 * `paymentsPerSec`, `latencyMs` {p50, p99}, `failed`, `conserved`, and `ratios`
 * {themis_vs_plain, themis_vs_mtls_jwt} (payments/s ÷ payments/s). Goals: ≥ 0.9 and ≥ 1.2.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Cleanup, Progress, REPO_ROOT, RESULTS_DIR, UsageError, machineBusyMs, machineInfo, parseBenchArgs, positiveInt, runStart, writeJson, type BenchContext } from './lib/bench.js';
import { TLS_KEY_TYPES, type TlsKeyType } from './lib/certs.js';
import { auditStores, type Audit } from './lib/microbank-audit.js';
import { GatewayClient, drive, setUpClients, type ClientState, type LoadWindow } from './lib/microbank-load.js';
import { MICROBANK_MODE_IDS, MODE_LABELS, startBaseline, startThemis, type MicrobankModeId, type RunningMode } from './lib/microbank-modes.js';
import { LatencyRecorder, round } from './lib/stats.js';

export const description = "MiSSFIRE's MicroBank load test: payments/s and p50/p99 over plain HTTP, mTLS + JWT, and Themis";

const APP_DIR = join(REPO_ROOT, 'examples', 'microbank');
const SERVICES = ['users', 'accounts', 'transactions', 'payment'] as const;
/** Goals of issue #5: Themis payments/s ÷ plain ≥ 0.9, ÷ mtls-jwt ≥ 1.2. */
const GOALS = { themis_vs_plain: 0.9, themis_vs_mtls_jwt: 1.2 } as const;
const BUSY_MACHINE_PERCENT = 25;

interface Timing {
  readonly clients: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
  readonly rounds: number;
}
const FULL: Timing = { clients: 50, warmupSeconds: 5, seconds: 30, rounds: 3 };
const QUICK: Timing = { clients: 20, warmupSeconds: 1, seconds: 4, rounds: 2 };

const USAGE = `usage: npm run bench -- microbank [options]

  --clients N              concurrent clients, each with two users paying each other (default 50; --quick 20)
  --seconds S              measured seconds per mode (default 30; --quick 4), split into rounds
  --warmup S               warm-up seconds per mode before measuring (default 5; --quick 1)
  --rounds N               rounds per mode, the order of the modes rotating (default 3; --quick 2)
  --quick                  short run (under a minute) with the same output
  --modes LIST             comma-separated subset of ${MICROBANK_MODE_IDS.join(',')} (writes no file unless --out)
  --tls-key ed25519|p256   certificate keys of the mtls-jwt mode (default ed25519)
  --profile DIR            write a V8 CPU profile of every server process into DIR (node --cpu-prof;
                           summarise with bench/tools/cpuprofile-top.ts; writes no file unless --out)
  --out FILE               results file (default bench/results/microbank.json)
  --json                   print the results JSON on stdout instead of the table`;

interface Options {
  readonly quick: boolean;
  readonly timing: Timing;
  readonly modes: readonly MicrobankModeId[];
  readonly tlsKey: TlsKeyType;
  readonly profile: string | null;
  readonly out: string | null;
  readonly json: boolean;
}

function positive(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number, got "${value}"`);
  return n;
}

function parseOptions(argv: readonly string[]): Options | null {
  const parsed = parseBenchArgs(
    argv,
    {
      quick: { type: 'boolean', default: false },
      clients: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      modes: { type: 'string' },
      'tls-key': { type: 'string', default: 'ed25519' },
      profile: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (parsed === null) return null;
  const tlsKey = parsed['tls-key'];
  if (!TLS_KEY_TYPES.includes(tlsKey as TlsKeyType)) throw new UsageError(`--tls-key must be one of ${TLS_KEY_TYPES.join(', ')}, got "${tlsKey}"`);
  const modes = parsed.modes === undefined ? MICROBANK_MODE_IDS : parsed.modes.split(',').map((m) => m.trim());
  for (const mode of modes) if (!MICROBANK_MODE_IDS.includes(mode as MicrobankModeId)) throw new UsageError(`--modes: unknown mode "${mode}"; use ${MICROBANK_MODE_IDS.join(', ')}`);
  const base = parsed.quick ? QUICK : FULL;
  return {
    quick: parsed.quick,
    timing: {
      clients: positiveInt('clients', parsed.clients) ?? base.clients,
      seconds: positive('seconds', parsed.seconds) ?? base.seconds,
      warmupSeconds: positive('warmup', parsed.warmup) ?? base.warmupSeconds,
      rounds: positiveInt('rounds', parsed.rounds) ?? base.rounds,
    },
    modes: modes as MicrobankModeId[],
    tlsKey: tlsKey as TlsKeyType,
    profile: parsed.profile ?? null,
    out: parsed.out ?? (parsed.modes === undefined && parsed.profile === undefined ? join(RESULTS_DIR, 'microbank.json') : null),
    json: parsed.json,
  };
}

// ---------------------------------------------------------------------------------------------
// Per mode

class ModeCell {
  payments = 0;
  failed = 0;
  elapsedMs = 0;
  serverCpuMs = 0;
  clientCpuMs = 0;
  otherCpuMs = 0;
  readonly latency = new LatencyRecorder();
  readonly rounds: { paymentsPerSec: number | null; p50: number | null; p99: number | null; failed: number }[] = [];
  warmup: { payments: number; failed: number } = { payments: 0, failed: 0 };
  clientSetupMs = 0;

  add(window: LoadWindow, cpu: { serverMs: number; clientMs: number; otherMs: number }): void {
    this.payments += window.payments;
    this.failed += window.failed;
    this.elapsedMs += window.elapsedMs;
    this.latency.addAll(window.latency);
    this.serverCpuMs += cpu.serverMs;
    this.clientCpuMs += cpu.clientMs;
    this.otherCpuMs += cpu.otherMs;
    const s = window.latency.summary();
    this.rounds.push({ paymentsPerSec: round(window.payments / (window.elapsedMs / 1000)), p50: round(s.p50Ms), p99: round(s.p99Ms), failed: window.failed });
  }

  get paymentsPerSec(): number {
    return this.payments / (this.elapsedMs / 1000);
  }
}

interface ModeRun {
  readonly mode: RunningMode;
  readonly gw: GatewayClient;
  readonly clients: ClientState[];
  readonly cell: ModeCell;
}

async function measureWindow(run: ModeRun, runId: string, ms: number): Promise<void> {
  const serverBefore = await run.mode.cpuMs();
  const machineBefore = machineBusyMs();
  const clientBefore = process.cpuUsage();
  const window = await drive(run.gw, run.clients, runId, ms);
  const client = process.cpuUsage(clientBefore);
  const machineMs = machineBusyMs() - machineBefore;
  const serverMs = (await run.mode.cpuMs()) - serverBefore;
  const clientMs = (client.user + client.system) / 1000;
  run.cell.add(window, { serverMs, clientMs, otherMs: Math.max(0, machineMs - serverMs - clientMs) });
}

function failures(clients: readonly ClientState[]): Record<string, number> {
  const all: Record<string, number> = {};
  for (const client of clients) for (const [reason, n] of client.failures) all[reason] = (all[reason] ?? 0) + n;
  return all;
}

// ---------------------------------------------------------------------------------------------
// Output

const fmtInt = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : Math.round(v).toLocaleString('en-US'));
const fmtMs = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : v < 10 ? v.toFixed(2) : v.toFixed(1));
const yes = (v: boolean): string => (v ? 'yes' : 'NO');

interface ModeResult {
  readonly label: string;
  readonly paymentsPerSec: number | null;
  readonly latencyMs: { p50: number | null; p99: number | null; mean: number | null; max: number | null };
  readonly payments: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly conserved: boolean;
  readonly exactlyOnce: boolean;
  readonly ledgerConsistent: boolean;
  readonly audit: Audit;
  readonly cpu: { serverMsPerPayment: number | null; serverPercent: number | null; clientPercent: number | null; otherPercent: number | null };
  readonly processes: number;
  readonly setupMs: number;
  readonly clientSetupMs: number;
  readonly warmup: { payments: number; failed: number };
  readonly rounds: ModeCell['rounds'];
  readonly details: Record<string, unknown>;
}

function renderTable(
  ids: readonly MicrobankModeId[],
  results: Record<string, ModeResult>,
  ratios: Record<string, number | null>,
  perRound: Record<string, (number | null)[]>,
  cpuRatios: Record<string, number | null>,
): string {
  const header = ['', ...ids.map((id) => MODE_LABELS[id])];
  const rows: string[][] = [];
  const row = (label: string, show: (r: ModeResult) => string): void => {
    rows.push([label, ...ids.map((id) => show(results[id] as ModeResult))]);
  };
  row('payments/s', (r) => fmtInt(r.paymentsPerSec));
  row('p50 (ms)', (r) => fmtMs(r.latencyMs.p50));
  row('p99 (ms)', (r) => fmtMs(r.latencyMs.p99));
  row('payments / failed', (r) => `${fmtInt(r.payments)} / ${fmtInt(r.failed)}`);
  row('conserved / exactly once', (r) => `${yes(r.conserved)} / ${yes(r.exactlyOnce && r.ledgerConsistent)}`);
  row('server CPU ms per payment', (r) => fmtMs(r.cpu.serverMsPerPayment));
  row('CPU % server/client/other', (r) => `${fmtInt(r.cpu.serverPercent)} / ${fmtInt(r.cpu.clientPercent)} / ${fmtInt(r.cpu.otherPercent)}`);
  row('processes, set-up (ms)', (r) => `${r.processes}, ${fmtInt(r.setupMs)}`);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line), ''];
  out.push('ratios (Themis payments/s ÷ baseline payments/s, same run):');
  for (const [name, value] of Object.entries(ratios)) {
    const goal = GOALS[name as keyof typeof GOALS];
    const rounds = (perRound[name] ?? []).map((v) => (v === null ? '—' : v.toFixed(2))).join(', ');
    out.push(`  ${name.padEnd(20)} ${value === null ? '—' : value.toFixed(2)}   (goal >= ${goal}: ${value === null ? '—' : value >= goal ? 'met' : 'NOT MET'}; per round: ${rounds})`);
  }
  out.push('server CPU per payment, Themis ÷ baseline (lower is better; less sensitive to other load on the machine):');
  for (const [name, value] of Object.entries(cpuRatios)) out.push(`  ${name.padEnd(20)} ${value === null ? '—' : value.toFixed(2)}`);
  for (const id of ids) {
    const r = results[id] as ModeResult;
    if (r.audit.problems.length > 0) out.push(`${MODE_LABELS[id]}: audit problems: ${r.audit.problems.slice(0, 5).join('; ')}`);
    if (r.failed > 0) out.push(`${MODE_LABELS[id]}: failed payments by reason: ${JSON.stringify(r.failures)}`);
  }
  const busiest = Math.max(0, ...ids.map((id) => (results[id] as ModeResult).cpu.otherPercent ?? 0));
  if (busiest >= BUSY_MACHINE_PERCENT) {
    out.push(`warning: other processes used up to ${busiest.toFixed(0)}% of a core during a measurement; absolute figures are noisy, the modes alternate so comparisons less so`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The run

async function startMode(id: MicrobankModeId, options: Options, cleanup: Cleanup): Promise<RunningMode> {
  const nodeArgs = options.profile === null ? [] : ['--cpu-prof', '--cpu-prof-dir', join(options.profile, id)];
  return id === 'themis' ? startThemis(APP_DIR, cleanup, nodeArgs) : startBaseline(id, APP_DIR, SERVICES, options.tlsKey, cleanup, nodeArgs);
}

export async function run(context: BenchContext): Promise<void> {
  const options = parseOptions(context.argv);
  if (options === null) return;
  const { started, timestamp, loadAtStart } = runStart();
  const { timing } = options;
  const cleanup = new Cleanup();
  let progress: Progress | null = null;
  try {
    progress = new Progress('microbank', options.modes.length * (3 + timing.rounds + 1));
    const runs = new Map<MicrobankModeId, ModeRun>();
    const runId = randomBytes(3).toString('hex');
    // Set-up, one mode at a time so the set-up times do not share the cores.
    for (const id of options.modes) {
      progress.step(`${MODE_LABELS[id]} · start`);
      const mode = await startMode(id, options, cleanup);
      const gw = new GatewayClient(mode.gateway, timing.clients);
      cleanup.add(`close the ${id} client`, () => gw.close());
      progress.tick();
      progress.step(`${MODE_LABELS[id]} · ${timing.clients} clients sign up`);
      const cell = new ModeCell();
      const t0 = performance.now();
      const clients = await setUpClients(gw, runId, timing.clients);
      cell.clientSetupMs = performance.now() - t0;
      runs.set(id, { mode, gw, clients, cell });
      progress.tick();
    }
    for (const [id, r] of runs) {
      progress.step(`${MODE_LABELS[id]} · warm-up`);
      const window = await drive(r.gw, r.clients, runId, timing.warmupSeconds * 1000);
      r.cell.warmup = { payments: window.payments, failed: window.failed };
      progress.tick();
    }
    const windowMs = (timing.seconds * 1000) / timing.rounds;
    const ids = [...runs.keys()];
    const measureStart = performance.now();
    for (let round = 0; round < timing.rounds; round++) {
      for (let i = 0; i < ids.length; i++) {
        const id = ids[(i + round) % ids.length] as MicrobankModeId;
        progress.step(`${MODE_LABELS[id]} · round ${round + 1}/${timing.rounds}`);
        await measureWindow(runs.get(id) as ModeRun, runId, windowMs);
        progress.tick();
      }
    }
    const measureMs = performance.now() - measureStart;

    const results: Record<string, ModeResult> = {};
    for (const [id, r] of runs) {
      progress.step(`${MODE_LABELS[id]} · audit`);
      const acked = r.clients.flatMap((c) => c.acked);
      const audit = await auditStores(APP_DIR, (service) => r.mode.kvPath(service), acked);
      const s = r.cell.latency.summary();
      const percent = (ms: number): number | null => round((100 * ms) / r.cell.elapsedMs, 3);
      results[id] = {
        label: MODE_LABELS[id],
        paymentsPerSec: round(r.cell.paymentsPerSec),
        latencyMs: { p50: round(s.p50Ms), p99: round(s.p99Ms), mean: round(s.meanMs), max: round(s.maxMs) },
        payments: r.cell.payments,
        failed: r.cell.failed,
        failures: failures(r.clients),
        conserved: audit.conserved,
        exactlyOnce: audit.exactlyOnce,
        ledgerConsistent: audit.ledgerConsistent,
        audit,
        cpu: {
          serverMsPerPayment: round(r.cell.serverCpuMs / r.cell.payments),
          serverPercent: percent(r.cell.serverCpuMs),
          clientPercent: percent(r.cell.clientCpuMs),
          otherPercent: percent(r.cell.otherCpuMs),
        },
        processes: r.mode.processes,
        setupMs: Math.round(r.mode.setupMs),
        clientSetupMs: Math.round(r.cell.clientSetupMs),
        warmup: r.cell.warmup,
        rounds: r.cell.rounds,
        details: await r.mode.details(),
      };
      progress.tick();
    }
    progress.stop();

    const rate = (id: MicrobankModeId): number | null => results[id]?.paymentsPerSec ?? null;
    const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : round(a / b, 3));
    const ratios = { themis_vs_plain: ratio(rate('themis'), rate('plain')), themis_vs_mtls_jwt: ratio(rate('themis'), rate('mtls-jwt')) };
    const perRound = (id: MicrobankModeId): (number | null)[] => results[id]?.rounds.map((x) => x.paymentsPerSec) ?? [];
    const ratiosPerRound = {
      themis_vs_plain: perRound('themis').map((t, i) => ratio(t, perRound('plain')[i] ?? null)),
      themis_vs_mtls_jwt: perRound('themis').map((t, i) => ratio(t, perRound('mtls-jwt')[i] ?? null)),
    };
    const cpu = (id: MicrobankModeId): number | null => results[id]?.cpu.serverMsPerPayment ?? null;
    const cpuRatios = { themis_vs_plain: ratio(cpu('themis'), cpu('plain')), themis_vs_mtls_jwt: ratio(cpu('themis'), cpu('mtls-jwt')) };
    const document = {
      bench: 'microbank',
      timestamp,
      quick: options.quick,
      modes: results,
      ratios,
      ratiosPerRound,
      cpuPerPaymentRatios: cpuRatios,
      goals: Object.fromEntries(
        Object.entries(GOALS).map(([name, goal]) => {
          const value = ratios[name as keyof typeof ratios];
          return [name, { value, target: `>= ${goal}`, met: value === null ? null : value >= goal }];
        }),
      ),
      ratioNote: 'payments/s of Themis ÷ payments/s of the baseline; all modes measured in the same run, in rounds rotating the order. cpuPerPaymentRatios: CPU time of all the mode\'s server processes per payment, Themis ÷ baseline (lower is better)',
      machine: { ...machineInfo(), loadAverage1mAtStart: loadAtStart },
      config: {
        ...timing,
        app: 'examples/microbank (the same function modules and manifest in every mode)',
        workload: 'each client: two users, one account each, logged in; alternating payments of 1 cent A→B, B→A, one in flight, each with its own Idempotency-Key',
        gateway: "the runtime's createGateway in every mode; plain/mtls-jwt: its own process, invoke over the mode's transport; themis: inside startApp",
        plain: 'one Node HTTP/1.1 server process per service, keep-alive, no authentication; the principal as a JSON header',
        'mtls-jwt': `one Node HTTPS server process per service; a CA issues every service a certificate (${options.tlsKey === 'ed25519' ? 'Ed25519' : 'ECDSA P-256'}, openssl CLI) at start; TLS 1.3 with mutual authentication and keep-alive on every hop; the callee authorizes the caller's certificate against the manifest's calls; the caller signs a JWT for its callee with its certificate key, verified per request (jose)`,
        themis: "the runtime's startApp in one process (instances in isolated-vm isolates, per-instance identities and endorsements, Noise channels, trust-domain policy, principal tokens)",
        tlsKey: options.tlsKey,
        loadGenerator: 'this process, node:http keep-alive Agent with one socket per client',
      },
      durationsMs: { measure: Math.round(measureMs), total: Math.round(performance.now() - started) },
    };
    const table = renderTable(ids, results, ratios, ratiosPerRound, cpuRatios);
    if (options.json) {
      process.stderr.write(`${table}\n`);
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    } else {
      process.stdout.write(`\nmicrobank bench — ${document.machine.cpus} CPUs, Node ${document.machine.node}, ${timing.clients} clients${options.quick ? ', --quick' : ''}\n\n${table}\n`);
    }
    if (options.out !== null) process.stderr.write(`\nwrote ${writeJson(options.out, document)} (${(document.durationsMs.total / 1000).toFixed(1)} s)\n`);
  } finally {
    progress?.stop();
    await cleanup.run();
  }
}
