/** Running the built CLI (`node dist/cli/main.js ARGS`) from the integration tests; needs `npm run build`. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../../dist/cli/main.js', import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion; `code` is its exit code (99 when it has none, e.g. killed at the timeout). */
export function runCli(args: readonly string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 99, stdout, stderr });
    });
  });
}

/** `themis(...args)`: the CLI run with the given timeout. */
export function cliRunner(timeoutMs: number): (...args: string[]) => Promise<Run> {
  return (...args) => runCli(args, timeoutMs);
}

/** `ok(...args)`: the CLI run that must exit 0, its stdout parsed as JSON. */
export function cliJsonRunner(timeoutMs: number): (...args: string[]) => Promise<Record<string, unknown>> {
  return async (...args) => {
    const run = await runCli(args, timeoutMs);
    assert.equal(run.code, 0, `themis ${args.join(' ')}: ${run.stderr}`);
    return JSON.parse(run.stdout) as Record<string, unknown>;
  };
}
