// A three-service trust domain (gateway, users, accounts) in one command: npm run example:mesh
//
// Starts a DHT anchor, makes the owner and host keys, writes and signs a policy, endorses and
// starts one instance per service, then shows an allowed call, two refused ones, and shuts down.
// Every step is a `themis` command, printed before it runs, so you can replay it by hand.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'themis-trust-domain-'));
const children = [];
const started = Date.now();

const show = (args) => console.log(`\n$ themis ${args.map((a) => (/[\s{}"*]/.test(a) ? `'${a}'` : a)).join(' ')}`);
const short = (key) => `${key.slice(0, 12)}…`;

/** Runs a themis command; resolves with { code, stdout, stderr } (a non-zero exit is no exception). */
function themis(args, { quiet = false } = {}) {
  if (!quiet) show(args);
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 99, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

async function ok(args, options) {
  const result = await themis(args, options);
  if (result.code !== 0) throw new Error(`themis ${args[0]} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout;
}

/** Starts a long-running themis command and waits for its first JSON line. */
async function daemon(args) {
  show(args);
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  children.push({ child, exited });
  const line = await Promise.race([
    new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve)),
    exited.then((code) => Promise.reject(new Error(`themis ${args[0]} exited with ${code}: ${stderr}`))),
  ]);
  console.log(line);
  return JSON.parse(line);
}

async function shutdown() {
  for (const { child } of children) child.kill('SIGTERM');
  await Promise.all(children.map(({ exited }) => exited));
  rmSync(dir, { recursive: true, force: true });
}

const file = (name) => join(dir, name);
const services = ['gateway', 'users', 'accounts'];

try {
  console.log('1. A DHT anchor: the only fixed address; everything else joins through it.');
  const anchor = await daemon(['node', '--listen', 'tcp://127.0.0.1:0', '--json']);
  const via = anchor.addr;

  console.log('\n2. Keys: the trust-domain owner, one host, and one instance key per service.');
  for (const name of ['owner', 'host-1', ...services]) console.log(await ok(['keygen', '--out', file(`${name}.key`), '--json']));

  console.log('\n3. The host endorses each instance it will start (instance key, service, code digest, expiry).');
  let hostKey = '';
  for (const service of services) {
    const out = JSON.parse(
      await ok(['endorse', '--host-key', file('host-1.key'), '--instance-key', file(`${service}.key`), '--service', service, '--trust-domain', 'microbank', '--out', file(`${service}.endorsement`), '--json']),
    );
    console.log(`host ${short(out.host)} endorses instance key ${short(out.instance)} as ${out.service} until ${out.expiresAt}`);
    hostKey = out.host;
  }

  console.log('\n4. The owner writes the policy (services, trusted host, rules) and signs it into the DHT.');
  const policy = `trustDomain: microbank
seq: 1
hosts:
  - { name: host-1, key: ${hostKey} }
services:
  gateway: { digests: [] }   # [] = any code (development); list SHA-256 digests in production
  users: { digests: [] }
  accounts: { digests: [] }
rules:
  - { from: gateway, to: users, methods: ["*"] }
  - { from: users, to: accounts, methods: [get] }
refreshSeconds: 30
`;
  writeFileSync(file('policy.yaml'), policy);
  console.log(policy.trimEnd().replace(/^/gm, '    '));
  const signed = JSON.parse(await ok(['policy', 'sign', file('policy.yaml'), '--key', file('owner.key'), '--via', via, '--json']));
  console.log(JSON.stringify(signed));
  const owner = signed.owner;

  console.log('\n5. One endorsed instance per service, each enforcing the owner policy on every call.');
  await Promise.all(
    services.map((service) =>
      daemon(['provide', service, '--via', via, '--key', file(`${service}.key`), '--endorsement', file(`${service}.endorsement`), '--owner', owner, '--json']),
    ),
  );
  console.log(await ok(['discover', 'users', '--via', via, '--json']));

  const as = (service) => ['--key', file(`${service}.key`), '--endorsement', file(`${service}.endorsement`), '--owner', owner];

  console.log('\n6. Allowed: gateway → users.whoami (rule gateway → users: *).');
  console.log(await ok(['call', 'users', 'whoami', '--via', via, ...as('gateway'), '--json']));

  console.log('\n7. Denied: gateway → accounts.echo (no rule lets the gateway call accounts).');
  const denied = await themis(['call', 'accounts', 'echo', '{"amount":100}', '--via', via, ...as('gateway'), '--json']);
  console.log(`exit ${denied.code}: ${denied.stdout}`);

  console.log('\n8. Denied: users → accounts.echo (users may call accounts.get only).');
  const narrow = await themis(['call', 'accounts', 'echo', '{}', '--via', via, ...as('users'), '--json']);
  console.log(`exit ${narrow.code}: ${narrow.stdout}`);

  console.log('\n9. Refused: a caller no trusted host endorsed.');
  const rogue = await themis(['call', 'users', 'whoami', '--via', via, '--owner', owner, '--json']);
  console.log(`exit ${rogue.code}: ${rogue.stdout}`);

  const expected = denied.code === 1 && denied.stdout.includes('ERR_MESH_FORBIDDEN') && narrow.code === 1 && narrow.stdout.includes('ERR_MESH_FORBIDDEN') && rogue.code === 1 && rogue.stdout.includes('ERR_MESH_UNENDORSED');
  if (!expected) {
    console.error('\nunexpected: a call that should have been refused was not refused as expected');
    process.exitCode = 1;
  }
} catch (err) {
  console.error(`\nexample failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await shutdown();
  console.log(`\nstopped ${children.length} processes; done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
