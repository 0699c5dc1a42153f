import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { parsePolicyYaml } from '../../src/mesh/index.js';
import { CLI, cliRunner, cliJsonRunner } from './helpers/cli.js';

const themis = cliRunner(60_000);

const ok = cliJsonRunner(60_000);

/** A long-running themis command (node, provide), killed in t.after; resolves with its first JSON line. */
async function daemon(t: { after: (fn: () => Promise<void>) => void }, ...args: string[]): Promise<Record<string, string>> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.after(async () => {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `themis ${args[0]} shuts down cleanly on SIGTERM: ${stderr}`);
  });
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve)),
    exited.then((code) => Promise.reject(new Error(`themis ${args[0]} exited with ${code}: ${stderr}`))),
  ]);
  return JSON.parse(line) as Record<string, string>;
}

test('themis policy init writes a template that parses', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-cli-policy-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'policy.yaml');
  assert.deepEqual(await ok('policy', 'init', '--out', out, '--trust-domain', 'microbank', '--json'), { path: out, trustDomain: 'microbank' });
  const policy = parsePolicyYaml(await readFile(out, 'utf8'), out);
  assert.equal(policy.trustDomain, 'microbank');
  assert.equal(policy.seq, 1);
  assert.equal((await themis('policy', 'init', '--out', out)).code, 2, 'refuses to overwrite without --force');
  assert.equal((await themis('policy', 'init', '--out', out, '--force')).code, 0);
  const host = await ok('keygen', '--out', join(dir, 'host.key'), '--json');
  const withHost = join(dir, 'hosts.yaml');
  await ok('policy', 'init', '--out', withHost, '--host', `host-1=${join(dir, 'host.key')}`, '--json');
  const hosts = parsePolicyYaml(await readFile(withHost, 'utf8'), withHost).hosts;
  assert.deepEqual(hosts.map((h) => h.name), ['host-1']);
  assert.equal(hosts.length, 1);
  assert.notEqual(host['id'], undefined);
  assert.equal((await themis('policy', 'init', '--out', join(dir, 'x.yaml'), '--host', 'no-equals-sign')).code, 2);
  const bad = await themis('policy', 'init', '--out', join(dir, 'bad.yaml'), '--trust-domain', 'Not A Name');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /ERR_MESH_POLICY_INVALID/);
});

