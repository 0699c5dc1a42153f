import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  DEFAULT_AK_HANDLE,
  createHostAttestor,
  createVerifier,
  encodeTpmEvidence,
  qualifyingData,
  verifyEvidence,
  type Measurement,
  type TpmAttestor,
} from '../../src/attest/index.js';
import { Reader } from '../../src/core/codec.js';
import { isThemisError } from '../../src/core/errors.js';
import { Identity } from '../../src/identity/index.js';
import {
  PolicyAuthority,
  endorse,
  endorsementCredential,
  signPolicy,
  type AttestationCheck,
  type MeshInit,
  type Policy,
  type RemoteIdentity,
} from '../../src/mesh/index.js';
import { startSwtpm, swtpmAvailable, type Swtpm } from '../../src/testing/index.js';
import { bankPolicy, code, refusedWith } from './helpers/attest.js';
import { LISTEN, meshes, network, sha256, startDht } from './helpers/mesh.js';

/**
 * TPM 2.0 attestation against a real software TPM (swtpm on a unix socket in a temp dir, one for
 * this file). Every quote here is made by swtpm; nothing is simulated.
 */
const skip = swtpmAvailable() ? false : 'swtpm and tpm2-tools are not installed (apt-get install -y swtpm swtpm-tools tpm2-tools)';
const host = Identity.generate(network);
let tpm: Swtpm | undefined;
let attestor: TpmAttestor | undefined;

/** A fresh attestor on the shared TPM: the same persisted AK, PCR 16 reset, an empty log. */
async function freshAttestor(): Promise<TpmAttestor> {
  await attestor?.close();
  attestor = (await createHostAttestor({ mode: 'tpm', tpm: tpm!.spec }, host)) as TpmAttestor;
  return attestor;
}

before(async () => {
  if (skip !== false) return;
  tpm = await startSwtpm();
  await freshAttestor();
});
after(async () => {
  await attestor?.close();
  await tpm?.stop();
});

/** What the host loads in most tests: users, then gateway. */
const measured: readonly Measurement[] = [
  { service: 'users', digest: code.users },
  { service: 'gateway', digest: code.gateway },
];

/** The pieces of TPM evidence (docs/attestation.md §2). */
function split(evidence: Buffer): { binding: Buffer; attest: Buffer; signature: Buffer; log: Buffer } {
  const r = new Reader(evidence, 'test evidence');
  r.u8();
  r.u8();
  return { binding: r.vec16(), attest: r.vec16(), signature: r.vec16(), log: r.rest() };
}

test('a quote verifies, and tpm2-tools agrees: the AK hash is its TPM name, tpm2_checkquote accepts the quote', { skip }, async () => {
  const a = await freshAttestor();
  for (const m of measured) await a.measure(m);
  await a.measure(measured[0]!); // measured once, like IMA
  const nonce = randomBytes(32);
  const evidence = await a.evidence(nonce);
  const verified = verifyEvidence(evidence, { nonce, hostPub: host.publicKey, tpmKeys: [a.ak.digest] });
  assert.equal(verified.kind, 'tpm');
  assert.deepEqual(verified.log, measured);

  const env = { ...process.env, TPM2TOOLS_TCTI: `swtpm:path=${tpm!.spec.slice('socket:'.length)}` };
  const readpublic = execFileSync('tpm2_readpublic', ['-c', `0x${DEFAULT_AK_HANDLE.toString(16)}`], { env }).toString();
  assert.match(readpublic, new RegExp(`^name: 000b${a.ak.digest.toString('hex')}$`, 'm'));

  const { attest, signature } = split(evidence);
  const dir = tpm!.dir;
  writeFileSync(join(dir, 'ak.pem'), a.ak.key.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'q.msg'), attest);
  writeFileSync(join(dir, 'q.sig'), signature);
  const check = (qualifying: Buffer): void => {
    execFileSync('tpm2_checkquote', ['-u', join(dir, 'ak.pem'), '-m', join(dir, 'q.msg'), '-s', join(dir, 'q.sig'), '-g', 'sha256', '-q', qualifying.toString('hex')], { env, stdio: 'pipe' });
  };
  check(qualifyingData(host.publicKey, nonce));
  assert.throws(() => check(qualifyingData(host.publicKey, randomBytes(32))), 'tpm2_checkquote refuses another nonce too');
});

