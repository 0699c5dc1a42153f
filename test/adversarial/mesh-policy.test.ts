import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Writer } from '../../src/core/codec.js';
import { RecordType, createRecord, policyKey } from '../../src/dht/index.js';
import { CredentialType } from '../../src/handshake/index.js';
import { Identity, sealEnvelope } from '../../src/identity/index.js';
import {
  ENDORSEMENT_CLOCK_SKEW,
  ENDORSEMENT_TAG,
  MAX_ENDORSEMENT_TTL,
  PolicyAuthority,
  encodePolicy,
  endorsementCredential,
  openPolicyRecord,
  signPolicy,
} from '../../src/mesh/index.js';
import {
  authorityFor,
  code,
  domainPolicy,
  hostA,
  hostB,
  is,
  load,
  network,
  owner,
  seenByCallee,
  startInstance,
  stranger,
} from '../unit/mesh/helpers.js';

// Attacks on the callee's decision (issue 4: forged policy, rolled-back seq, endorsement for
// another service, …). Each remote is what a callee sees after a real identity-proof exchange.

test('a forged policy record (any flipped bit) is refused and the policy in force stays', () => {
  const authority = authorityFor(domainPolicy({ seq: 1 }));
  const record = signPolicy(owner, domainPolicy({ seq: 2, hosts: [hostA, hostB, stranger] }));
  for (let i = 0; i < record.length; i++) {
    const forged = Buffer.from(record);
    forged[i]! ^= 1 << (i % 8);
    assert.throws(() => authority.update(openPolicyRecord(forged, owner.publicKey, network)), is('ERR_DHT_RECORD_INVALID'), `flip at byte ${i}`);
  }
  assert.equal(authority.policy?.seq, 1);
  assert.throws(() => authority.identify(startInstance(stranger, { service: 'users' }).remote), is('ERR_MESH_UNTRUSTED_HOST'));
});

test('a policy signed by another key is refused, under its own key or under the owner’s', () => {
  const mallory = Identity.generate(network);
  const evil = domainPolicy({ seq: 99, hosts: [stranger] });
  assert.throws(() => openPolicyRecord(signPolicy(mallory, evil), owner.publicKey, network), is('ERR_MESH_POLICY_OWNER'));
  const underOwnersKey = createRecord(mallory, { type: RecordType.Policy, key: policyKey(owner.publicKey), value: encodePolicy(evil), seq: 99 });
  assert.throws(() => openPolicyRecord(underOwnersKey, owner.publicKey, network), is('ERR_DHT_RECORD_INVALID'));
  const authority = authorityFor();
  assert.throws(() => load(authority, evil, mallory), is('ERR_MESH_POLICY_OWNER'));
  assert.equal(authority.policy?.seq, 1);
});

test('a rolled-back policy seq is refused and the newer policy stays in force', () => {
  const older = domainPolicy({ seq: 2 });
  const authority = authorityFor(domainPolicy({ seq: 3, revoked: [hostB] }));
  assert.throws(() => load(authority, older), is('ERR_MESH_POLICY_ROLLBACK'));
  assert.equal(authority.policy?.seq, 3);
  assert.throws(() => authority.identify(startInstance(hostB, { service: 'users' }).remote), is('ERR_MESH_REVOKED'));
});

test('an endorsement for another service is refused, with a digest allowed only for the other service', () => {
  const authority = authorityFor();
  const usersWithAccountsCode = startInstance(hostA, { service: 'users', codeDigest: code.accounts });
  assert.throws(() => authority.identify(usersWithAccountsCode.remote), is('ERR_MESH_DIGEST_NOT_ALLOWED'));
  const accountsWithUsersCode = startInstance(hostA, { service: 'accounts', codeDigest: code.users });
  assert.throws(() => authority.identify(accountsWithUsersCode.remote), is('ERR_MESH_DIGEST_NOT_ALLOWED'));
  assert.throws(() => authority.identify(startInstance(hostA, { service: 'billing' }).remote), is('ERR_MESH_UNKNOWN_SERVICE'));
  assert.equal(authority.identify(startInstance(hostA, { service: 'accounts' }).remote).service, 'accounts');
});

test('a stolen endorsement (for another instance key) is refused', () => {
  const victim = startInstance(hostA, { service: 'accounts' });
  const mallory = Identity.generate(network);
  const thief = seenByCallee(mallory, [endorsementCredential(victim.endorsement)]);
  assert.throws(() => authorityFor().identify(thief), is('ERR_MESH_WRONG_INSTANCE'));
});

test('an endorsement by a host the policy does not list is refused', () => {
  assert.throws(
    () => authorityFor().identify(startInstance(stranger, { service: 'users' }).remote),
    (err) => is('ERR_MESH_UNTRUSTED_HOST')(err) && /add it under `hosts:` and re-sign with `themis policy sign`/.test((err as Error).message),
  );
});

test('an endorsement by a revoked host is refused', () => {
  const authority = authorityFor(domainPolicy({ revoked: [hostA] }));
  assert.throws(() => authority.identify(startInstance(hostA, { service: 'users' }).remote), is('ERR_MESH_REVOKED'));
  assert.equal(authority.identify(startInstance(hostB, { service: 'users' }).remote).service, 'users');
});

test('a revoked instance is refused even with a valid endorsement', () => {
  const instance = startInstance(hostA, { service: 'users' });
  const authority = authorityFor(domainPolicy({ revoked: [instance.identity] }));
  assert.throws(() => authority.identify(instance.remote), is('ERR_MESH_REVOKED'));
});

