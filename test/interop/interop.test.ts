// Interoperability test: an independent Python client (test/interop/themis_client.py), written
// from docs/protocol.md alone, against `themis serve`. Run after `npm run build`:
//   node --import tsx --test test/interop/interop.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const client = path.join(here, 'themis_client.py');
const PYTHON = process.env.THEMIS_PYTHON ?? 'python3';

interface ServeInfo {
  id: string;
  addr: string;
  noiseStatic: string;
}

type ClientResult = Record<string, unknown> & { ok: boolean };

/** Fails (never skips) when python3 or its `cryptography` package is missing. */
function requirePython(): void {
  const probe = spawnSync(
    PYTHON,
    ['-c', 'import sys, cryptography; assert sys.version_info >= (3, 8); print(cryptography.__version__)'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (probe.error) {
    assert.fail(
      `interop test needs ${PYTHON} (with the 'cryptography' package) on PATH, but running it failed: ` +
        `${probe.error.message}. Every machine of this project is expected to have it.`,
    );
  }
  if (probe.status !== 0) {
    assert.fail(
      `interop test needs the Python 'cryptography' package (38+) for ${PYTHON}; ` +
        `'import cryptography' failed:\n${probe.stderr}`,
    );
  }
  const major = Number(probe.stdout.trim().split('.')[0]);
  assert.ok(major >= 38, `Python 'cryptography' ${probe.stdout.trim()} is too old; 38+ is required`);
}

interface Server {
  child: ChildProcess;
  info: ServeInfo;
  stderr: () => string;
}

async function startServer(extraArgs: string[] = []): Promise<Server> {
  assert.ok(existsSync(cli), `${cli} is missing: run \`npm run build\` before this test`);
  const child = spawn(process.execPath, [cli, 'serve', '--listen', 'tcp://127.0.0.1:0', '--json', ...extraArgs], {
    cwd: root,
    env: { ...process.env, THEMIS_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    err += d;
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const info = await new Promise<ServeInfo>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`themis serve printed no JSON line within 20 s; stderr:\n${err}`)), 20_000);
    child.stdout!.setEncoding('utf8');
    const onData = (d: string): void => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      try {
        resolve(JSON.parse(out.slice(0, nl)) as ServeInfo);
      } catch (e) {
        reject(new Error(`themis serve's first stdout line is not JSON: ${out.slice(0, nl)} (${String(e)})`));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`themis serve exited early (code ${code}, signal ${sig}); stderr:\n${err}`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  for (const k of ['id', 'addr', 'noiseStatic'] as const) {
    assert.equal(typeof info[k], 'string', `serve --json output lacks "${k}": ${JSON.stringify(info)}`);
  }
  return { child, info, stderr: () => err };
}

async function stopServer(s: Server): Promise<void> {
  const { child } = s;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function runClient(server: Server | null, args: string[], timeoutMs = 120_000): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [client, ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const lines = stdout.trim().split('\n').filter((l) => l.length > 0);
        const last = lines[lines.length - 1];
        let parsed: ClientResult | undefined;
        try {
          parsed = last === undefined ? undefined : (JSON.parse(last) as ClientResult);
        } catch {
          parsed = undefined;
        }
        const context =
          `python3 ${path.basename(client)} ${args.join(' ')}\n` +
          `exit: ${error ? String((error as NodeJS.ErrnoException).code ?? error.message) : 0}\n` +
          `stdout: ${stdout}\nstderr: ${stderr}\n` +
          (server ? `server stderr (tail):\n${server.stderr().slice(-6000)}` : '');
        if (parsed === undefined) {
          reject(new Error(`client printed no JSON line\n${context}`));
          return;
        }
        const exitOk = error === null;
        if (exitOk !== (parsed.ok === true)) {
          reject(new Error(`client exit status disagrees with its JSON\n${context}`));
          return;
        }
        if (parsed.ok !== true) {
          reject(new Error(`client reported failure: ${String(parsed.error)}\n${context}`));
          return;
        }
        resolve(parsed);
      },
    );
  });
}