test('a quote replayed for an old nonce is refused', { skip }, async () => {
  const a = await freshAttestor();
  await a.measure({ service: 'users', digest: code.users });
  const old = randomBytes(32);
  const evidence = await a.evidence(old);
  verifyEvidence(evidence, { nonce: old, hostPub: host.publicKey });
  assert.throws(() => verifyEvidence(evidence, { nonce: randomBytes(32), hostPub: host.publicKey }), refusedWith('ERR_ATTEST_NONCE'));
  // Also a quote another host's key is bound into: the nonce is qualified by the host key.
  const other = Identity.generate(network);
  assert.throws(() => verifyEvidence(evidence, { nonce: old, hostPub: other.publicKey }), refusedWith('ERR_ATTEST_UNTRUSTED_KEY'));
  // A verifier whose challenge is answered with the recorded quote refuses it.
  const instance = Identity.generate(network);
  const check: AttestationCheck = {
    remote: { identityPub: instance.publicKey, credentials: await a.credentials({ nodeId: instance.nodeId, service: 'users', digest: code.users }) },
    caller: { service: 'users', hostPub: host.publicKey, codeDigest: code.users, instancePub: instance.publicKey },
    policy: tpmPolicy([a.ak.digest]),
    now: Date.now(),
    challenge: async () => evidence,
  };
  await assert.rejects(createVerifier().verify(check), refusedWith('ERR_ATTEST_NONCE'));
  await createVerifier().verify({ ...check, challenge: (nonce) => a.evidence(nonce) });
});

test('an event log that does not replay to the quoted PCR is refused (entry dropped, altered, added, reordered)', { skip }, async () => {
  const a = await freshAttestor();
  const log = measured;
  for (const m of log) await a.measure(m);
  const nonce = randomBytes(32);
  const { binding, attest, signature } = split(await a.evidence(nonce));
  const forged: Measurement[][] = [
    [log[0]!],
    [log[0]!, { service: 'gateway', digest: code.usersModified }],
    [...log, { service: 'users', digest: code.usersModified }],
    [log[1]!, log[0]!],
  ];
  for (const entries of forged) {
    assert.throws(() => verifyEvidence(encodeTpmEvidence(binding, attest, signature, entries), { nonce, hostPub: host.publicKey }), refusedWith('ERR_ATTEST_LOG_MISMATCH'));
  }
  verifyEvidence(encodeTpmEvidence(binding, attest, signature, log), { nonce, hostPub: host.publicKey });
  // A flipped bit in the quote breaks its signature.
  const tampered = Buffer.from(attest);
  tampered[tampered.length - 1]! ^= 1;
  assert.throws(() => verifyEvidence(encodeTpmEvidence(binding, tampered, signature, log), { nonce, hostPub: host.publicKey }), refusedWith('ERR_ATTEST_SIGNATURE'));
});

test('evidence requests beyond the bound are refused at once, the others answered', { skip }, async () => {
  await attestor?.close();
  attestor = (await createHostAttestor({ mode: 'tpm', tpm: tpm!.spec, maxPendingQuotes: 2 }, host)) as TpmAttestor;
  const a = attestor;
  const nonces = Array.from({ length: 6 }, () => randomBytes(32));
  const answers = await Promise.allSettled(nonces.map((nonce) => a.evidence(nonce)));
  assert.equal(answers.filter((answer) => answer.status === 'fulfilled').length, 2);
  for (const [i, answer] of answers.entries()) {
    if (answer.status === 'fulfilled') verifyEvidence(answer.value, { nonce: nonces[i]!, hostPub: host.publicKey });
    else refusedWith('ERR_ATTEST_UNAVAILABLE')(answer.reason);
  }
  verifyEvidence(await a.evidence(nonces[0]!), { nonce: nonces[0]!, hostPub: host.publicKey }); // the queue drained
});

/** The `bank` domain's policy with TPM attestation by `tpmKeys`. */
function tpmPolicy(tpmKeys: readonly Buffer[]): Policy {
  return bankPolicy(host, `attestation:\n  require: tpm\n  tpmKeys: [${tpmKeys.map((key) => `"${key.toString('hex')}"`).join(', ')}]\n  quoteMaxAgeSeconds: 60\n`);
}

/** A trust domain on loopback requiring TPM attestation, with `tpmKeys` trusted, and instances endorsed by `host`. */
async function tpmDomain(t: { after(fn: () => Promise<void>): void }, tpmKeys: readonly Buffer[]) {
  const { servers, bootstrap } = await startDht(t);
  const owner = Identity.generate(network);
  const policy = tpmPolicy(tpmKeys);
  await servers[0]!.store(signPolicy(owner, policy));
  const start = meshes(t);
  const verifier = createVerifier();
  /** An instance of `service` running `digest`, measured and endorsed by the host; `tpm: false` omits the TPM credential. */
  const instance = async (service: 'users' | 'gateway', digest: Buffer, options: { tpm?: boolean } = {}) => {
    const identity = Identity.generate(network);
    const extra = await attestor!.credentials({ nodeId: identity.nodeId, service, digest });
    const endorsement = endorsementCredential(endorse(host, { instancePub: identity.publicKey, trustDomain: 'bank', service, codeDigest: digest }));
    const init: MeshInit = {
      identity,
      bootstrap,
      listen: LISTEN,
      trust: { owner: owner.publicKey },
      credentials: [endorsement, ...(options.tpm === false ? [] : extra)],
      attestation: { verifier, evidence: (nonce) => attestor!.evidence(nonce) },
    };
    const mesh = await start(init);
    await mesh.refreshPolicy();
    const remote: RemoteIdentity = { identityPub: identity.publicKey, credentials: init.credentials! };
    return { mesh, remote };
  };
  // A fresh verifier of this domain's policy, for deciding on an instance directly.
  const authority = new PolicyAuthority(owner.publicKey, { attestation: createVerifier() });
  authority.update({ policy, owner: owner.publicKey, seq: policy.seq });
  return { instance, verifier, authority };
}