test('an expired endorsement, or one issued in the future, is refused', () => {
  const authority = authorityFor();
  const now = Date.now();
  const { remote } = startInstance(hostA, { service: 'users', ttlMs: 60_000, now });
  assert.equal(authority.identify(remote, now + 60_000 + ENDORSEMENT_CLOCK_SKEW - 1).service, 'users');
  assert.throws(() => authority.identify(remote, now + 60_000 + ENDORSEMENT_CLOCK_SKEW), is('ERR_MESH_ENDORSEMENT_EXPIRED'));
  const early = startInstance(hostA, { service: 'users', now: now + ENDORSEMENT_CLOCK_SKEW + 1000 });
  assert.throws(() => authority.identify(early.remote, now), is('ERR_MESH_ENDORSEMENT_INVALID'));
});

test('an endorsement for another trust domain is refused', () => {
  assert.throws(() => authorityFor().identify(startInstance(hostA, { service: 'users', trustDomain: 'otherbank' }).remote), is('ERR_MESH_WRONG_DOMAIN'));
});

test('a peer presenting two endorsement credentials is refused, even two valid ones', () => {
  const authority = authorityFor();
  const { identity, endorsement } = startInstance(hostA, { service: 'users' });
  const credential = endorsementCredential(endorsement);
  assert.throws(() => authority.identify(seenByCallee(identity, [credential, credential])), is('ERR_MESH_ENDORSEMENT_INVALID'));
  const asGateway = startInstance(hostB, { service: 'gateway', instancePub: identity.publicKey }).endorsement;
  assert.throws(() => authority.identify(seenByCallee(identity, [credential, endorsementCredential(asGateway)])), is('ERR_MESH_ENDORSEMENT_INVALID'));
});

test('a peer without an endorsement is refused; credentials of other types do not count', () => {
  const identity = Identity.generate(network);
  const authority = authorityFor();
  assert.throws(() => authority.identify(seenByCallee(identity, [])), is('ERR_MESH_UNENDORSED'));
  const { endorsement } = startInstance(hostA, { service: 'users', instancePub: identity.publicKey });
  const asAttestation = { type: CredentialType.Attestation, data: endorsement };
  assert.throws(() => authority.identify(seenByCallee(identity, [asAttestation])), is('ERR_MESH_UNENDORSED'));
  assert.equal(authority.identify(seenByCallee(identity, [asAttestation, endorsementCredential(endorsement)])).service, 'users');
});

test('truncated, flipped, trailing or garbage credential bytes are refused as invalid endorsements', () => {
  const authority = authorityFor();
  const { identity, endorsement } = startInstance(hostA, { service: 'users' });
  const refused = (data: Buffer, what: string): void => {
    assert.throws(() => authority.identify(seenByCallee(identity, [endorsementCredential(data)])), is('ERR_MESH_ENDORSEMENT_INVALID'), what);
  };
  for (let length = 0; length < endorsement.length; length++) refused(endorsement.subarray(0, length), `truncated to ${length}`);
  for (let i = 0; i < endorsement.length; i++) {
    const flipped = Buffer.from(endorsement);
    flipped[i]! ^= 1 << (i % 8);
    refused(flipped, `flip at byte ${i}`);
  }
  refused(Buffer.concat([endorsement, Buffer.from([0])]), 'a trailing byte');
  refused(randomBytes(300), 'random bytes');
  refused(signPolicy(hostA, domainPolicy()), 'another signed statement (a record) from the same host');

  // Signed by a trusted host, but malformed inside: a trailing byte in the body, or an overlong life.
  const body = (expiresIn: number, extra: Buffer) => {
    const now = Date.now();
    const w = new Writer().fixed(identity.publicKey, 32).str8('microbank').str8('users').fixed(code.users, 32).u64(now).u64(now + expiresIn);
    return sealEnvelope(hostA, ENDORSEMENT_TAG, Buffer.concat([w.finish(), extra]));
  };
  assert.equal(authority.identify(seenByCallee(identity, [endorsementCredential(body(60_000, Buffer.alloc(0)))])).service, 'users');
  refused(body(60_000, Buffer.from([0])), 'a trailing byte in the signed body');
  refused(body(MAX_ENDORSEMENT_TTL + 1, Buffer.alloc(0)), 'a lifetime above the maximum');
  refused(body(0, Buffer.alloc(0)), 'an empty lifetime');
});

test('a policy update that revokes a host takes effect on the next identify() call', () => {
  const authority = new PolicyAuthority(owner.publicKey);
  load(authority, domainPolicy({ seq: 1 }));
  const onA = startInstance(hostA, { service: 'users' }).remote;
  const onB = startInstance(hostB, { service: 'users' }).remote;
  assert.equal(authority.identify(onA).service, 'users');
  assert.equal(authority.identify(onA).service, 'users'); // now served from the endorsement cache

  load(authority, domainPolicy({ seq: 2, revoked: [hostA] }));
  assert.throws(() => authority.identify(onA), is('ERR_MESH_REVOKED'));
  assert.equal(authority.identify(onB).service, 'users');

  load(authority, domainPolicy({ seq: 3, hosts: [hostA] }));
  assert.throws(() => authority.identify(onB), is('ERR_MESH_UNTRUSTED_HOST'));
  assert.equal(authority.identify(onA).service, 'users');
});
