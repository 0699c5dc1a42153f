import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createHostAttestor, createVerifier, verifyHostEvidence, type HostAttestor } from '../../src/attest/index.js';
import { isThemisError } from '../../src/core/errors.js';
import { Identity } from '../../src/identity/index.js';
import { PolicyAuthority, endorse, endorsementCredential, signPolicy, type Policy } from '../../src/mesh/index.js';
import { bankPolicy, code, refusedWith } from './helpers/attest.js';
import { LISTEN, meshes, network, sha256, startDht } from './helpers/mesh.js';

// Code-digest attestation: no TPM anywhere (issue 6: "the runtime without a TPM still works").

const host = Identity.generate(network);
const policyFor = (extra = ''): Policy => bankPolicy(host, extra);

test('the code-digest attestor logs each measurement once and answers a nonce with signed evidence', async () => {
  const attestor = await createHostAttestor({ mode: 'code-digest' }, host);
  assert.equal(attestor.kind, 'code-digest');
  const instance = Identity.generate(network);
  assert.deepEqual(await attestor.credentials({ nodeId: instance.nodeId, service: 'users', digest: code.users }), [], 'the endorsement carries the digest');
  await attestor.measure({ service: 'users', digest: code.users });
  await attestor.measure({ service: 'gateway', digest: code.gateway });
  assert.deepEqual(attestor.log(), [
    { service: 'users', digest: code.users },
    { service: 'gateway', digest: code.gateway },
  ]);
  const nonce = randomBytes(32);
  const evidence = await attestor.evidence(nonce);
  const verified = verifyHostEvidence(evidence, { nonce, policy: policyFor(), hostPub: host.publicKey });
  assert.equal(verified.kind, 'code-digest');
  assert.deepEqual(verified.hostPub, host.publicKey);

  assert.throws(() => verifyHostEvidence(evidence, { nonce: randomBytes(32), policy: policyFor() }), refusedWith('ERR_ATTEST_NONCE'));
  assert.throws(() => verifyHostEvidence(evidence, { nonce, policy: policyFor(), hostPub: Identity.generate(network).publicKey }), refusedWith('ERR_ATTEST_UNTRUSTED_KEY'));
  const tampered = Buffer.from(evidence);
  tampered[tampered.length - 70]! ^= 1; // inside the signed body
  assert.throws(() => verifyHostEvidence(tampered, { nonce, policy: policyFor() }), refusedWith('ERR_ATTEST_SIGNATURE'));
  const tpmRequired = policyFor(`attestation: { require: tpm, tpmKeys: ["${sha256('an AK').toString('hex')}"] }\n`);
  assert.throws(() => verifyHostEvidence(evidence, { nonce, policy: tpmRequired }), refusedWith('ERR_ATTEST_MISSING'));
  await attestor.close();
});

test('code modified after the policy was signed: the host log holding it is refused', async () => {
  const attestor = await createHostAttestor({ mode: 'code-digest' }, host);
  await attestor.measure({ service: 'users', digest: code.usersModified });
  const nonce = randomBytes(32);
  const evidence = await attestor.evidence(nonce);
  assert.throws(() => verifyHostEvidence(evidence, { nonce, policy: policyFor() }), (err: unknown) => {
    refusedWith('ERR_ATTEST_MEASUREMENT_REFUSED')(err);
    assert.match((err as Error).message, /code changed after the policy was signed/);
    return true;
  });
});

test('instances started with code-digest attestors call each other without a TPM; modified code is refused', async (t) => {
  const { servers, bootstrap } = await startDht(t);
  const owner = Identity.generate(network);
  await servers[0]!.store(signPolicy(owner, policyFor()));
  const attestor = await createHostAttestor({ mode: 'code-digest' }, host);
  const verifier = createVerifier();
  const start = meshes(t);
  const instance = async (service: 'users' | 'gateway', digest: Buffer) => {
    const identity = Identity.generate(network);
    const extra = await attestor.credentials({ nodeId: identity.nodeId, service, digest });
    const endorsement = endorsementCredential(endorse(host, { instancePub: identity.publicKey, trustDomain: 'bank', service, codeDigest: digest }));
    const mesh = await start({ identity, bootstrap, listen: LISTEN, trust: { owner: owner.publicKey }, credentials: [endorsement, ...extra], attestation: { verifier, evidence: (nonce) => attestor.evidence(nonce) } });
    await mesh.refreshPolicy();
    return mesh;
  };
  const users = await instance('users', code.users);
  await users.provide('users', { get: () => 'ok' });
  const gateway = await instance('gateway', code.gateway);
  assert.equal(await gateway.call('users', 'get', {}), 'ok');
  assert.equal(verifier.tpm.quotesVerified, 0, 'no TPM, no quote');

  await users.close();
  const patched = await instance('users', code.usersModified);
  await patched.provide('users', { get: () => 'patched' });
  await gateway.refreshPolicy();
  await assert.rejects(gateway.call('users', 'get', {}, { retries: 3 }), refusedWith('ERR_MESH_DIGEST_NOT_ALLOWED'));
});

test('a policy that requires a TPM refuses on a peer without a verifier, and a missing TPM fails the attestor with a hint', async () => {
  const owner = Identity.generate(network);
  const policy = policyFor(`attestation: { require: tpm, tpmKeys: ["${sha256('an AK').toString('hex')}"] }\n`);
  const authority = new PolicyAuthority(owner.publicKey);
  authority.update({ policy, owner: owner.publicKey, seq: 1 });
  const instance = Identity.generate(network);
  const remote = { identityPub: instance.publicKey, credentials: [endorsementCredential(endorse(host, { instancePub: instance.publicKey, trustDomain: 'bank', service: 'users', codeDigest: code.users }))] };
  const caller = authority.identify(remote);
  await assert.rejects(authority.attest(remote, caller, async () => Buffer.alloc(0)), refusedWith('ERR_ATTEST_UNAVAILABLE'));

  let attestor: HostAttestor | undefined;
  await assert.rejects(
    (async () => {
      attestor = await createHostAttestor({ mode: 'tpm', tpm: 'socket:/nonexistent/themis/tpm.sock' }, host);
    })(),
    refusedWith('ERR_ATTEST_TPM'),
  );
  assert.equal(attestor, undefined);
  await assert.rejects(createHostAttestor({ mode: 'tpm', tpm: 'tpm0' }, host), RangeError);
});
