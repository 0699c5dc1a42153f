#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { isThemisError } from '../core/errors.js';
import { registerAttest } from './commands/attest.js';
import { registerDht } from './commands/dht.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerMesh } from './commands/mesh.js';
import { registerPing } from './commands/ping.js';
import { registerServe } from './commands/serve.js';
import { registerSim } from './commands/sim.js';
import { registerInit } from './commands/init.js';
import { registerUp } from './commands/up.js';
import { UsageError } from './options.js';
import { printJson } from './output.js';

/** Exit codes: 0 success, 1 the operation failed, 2 the command line was wrong. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const program = new Command()
  .name('themis')
  .description('Themis mesh: self-certifying peers, a Noise identity handshake and an encrypted multiplexed channel')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerKeyCommands(program);
registerServe(program);
registerPing(program);
registerDht(program);
registerSim(program);
registerMesh(program);
registerAttest(program);
registerUp(program);
registerInit(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}

function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
  const json = process.argv.includes('--json');
  if (err instanceof UsageError) {
    process.stderr.write(`themis: ${err.message}\n`);
    return EXIT_USAGE;
  }
  const code = isThemisError(err) ? err.code : 'ERR_UNEXPECTED';
  const message = err instanceof Error ? err.message : String(err);
  if (json) printJson({ error: { code, message } });
  process.stderr.write(`themis: ${message}${isThemisError(err) ? ` (${code})` : ''}\n`);
  return EXIT_FAILURE;
}
