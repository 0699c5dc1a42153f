import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RecordType, createRecord, mutableKey, policyKey } from '../../../src/dht/index.js';
import {
  POLICY_LIMITS,
  POLICY_TTL,
  decodePolicy,
  encodePolicy,
  openPolicyRecord,
  parsePolicyYaml,
  policyToYaml,
  signPolicy,
  type Policy,
} from '../../../src/mesh/index.js';
import { b32, code, domainPolicy, domainYaml, hostA, hostB, is, network, owner, sha256, stranger } from './helpers.js';

const hex = (bytes: Buffer): string => bytes.toString('hex');

test('the YAML source form parses into a typed policy in canonical order', () => {
  const policy = domainPolicy({ seq: 7, revoked: [stranger, hostB] });
  assert.equal(policy.trustDomain, 'microbank');
  assert.equal(policy.seq, 7);
  assert.equal(policy.refreshSeconds, 30);
  assert.deepEqual(
    policy.hosts.map((host) => host.key),
    [hostA.publicKey, hostB.publicKey].sort(Buffer.compare),
  );
  assert.deepEqual(
    policy.services.map((service) => service.name),
    ['accounts', 'gateway', 'transactions', 'users'],
  );
  assert.deepEqual(policy.services.find((service) => service.name === 'users')?.digests, [code.users]);
  assert.deepEqual(policy.services.find((service) => service.name === 'transactions')?.digests, []);
  assert.deepEqual(policy.rules, [
    { from: 'gateway', to: 'users', methods: ['create', 'login'] },
    { from: '*', to: 'accounts', methods: ['*'] },
    { from: 'users', to: 'transactions', methods: ['list'] },
  ]);
  assert.deepEqual(policy.revoked, [stranger.publicKey, hostB.publicKey].sort(Buffer.compare));
  assert.deepEqual(policy.tokenIssuers, ['gateway']);
});

test('optional fields default: no rules, nothing revoked, no token issuers, refresh every 30 s', () => {
  const policy = parsePolicyYaml('trustDomain: tiny\nseq: 1\nhosts: []\nservices: {}\n');
  assert.deepEqual(policy, { trustDomain: 'tiny', seq: 1, hosts: [], services: [], rules: [], revoked: [], tokenIssuers: [], refreshSeconds: 30 });
});

