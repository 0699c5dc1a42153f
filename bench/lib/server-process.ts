/**
 * The client side of a bench server process (bench/channel-server.ts, bench/mesh-server.ts): spawns
 * it, waits for the one JSON line it prints when ready, forwards anything else it prints to stderr,
 * and then offers a line-based control channel (one JSON line out, one JSON line back).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Cleanup, REPO_ROOT } from './bench.js';

const SERVER_START_TIMEOUT_MS = 60_000;
const SERVER_EXIT_TIMEOUT_MS = 10_000;

/** The running server process: the JSON line it printed when ready, and its control channel. */
export interface ServerProcess<T> {
  readonly info: T;
  /** Writes `message` as one JSON line; resolves with the next JSON line the server prints (unparsed). */
  send(message: object): Promise<string>;
}

export async function startServerProcess<T>(script: string, args: readonly string[], nodeArgs: readonly string[], cleanup: Cleanup): Promise<ServerProcess<T>> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script, ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.stdin?.on('error', () => undefined);
  cleanup.add('stop the server process', () => stopChild(child));
  if (child.stdout === null || child.stdin === null) throw new Error('no pipes to the server process');
  const stdin = child.stdin;
  const lines = createInterface({ input: child.stdout });
  // Anything else the server prints (e.g. with --server-node-arg=--trace-gc) goes to stderr.
  const forward = (line: string): void => {
    process.stderr.write(`[server] ${line}\n`);
  };
  const info = await new Promise<T>((resolve, reject) => {
    const settle = (err: Error | null, value?: T): void => {
      clearTimeout(timer);
      child.off('error', onError);
      child.off('exit', onExit);
      lines.off('line', onLine);
      if (err !== null) reject(err);
      else resolve(value as T);
    };
    const onError = (err: Error): void => settle(new Error(`cannot start the server process: ${err.message}`));
    const onExit = (code: number | null, signal: string | null): void =>
      settle(new Error(`the server process exited (${signal ?? `code ${code}`}) before it was ready; its stderr is above`));
    const onLine = (line: string): void => {
      if (!line.startsWith('{')) return forward(line);
      try {
        settle(null, JSON.parse(line) as T);
      } catch {
        settle(new Error(`the server process printed something other than its JSON line: ${line.slice(0, 200)}`));
      }
    };
    const timer = setTimeout(() => settle(new Error(`the server process was not ready within ${SERVER_START_TIMEOUT_MS / 1000} s`)), SERVER_START_TIMEOUT_MS);
    child.once('error', onError);
    child.once('exit', onExit);
    lines.on('line', onLine);
  });
  const replies: ((line: string) => void)[] = [];
  lines.on('line', (line) => (line.startsWith('{') ? replies.shift()?.(line) : forward(line)));
  child.once('exit', (code, signal) => {
    if (!stoppingChildren.has(child)) process.stderr.write(`\nthe server process exited during the run (${signal ?? `code ${code}`})\n`);
    for (const reply of replies.splice(0)) reply('{"ok":false,"error":"the server process exited"}');
  });
  const send = (message: object): Promise<string> =>
    new Promise((resolve) => {
      replies.push(resolve);
      stdin.write(`${JSON.stringify(message)}\n`);
    });
  return { info, send };
}

const stoppingChildren = new WeakSet<ChildProcess>();

/** Closes the child's stdin (it exits on its own, writing any --cpu-prof profile); SIGKILL if it lingers. */
async function stopChild(child: ChildProcess): Promise<void> {
  stoppingChildren.add(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin?.end();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), SERVER_EXIT_TIMEOUT_MS);
  });
  if ((await Promise.race([exited, late])) === 'late') {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}