test('trust domain over processes: signed policy, endorsed instances, allowed, denied and unendorsed calls', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'themis-cli-mesh-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = (name: string): string => join(dir, name);

  const anchor = await daemon(t, 'node', '--listen', 'tcp://127.0.0.1:0', '--json');
  const via = anchor['addr']!;

  const names = ['owner', 'host', 'gateway', 'users', 'accounts'];
  await Promise.all(names.map((name) => ok('keygen', '--out', file(`${name}.key`), '--json')));
  let hostKey = '';
  for (const service of ['gateway', 'users', 'accounts']) {
    const endorsed = await ok('endorse', '--host-key', file('host.key'), '--instance-key', file(`${service}.key`), '--service', service, '--trust-domain', 'microbank', '--out', file(`${service}.end`), '--json');
    assert.equal(endorsed['service'], service);
    assert.equal(endorsed['trustDomain'], 'microbank');
    hostKey = endorsed['host'] as string;
  }

  // A policy with a mistake: refused with its line and column, exit 1, nothing published.
  await writeFile(file('bad.yaml'), `trustDomain: microbank\nseq: 1\nhosts:\n  - { name: host-1, key: nope }\nservices: {}\n`);
  const bad = await themis('policy', 'sign', file('bad.yaml'), '--key', file('owner.key'), '--via', via, '--json');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /bad\.yaml:4:\d+: .*base32/);
  assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'ERR_MESH_POLICY_INVALID');

  const policy = `trustDomain: microbank
seq: 1
hosts:
  - { name: host-1, key: ${hostKey} }
services:
  gateway: { digests: [] }
  users: { digests: [] }
  accounts: { digests: [] }
rules:
  - { from: gateway, to: users, methods: ["*"] }
  - { from: users, to: accounts, methods: [get] }
`;
  await writeFile(file('policy.yaml'), policy);
  const signed = await ok('policy', 'sign', file('policy.yaml'), '--key', file('owner.key'), '--via', via, '--json');
  assert.equal(signed['trustDomain'], 'microbank');
  assert.equal(signed['seq'], 1);
  assert.ok((signed['stored'] as number) >= 1);
  const owner = signed['owner'] as string;
  assert.match(owner, /^[a-z2-7]{52}$/);

  const again = await themis('policy', 'sign', file('policy.yaml'), '--key', file('owner.key'), '--via', via, '--json');
  assert.equal(again.code, 1, 'the same seq again is a rollback');
  assert.match(again.stderr, /ERR_MESH_POLICY_ROLLBACK/);

  const shown = await ok('policy', 'show', '--owner', owner, '--via', via, '--json');
  assert.equal(shown['seq'], 1);
  assert.deepEqual((shown['policy'] as { rules: unknown[] }).rules, [
    { from: 'gateway', to: 'users', methods: ['*'] },
    { from: 'users', to: 'accounts', methods: ['get'] },
  ]);
  const yaml = await themis('policy', 'show', '--owner', owner, '--via', via);
  assert.equal(yaml.code, 0, yaml.stderr);
  assert.equal(parsePolicyYaml(yaml.stdout).rules.length, 2, 'the YAML form reads back');

  const provide = (service: string): Promise<Record<string, string>> =>
    daemon(t, 'provide', service, '--via', via, '--key', file(`${service}.key`), '--endorsement', file(`${service}.end`), '--owner', owner, '--json');
  const [users, accounts] = await Promise.all([provide('users'), provide('accounts')]);
  assert.equal(users!['service'], 'users');
  assert.match(users!['addr']!, /^tcp:\/\/127\.0\.0\.1:\d+$/);

  const listed = await ok('discover', 'users', '--via', via, '--json');
  assert.deepEqual(listed, { service: 'users', instances: [{ id: users!['id'], addrs: [users!['addr']] }] });
  const listedAccounts = await ok('discover', 'accounts', '--via', via, '--json');
  assert.deepEqual((listedAccounts['instances'] as { id: string }[]).map((i) => i.id), [accounts!['id']]);

  const as = (service: string): string[] => ['--key', file(`${service}.key`), '--endorsement', file(`${service}.end`), '--owner', owner];

  // Allowed: gateway → users.* ; the callee sees the verified caller and its service.
  const who = await ok('call', 'users', 'whoami', '--via', via, ...as('gateway'), '--json');
  assert.deepEqual(who['servedBy'], { id: users!['id'], service: 'users' });
  assert.equal((who['caller'] as { service: string }).service, 'gateway');
  assert.deepEqual(await ok('call', 'users', 'echo', '{"n":[1,"two",null]}', '--via', via, ...as('gateway'), '--deadline', '5000', '--json'), { n: [1, 'two', null] });

  // Denied: no rule lets gateway call accounts; users may call accounts.get only.
  for (const caller of ['gateway', 'users']) {
    const denied = await themis('call', 'accounts', 'echo', '{}', '--via', via, ...as(caller), '--json');
    assert.equal(denied.code, 1, denied.stderr);
    assert.equal((JSON.parse(denied.stdout) as { error: { code: string } }).error.code, 'ERR_MESH_FORBIDDEN');
    assert.match(denied.stderr, new RegExp(`"${caller}" may not call accounts\\.echo`));
  }

  // Unendorsed callers are refused, whether or not they enforce the policy themselves.
  for (const extra of [['--owner', owner], []]) {
    const rogue = await themis('call', 'users', 'whoami', '--via', via, ...extra, '--json');
    assert.equal(rogue.code, 1, rogue.stderr);
    assert.equal((JSON.parse(rogue.stdout) as { error: { code: string } }).error.code, 'ERR_MESH_UNENDORSED');
  }

  // Command-line mistakes exit 2.
  assert.equal((await themis('call', 'users', 'echo', '{not json', '--via', via)).code, 2);
  assert.equal((await themis('call', 'users', 'echo', '--via', via, '--endorsement', file('users.end'))).code, 2, '--endorsement without --key');
  assert.equal((await themis('call', 'users', 'echo', '--via', via, '--key', file('gateway.key'), '--endorsement', file('users.end'))).code, 2, 'endorsement of another key');
  assert.equal((await themis('policy', 'show', '--owner', 'short', '--via', via)).code, 2);
});
