import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { CLI, cliRunner } from './helpers/cli.js';

const themis = cliRunner(60_000);

async function node(t: { after: (fn: () => Promise<void>) => void }, ...args: string[]): Promise<{ id: string; addr: string }> {
  const child = spawn(process.execPath, [CLI, 'node', '--listen', 'tcp://127.0.0.1:0', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve)),
    exited.then((code) => Promise.reject(new Error(`themis node exited with ${code}: ${stderr}`))),
  ]);
  return JSON.parse(line) as { id: string; addr: string };
}

test('three themis node processes: put on one, get on another, inspect a third', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-cli-dht-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const first = await node(t, '--data', join(dir, 'a'));
  const second = await node(t, '--bootstrap', first.addr, '--data', join(dir, 'b'));
  const third = await node(t, '--bootstrap', `${first.id}@${first.addr}`);
  assert.match(third.id, /^[a-z2-7]{52}$/);

  const key = join(dir, 'writer.key');
  assert.equal((await themis('keygen', '--out', key)).code, 0);
  const put = await themis('put', 'balance=42', '--via', first.addr, '--salt', 'config', '--key', key, '--json');
  assert.equal(put.code, 0, put.stderr);
  const written = JSON.parse(put.stdout) as { publisher: string; seq: number; stored: number };
  assert.equal(written.seq, 1);
  assert.ok(written.stored >= 2);
  const update = await themis('put', 'balance=43', '--via', second.addr, '--salt', 'config', '--key', key, '--json');
  assert.equal(JSON.parse(update.stdout).seq, 2);

  const got = await themis('get', '--publisher', written.publisher, '--salt', 'config', '--via', third.addr, '--json');
  assert.equal(got.code, 0, got.stderr);
  assert.equal(JSON.parse(got.stdout).value, 'balance=43');

  const immutable = await themis('put', '--immutable', 'hello', '--via', second.addr, '--json');
  const hash = (JSON.parse(immutable.stdout) as { key: string }).key;
  assert.equal((await themis('get', hash, '--via', third.addr)).stdout.trim(), 'hello');
  const missing = await themis('get', 'a'.repeat(52), '--via', third.addr);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /ERR_DHT_NOT_FOUND/);

  const inspect = await themis('inspect', first.addr, '--json');
  assert.equal(inspect.code, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout) as { id: string; table: { size: number }; records: { records: number } };
  assert.equal(info.id, first.id);
  assert.ok(info.table.size >= 2);
  assert.ok(info.records.records >= 1);
  assert.equal((await themis('get', '--via', first.addr)).code, 2, 'neither a key nor --publisher');
});

test('THEMIS_BOOTSTRAP takes a comma-separated list, and one reachable entry is enough', async (t) => {
  const first = await node(t);
  // The environment as a deployment sets it (deploy/kubernetes/anchors.yaml): no --bootstrap flag.
  process.env['THEMIS_BOOTSTRAP'] = `tcp://127.0.0.1:1,${first.addr}`;
  let second: { id: string; addr: string; contacts?: number };
  try {
    second = await node(t);
  } finally {
    delete process.env['THEMIS_BOOTSTRAP'];
  }
  assert.equal(second.contacts, 1, 'joined through the second entry after the first refused');
});