test('calls between TPM-attested instances pass; one quote of the host serves all its instances', { skip }, async (t) => {
  const a = await freshAttestor();
  const { instance, verifier } = await tpmDomain(t, [a.ak.digest]);
  const users = await instance('users', code.users);
  await users.mesh.provide('users', { get: ({ id }: { id: number }) => ({ id, name: 'Ada' }) });
  const gateways = await Promise.all([1, 2, 3].map(() => instance('gateway', code.gateway)));
  for (const { mesh: gateway } of gateways) assert.deepEqual(await gateway.call('users', 'get', { id: 7 }), { id: 7, name: 'Ada' });
  // Caller and callee checks in this process share the verifier: the host was quoted far fewer times than checked.
  assert.ok(verifier.tpm.quotesVerified >= 1 && verifier.tpm.quotesVerified <= 2, `quotes verified: ${verifier.tpm.quotesVerified}`);
});

test('code modified after the policy was signed is refused: its own instance, and every instance of the host that loaded it', { skip }, async (t) => {
  const a = await freshAttestor();
  const { instance, authority } = await tpmDomain(t, [a.ak.digest]);
  const users = await instance('users', code.users);
  await users.mesh.provide('users', { get: () => 'ok' });
  const challenge = (nonce: Buffer) => a.evidence(nonce);
  const decide = async (remote: RemoteIdentity, now = Date.now()): Promise<void> => authority.attest(remote, authority.identify(remote, now), challenge, now);
  await decide(users.remote); // before the patched code is loaded, the honest instance passes

  const patched = await instance('users', code.usersModified); // the host measures the patched code into PCR 16
  await patched.mesh.provide('users', { get: () => 'patched' });
  assert.throws(() => authority.identify(patched.remote), refusedWith('ERR_MESH_DIGEST_NOT_ALLOWED'));
  // The verified quote is reused for at most quoteMaxAgeSeconds (60): the window the policy bounds.
  await decide(users.remote);
  await assert.rejects(decide(users.remote, Date.now() + 61_000), refusedWith('ERR_ATTEST_MEASUREMENT_REFUSED'));
  const gateway = await instance('gateway', code.gateway);
  await assert.rejects(gateway.mesh.call('users', 'get', {}, { retries: 4 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_ATTEST_MEASUREMENT_REFUSED') || isThemisError(err, 'ERR_MESH_DIGEST_NOT_ALLOWED'), (err as Error).message);
    return true;
  });
});

test('a host whose TPM key is not in the policy is refused', { skip }, async (t) => {
  await freshAttestor();
  const { instance } = await tpmDomain(t, [sha256('some other TPM')]);
  const users = await instance('users', code.users);
  await users.mesh.provide('users', { get: () => 'ok' });
  const gateway = await instance('gateway', code.gateway);
  await assert.rejects(gateway.mesh.call('users', 'get', {}), refusedWith('ERR_ATTEST_UNTRUSTED_KEY'));
});

test("a quote by another of the host's AKs than the one its instance presents is refused, even when both are trusted", { skip }, async (t) => {
  const a = await freshAttestor();
  const instance = Identity.generate(network);
  const credentials = await a.credentials({ nodeId: instance.nodeId, service: 'users', digest: code.users });
  // Another attestor of the same host and TPM, with a second AK (it resets PCR 16 and owns it from here).
  const other = (await createHostAttestor({ mode: 'tpm', tpm: tpm!.spec, akHandle: 0x81010003 }, host)) as TpmAttestor;
  t.after(() => other.close());
  assert.notDeepEqual(other.ak.digest, a.ak.digest);
  await other.measure({ service: 'users', digest: code.users });
  const check: AttestationCheck = {
    remote: { identityPub: instance.publicKey, credentials },
    caller: { service: 'users', hostPub: host.publicKey, codeDigest: code.users, instancePub: instance.publicKey },
    policy: tpmPolicy([a.ak.digest, other.ak.digest]),
    now: Date.now(),
    challenge: (nonce) => other.evidence(nonce),
  };
  await assert.rejects(createVerifier().verify(check), refusedWith('ERR_ATTEST_UNTRUSTED_KEY'));
});

test('an instance without TPM evidence is refused where the policy requires it', { skip }, async (t) => {
  const a = await freshAttestor();
  const { instance } = await tpmDomain(t, [a.ak.digest]);
  const users = await instance('users', code.users, { tpm: false });
  await users.mesh.provide('users', { get: () => 'ok' });
  const gateway = await instance('gateway', code.gateway);
  await assert.rejects(gateway.mesh.call('users', 'get', {}), refusedWith('ERR_ATTEST_MISSING'));
});
