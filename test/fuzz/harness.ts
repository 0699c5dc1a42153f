// The fuzzing harness: a target is a real parser or peer-facing state machine fed with random
// bytes and with mutations of valid inputs (bit flips, truncation, extension, splicing, interesting
// values at length fields), driven by fast-check. Its oracle: an input may only be rejected with a
// typed ThemisError (or the target's documented rejection); any other exception, a case that does
// not settle within its timeout (a hang), something left open after a case, or heap growth over a
// run is a failure, reported with the counterexample.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { ThemisError } from '../../src/core/errors.js';

export interface FuzzTarget<C = unknown> {
  readonly name: string;
  /** What reaches the code: the function or the connection it drives. */
  readonly description: string;
  /** Builds what the cases share (keys, listeners, valid messages). */
  setup(): Promise<C> | C;
  /** Valid inputs that the mutations start from. */
  seeds(context: C): readonly Buffer[];
  /** Feeds one input through the real code; throws only what `accepts` allows. */
  run(context: C, input: Buffer): void | Promise<void>;
  /** Documented rejections; default: any ThemisError. */
  accepts?(err: unknown): boolean;
  /** After each case: a description of what the case left open, or null. */
  leaks?(context: C): string | null;
  /** After the run: a failure the target observed out of band (e.g. a handler's untyped error), or null. */
  problems?(context: C): string | null | Promise<string | null>;
  teardown?(context: C): Promise<void> | void;
  /** A case that has not settled after this long is a hang. Default 2000 ms. */
  readonly caseTimeoutMs?: number;
  /** Largest random input. Default 2048 bytes. */
  readonly maxLength?: number;
}

/** Defines a target with its context type inferred. */
export function defineTarget<C>(target: FuzzTarget<C>): FuzzTarget<C> {
  return target;
}

// --- inputs ---------------------------------------------------------------------------------

/** Values that sit on the edges of length and count fields (u8, u16, u32). */
const INTERESTING: readonly Buffer[] = [
  [0x00], [0x01], [0x7f], [0x80], [0xff],
  [0x00, 0x00], [0xff, 0xff], [0x7f, 0xff], [0x80, 0x00], [0x00, 0x10],
  [0x00, 0x00, 0x00, 0x00], [0xff, 0xff, 0xff, 0xff], [0x7f, 0xff, 0xff, 0xff], [0x80, 0x00, 0x00, 0x00],
].map((bytes) => Buffer.from(bytes));

type Mutation = (input: Buffer, seeds: readonly Buffer[]) => Buffer;

const at = (input: Buffer, position: number): number => (input.length === 0 ? 0 : position % input.length);

