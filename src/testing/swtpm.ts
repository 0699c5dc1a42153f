import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A software TPM 2.0 (swtpm) on a unix socket in its own temp dir. */
export interface Swtpm {
  /** What createHostAttestor and `themis attest --tpm` take: `socket:PATH`. */
  readonly spec: string;
  readonly dir: string;
  /** Kills swtpm and removes its state. */
  stop(): Promise<void>;
}

const TOOLS = ['swtpm', 'tpm2_createak', 'tpm2_quote', 'tpm2_pcrextend'];

/** Whether swtpm and tpm2-tools are installed (Debian: apt-get install swtpm swtpm-tools tpm2-tools). */
export function swtpmAvailable(): boolean {
  return TOOLS.every((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0);
}

/**
 * Starts swtpm (TPM 2.0, already initialized: `--flags not-need-init,startup-clear`) as a child
 * process on `<tempdir>/tpm.sock` and resolves once the socket exists.
 */
export async function startSwtpm(): Promise<Swtpm> {
  const dir = mkdtempSync(join(tmpdir(), 'themis-swtpm-'));
  const socket = join(dir, 'tpm.sock');
  const child: ChildProcess = spawn(
    'swtpm',
    ['socket', '--tpm2', '--tpmstate', `dir=${dir}`, '--server', `type=unixio,path=${socket}`, '--ctrl', `type=unixio,path=${socket}.ctrl`, '--flags', 'not-need-init,startup-clear'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`swtpm did not start: ${stderr.trim() || 'no socket after 10 s'}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { spec: `socket:${socket}`, dir, stop };
}
