/**
 * `npm run fuzz -- --time SECONDS [--target NAME]… [--goal CASES] [--seed N] [--json]`
 *
 * Runs every fuzz target (or one) within the time budget and reports the cases executed per
 * target (the targets and the oracle: test/fuzz/harness.ts). The budget is split in two passes: a calibration slice (5%, evenly) measures each
 * target's rate; the rest goes first to the targets that need it to reach `--goal` cases
 * (default 100 000), slow ones sharing evenly what they cannot all have, and whatever the
 * goal leaves over is split evenly. Results go to bench/results/fuzz.json (and stdout with --json).
 * Exit code 1 when a target failed (the counterexample is printed), 2 on a usage error.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { progressBar } from '../../src/cli/progress.js';
import { runTarget, type FuzzTarget, type TargetReport } from './harness.js';
import { TARGETS } from './targets/index.js';

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'fuzz.json');
const CALIBRATION_SHARE = 0.05;
const MIN_SLICE_MS = 1000;

interface Totals {
  target: string;
  description: string;
  cases: number;
  rejected: number;
  ms: number;
  heapGrowthMiB: number | null;
  failure: string | null;
}

function usage(): string {
  return `usage: npm run fuzz -- --time SECONDS [--target NAME]… [--goal CASES] [--seed N] [--json]\n\ntargets:\n${TARGETS.map((t) => `  ${t.name.padEnd(20)} ${t.description}`).join('\n')}\n`;
}

/** Time per target (ms) for the second pass: water-filling towards `goal` cases, then an even split of the rest. */
export function allocate(rates: readonly number[], missing: readonly number[], budgetMs: number): number[] {
  const need = rates.map((rate, i) => (missing[i]! <= 0 ? 0 : rate > 0 ? (missing[i]! / rate) * 1000 : Infinity));
  const total = need.reduce((a, b) => a + b, 0);
  if (total <= budgetMs) {
    const extra = (budgetMs - total) / rates.length;
    return need.map((ms) => ms + extra);
  }
  // The level L with Σ min(need, L) = budget: targets that need less than L get what they need.
  const sorted = [...need].sort((a, b) => a - b);
  let left = budgetMs;
  let level = 0;
  for (let i = 0; i < sorted.length; i++) {
    const share = left / (sorted.length - i);
    if (sorted[i]! >= share) {
      level = share;
      break;
    }
    left -= sorted[i]!;
  }
  return need.map((ms) => Math.min(ms, level));
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { time: { type: 'string' }, target: { type: 'string', multiple: true }, goal: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(usage());
    return 0;
  }
  const seconds = Number(values.time ?? 60);
  const goal = Number(values.goal ?? 100_000);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  const unknown = (values.target ?? []).filter((name) => !TARGETS.some((t) => t.name === name));
  const targets = values.target === undefined ? TARGETS : TARGETS.filter((t) => values.target!.includes(t.name));
  if (!(seconds > 0) || !(goal > 0) || (seed !== undefined && !Number.isInteger(seed)) || unknown.length > 0) {
    process.stderr.write(`${unknown.length > 0 ? `unknown target ${unknown.join(', ')}\n` : ''}${usage()}`);
    return 2;
  }

  const budgetMs = seconds * 1000;
  const calibrationMs = Math.max(MIN_SLICE_MS, (budgetMs * CALIBRATION_SHARE) / targets.length);
  const totals: Totals[] = targets.map((t) => ({ target: t.name, description: t.description, cases: 0, rejected: 0, ms: 0, heapGrowthMiB: null, failure: null }));
  const bar = progressBar('fuzz');
  const tty = process.stderr.isTTY;
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) / 1000);

  const pass = async (index: number, target: FuzzTarget<any>, timeMs: number, phase: string): Promise<void> => {
    const sum = totals[index]!;
    if (sum.failure !== null || timeMs < 50) return;
    if (!tty) process.stderr.write(`fuzz: ${phase} ${target.name} for ${Math.round(timeMs / 1000)} s\n`);
    const report: TargetReport = await runTarget(target, {
      timeMs,
      ...(seed === undefined ? {} : { seed }),
      onProgress: (cases) => bar.update(`${phase} ${target.name} (${sum.cases + cases} cases)`, Math.min(elapsed(), seconds), seconds),
    });
    sum.cases += report.cases;
    sum.rejected += report.rejected;
    sum.ms += report.ms;
    if (report.heapGrowthMiB !== null) sum.heapGrowthMiB = Math.max(sum.heapGrowthMiB ?? -Infinity, report.heapGrowthMiB);
    sum.failure = report.failure;
    if (!tty) process.stderr.write(`fuzz: ${target.name}: ${sum.cases} cases${report.failure === null ? '' : ' — FAILED'}\n`);
  };

  for (const [i, target] of targets.entries()) await pass(i, target, calibrationMs, 'calibrate');
  const rates = totals.map((t) => (t.ms > 0 ? (t.cases / t.ms) * 1000 : 0));
  const remainingMs = Math.max(0, budgetMs - (performance.now() - started));
  const slices = allocate(rates, totals.map((t) => goal - t.cases), remainingMs);
  for (const [i, target] of targets.entries()) await pass(i, target, slices[i]!, 'run');
  bar.stop();

  const failed = totals.filter((t) => t.failure !== null);
  const result = {
    seconds,
    goal,
    elapsedSeconds: elapsed(),
    targets: totals.map(({ failure, ...t }) => ({ ...t, casesPerSecond: t.ms > 0 ? Math.round((t.cases / t.ms) * 1000) : 0, reachedGoal: t.cases >= goal, passed: failure === null, failure })),
  };
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
  if (values.json === true) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    process.stdout.write(`${'target'.padEnd(22)}${'cases'.padStart(12)}${'rejected'.padStart(12)}${'cases/s'.padStart(10)}  result\n`);
    for (const t of result.targets) {
      process.stdout.write(`${t.target.padEnd(22)}${String(t.cases).padStart(12)}${String(t.rejected).padStart(12)}${String(t.casesPerSecond).padStart(10)}  ${t.passed ? 'ok' : 'FAILED'}\n`);
    }
    process.stdout.write(`${result.targets.reduce((n, t) => n + t.cases, 0)} cases in ${result.elapsedSeconds} s; ${failed.length} failed; written to bench/results/fuzz.json\n`);
  }
  for (const t of failed) process.stderr.write(`\n${t.failure}\n`);
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