/** One mutation of a valid input, as an arbitrary (so fast-check shrinks it). */
function mutation(seedCount: number): fc.Arbitrary<Mutation> {
  const position = fc.nat({ max: 1 << 20 });
  return fc.oneof(
    fc.array(fc.tuple(position, fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 }).map((flips): Mutation => (input) => {
      const out = Buffer.from(input);
      for (const [p, bit] of flips) if (out.length > 0) out[at(out, p)]! ^= 1 << bit;
      return out;
    }),
    fc.array(fc.tuple(position, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((sets): Mutation => (input) => {
      const out = Buffer.from(input);
      for (const [p, value] of sets) if (out.length > 0) out[at(out, p)] = value;
      return out;
    }),
    position.map((p): Mutation => (input) => input.subarray(0, input.length === 0 ? 0 : p % input.length)),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((tail): Mutation => (input) => Buffer.concat([input, tail])),
    fc.tuple(position, fc.uint8Array({ minLength: 1, maxLength: 32 })).map(([p, bytes]): Mutation => (input) => {
      const i = input.length === 0 ? 0 : p % (input.length + 1);
      return Buffer.concat([input.subarray(0, i), bytes, input.subarray(i)]);
    }),
    fc.tuple(position, fc.integer({ min: 1, max: 64 })).map(([p, n]): Mutation => (input) => {
      const i = at(input, p);
      return Buffer.concat([input.subarray(0, i), input.subarray(i + n)]);
    }),
    fc.tuple(position, fc.nat({ max: INTERESTING.length - 1 })).map(([p, which]): Mutation => (input) => {
      const out = Buffer.from(input);
      const value = INTERESTING[which]!;
      const i = at(out, p);
      value.copy(out, i, 0, Math.min(value.length, out.length - i));
      return out;
    }),
    // Splicing: the head of this input with the tail of another valid one.
    fc.tuple(fc.nat({ max: Math.max(0, seedCount - 1) }), position, position).map(([other, p, q]): Mutation => (input, seeds) => {
      const donor = seeds[other] ?? input;
      return Buffer.concat([input.subarray(0, at(input, p)), donor.subarray(at(donor, q))]);
    }),
    // Duplication of a range (repeated fields, a message sent twice).
    fc.tuple(position, fc.integer({ min: 1, max: 256 })).map(([p, n]): Mutation => (input) => {
      const i = at(input, p);
      return Buffer.concat([input.subarray(0, i + n), input.subarray(i)]);
    }),
  );
}

/** Random bytes (1 in 5) or a valid seed under one to three stacked mutations. */
export function fuzzInput(seeds: readonly Buffer[], maxLength = 2048): fc.Arbitrary<Buffer> {
  const random = fc.uint8Array({ maxLength }).map((bytes) => Buffer.from(bytes));
  if (seeds.length === 0) return random;
  const mutated = fc
    .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation(seeds.length), { minLength: 1, maxLength: 3 }))
    .map(([which, mutations]) => mutations.reduce((input, mutate) => mutate(input, seeds), seeds[which]!));
  const valid = fc.nat({ max: seeds.length - 1 }).map((which) => seeds[which]!);
  return fc.oneof({ weight: 2, arbitrary: random }, { weight: 1, arbitrary: valid }, { weight: 7, arbitrary: mutated });
}

// --- running --------------------------------------------------------------------------------

export class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
}

export interface RunOptions {
  /** Stop after this many cases. */
  readonly numRuns?: number;
  /** Stop after this long (ms). */
  readonly timeMs?: number;
  readonly seed?: number;
  /** Check heap growth over the run (needs enough cases to mean anything). Default: with timeMs. */
  readonly heapCheck?: boolean;
  /** Called now and then with the cases run so far. */
  readonly onProgress?: (cases: number) => void;
}

export interface TargetReport {
  readonly target: string;
  readonly cases: number;
  readonly rejected: number;
  readonly ms: number;
  readonly casesPerSecond: number;
  readonly heapGrowthMiB: number | null;
  /** The counterexample and what went wrong; null when the run passed. */
  readonly failure: string | null;
}

const BUG_WARNINGS = new Set(['TimeoutOverflowWarning', 'TimeoutNegativeWarning', 'MaxListenersExceededWarning']);

/** Heap growth over a run above this is reported as a leak. */
const HEAP_GROWTH_LIMIT_MIB = 64;
const HEAP_WARMUP_CASES = 2000;

let gcFunction: (() => void) | null = null;
function collectGarbage(): void {
  if (gcFunction === null) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as () => void;
  }
  gcFunction();
}