const BASE_CHECKS = [
  'settings-sent',
  'server-settings-first-frame',
  'server-proof-verified',
  'server-nodeid-matches',
  'echo-empty',
  'echo-1-byte',
  'echo-100KiB',
  'stream-echo-bytes',
  'stream-fin-answered',
  'stream-data-with-fin',
  'ping-ack',
  'goaway-sent',
];

function assertChecks(res: ClientResult, expected: string[]): void {
  const checks = res.checks as string[];
  assert.ok(Array.isArray(checks), `no checks in ${JSON.stringify(res)}`);
  for (const c of expected) assert.ok(checks.includes(c), `check "${c}" missing from ${JSON.stringify(checks)}`);
}

test('independent Python client interoperates with themis serve', { timeout: 600_000 }, async (t) => {
  requirePython();
  const selftest = await runClient(null, ['--selftest']);
  assert.deepEqual(selftest.checks, ['noise-kat-XX', 'noise-kat-IK', 'rekey-symmetric']);

  const server = await startServer();
  t.after(() => stopServer(server));
  const { id, addr, noiseStatic } = server.info;
  assert.match(id, /^[a-z2-7]{52}$/, 'NodeId text form is 52 lowercase base32 characters (§2.1)');
  assert.match(noiseStatic, /^[a-z2-7]{52}$/, 'noiseStatic is 52 lowercase base32 characters');

  await t.test('XX handshake, echo request/response, echo stream, PING, GOAWAY', async () => {
    const res = await runClient(server, [addr, '--expect', id]);
    assert.equal(res.pattern, 'XX');
    assert.equal(res.serverId, id);
    assertChecks(res, ['handshake-XX', ...BASE_CHECKS]);
  });

  await t.test('IK handshake with the Noise static key from serve --json', async () => {
    const res = await runClient(server, [addr, '--expect', id, '--static', noiseStatic]);
    assert.equal(res.pattern, 'IK');
    assert.equal(res.serverId, id);
    assertChecks(res, ['handshake-IK', ...BASE_CHECKS]);
  });

  await t.test('wrong network id: the XX handshake fails', async () => {
    const res = await runClient(server, [addr, '--expect', id, '--negative', 'wrong-network']);
    assert.equal(res.refused, true);
  });

  await t.test('wrong network id: the server closes an IK attempt without answering (§3.3)', async () => {
    const res = await runClient(server, [addr, '--expect', id, '--static', noiseStatic, '--negative', 'wrong-network']);
    assert.equal(res.refused, true);
    assert.equal(res.stage, 'server-closed', `expected the server to close before message 2: ${JSON.stringify(res)}`);
    assert.ok((res.elapsedMs as number) < 5_000, `server took ${String(res.elapsedMs)} ms to close (handshake timeout, not refusal?)`);
  });

  await t.test('unexpected NodeId: the client refuses after message 2 and never sends its proof', async () => {
    const res = await runClient(server, [addr, '--negative', 'wrong-expect']);
    assert.equal(res.refused, true);
    assert.equal(res.stage, 'expected-nodeid-mismatch');
    assert.equal(res.serverId, id);
    assert.equal(res.sentOwnProof, false);
  });

  for (const negative of [
    'bad-binding',
    'bad-static-puzzle',
    'bad-dynamic-puzzle',
    'proof-reserved-flag',
    'proof-trailing-byte',
    'proof-bad-version',
    'xx-msg1-33',
  ]) {
    await t.test(`defective initiator handshake "${negative}": the server closes the connection (§3.3-§3.5)`, async () => {
      const res = await runClient(server, [addr, '--expect', id, '--negative', negative]);
      assert.equal(res.refused, true);
      assert.equal(res.stage, 'server-closed');
    });
  }

  await t.test('the server still serves after refused handshakes', async () => {
    const res = await runClient(server, [addr, '--expect', id]);
    assertChecks(res, ['handshake-XX', ...BASE_CHECKS]);
  });

  await t.test('the server accepts a proof with 16 addresses and 8 credentials of unknown types (§3.4)', async () => {
    for (const extra of [[], ['--static', noiseStatic]]) {
      const res = await runClient(server, [addr, '--expect', id, '--proof-extras', ...extra]);
      assertChecks(res, BASE_CHECKS);
    }
  });

  await t.test('flow control beyond every window, maximal frames, NO_HANDLER, cancel, batching', async () => {
    const res = await runClient(server, [addr, '--expect', id, '--extended']);
    assertChecks(res, [
      ...BASE_CHECKS,
      'echo-700KiB-flow-control',
      'echo-max-frames',
      'no-handler-reset-6',
      'cancel-then-continue',
      'concurrent-batched-requests',
      'request-timeout-reset-9',
    ]);
  });

  await t.test('rekey after 65,536 transport messages (§4.1)', async () => {
    const res = await runClient(server, [addr, '--expect', id, '--rekey']);
    assertChecks(res, [...BASE_CHECKS, 'client-rekey', 'server-rekey']);
  });

  // Expected GOAWAY code before the close: 4 and 8 are stated in §4.3; 1 (PROTOCOL_ERROR) is our
  // reading of §4.2 "protocol errors (the connection is closed)"; null = closed with no reply (§4.1).
  const channelViolations: Array<[string, number | null]> = [
    ['bad-frame', 1],
    ['bad-flags', 1],
    ['even-stream', 1],
    ['stream-limit', 4],
    ['too-large', 8],
    ['bad-tag', null],
  ];
  for (const [negative, code] of channelViolations) {
    await t.test(`channel violation "${negative}": the server closes the connection`, async () => {
      const res = await runClient(server, [addr, '--expect', id, '--negative', negative]);
      assert.equal(res.refused, true);
      assert.equal(res.stage, 'server-closed');
      const gw = res.goaway as { code: number } | null;
      if (code === null) {
        assert.equal(gw, null, 'an authentication failure is closed "at once, with no reply" (§4.1)');
      } else {
        assert.ok(gw !== null && gw.code === code, `expected GOAWAY code ${code} before the close, got ${JSON.stringify(gw)}`);
      }
    });
  }
});