test('semantically equal YAML files encode identically, whatever their order and style', () => {
  const reordered = `
refreshSeconds: 30
tokenIssuers: ["gateway"]
revoked: []
services:
  transactions:
    digests: []
  accounts: { digests: [${hex(code.accounts)}] }
  users:
    digests:
      - "${hex(code.users)}"
  gateway: { digests: ['${hex(code.gateway)}'] }
hosts:
  - { key: ${b32(hostB)}, name: host-1 }
  - key: ${b32(hostA)}
    name: host-0
seq: 1
trustDomain: "microbank"
rules:
  - from: gateway
    to: users
    methods: [login, create]
  - { from: "*", to: accounts, methods: ["*"] }
  - { to: transactions, methods: [list], from: users }
`;
  assert.deepEqual(encodePolicy(parsePolicyYaml(reordered)), encodePolicy(domainPolicy()));
  // Rules keep their source order, so swapping two rules is a different policy.
  const swapped = domainYaml().replace(/( {2}- \{ from: gateway.*\n)( {2}- \{ from: "\*".*\n)/, '$2$1');
  assert.notEqual(swapped, domainYaml());
  assert.notDeepEqual(encodePolicy(parsePolicyYaml(swapped)), encodePolicy(domainPolicy()));
});

test('property: any shuffle of the sorted lists leaves the encoding unchanged', () => {
  const policy = domainPolicy({ revoked: [stranger, hostA, hostB] });
  const withDigests: Policy = {
    ...policy,
    services: policy.services.map((service) => ({ ...service, digests: [...service.digests, sha256(`${service.name} v2`), sha256(`${service.name} v3`)] })),
    rules: [...policy.rules, { from: 'gateway', to: 'accounts', methods: ['open', 'close', 'balance', 'transfer'] }],
    tokenIssuers: ['users', 'gateway', 'accounts'],
  };
  const expected = encodePolicy(withDigests);
  const shuffle = <T>(items: readonly T[]) => fc.shuffledSubarray([...items], { minLength: items.length, maxLength: items.length });
  fc.assert(
    fc.property(
      shuffle(withDigests.hosts),
      shuffle(withDigests.services.map((service) => ({ ...service, digests: [...service.digests].reverse() }))),
      shuffle(withDigests.revoked),
      shuffle(withDigests.tokenIssuers),
      shuffle(withDigests.rules[3]!.methods),
      (hosts, services, revoked, tokenIssuers, methods) => {
        const rules = [...withDigests.rules.slice(0, 3), { ...withDigests.rules[3]!, methods }];
        assert.deepEqual(encodePolicy({ ...withDigests, hosts, services, revoked, tokenIssuers, rules }), expected);
      },
    ),
    { numRuns: 200 },
  );
});

test('encode and decode round-trip; decode refuses truncated, trailing, oversized and out-of-order input', () => {
  const policy = domainPolicy({ revoked: [stranger] });
  const bytes = encodePolicy(policy);
  assert.deepEqual(decodePolicy(bytes), policy);
  for (let length = 0; length < bytes.length; length++) assert.throws(() => decodePolicy(bytes.subarray(0, length)), is('ERR_DECODE_TRUNCATED'), `length ${length}`);
  assert.throws(() => decodePolicy(Buffer.concat([bytes, Buffer.from([0])])), is('ERR_DECODE_TRAILING'));
  assert.throws(() => decodePolicy(Buffer.alloc(POLICY_LIMITS.bytes + 1)), is('ERR_DECODE_TOO_LARGE'));
  const wrongVersion = Buffer.from(bytes);
  wrongVersion[0] = 3; // 1 and 2 (with an attestation section) are defined
  assert.throws(() => decodePolicy(wrongVersion), is('ERR_DECODE_INVALID'));
  // Swap the two host entries (bytes[32] key ‖ str8 name, both names 6 bytes): same content, wrong order.
  const hostsAt = 1 + 1 + 'microbank'.length + 8 + 4 + 2;
  const entry = 32 + 1 + 'host-0'.length;
  const unsorted = Buffer.concat([bytes.subarray(0, hostsAt), bytes.subarray(hostsAt + entry, hostsAt + 2 * entry), bytes.subarray(hostsAt, hostsAt + entry), bytes.subarray(hostsAt + 2 * entry)]);
  assert.throws(() => decodePolicy(unsorted), (err) => is('ERR_MESH_POLICY_INVALID')(err) && /not canonical/.test((err as Error).message));
});

test('decode applies the same rules as the YAML reader', () => {
  const bytes = encodePolicy(domainPolicy());
  const seqAt = 1 + 1 + 'microbank'.length;
  const zeroSeq = Buffer.from(bytes);
  zeroSeq.fill(0, seqAt, seqAt + 8);
  assert.throws(() => decodePolicy(zeroSeq), (err) => is('ERR_MESH_POLICY_INVALID')(err) && /policy field seq: /.test((err as Error).message));
  const badDomain = Buffer.from(bytes);
  badDomain[2] = 'M'.charCodeAt(0);
  assert.throws(() => decodePolicy(badDomain), (err) => is('ERR_MESH_POLICY_INVALID')(err) && /trustDomain/.test((err as Error).message));
});

test('encodePolicy refuses invalid hand-built policies and policies too large for a record', () => {
  const policy = domainPolicy();
  assert.throws(() => encodePolicy({ ...policy, seq: 0 }), is('ERR_MESH_POLICY_INVALID'));
  assert.throws(
    () => encodePolicy({ ...policy, rules: [{ from: 'gateway', to: 'billing', methods: ['pay'] }] }),
    (err) => is('ERR_MESH_POLICY_INVALID')(err) && (err as Error).message.startsWith('policy field rules[0].to: '),
  );
  const keys = (n: number, tag: string) => Array.from({ length: n }, (_, i) => sha256(`${tag} ${i}`));
  assert.throws(
    () => encodePolicy({ ...policy, revoked: keys(POLICY_LIMITS.listItems + 1, 'revoked') }),
    (err) => is('ERR_MESH_POLICY_INVALID')(err) && /^policy field revoked: too many entries \(1025\); the limit is 1024$/.test((err as Error).message),
  );
  const hosts = keys(POLICY_LIMITS.listItems, 'host').map((key, i) => ({ name: `host-with-a-long-descriptive-name-${i}`, key }));
  assert.throws(
    () => encodePolicy({ ...policy, hosts, revoked: keys(POLICY_LIMITS.listItems, 'revoked') }),
    (err) => is('ERR_MESH_POLICY_INVALID')(err) && /a policy record holds at most 65536/.test((err as Error).message),
  );
});

/** [what is wrong, YAML text, line, column, a fragment of the message] */
const BAD_POLICIES: readonly [string, string, number, number, RegExp][] = [
  ['not YAML', 'trustDomain: [microbank\nseq: 1\n', 2, 1, /not valid YAML/],
  ['an empty file', '', 1, 1, /expected the policy \(a mapping with keys trustDomain, seq, .*\), got nothing/],
  ['a list at the top', '- trustDomain: x\n', 1, 1, /expected the policy \(a mapping with keys .*\), got a list/],
  ['an unknown key', 'trustDomain: x\nseq: 1\nhosts: []\nservics: {}\n', 4, 1, /unknown key "servics" in the policy; expected trustDomain, seq/],
  ['a missing key', 'trustDomain: x\nseq: 1\nhosts: []\n', 1, 1, /the policy is missing "services"/],
  ['a duplicate key', 'trustDomain: x\nseq: 1\nseq: 2\nhosts: []\nservices: {}\n', 3, 1, /key "seq" appears twice/],
  ['a number for a name', 'trustDomain: 42\nseq: 1\nhosts: []\nservices: {}\n', 1, 14, /expected a trust domain name .* \(quote it if it looks like a number\), got number 42/],
  ['an invalid name', 'trustDomain: Micro Bank\nseq: 1\nhosts: []\nservices: {}\n', 1, 14, /trust domain "Micro Bank" is not a valid name: expected 1\.\.64 characters a-z, 0-9 and -/],
  ['seq zero', 'trustDomain: x\nseq: 0\nhosts: []\nservices: {}\n', 2, 6, /seq must be a positive integer/],
  ['seq a fraction', 'trustDomain: x\nseq: 1.5\nhosts: []\nservices: {}\n', 2, 6, /expected a positive integer, got number 1\.5/],
  ['seq a string', 'trustDomain: x\nseq: "3"\nhosts: []\nservices: {}\n', 2, 6, /expected a positive integer, got "3"/],
  ['hosts a mapping', 'trustDomain: x\nseq: 1\nhosts: { a: b }\nservices: {}\n', 3, 8, /expected a list of hosts \(\{ name, key \}\), got a mapping/],
  ['a host without key', 'trustDomain: x\nseq: 1\nhosts:\n  - name: a\nservices: {}\n', 4, 5, /a host is missing "key"/],
  ['a host key in upper case', `trustDomain: x\nseq: 1\nhosts:\n  - name: a\n    key: ${b32(hostA).toUpperCase()}\nservices: {}\n`, 5, 10, /expected an Ed25519 public key in base32/],
  ['a short host key', `trustDomain: x\nseq: 1\nhosts:\n  - name: a\n    key: ${b32(hostA).slice(0, 50)}\nservices: {}\n`, 5, 10, /expected an Ed25519 public key in base32/],
  ['a host listed twice', `trustDomain: x\nseq: 1\nhosts:\n  - { name: a, key: ${b32(hostA)} }\n  - { name: b, key: ${b32(hostA)} }\nservices: {}\n`, 5, 21, /host key .* is listed twice/],
  ['a short digest', `trustDomain: x\nseq: 1\nhosts: []\nservices:\n  users: { digests: ["${hex(code.users).slice(1)}"] }\n`, 5, 22, /expected a SHA-256 code digest \(64 hex digits\)/],
  ['a digest that is not hex', `trustDomain: x\nseq: 1\nhosts: []\nservices:\n  users: { digests: ["${'z'.repeat(64)}"] }\n`, 5, 22, /expected a SHA-256 code digest/],
  ['a service without digests', 'trustDomain: x\nseq: 1\nhosts: []\nservices:\n  users:\n', 5, 9, /expected a service \(a mapping with keys digests\), got nothing/],
  ['a service declared twice', 'trustDomain: x\nseq: 1\nhosts: []\nservices:\n  users: { digests: [] }\n  users: { digests: [] }\n', 6, 3, /service "users" is listed twice/],
  ['a rule to an unknown service', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\nrules:\n  - { from: a, to: billing, methods: [pay] }\n', 6, 20, /rule 1: to "billing" is not a service of this policy; declare it under `services:`/],
  ['a rule from an unknown service', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\nrules:\n  - { from: b, to: a, methods: [pay] }\n', 6, 13, /rule 1: from "b" is not a service .* or write "\*"/],
  ['a rule without methods', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\nrules:\n  - { from: a, to: a, methods: [] }\n', 6, 32, /a rule allows at least one method/],
  ['"*" beside other methods', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\nrules:\n  - { from: a, to: a, methods: [get, "*"] }\n', 6, 38, /"\*" already allows every method/],
  ['a bad method name', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\nrules:\n  - { from: a, to: a, methods: ["get all"] }\n', 6, 33, /method "get all" is not a valid method name/],
  ['a token issuer that is no service', 'trustDomain: x\nseq: 1\nhosts: []\nservices: { a: { digests: [] } }\ntokenIssuers: [gateway]\n', 5, 16, /token issuer "gateway" is not a service of this policy/],
  ['a key revoked twice', `trustDomain: x\nseq: 1\nhosts: []\nservices: {}\nrevoked:\n  - ${b32(hostA)}\n  - ${b32(hostA)}\n`, 7, 5, /revoked key .* is listed twice/],
  ['refreshing too often', 'trustDomain: x\nseq: 1\nhosts: []\nservices: {}\nrefreshSeconds: 1\n', 5, 17, /refreshSeconds must be an integer from 5 to 86400, got 1/],
  ['an alias', 'trustDomain: &d x\nseq: 1\nhosts: []\nservices: {}\ntokenIssuers: [*d]\n', 5, 16, /got an alias \(anchors and aliases are not supported/],
];

for (const [what, text, line, column, message] of BAD_POLICIES) {
  test(`a policy with ${what} is refused at line ${line}, column ${column}`, () => {
    assert.throws(
      () => parsePolicyYaml(text, 'microbank.yaml'),
      (err) => {
        assert.ok(is('ERR_MESH_POLICY_INVALID')(err), String(err));
        const { message: text } = err as Error;
        assert.ok(text.startsWith(`microbank.yaml:${line}:${column}: `), text);
        assert.match(text, message);
        return true;
      },
    );
  });
}

test('policyToYaml prints a file that parses back to the same policy', () => {
  const policy = domainPolicy({ seq: 4, revoked: [stranger] });
  const text = policyToYaml(policy);
  assert.match(text, /^trustDomain: microbank\nseq: 4\n/);
  assert.deepEqual(parsePolicyYaml(text), policy);
  // Names that YAML would read as numbers, booleans or null come out quoted.
  const tricky = parsePolicyYaml('trustDomain: "2024"\nseq: 1\nhosts: [{ name: "true", key: ' + b32(hostA) + ' }]\nservices: { "null": { digests: [] }, "1e5": { digests: [] } }\nrules: [{ from: "1e5", to: "null", methods: ["*"] }]\n');
  assert.deepEqual(parsePolicyYaml(policyToYaml(tricky)), tricky);
});

test('signPolicy publishes the policy as the owner record; openPolicyRecord verifies owner, type and seq', () => {
  const now = Date.now();
  const policy = domainPolicy({ seq: 3 });
  const record = signPolicy(owner, policy, { now });
  const opened = openPolicyRecord(record, owner.publicKey, network, now);
  assert.deepEqual(opened, { policy, owner: owner.publicKey, seq: 3 });
  assert.equal(openPolicyRecord(record, owner.publicKey, network, now + POLICY_TTL - 1).seq, 3);
  assert.throws(() => openPolicyRecord(record, owner.publicKey, network, now + POLICY_TTL + 10 * 60_000), is('ERR_DHT_RECORD_EXPIRED'));
  assert.throws(() => openPolicyRecord(record, hostA.publicKey, network, now), is('ERR_MESH_POLICY_OWNER'));

  const key = policyKey(owner.publicKey);
  const seqMismatch = createRecord(owner, { type: RecordType.Policy, key, value: encodePolicy(policy), seq: 4, now });
  assert.throws(() => openPolicyRecord(seqMismatch, owner.publicKey, network, now), (err) => is('ERR_MESH_POLICY_INVALID')(err) && /seq 3 differs from its record's seq 4/.test((err as Error).message));
  const garbage = createRecord(owner, { type: RecordType.Policy, key, value: Buffer.from('trustDomain: microbank'), seq: 3, now });
  assert.throws(() => openPolicyRecord(garbage, owner.publicKey, network, now), is('ERR_MESH_POLICY_INVALID'));
  const mutable = createRecord(owner, { type: RecordType.Mutable, key: mutableKey(owner.publicKey), value: encodePolicy(policy), seq: 3, now });
  assert.throws(() => openPolicyRecord(mutable, owner.publicKey, network, now), (err) => is('ERR_MESH_POLICY_INVALID')(err) && /not a policy/.test((err as Error).message));
});
