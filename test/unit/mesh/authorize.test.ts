import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ThemisError } from '../../../src/core/errors.js';
import { Identity } from '../../../src/identity/index.js';
import { ENDORSEMENT_CLOCK_SKEW, PolicyAuthority, endorse, verifyEndorsement, type IdentifiedCaller } from '../../../src/mesh/index.js';
import { authorityFor, code, domainPolicy, hostA, hostB, is, load, network, owner, sha256, startInstance } from './helpers.js';

const caller = (service: string): IdentifiedCaller => authorityFor().identify(startInstance(hostA, { service }).remote);

test('a properly endorsed instance is identified through the full chain', () => {
  const authority = authorityFor();
  const { identity, remote } = startInstance(hostB, { service: 'users' });
  assert.deepEqual(authority.identify(remote), { service: 'users', hostPub: hostB.publicKey, codeDigest: code.users, instancePub: identity.publicKey });
});

test('a service whose digests are [] accepts any code (development mode)', () => {
  const { remote } = startInstance(hostA, { service: 'transactions', codeDigest: sha256('whatever was built today') });
  assert.equal(authorityFor().identify(remote).service, 'transactions');
});

test('endorse / verifyEndorsement round-trip the endorsed fields', () => {
  const now = Date.now();
  const instance = Identity.generate(network);
  const bytes = endorse(hostA, { instancePub: instance.publicKey, trustDomain: 'microbank', service: 'users', codeDigest: code.users, ttlMs: 60_000, now });
  assert.deepEqual(verifyEndorsement(bytes, now), {
    hostPub: hostA.publicKey,
    instancePub: instance.publicKey,
    trustDomain: 'microbank',
    service: 'users',
    codeDigest: code.users,
    issuedAt: now,
    expiresAt: now + 60_000,
  });
  assert.equal(verifyEndorsement(bytes, now + 60_000 + ENDORSEMENT_CLOCK_SKEW - 1).service, 'users');
  assert.throws(() => endorse(hostA, { instancePub: instance.publicKey, trustDomain: 'Micro Bank', service: 'users', codeDigest: code.users }), RangeError);
  assert.throws(() => endorse(hostA, { instancePub: instance.publicKey, trustDomain: 'microbank', service: 'users', codeDigest: code.users, ttlMs: 0 }), RangeError);
});

test('a specific rule allows exactly its caller, target and methods', () => {
  const authority = authorityFor();
  const gateway = caller('gateway');
  authority.authorize(gateway, 'users', 'create');
  authority.authorize(gateway, 'users', 'login');
  assert.throws(() => authority.authorize(gateway, 'users', 'delete'), is('ERR_MESH_FORBIDDEN'));
  assert.throws(() => authority.authorize(caller('accounts'), 'users', 'login'), is('ERR_MESH_FORBIDDEN'));
  assert.throws(() => authority.authorize(gateway, 'transactions', 'list'), is('ERR_MESH_FORBIDDEN'));
  authority.authorize(caller('users'), 'transactions', 'list');
});

test('"*" as caller lets any identified service call; "*" as methods allows every method', () => {
  const authority = authorityFor();
  for (const service of ['gateway', 'users', 'transactions', 'accounts']) {
    for (const method of ['open', 'balance', 'transfer']) authority.authorize(caller(service), 'accounts', method);
  }
});

test('anything no rule allows is denied, with a message that says which rule to add', () => {
  const authority = authorityFor();
  assert.throws(
    () => authority.authorize(caller('accounts'), 'gateway', 'refund'),
    (err) => {
      assert.ok(err instanceof ThemisError && err.code === 'ERR_MESH_FORBIDDEN' && err.expose);
      assert.equal(
        err.message,
        'service "accounts" may not call gateway.refund: no rule of policy seq 1 of trust domain microbank allows it; ' +
          'add one under `rules:` (e.g. { from: accounts, to: gateway, methods: [refund] }) and re-sign with `themis policy sign`',
      );
      return true;
    },
  );
});

test('without a policy nothing is identified or allowed, and nobody may issue tokens', () => {
  const authority = new PolicyAuthority(owner.publicKey);
  assert.equal(authority.policy, null);
  assert.throws(() => authority.identify(startInstance(hostA, { service: 'users' }).remote), is('ERR_MESH_NO_POLICY'));
  assert.throws(() => authority.authorize(caller('gateway'), 'users', 'login'), is('ERR_MESH_NO_POLICY'));
  assert.equal(authority.mayIssueTokens('gateway'), false);
});

test('only token issuers of the policy may mint principal tokens', () => {
  const authority = authorityFor();
  assert.equal(authority.mayIssueTokens('gateway'), true);
  assert.equal(authority.mayIssueTokens('users'), false);
  assert.equal(authority.mayIssueTokens('billing'), false);
});

test('update puts a newer policy in force and ignores the same seq', () => {
  const authority = authorityFor(domainPolicy({ seq: 2 }));
  assert.equal(load(authority, domainPolicy({ seq: 2, revoked: [hostA] })), false);
  assert.equal(authority.policy?.revoked.length, 0);
  assert.equal(load(authority, domainPolicy({ seq: 5 })), true);
  assert.equal(authority.policy?.seq, 5);
});

test('a cached endorsement is still checked for expiry on every call', () => {
  const authority = authorityFor();
  const now = Date.now();
  const { remote } = startInstance(hostA, { service: 'users', ttlMs: 1000, now });
  assert.equal(authority.identify(remote, now).service, 'users');
  assert.equal(authority.identify(remote, now + 1000).service, 'users');
  assert.throws(() => authority.identify(remote, now + 1000 + ENDORSEMENT_CLOCK_SKEW), is('ERR_MESH_ENDORSEMENT_EXPIRED'));
});

test('a tiny cache still gives the same answers, and changing a result cannot change the next one', () => {
  const authority = new PolicyAuthority(owner.publicKey, { endorsementCacheSize: 1 });
  load(authority, domainPolicy());
  const users = startInstance(hostA, { service: 'users' }).remote;
  const gateway = startInstance(hostB, { service: 'gateway' }).remote;
  for (let i = 0; i < 3; i++) {
    assert.equal(authority.identify(users).service, 'users');
    assert.equal(authority.identify(gateway).service, 'gateway');
  }
  const result = authority.identify(users);
  result.codeDigest.fill(0);
  assert.deepEqual(authority.identify(users).codeDigest, code.users);
});
