/** What every bench module shares: its context, machine facts, results files, progress and clean-up. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, arch, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';

/** bench/ and the repository root, wherever the process was started from. */
export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = dirname(BENCH_DIR);
export const RESULTS_DIR = join(BENCH_DIR, 'results');

export interface BenchContext {
  /** The arguments after the bench name, e.g. `['--quick']`. */
  readonly argv: readonly string[];
}

/** Bad command-line input: run.ts prints the message without a stack trace. */
export class UsageError extends Error {}

/** A module `bench/<name>.ts` exports these. */
export interface BenchModule {
  readonly description: string;
  run(context: BenchContext): Promise<void>;
}

export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly kernel: string;
  readonly memoryGiB: number;
  readonly loadAverage1m: number;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: platform(),
    arch: arch(),
    kernel: release(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

/** When a run started (performance.now() and ISO time) and the machine's load then, for its results file. */
export function runStart(): { readonly started: number; readonly timestamp: string; readonly loadAtStart: number } {
  return { started: performance.now(), timestamp: new Date().toISOString(), loadAtStart: machineInfo().loadAverage1m };
}

/** CPU time all processes of the machine have used, ms summed over cores (os.cpus(): user + nice + sys + irq). */
export function machineBusyMs(): number {
  let busy = 0;
  for (const cpu of cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq;
  return busy;
}

/** Writes pretty JSON, creating the directory. Returns the path. */
export function writeJson(path: string, value: unknown): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
  return path;
}

/**
 * Progress on stderr: a cli-progress bar on a terminal, one line per step otherwise (CI logs),
 * so stdout carries only the results.
 */
export class Progress {
  private readonly bar: cliProgress.SingleBar | null;
  private readonly started = performance.now();
  private done = 0;

  constructor(
    private readonly title: string,
    private readonly total: number,
  ) {
    if (process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: `${title} [{bar}] {value}/{total} | {elapsed}s | {label}`,
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
          barsize: 30,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0, { label: 'starting', elapsed: '0' });
    } else {
      this.bar = null;
    }
  }

  /** Announces the step about to run. */
  step(label: string): void {
    const elapsed = ((performance.now() - this.started) / 1000).toFixed(0);
    if (this.bar !== null) this.bar.update(this.done, { label, elapsed });
    else process.stderr.write(`[${this.title}] ${String(this.done + 1).padStart(String(this.total).length)}/${this.total} ${elapsed.padStart(3)}s ${label}\n`);
  }

  /** Marks the current step done. */
  tick(): void {
    this.done++;
    this.bar?.update(this.done);
  }

  /** A message that must stay visible (above the bar on a terminal). */
  note(message: string): void {
    if (this.bar !== null) {
      this.bar.stop();
      process.stderr.write(`${message}\n`);
      this.bar.start(this.total, this.done, { label: '', elapsed: ((performance.now() - this.started) / 1000).toFixed(0) });
    } else {
      process.stderr.write(`[${this.title}] ${message}\n`);
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}

/**
 * Clean-up actions run once, newest first, on success, on error and on SIGINT/SIGTERM, so a
 * failed or interrupted run leaves no child process and no temp directory behind.
 */
export class Cleanup {
  private readonly tasks: { label: string; fn: () => void | Promise<void> }[] = [];
  private ran: Promise<void> | null = null;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: cleaning up\n`);
    void this.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };

  constructor() {
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  add(label: string, fn: () => void | Promise<void>): void {
    this.tasks.push({ label, fn });
  }

  run(): Promise<void> {
    this.ran ??= (async () => {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      for (const task of this.tasks.reverse()) {
        try {
          await task.fn();
        } catch (err) {
          process.stderr.write(`clean-up "${task.label}" failed: ${err instanceof Error ? err.message : String(err)}\n`);
        }
      }
    })();
    return this.ran;
  }
}

/** The options of a bench's command line, with `--help`/`-h` added. */
type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;
type BenchArgOptions<T extends ParseArgsOptionsConfig> = T & { help: { type: 'boolean'; short: 'h'; default: false } };
type BenchArgValues<T extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{ args: string[]; options: BenchArgOptions<T> }>>['values'];

/**
 * Parses a bench's arguments (node:util parseArgs, strict) plus `--help`/`-h`. Returns null after
 * printing `usage` for --help; an unknown or malformed option is a UsageError.
 */
export function parseBenchArgs<const T extends ParseArgsOptionsConfig>(argv: readonly string[], options: T, usage: string): BenchArgValues<T> | null {
  const all = { ...options, help: { type: 'boolean', short: 'h', default: false } } as BenchArgOptions<T>;
  let values: BenchArgValues<T>;
  try {
    ({ values } = parseArgs<{ args: string[]; options: BenchArgOptions<T> }>({ args: [...argv], options: all }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((values as { help?: boolean }).help === true) {
    process.stdout.write(`${usage}\n`);
    return null;
  }
  return values;
}

/** The value of `--flag` as a positive integer, undefined when absent; a UsageError otherwise. */
export function positiveInt(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  return n;
}