test('a network with other puzzle difficulties and a trust domain (§2.5)', { timeout: 300_000 }, async (t) => {
  requirePython();
  const net = ['--c1', '6', '--c2', '10', '--trust-domain', 'acme.example'];
  const server = await startServer(net);
  t.after(() => stopServer(server));
  const { id, addr, noiseStatic } = server.info;

  await t.test('XX and IK with the same c1, c2 and trust domain', async () => {
    const xx = await runClient(server, [addr, '--expect', id, ...net]);
    assert.equal(xx.pattern, 'XX');
    assertChecks(xx, ['handshake-XX', ...BASE_CHECKS]);
    const ik = await runClient(server, [addr, '--expect', id, '--static', noiseStatic, ...net]);
    assert.equal(ik.pattern, 'IK');
    assertChecks(ik, ['handshake-IK', ...BASE_CHECKS]);
  });

  await t.test('a peer of the default network is refused', async () => {
    // IK: the server cannot decrypt message 1 under another prologue and closes without answering.
    const res = await runClient(server, [addr, '--expect', id, '--static', noiseStatic, '--negative', 'wrong-network']);
    assert.equal(res.stage, 'server-closed');
    for (const other of [[], ['--trust-domain', 'acme.exampl', '--c1', '6', '--c2', '10']]) {
      const bad = await new Promise<string>((resolve) => {
        execFile(PYTHON, [client, addr, '--expect', id, '--static', noiseStatic, ...other], { timeout: 60_000 }, (_e, stdout) =>
          resolve(stdout),
        );
      });
      const parsed = JSON.parse(bad.trim().split('\n').pop() ?? '{}') as ClientResult;
      assert.equal(parsed.ok, false, `handshake across networks must fail: ${bad}`);
    }
  });
});
