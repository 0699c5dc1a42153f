import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createHostAttestor, type TpmAttestor } from '../../src/attest/index.js';
import { toBase32 } from '../../src/core/bytes.js';
import { Identity, writeKeyFile } from '../../src/identity/index.js';
import { createMesh, endorse, endorsementCredential } from '../../src/mesh/index.js';
import { startSwtpm, swtpmAvailable, type Swtpm } from '../../src/testing/index.js';
import { cliJsonRunner, cliRunner } from './helpers/cli.js';
import { LISTEN, network, sha256 } from './helpers/mesh.js';

// `themis attest` and `themis verify` (built CLI, child processes) against a real swtpm.

const skip = swtpmAvailable() ? false : 'swtpm and tpm2-tools are not installed (apt-get install -y swtpm swtpm-tools tpm2-tools)';
const themis = cliRunner(60_000);
const ok = cliJsonRunner(60_000);
const host = Identity.generate(network);
const users = sha256('users v1');
let tpm: Swtpm | undefined;
let dir = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'themis-cli-attest-'));
  await writeKeyFile(join(dir, 'host.key'), host);
  if (skip === false) tpm = await startSwtpm();
});
after(async () => {
  await tpm?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function writePolicy(name: string, tpmKeys: readonly string[] | null): Promise<string> {
  const path = join(dir, name);
  const attestation = tpmKeys === null ? '' : `attestation:\n  require: tpm\n  tpmKeys: [${tpmKeys.map((k) => `"${k}"`).join(', ')}]\n`;
  await writeFile(path, `trustDomain: bank\nseq: 1\nhosts:\n  - { name: host-1, key: ${toBase32(host.publicKey)} }\nservices:\n  users: { digests: ["${users.toString('hex')}"] }\n${attestation}`);
  return path;
}

test('themis attest --help and usage errors exit 0 and 2; code-digest evidence without a TPM verifies', async () => {
  const help = await themis('attest', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--tpm <where>/);
  assert.equal((await themis('verify', '--help')).code, 0);
  assert.equal((await themis('attest', '--key', join(dir, 'host.key'), '--c1', '0', '--c2', '0', '--measure', 'users=xyz')).code, 2);
  assert.equal((await themis('verify', '--policy', join(dir, 'none.yaml'))).code, 2, 'neither --peer nor --evidence');
  const nonce = randomBytes(32).toString('hex');
  const out = join(dir, 'code.evidence');
  const made = await ok('attest', '--key', join(dir, 'host.key'), '--c1', '0', '--c2', '0', '--measure', `users=${users.toString('hex')}`, '--nonce', nonce, '--out', out, '--json');
  assert.equal(made['kind'], 'code-digest');
  const policy = await writePolicy('code.yaml', null);
  const checked = await ok('verify', '--policy', policy, '--evidence', out, '--nonce', nonce, '--json');
  assert.equal(checked['verified'], true);
  const replayed = await themis('verify', '--policy', policy, '--evidence', out, '--nonce', randomBytes(32).toString('hex'), '--json');
  assert.equal(replayed.code, 1);
  assert.equal((JSON.parse(replayed.stdout) as { error: { code: string } }).error.code, 'ERR_ATTEST_NONCE');
});

test('themis attest --tpm prints verified TPM evidence; themis verify --evidence checks it against the policy', { skip }, async () => {
  const nonce = randomBytes(32).toString('hex');
  const out = join(dir, 'tpm.evidence');
  const made = (await ok('attest', '--tpm', tpm!.spec, '--key', join(dir, 'host.key'), '--c1', '0', '--c2', '0', '--measure', `users=${users.toString('hex')}`, '--nonce', nonce, '--out', out, '--json')) as {
    kind: string;
    tpm: { akHash: string };
    events: unknown[];
  };
  assert.equal(made.kind, 'tpm');
  assert.deepEqual(made.events, [{ service: 'users', digest: users.toString('hex') }]);
  const trusted = await writePolicy('tpm.yaml', [made.tpm.akHash]);
  assert.equal((await ok('verify', '--policy', trusted, '--evidence', out, '--nonce', nonce, '--json'))['verified'], true);
  const untrusted = await writePolicy('other-tpm.yaml', [sha256('another AK').toString('hex')]);
  const refused = await themis('verify', '--policy', untrusted, '--evidence', out, '--nonce', nonce);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /ERR_ATTEST_UNTRUSTED_KEY/);
});

test('themis verify --peer dials a running instance, sends a fresh nonce and checks its host quote', { skip }, async (t) => {
  const attestor = (await createHostAttestor({ mode: 'tpm', tpm: tpm!.spec }, host)) as TpmAttestor;
  t.after(() => attestor.close());
  const identity = Identity.generate(network);
  const credentials = [
    endorsementCredential(endorse(host, { instancePub: identity.publicKey, trustDomain: 'bank', service: 'users', codeDigest: users })),
    ...(await attestor.credentials({ nodeId: identity.nodeId, service: 'users', digest: users })),
  ];
  const instance = await createMesh({ identity, network, listen: LISTEN, bootstrap: [], maintenance: false, credentials, attestation: { evidence: (nonce) => attestor.evidence(nonce) } });
  t.after(() => instance.close());
  const policy = await writePolicy('peer.yaml', [attestor.ak.digest.toString('hex')]);
  const address = instance.addresses[0]!;
  const verified = await ok('verify', '--policy', policy, '--peer', address, '--expect', instance.id, '--c1', '0', '--c2', '0', '--json');
  assert.equal(verified['service'], 'users');
  assert.equal(verified['kind'], 'tpm');
  const untrusted = await writePolicy('peer-other.yaml', [sha256('another AK').toString('hex')]);
  const refused = await themis('verify', '--policy', untrusted, '--peer', address, '--c1', '0', '--c2', '0', '--json');
  assert.equal(refused.code, 1);
  assert.equal((JSON.parse(refused.stdout) as { error: { code: string } }).error.code, 'ERR_ATTEST_UNTRUSTED_KEY');
});