function heapUsedMiB(): number {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${err.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${err.message}\n${err.stack?.split('\n').slice(1, 8).join('\n') ?? ''}`;
  }
  return String(err);
}

function hex(input: unknown): string {
  if (!Buffer.isBuffer(input)) return String(input);
  const shown = input.subarray(0, 1024).toString('hex');
  return `${input.length} bytes: ${shown}${input.length > 1024 ? '…' : ''}`;
}

/** Resources the event loop holds (sockets, timers, servers), by type. */
export function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of process.getActiveResourcesInfo()) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

function resourceGrowth(before: Map<string, number>, after: Map<string, number>): string | null {
  const grown: string[] = [];
  for (const [name, n] of after) {
    // Timers come and go with every case (unref'd lingers, deadlines); only handles are counted.
    if (name === 'Timeout' || name === 'Immediate') continue;
    const was = before.get(name) ?? 0;
    if (n > was) grown.push(`${name} ${was} → ${n}`);
  }
  return grown.length === 0 ? null : `handles left open after the run: ${grown.join(', ')}`;
}

/** Runs one target for a number of cases or a time budget and reports cases and any failure. */
export async function runTarget<C>(target: FuzzTarget<C>, options: RunOptions): Promise<TargetReport> {
  const before = activeResources();
  const context = await target.setup();
  const seeds = target.seeds(context);
  const accepts = target.accepts ?? ((err: unknown) => err instanceof ThemisError);
  const caseTimeoutMs = target.caseTimeoutMs ?? 2000;
  const heapCheck = options.heapCheck ?? options.timeMs !== undefined;
  let cases = 0;
  let rejected = 0;
  let heapBase: number | null = null;
  let uncaught: unknown = null;
  const onUncaught = (err: unknown): void => {
    uncaught ??= err;
  };
  // Warnings that mean a bug: a peer's value overflowing a timer, listeners piling up per case.
  const onWarning = (warning: Error): void => {
    if (BUG_WARNINGS.has(warning.name)) uncaught ??= warning;
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  process.on('warning', onWarning);

  const runCase = async (input: Buffer): Promise<void> => {
    cases++;
    if (heapCheck && cases === HEAP_WARMUP_CASES) heapBase = heapUsedMiB();
    if (options.onProgress !== undefined && cases % 256 === 0) options.onProgress(cases);
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FuzzFailure(`hang: the case did not settle within ${caseTimeoutMs} ms`)), caseTimeoutMs);
    });
    try {
      await Promise.race([Promise.resolve().then(() => target.run(context, input)), hang]);
    } catch (err) {
      if (err instanceof FuzzFailure || !accepts(err)) throw err;
      rejected++;
    } finally {
      clearTimeout(timer);
    }
    const leak = target.leaks?.(context) ?? null;
    if (leak !== null) throw new FuzzFailure(`leak after the case: ${leak}`);
    if (uncaught !== null) {
      const err = uncaught;
      uncaught = null;
      throw new FuzzFailure(`an uncaught exception or a warning during the case: ${describeError(err)}`);
    }
  };

  const started = performance.now();
  let failure: string | null = null;
  let heapGrowthMiB: number | null = null;
  try {
    const details = await fc.check(
      fc.asyncProperty(fuzzInput(seeds, target.maxLength ?? 2048), runCase),
      {
        numRuns: options.numRuns ?? Number.MAX_SAFE_INTEGER,
        ...(options.timeMs === undefined ? {} : { interruptAfterTimeLimit: options.timeMs, markInterruptAsFailure: false }),
        ...(options.seed === undefined ? {} : { seed: options.seed }),
      },
    );
    if (details.failed) {
      failure =
        `${target.name}: failed after ${details.numRuns} runs (seed ${details.seed}, path "${details.counterexamplePath ?? ''}"; ` +
        `shrunk ${details.numShrinks} times)\ncounterexample ${hex(details.counterexample?.[0])}\n${describeError(details.errorInstance)}`;
    }
    const extra = (await target.problems?.(context)) ?? null;
    if (failure === null && extra !== null) failure = `${target.name}: ${extra}`;
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    process.off('warning', onWarning);
    await target.teardown?.(context);
  }
  if (heapBase !== null) {
    heapGrowthMiB = Math.round((heapUsedMiB() - heapBase) * 10) / 10;
    if (failure === null && heapGrowthMiB > HEAP_GROWTH_LIMIT_MIB) failure = `${target.name}: heap grew by ${heapGrowthMiB} MiB over ${cases} cases (limit ${HEAP_GROWTH_LIMIT_MIB})`;
  }
  // Sockets close asynchronously: let them settle before counting.
  for (let i = 0; i < 20 && resourceGrowth(before, activeResources()) !== null; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  const handles = resourceGrowth(before, activeResources());
  if (failure === null && handles !== null) failure = `${target.name}: ${handles}`;
  const ms = performance.now() - started;
  return { target: target.name, cases, rejected, ms: Math.round(ms), casesPerSecond: Math.round((cases / ms) * 1000), heapGrowthMiB, failure };
}
