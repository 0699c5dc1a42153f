/** Command-line parsing shared by the benches: node:util parseArgs, --help and usage errors. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './bench.js';

/**
 * Parses with `config` (whose options include a boolean `help`). Prints `usage` and returns null
 * on --help; a bad option is a UsageError (run.ts prints it and exits 2).
 *
 * @example
 * const values = parseBenchArgs({ args: [...argv], options: { quick: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }, USAGE);
 * if (values === null) return;
 */
export function parseBenchArgs<const T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>>['values'] | null {
  let values: ReturnType<typeof parseArgs<T>>['values'];
  try {
    values = parseArgs(config).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((values as { help?: unknown }).help === true) {
    process.stdout.write(`${usage}\n`);
    return null;
  }
  return values;
}
