/**
 * Benchmark entry: `npm run bench -- <name> [options]` runs bench/<name>.ts.
 *
 * A bench is a file `bench/<name>.ts` whose name is lowercase letters and digits and which exports
 * `description` and `run(context)` (see BenchModule in ./lib/bench.ts). Helpers live in bench/lib/
 * or carry a hyphen (bench/channel-server.ts), so they are never taken for a bench. Results go to
 * bench/results/<name>.json. Benchmarks never gate the test suite.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_DIR, UsageError, type BenchModule } from './lib/bench.js';

const NAME = /^[a-z][a-z0-9]*$/;

function available(): string[] {
  return readdirSync(BENCH_DIR)
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => file.slice(0, -'.ts'.length))
    .filter((name) => NAME.test(name) && name !== 'run')
    .sort();
}

async function load(name: string): Promise<BenchModule> {
  const mod = (await import(pathToFileURL(join(BENCH_DIR, `${name}.ts`)).href)) as Partial<BenchModule>;
  if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts does not export run(context)`);
  return { description: mod.description ?? '', run: mod.run };
}

async function usage(): Promise<string> {
  const names = available();
  const lines = await Promise.all(names.map(async (name) => `  ${name.padEnd(14)} ${(await load(name)).description}`));
  return `usage: npm run bench -- <name> [--quick] [--help]\n\nbenches:\n${lines.join('\n')}`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`${await usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const names = available();
  if (!names.includes(name)) {
    process.stderr.write(`unknown bench "${name}"; available: ${names.join(', ') || '(none)'}\n`);
    return 2;
  }
  try {
    await (await load(name)).run({ argv: rest });
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${name}: ${err.message} (see: npm run bench -- ${name} --help)\n`);
      return 2;
    }
    process.stderr.write(`\nbench ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
