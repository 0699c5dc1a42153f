import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { CLI, cliRunner } from './helpers/cli.js';

const themis = cliRunner(30_000);

async function serve(t: { after: (fn: () => void | Promise<void>) => void }, ...args: string[]): Promise<{ id: string; addr: string; noiseStatic: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', 'tcp://127.0.0.1:0', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`serve exited early with ${code}`)));
  });
  return { ...(JSON.parse(line) as { id: string; addr: string; noiseStatic: string }), child };
}

test('themis serve prints its id, address and static key; ping --expect verifies it (XX), --static uses IK', async (t) => {
  const server = await serve(t);
  assert.match(server.id, /^[a-z2-7]{52}$/);
  assert.match(server.addr, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const xx = await themis('ping', server.addr, '--expect', server.id, '--count', '10', '--json');
  assert.equal(xx.code, 0, xx.stderr);
  const result = JSON.parse(xx.stdout) as { id: string; pattern: string; rttMs: { p50: number; p99: number } };
  assert.equal(result.id, server.id);
  assert.equal(result.pattern, 'XX');
  assert.ok(result.rttMs.p50 > 0 && result.rttMs.p99 >= result.rttMs.p50);
  const ik = await themis('ping', server.addr, '--expect', server.id, '--static', server.noiseStatic, '--json');
  assert.equal(ik.code, 0, ik.stderr);
  assert.equal(JSON.parse(ik.stdout).pattern, 'IK');
});

test('themis ping exits non-zero with a clear message when the peer is not the expected id', async (t) => {
  const server = await serve(t);
  const dir = await mkdtemp(join(tmpdir(), 'themis-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const other = JSON.parse((await themis('keygen', '--out', join(dir, 'other.key'), '--json')).stdout) as { id: string };
  const run = await themis('ping', server.addr, '--expect', other.id, '--json');
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`the peer is ${server.id}, not the expected ${other.id}`));
  assert.equal(JSON.parse(run.stdout).error.code, 'ERR_HANDSHAKE_UNEXPECTED_PEER');
});

test('themis ping fails clearly on a peer of another network and on a closed port', async (t) => {
  const server = await serve(t, '--trust-domain', 'other');
  const wrongNetwork = await themis('ping', server.addr, '--expect', server.id);
  assert.equal(wrongNetwork.code, 1);
  assert.match(wrongNetwork.stderr, /ERR_HANDSHAKE_/);
  const closedPort = await themis('ping', 'tcp://127.0.0.1:1', '--json');
  assert.equal(closedPort.code, 1);
  assert.match(closedPort.stderr, /cannot connect to tcp:\/\/127\.0\.0\.1:1/);
});

test('themis keygen writes a 0600 key that serve and id use; id refuses a world-readable key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'node.key');
  const made = await themis('keygen', '--out', path, '--json');
  assert.equal(made.code, 0, made.stderr);
  const { id } = JSON.parse(made.stdout) as { id: string };
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await themis('id', '--key', path)).stdout.trim(), id);
  const again = await themis('keygen', '--out', path);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  const server = await serve(t, '--key', path);
  assert.equal(server.id, id);
  await chmod(path, 0o644);
  const refused = await themis('id', '--key', path);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /chmod 600/);
});

test('usage errors exit 2 and every command has --help', async () => {
  for (const command of ['keygen', 'id', 'serve', 'ping', 'node', 'put', 'get', 'inspect', 'sim']) {
    const help = await themis(command, '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: themis/);
  }
  assert.equal((await themis('ping')).code, 2);
  assert.equal((await themis('ping', 'tcp://127.0.0.1:1', '--count', 'zero')).code, 2);
  assert.equal((await themis('ping', 'tcp://127.0.0.1:1', '--static', 'nonsense')).code, 2);
  assert.equal((await themis('no-such-command')).code, 2);
  assert.equal((await themis('sim', '--malicious', '1.5')).code, 2);
  assert.equal((await themis('sim', '--compare', '0,x')).code, 2);
  const badAddress = await themis('ping', 'http://example');
  assert.equal(badAddress.code, 1);
  assert.match(badAddress.stderr, /expected tcp:\/\/HOST:PORT/);
});

test('themis serve stops cleanly on SIGTERM', async (t) => {
  const server = await serve(t);
  const exit = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
  server.child.kill('SIGTERM');
  assert.equal(await exit, 0);
});
