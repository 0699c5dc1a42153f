import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startSwtpm, swtpmAvailable } from '../../src/testing/index.js';
import { CLI, cliRunner } from './helpers/cli.js';
import { MICROBANK } from './helpers/microbank.js';

// `themis init` and `themis up` as real child processes (needs `npm run build`). The child runs
// plain `node dist/cli/main.js`, so `up` re-runs itself under --no-node-snapshot as a user's would.

const themis = cliRunner(30_000);
const FIXTURE = fileURLToPath(new URL('./fixtures/runtime-app', import.meta.url));

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Up {
  readonly info: { gateway: string; anchor: string; owner: string; services: string[]; attestation: { mode: string; akHash?: string } };
  /** Sends the signal; resolves with the exit code. */
  stop(signal: NodeJS.Signals): Promise<number | null>;
  stderr(): string;
}

async function up(t: TestContext, ...args: string[]): Promise<Up> {
  const child = spawn(process.execPath, [CLI, 'up', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve)),
    exited.then((code) => Promise.reject(new Error(`themis up exited with ${code}: ${stderr}`))),
  ]);
  return {
    info: JSON.parse(line) as Up['info'],
    stop: (signal) => {
      child.kill(signal);
      return exited;
    },
    stderr: () => stderr,
  };
}

test('themis init scaffolds an app that themis up serves; data and keys are reused on restart', async (t) => {
  const dir = join(tempDir(t, 'themis-init-'), 'hello-app');
  const init = await themis('init', dir, '--json');
  assert.equal(init.code, 0, init.stderr);
  assert.deepEqual(JSON.parse(init.stdout).files, ['themis.yaml', join('services', 'hello.js'), 'README.md']);

  const first = await up(t, dir);
  assert.match(first.info.gateway, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(first.info.anchor, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(first.info.services, ['hello']);
  assert.deepEqual(await (await fetch(`${first.info.gateway}/hello/world`)).json(), { message: 'Hello, world!' });
  assert.deepEqual(await (await fetch(`${first.info.gateway}/visits`, { method: 'POST' })).json(), { visits: 1 });
  assert.equal(await first.stop('SIGINT'), 0);
  assert.equal(statSync(join(dir, '.themis', 'owner.key')).mode & 0o777, 0o600);

  const second = await up(t, dir);
  assert.equal(second.info.owner, first.info.owner, 'the owner key is reused');
  assert.deepEqual(await (await fetch(`${second.info.gateway}/visits`, { method: 'POST' })).json(), { visits: 2 });
  assert.equal(await second.stop('SIGTERM'), 0);

  const again = await themis('init', dir);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /themis\.yaml already exists/);
});

test('themis up: SIGTERM lets an in-flight request finish, then exits 0', async (t) => {
  const data = tempDir(t, 'themis-up-');
  const app = await up(t, FIXTURE, '--data', data);
  const slow = fetch(`${app.info.gateway}/slow/700`).then(async (res) => ({ status: res.status, body: await res.json() }));
  await sleep(250);
  const exit = app.stop('SIGTERM');
  assert.deepEqual(await slow, { status: 200, body: { waited: 700 } });
  assert.equal(await exit, 0);
  assert.match(app.stderr(), /shutting down/);
});

test('themis up reports a bad manifest with its line and column and exits 1', async (t) => {
  const dir = tempDir(t, 'themis-bad-');
  writeFileSync(join(dir, 'themis.yaml'), 'app: bad\nservices:\n  hello:\n    entry: hello.js\n    handlers: [greet]\n    memoryMb: lots\ngateway:\n  routes: []\n');
  const run = await themis('up', dir, '--json');
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`${join(dir, 'themis.yaml')}:6:15: memoryMb must be an integer`));
  assert.equal(JSON.parse(run.stdout.trim().split('\n')[0]!).error.code, 'ERR_MANIFEST_INVALID');

  writeFileSync(join(dir, 'themis.yaml'), 'app: bad\nservices:\n  hello:\n    entry: hello.js\n    handlers: [greet]\ngateway:\n  routes: []\n');
  writeFileSync(join(dir, 'hello.js'), 'export async function greeet() {}\n');
  const missing = await themis('up', dir, '--data', join(dir, 'data'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /hello\.js does not export async function\(s\) greet named in its handlers; export them or remove them from themis\.yaml \(ERR_RUNTIME_MODULE\)/);
});

const noSwtpm = swtpmAvailable() ? false : 'swtpm and tpm2-tools are not installed (apt-get install -y swtpm swtpm-tools tpm2-tools)';

test('themis up --attest tpm --tpm socket:… runs MicroBank with TPM attestation, serves a request, and SIGTERM exits 0', { skip: noSwtpm }, async (t) => {
  const tpm = await startSwtpm();
  t.after(() => tpm.stop());
  const plain = await up(t, FIXTURE, '--data', tempDir(t, 'themis-up-'));
  assert.deepEqual(plain.info.attestation, { mode: 'code-digest' }, 'code-digest is the default');
  assert.equal(await plain.stop('SIGTERM'), 0);

  const app = await up(t, MICROBANK, '--data', tempDir(t, 'themis-up-tpm-'), '--attest', 'tpm', '--tpm', tpm.spec);
  assert.equal(app.info.attestation.mode, 'tpm');
  assert.match(app.info.attestation.akHash ?? '', /^[0-9a-f]{64}$/);
  const res = await fetch(`${app.info.gateway}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'carol', name: 'Carol', password: 'carol secret words' }) });
  assert.equal(res.status, 201, await res.text());
  assert.equal(await app.stop('SIGTERM'), 0);

  const usage = await themis('up', MICROBANK, '--attest', 'tpm');
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--attest tpm needs --tpm/);
  const unreachable = await themis('up', MICROBANK, '--data', tempDir(t, 'themis-up-notpm-'), '--attest', 'tpm', '--tpm', `socket:${join(tpm.dir, 'absent.sock')}`);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /TPM attestation cannot open the TPM at socket:.*Start a TPM there .* \(ERR_ATTEST_TPM\)/s);
});
