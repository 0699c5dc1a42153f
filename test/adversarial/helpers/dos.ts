// Shared by the DoS tests: a hostile client in a child process, paced honest load that counts
// what succeeded, and a sampler of a victim's counters while the attack runs.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ATTACKER = fileURLToPath(new URL('../fixtures/dos-attacker.mjs', import.meta.url));

/** Attacker source addresses: loopback aliases, so the per-IP caps see them apart from the honest 127.0.0.1. */
export const ATTACKER_IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

export interface AttackerStats {
  readonly opened: number;
  readonly answered: number;
  readonly closedByVictim: number;
  readonly refused: number;
}

/** Runs test/adversarial/fixtures/dos-attacker.mjs and resolves with its counters. */
export function runAttacker(args: readonly (string | number)[]): Promise<AttackerStats> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ATTACKER, ...args.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`the attacker exited with ${code}`);
        resolve(JSON.parse(out) as AttackerStats);
      } catch (err) {
        reject(err);
      }
    });
  });
}

export interface LoadResult {
  readonly ok: number;
  readonly failed: number;
  readonly errors: readonly string[];
}

/** Starts `count` honest operations, one every `intervalMs` (not waiting for the previous), and counts the outcomes. */
export async function honestLoad(count: number, intervalMs: number, operation: (i: number) => Promise<unknown>): Promise<LoadResult> {
  const outcomes: Promise<string | null>[] = [];
  for (let i = 0; i < count; i++) {
    outcomes.push(operation(i).then(() => null, (err: Error) => `${(err as { code?: string }).code ?? err.name}: ${err.message}`));
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const errors = (await Promise.all(outcomes)).filter((e): e is string => e !== null);
  return { ok: count - errors.length, failed: errors.length, errors };
}

/** Samples `read()` every few milliseconds; `stop()` returns the largest value of each field seen. */
export function sampleMax<T extends Record<string, number>>(read: () => T, everyMs = 5): { stop(): T } {
  const max = { ...read() } as Record<string, number>;
  const timer = setInterval(() => {
    for (const [key, value] of Object.entries(read())) max[key] = Math.max(max[key] ?? value, value);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return max as T;
    },
  };
}
