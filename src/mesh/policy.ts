import { Document, LineCounter, isMap, isNode, isScalar, isSeq, parseDocument } from 'yaml';
import { fromBase32, fromHex, toBase32, toHex } from '../core/bytes.js';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import { DEFAULT_RECORD_LIMITS, RecordType, createRecord, policyKey, verifyRecord } from '../dht/record.js';
import type { Identity, NetworkConfig } from '../identity/index.js';

/**
 * A trust domain's policy (issue 4; DESIGN.md "Mesh — trust domains and actions"): the hosts
 * trusted to endorse instances, the services with their allowed code digests, who may call which
 * methods, and the keys the owner revokes. People write it as YAML; peers read its canonical
 * binary form, signed by the owner key as a DHT record of type Policy under policyKey(owner).
 */
export interface Policy {
  /** 1..64 characters [a-z0-9-]. */
  readonly trustDomain: string;
  /** Version: a newer policy has a higher seq (peers refuse to go back). */
  readonly seq: number;
  /** Hosts trusted to endorse instances, sorted by key. */
  readonly hosts: readonly PolicyHost[];
  /** Every service of the domain, sorted by name. */
  readonly services: readonly PolicyService[];
  /** Who may call which methods, in source order; anything no rule allows is denied. */
  readonly rules: readonly PolicyRule[];
  /** Host or instance public keys the owner revokes, sorted. */
  readonly revoked: readonly Buffer[];
  /** Services allowed to mint end-user principal tokens, sorted. */
  readonly tokenIssuers: readonly string[];
  /** Peers re-fetch the policy at least this often: the bound on how fast an update takes effect. */
  readonly refreshSeconds: number;
  /** What instances prove beyond their host's endorsement; absent = code digest only (DEFAULT_ATTESTATION). */
  readonly attestation?: PolicyAttestation;
}

/** The attestation a trust domain requires (issue 6; docs/attestation.md). */
export interface PolicyAttestation {
  /**
   * 'code-digest': the endorsement's signed code digest, checked against `services` (the default);
   * 'tpm': also a fresh TPM 2.0 quote of the endorsing host by a key of `tpmKeys`, whose event log
   * holds the instance's measurement and nothing the policy does not allow.
   */
  readonly require: AttestationRequirement;
  /** Trusted TPM attestation keys: SHA-256 of each AK's TPMT_PUBLIC (its TPM name without the 000b prefix), sorted. */
  readonly tpmKeys: readonly Buffer[];
  /** A verifier reuses a host's verified quote at most this long. */
  readonly quoteMaxAgeSeconds: number;
}

export type AttestationRequirement = 'code-digest' | 'tpm';

export interface PolicyHost {
  readonly name: string;
  /** Ed25519 public key (32 bytes). */
  readonly key: Buffer;
}

export interface PolicyService {
  readonly name: string;
  /** Allowed SHA-256 code digests (32 bytes each), sorted; empty = any code (development only). */
  readonly digests: readonly Buffer[];
}

export interface PolicyRule {
  /** A service name, or "*" for any endorsed instance of the domain. */
  readonly from: string;
  /** A service name. */
  readonly to: string;
  /** Method names, sorted, or ["*"] for any method. */
  readonly methods: readonly string[];
}

/** A policy record that verified: signed by `owner`, with the record's seq equal to the policy's. */
export interface OpenedPolicy {
  readonly policy: Policy;
  readonly owner: Buffer;
  readonly seq: number;
}

/** "*" in a rule: any endorsed instance (`from`) or any method (`methods`). */
export const ANY = '*';
export const DEFAULT_REFRESH_SECONDS = 30;

export const POLICY_LIMITS = Object.freeze({
  /** The canonical encoding must fit in one DHT record value. */
  bytes: DEFAULT_RECORD_LIMITS.maxValueBytes,
  /** Entries in any one list (hosts, services, digests of a service, rules, methods, revoked, token issuers). */
  listItems: 1024,
  /** Refresh no more often than this, to bound the load on the DHT … */
  minRefreshSeconds: 5,
  /** … and at least once a day, well within the policy record's lifetime. */
  maxRefreshSeconds: 24 * 60 * 60,
});

/** Attestation when a policy says nothing: the code digest of the endorsement only. */
export const DEFAULT_ATTESTATION: PolicyAttestation = Object.freeze({ require: 'code-digest', tpmKeys: Object.freeze([]) as readonly Buffer[], quoteMaxAgeSeconds: 60 });
export const ATTESTATION_LIMITS = Object.freeze({ minQuoteMaxAgeSeconds: 1, maxQuoteMaxAgeSeconds: 24 * 60 * 60 });
/** Wire values of AttestationRequirement (the order is the encoding). */
const REQUIREMENTS: readonly AttestationRequirement[] = ['code-digest', 'tpm'];

/** A policy record lives as long as DHT holders accept (48 h); owners republish before then. */
export const POLICY_TTL = DEFAULT_RECORD_LIMITS.maxTtlMs;

const NAME = /^[a-z0-9-]{1,64}$/;
const METHOD = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const NAME_RULE = '1..64 characters a-z, 0-9 and -';
const KEY_LENGTH = 32;
const DIGEST_LENGTH = 32;
/** Version 1 has no attestation section; version 2 appends one (only when it differs from DEFAULT_ATTESTATION). */
const POLICY_VERSION = 1;
const POLICY_VERSION_ATTESTATION = 2;

/** Whether `text` is a valid trust-domain, service or host name. */
export function isName(text: string): boolean {
  return NAME.test(text);
}

function invalid(message: string): ThemisError {
  return new ThemisError('ERR_MESH_POLICY_INVALID', message);
}

// ---------------------------------------------------------------------------------------------
// Rules every policy obeys, whichever form it came from. A problem is reported against the path
// of the offending field; the YAML reader turns the path into a line and column.

type FieldPath = readonly (string | number)[];
type Fail = (path: FieldPath, message: string) => never;

function checkPolicy(policy: Policy, fail: Fail): void {
  checkName(policy.trustDomain, 'trust domain', ['trustDomain'], fail);
  if (!Number.isSafeInteger(policy.seq) || policy.seq < 1) fail(['seq'], `seq must be a positive integer (1, 2, 3 …), got ${policy.seq}`);
  const { minRefreshSeconds: min, maxRefreshSeconds: max } = POLICY_LIMITS;
  if (!Number.isInteger(policy.refreshSeconds) || policy.refreshSeconds < min || policy.refreshSeconds > max) {
    fail(['refreshSeconds'], `refreshSeconds must be an integer from ${min} to ${max}, got ${policy.refreshSeconds}`);
  }

  const hostNames = new Set<string>();
  const hostKeys = new Set<string>();
  checkLength(policy.hosts, ['hosts'], fail);
  policy.hosts.forEach((host, i) => {
    checkName(host.name, 'host name', ['hosts', i, 'name'], fail);
    once(hostNames, host.name, ['hosts', i, 'name'], `host name "${host.name}"`, fail);
    once(hostKeys, toBase32(host.key), ['hosts', i, 'key'], `host key ${toBase32(host.key)}`, fail);
  });

  const services = new Set<string>();
  checkLength(policy.services, ['services'], fail);
  policy.services.forEach((service, i) => {
    checkName(service.name, 'service name', ['services', i, 'name'], fail);
    once(services, service.name, ['services', i, 'name'], `service "${service.name}"`, fail);
    const digests = new Set<string>();
    checkLength(service.digests, ['services', i, 'digests'], fail);
    service.digests.forEach((digest, j) => once(digests, toHex(digest), ['services', i, 'digests', j], `digest ${toHex(digest)} of service "${service.name}"`, fail));
  });

  const known = (name: string, path: FieldPath, role: string, hint: string): void => {
    if (!services.has(name)) fail(path, `${role} "${name}" is not a service of this policy; declare it under \`services:\`${hint}`);
  };
  checkLength(policy.rules, ['rules'], fail);
  policy.rules.forEach((rule, i) => {
    if (rule.from !== ANY) known(rule.from, ['rules', i, 'from'], `rule ${i + 1}: from`, ' or write "*" for any service of the domain');
    known(rule.to, ['rules', i, 'to'], `rule ${i + 1}: to`, ' (a rule names the one service it opens)');
    checkMethods(rule.methods, ['rules', i, 'methods'], fail);
  });

  const revoked = new Set<string>();
  checkLength(policy.revoked, ['revoked'], fail);
  policy.revoked.forEach((key, i) => once(revoked, toBase32(key), ['revoked', i], `revoked key ${toBase32(key)}`, fail));

  const issuers = new Set<string>();
  checkLength(policy.tokenIssuers, ['tokenIssuers'], fail);
  policy.tokenIssuers.forEach((issuer, i) => {
    known(issuer, ['tokenIssuers', i], 'token issuer', '');
    once(issuers, issuer, ['tokenIssuers', i], `token issuer "${issuer}"`, fail);
  });

  if (policy.attestation !== undefined) checkAttestation(policy.attestation, fail);
}

function checkAttestation(attestation: PolicyAttestation, fail: Fail): void {
  if (!REQUIREMENTS.includes(attestation.require)) {
    fail(['attestation', 'require'], `require must be one of ${REQUIREMENTS.join(', ')}, got ${JSON.stringify(attestation.require)}`);
  }
  const { minQuoteMaxAgeSeconds: min, maxQuoteMaxAgeSeconds: max } = ATTESTATION_LIMITS;
  if (!Number.isInteger(attestation.quoteMaxAgeSeconds) || attestation.quoteMaxAgeSeconds < min || attestation.quoteMaxAgeSeconds > max) {
    fail(['attestation', 'quoteMaxAgeSeconds'], `quoteMaxAgeSeconds must be an integer from ${min} to ${max}, got ${attestation.quoteMaxAgeSeconds}`);
  }
  checkLength(attestation.tpmKeys, ['attestation', 'tpmKeys'], fail);
  const keys = new Set<string>();
  attestation.tpmKeys.forEach((key, i) => {
    if (key.length !== DIGEST_LENGTH) fail(['attestation', 'tpmKeys', i], `a TPM key is a ${DIGEST_LENGTH}-byte SHA-256 of the AK's public area, got ${key.length} bytes`);
    once(keys, toHex(key), ['attestation', 'tpmKeys', i], `TPM key ${toHex(key)}`, fail);
  });
  if (attestation.require === 'tpm' && attestation.tpmKeys.length === 0) {
    fail(['attestation', 'tpmKeys'], 'require: tpm needs at least one trusted TPM key; list the AK hash `themis attest` prints');
  }
}

/** The attestation section in canonical form, or undefined when it says what the default says. */
function canonicalAttestation(attestation: PolicyAttestation | undefined): PolicyAttestation | undefined {
  if (attestation === undefined) return undefined;
  const tpmKeys = [...attestation.tpmKeys].sort(Buffer.compare);
  const d = DEFAULT_ATTESTATION;
  if (attestation.require === d.require && tpmKeys.length === 0 && attestation.quoteMaxAgeSeconds === d.quoteMaxAgeSeconds) return undefined;
  return { require: attestation.require, tpmKeys, quoteMaxAgeSeconds: attestation.quoteMaxAgeSeconds };
}

function checkName(text: string, what: string, path: FieldPath, fail: Fail): void {
  if (!isName(text)) fail(path, `${what} ${JSON.stringify(text)} is not a valid name: expected ${NAME_RULE}`);
}

function checkLength(list: readonly unknown[], path: FieldPath, fail: Fail): void {
  if (list.length > POLICY_LIMITS.listItems) fail(path, `too many entries (${list.length}); the limit is ${POLICY_LIMITS.listItems}`);
}

/** Fails at the second occurrence of a value that must appear once. */
function once(seen: Set<string>, value: string, path: FieldPath, what: string, fail: Fail): void {
  if (seen.has(value)) fail(path, `${what} is listed twice; list it once`);
  seen.add(value);
}

function checkMethods(methods: readonly string[], path: FieldPath, fail: Fail): void {
  if (methods.length === 0) fail(path, 'a rule allows at least one method; write ["*"] for any method');
  checkLength(methods, path, fail);
  const seen = new Set<string>();
  methods.forEach((method, i) => {
    if (method === ANY) {
      if (methods.length > 1) fail([...path, i], '"*" already allows every method; remove the other methods of this rule');
    } else if (!METHOD.test(method)) {
      fail([...path, i], `method ${JSON.stringify(method)} is not a valid method name: expected a letter or _, then up to 63 letters, digits, _, . or -`);
    }
    once(seen, method, [...path, i], `method "${method}"`, fail);
  });
}

/** The canonical order (docs in encodePolicy): hosts by key, services by name, sorted sets; rules keep their order. */
function canonical(policy: Policy): Policy {
  return {
    trustDomain: policy.trustDomain,
    seq: policy.seq,
    hosts: [...policy.hosts].sort((a, b) => Buffer.compare(a.key, b.key)),
    services: [...policy.services]
      .sort((a, b) => compareText(a.name, b.name))
      .map((service) => ({ name: service.name, digests: [...service.digests].sort(Buffer.compare) })),
    rules: policy.rules.map((rule) => ({ from: rule.from, to: rule.to, methods: [...rule.methods].sort(compareText) })),
    revoked: [...policy.revoked].sort(Buffer.compare),
    tokenIssuers: [...policy.tokenIssuers].sort(compareText),
    refreshSeconds: policy.refreshSeconds,
    ...withAttestation(canonicalAttestation(policy.attestation)),
  };
}

/** Spreads into a policy: the attestation field only when there is one. */
function withAttestation(attestation: PolicyAttestation | undefined): { attestation?: PolicyAttestation } {
  return attestation === undefined ? {} : { attestation };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Canonical binary form (docs/protocol.md §1 notation):
//
//   u8 version = 1 ‖ str8 trustDomain ‖ u64 seq ‖ u32 refreshSeconds
//   u16 n ‖ n × (bytes[32] key ‖ str8 name)                    hosts, sorted by key
//   u16 n ‖ n × (str8 name ‖ u16 m ‖ m × bytes[32] digest)     services by name; digests sorted
//   u16 n ‖ n × (str8 from ‖ str8 to ‖ u16 m ‖ m × str8)       rules in source order; methods sorted
//   u16 n ‖ n × bytes[32]                                      revoked keys, sorted
//   u16 n ‖ n × str8                                           token issuers, sorted
//
// Version 2 (only when the attestation section differs from DEFAULT_ATTESTATION) is version 1
// with `u8 version = 2` and, appended (docs/attestation.md §5):
//
//   u8 require (0 code-digest, 1 tpm) ‖ u32 quoteMaxAgeSeconds ‖ u16 n ‖ n × bytes[32] tpmKey (sorted)
//
// Two semantically equal policies encode to the same bytes, and a decoder accepts only those.

/** Validates a policy and returns its canonical encoding. Throws ERR_MESH_POLICY_INVALID. */
export function encodePolicy(policy: Policy): Buffer {
  checkPolicy(policy, failAtField);
  const bytes = writePolicy(canonical(policy));
  if (bytes.length > POLICY_LIMITS.bytes) {
    throw invalid(`policy encodes to ${bytes.length} bytes; a policy record holds at most ${POLICY_LIMITS.bytes}: remove hosts, rules or revoked keys`);
  }
  return bytes;
}

/**
 * Decodes a canonical policy. Truncated input, trailing bytes and input above POLICY_LIMITS.bytes
 * fail with ERR_DECODE_*; a policy that breaks a rule or is not in canonical order fails with
 * ERR_MESH_POLICY_INVALID. The input is copied first.
 */
export function decodePolicy(bytes: Uint8Array): Policy {
  if (bytes.length > POLICY_LIMITS.bytes) throw new ThemisError('ERR_DECODE_TOO_LARGE', `policy is ${bytes.length} bytes; the limit is ${POLICY_LIMITS.bytes}`);
  const input = Buffer.from(bytes);
  const r = new Reader(input, 'policy');
  const version = r.u8();
  if (version !== POLICY_VERSION && version !== POLICY_VERSION_ATTESTATION) {
    throw new ThemisError('ERR_DECODE_INVALID', `policy version ${version} is not supported; expected ${POLICY_VERSION} or ${POLICY_VERSION_ATTESTATION}`);
  }
  const decoded: Policy = {
    // fields in wire order: an object literal evaluates its properties in order
    trustDomain: r.str8(),
    seq: r.u64(),
    refreshSeconds: r.u32(),
    hosts: readList(r, () => ({ key: r.fixed(KEY_LENGTH), name: r.str8() })),
    services: readList(r, () => ({ name: r.str8(), digests: readList(r, () => r.fixed(DIGEST_LENGTH)) })),
    rules: readList(r, () => ({ from: r.str8(), to: r.str8(), methods: readList(r, () => r.str8()) })),
    revoked: readList(r, () => r.fixed(KEY_LENGTH)),
    tokenIssuers: readList(r, () => r.str8()),
    ...withAttestation(version === POLICY_VERSION_ATTESTATION ? readAttestation(r) : undefined),
  };
  r.end();
  checkPolicy(decoded, failAtField);
  const policy = canonical(decoded);
  if (!writePolicy(policy).equals(input)) throw invalid('policy encoding is not canonical: its lists are out of order, or it is version 2 with the default attestation');
  return policy;
}

function readAttestation(r: Reader): PolicyAttestation {
  const code = r.u8();
  const require = REQUIREMENTS[code];
  if (require === undefined) throw invalid(`policy attestation requirement ${code} is unknown; expected 0 (code-digest) or 1 (tpm)`);
  return { require, quoteMaxAgeSeconds: r.u32(), tpmKeys: readList(r, () => r.fixed(DIGEST_LENGTH)) };
}

function writePolicy(policy: Policy): Buffer {
  const attestation = policy.attestation;
  const w = new Writer(1024).u8(attestation === undefined ? POLICY_VERSION : POLICY_VERSION_ATTESTATION).str8(policy.trustDomain).u64(policy.seq).u32(policy.refreshSeconds);
  writeList(w, policy.hosts, (host) => w.fixed(host.key, KEY_LENGTH).str8(host.name));
  writeList(w, policy.services, (service) => {
    w.str8(service.name);
    writeList(w, service.digests, (digest) => w.fixed(digest, DIGEST_LENGTH));
  });
  writeList(w, policy.rules, (rule) => {
    w.str8(rule.from).str8(rule.to);
    writeList(w, rule.methods, (method) => w.str8(method));
  });
  writeList(w, policy.revoked, (key) => w.fixed(key, KEY_LENGTH));
  writeList(w, policy.tokenIssuers, (issuer) => w.str8(issuer));
  if (attestation !== undefined) {
    w.u8(REQUIREMENTS.indexOf(attestation.require)).u32(attestation.quoteMaxAgeSeconds);
    writeList(w, attestation.tpmKeys, (key) => w.fixed(key, DIGEST_LENGTH));
  }
  return w.finish();
}

function writeList<T>(w: Writer, items: readonly T[], write: (item: T) => void): void {
  w.u16(items.length);
  for (const item of items) write(item);
}

function readList<T>(r: Reader, read: () => T): T[] {
  const count = r.u16();
  const items: T[] = [];
  for (let i = 0; i < count; i++) items.push(read());
  return items;
}

const failAtField: Fail = (path, message) => {
  throw invalid(`policy field ${formatPath(path)}: ${message}`);
};

function formatPath(path: FieldPath): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

// ---------------------------------------------------------------------------------------------
// YAML source form.

const TOP_KEYS = ['trustDomain', 'seq', 'hosts', 'services', 'rules', 'revoked', 'tokenIssuers', 'refreshSeconds', 'attestation'] as const;
const ATTESTATION_KEYS = ['require', 'tpmKeys', 'quoteMaxAgeSeconds'] as const;
const TPM_KEY_TEXT = "a TPM attestation key hash (64 hex digits: SHA-256 of the AK's public area, as `themis attest` prints it)";
const REQUIRED_TOP_KEYS = ['trustDomain', 'seq', 'hosts', 'services'] as const;
const KEY_TEXT = 'an Ed25519 public key in base32 (52 characters a-z, 2-7)';
const DIGEST_TEXT = 'a SHA-256 code digest (64 hex digits)';

/**
 * Parses and validates the YAML source form. Every error names the file, line and column and
 * says what was expected (ERR_MESH_POLICY_INVALID). The result is in canonical order.
 */
export function parsePolicyYaml(text: string, fileName = 'policy.yaml'): Policy {
  const source = new YamlSource(text, fileName);
  const top = source.fields(source.root, [], 'the policy', TOP_KEYS, REQUIRED_TOP_KEYS);
  const optionalList = <T>(key: (typeof TOP_KEYS)[number], what: string, read: (node: unknown, path: FieldPath) => T): T[] =>
    top.has(key) ? source.list(top.get(key), [key], what, read) : [];
  const policy: Policy = {
    trustDomain: source.string(top.get('trustDomain'), ['trustDomain'], `a trust domain name (${NAME_RULE})`),
    seq: source.integer(top.get('seq'), ['seq'], 'a positive integer'),
    hosts: source.list(top.get('hosts'), ['hosts'], 'a list of hosts ({ name, key })', (node, path) => {
      const host = source.fields(node, path, 'a host', ['name', 'key']);
      return {
        name: source.string(host.get('name'), [...path, 'name'], `a host name (${NAME_RULE})`),
        key: source.bytes(host.get('key'), [...path, 'key'], KEY_TEXT, KEY_LENGTH, fromBase32),
      };
    }),
    services: source.entries(top.get('services'), ['services'], 'a mapping from service names to { digests: [...] }').map(([name, node], i) => {
      const path = ['services', i];
      return {
        name: source.string(name, [...path, 'name'], `a service name (${NAME_RULE})`),
        digests: source.list(source.fields(node, path, 'a service', ['digests']).get('digests'), [...path, 'digests'], 'a list of code digests ([] = any code, development only)', (digest, digestPath) =>
          source.bytes(digest, digestPath, DIGEST_TEXT, DIGEST_LENGTH, fromHex),
        ),
      };
    }),
    rules: optionalList('rules', 'a list of rules ({ from, to, methods })', (node, path) => {
      const rule = source.fields(node, path, 'a rule', ['from', 'to', 'methods']);
      return {
        from: source.string(rule.get('from'), [...path, 'from'], 'a service name or "*"'),
        to: source.string(rule.get('to'), [...path, 'to'], 'a service name'),
        methods: source.list(rule.get('methods'), [...path, 'methods'], 'a list of method names or ["*"]', (method, methodPath) =>
          source.string(method, methodPath, 'a method name or "*"'),
        ),
      };
    }),
    revoked: optionalList('revoked', 'a list of revoked keys', (node, path) => source.bytes(node, path, KEY_TEXT, KEY_LENGTH, fromBase32)),
    tokenIssuers: optionalList('tokenIssuers', 'a list of service names', (node, path) => source.string(node, path, 'a service name')),
    refreshSeconds: top.has('refreshSeconds') ? source.integer(top.get('refreshSeconds'), ['refreshSeconds'], 'a number of seconds') : DEFAULT_REFRESH_SECONDS,
    ...withAttestation(top.has('attestation') ? readAttestationYaml(source, top.get('attestation')) : undefined),
  };
  checkPolicy(policy, (path, message) => source.failAt(path, message));
  return canonical(policy);
}

function readAttestationYaml(source: YamlSource, node: unknown): PolicyAttestation {
  const path = ['attestation'];
  const fields = source.fields(node, path, 'the attestation section', ATTESTATION_KEYS, ['require']);
  const d = DEFAULT_ATTESTATION;
  return {
    require: source.string(fields.get('require'), [...path, 'require'], `one of ${REQUIREMENTS.join(', ')}`) as AttestationRequirement,
    tpmKeys: fields.has('tpmKeys')
      ? source.list(fields.get('tpmKeys'), [...path, 'tpmKeys'], 'a list of TPM key hashes', (key, keyPath) => source.bytes(key, keyPath, TPM_KEY_TEXT, DIGEST_LENGTH, fromHex))
      : [],
    quoteMaxAgeSeconds: fields.has('quoteMaxAgeSeconds') ? source.integer(fields.get('quoteMaxAgeSeconds'), [...path, 'quoteMaxAgeSeconds'], 'a number of seconds') : d.quoteMaxAgeSeconds,
  };
}

/**
 * A parsed YAML document with typed readers. Each reader remembers the node it read under its
 * field path, so a later check on the assembled policy can point back at the line.
 */
class YamlSource {
  readonly root: unknown;
  private readonly lines = new LineCounter();
  private readonly sites = new Map<string, unknown>();

  constructor(
    text: string,
    private readonly fileName: string,
  ) {
    // uniqueKeys: false — duplicates are reported by `fields` and checkPolicy, with our wording.
    const doc = parseDocument(text, { lineCounter: this.lines, uniqueKeys: false, prettyErrors: false });
    const [error] = doc.errors;
    if (error !== undefined) throw this.error(error.pos[0], `not valid YAML: ${error.message}`);
    this.root = doc.contents;
  }

  /** A mapping with known keys: refuses unknown, duplicate and missing ones. */
  fields(node: unknown, path: FieldPath, what: string, keys: readonly string[], required = keys): Map<string, unknown> {
    const out = new Map<string, unknown>();
    const known = keys.join(', ');
    for (const [keyNode, value] of this.entries(node, path, `${what} (a mapping with keys ${known})`)) {
      const key = this.text(keyNode, 'a key');
      if (!keys.includes(key)) this.fail(keyNode, `unknown key "${key}" in ${what}; expected ${known}`);
      if (out.has(key)) this.fail(keyNode, `key "${key}" appears twice in ${what}`);
      out.set(key, value);
    }
    for (const key of required) if (!out.has(key)) this.fail(node, `${what} is missing "${key}"`);
    return out;
  }

  /** The (key, value) pairs of a mapping, in source order. */
  entries(node: unknown, path: FieldPath, expected: string): [unknown, unknown][] {
    this.record(path, node);
    if (!isMap(node)) this.fail(node, this.expected(expected, node));
    return node.items.map((pair) => [pair.key, pair.value]);
  }

  list<T>(node: unknown, path: FieldPath, expected: string, read: (item: unknown, path: FieldPath) => T): T[] {
    this.record(path, node);
    if (!isSeq(node)) this.fail(node, this.expected(expected, node));
    return node.items.map((item, i) => read(item, [...path, i]));
  }

  string(node: unknown, path: FieldPath, expected: string): string {
    this.record(path, node);
    return this.text(node, expected);
  }

  integer(node: unknown, path: FieldPath, expected: string): number {
    this.record(path, node);
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(node, this.expected(expected, node));
    return value;
  }

  /** A string of an encoding (base32, hex) that must decode to exactly `length` bytes. */
  bytes(node: unknown, path: FieldPath, expected: string, length: number, decode: (text: string) => Buffer): Buffer {
    const text = this.string(node, path, expected);
    let bytes: Buffer | null;
    try {
      bytes = decode(text);
    } catch {
      bytes = null;
    }
    if (bytes === null || bytes.length !== length) this.fail(node, this.expected(expected, node));
    return bytes;
  }

  /** Fails at the node read under `path`, or under its nearest recorded parent. */
  failAt(path: FieldPath, message: string): never {
    for (let n = path.length; n >= 0; n--) {
      const key = path.slice(0, n).join('.');
      if (this.sites.has(key)) this.fail(this.sites.get(key), message);
    }
    this.fail(this.root, message);
  }

  private record(path: FieldPath, node: unknown): void {
    this.sites.set(path.join('.'), node);
  }

  private text(node: unknown, expected: string): string {
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value !== 'string') this.fail(node, this.expected(`${expected} (quote it if it looks like a number)`, node));
    return value;
  }

  private expected(expected: string, node: unknown): string {
    return `expected ${expected}, got ${describe(node)}`;
  }

  private fail(node: unknown, message: string): never {
    throw this.error(isNode(node) && node.range ? node.range[0] : 0, message);
  }

  private error(offset: number, message: string): ThemisError {
    const { line, col } = this.lines.linePos(offset);
    return invalid(`${this.fileName}:${line}:${col}: ${message}`);
  }
}

function describe(node: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (!isScalar(node)) return isNode(node) ? 'an alias (anchors and aliases are not supported in a policy)' : 'nothing';
  const value = node.value;
  if (value === null) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 70 ? `${value.slice(0, 70)}…` : value);
  return `${typeof value} ${String(value)}`;
}

/** A policy as plain JSON-able values in its source form (keys in base32, digests in hex). */
export function policyToPlain(policy: Policy): Record<string, unknown> {
  return {
    trustDomain: policy.trustDomain,
    seq: policy.seq,
    hosts: policy.hosts.map((host) => ({ name: host.name, key: toBase32(host.key) })),
    services: Object.fromEntries(policy.services.map((service) => [service.name, { digests: service.digests.map(toHex) }])),
    rules: policy.rules.map((rule) => ({ from: rule.from, to: rule.to, methods: [...rule.methods] })),
    revoked: policy.revoked.map(toBase32),
    tokenIssuers: [...policy.tokenIssuers],
    refreshSeconds: policy.refreshSeconds,
    ...(policy.attestation === undefined
      ? {}
      : { attestation: { require: policy.attestation.require, tpmKeys: policy.attestation.tpmKeys.map(toHex), quoteMaxAgeSeconds: policy.attestation.quoteMaxAgeSeconds } }),
  };
}

/** The YAML source form of a policy, for `themis policy show`; parsePolicyYaml reads it back. */
export function policyToYaml(policy: Policy): string {
  const doc = new Document(policyToPlain(policy));
  // One line per service and per rule, as people write them.
  const services = doc.get('services', true);
  if (isMap(services)) for (const pair of services.items) if (isMap(pair.value)) pair.value.flow = true;
  const rules = doc.get('rules', true);
  if (isSeq(rules)) for (const rule of rules.items) if (isMap(rule)) rule.flow = true;
  return doc.toString({ lineWidth: 0 });
}

// ---------------------------------------------------------------------------------------------
// The signed policy record.

/** The owner signs a policy as a DHT record: type Policy, key policyKey(owner), seq = policy.seq. */
export function signPolicy(owner: Identity, policy: Policy, options: { now?: number } = {}): Buffer {
  return createRecord(owner, {
    type: RecordType.Policy,
    key: policyKey(owner.publicKey),
    value: encodePolicy(policy),
    seq: policy.seq,
    ttlMs: POLICY_TTL,
    now: options.now,
  });
}

/**
 * Verifies a policy record: the record itself (signature, key, expiry: ERR_DHT_RECORD_*), that it
 * is a policy published by `ownerPub` (ERR_MESH_POLICY_OWNER), and that it holds a valid policy
 * whose seq is the record's (ERR_MESH_POLICY_INVALID).
 */
export function openPolicyRecord(recordBytes: Uint8Array, ownerPub: Uint8Array, network: NetworkConfig, now = Date.now()): OpenedPolicy {
  const record = verifyRecord(recordBytes, network, { now });
  if (record.type !== RecordType.Policy) throw invalid(`record of type ${record.type} is not a policy (type ${RecordType.Policy})`);
  if (!record.publisher.equals(ownerPub)) {
    throw new ThemisError('ERR_MESH_POLICY_OWNER', `policy record is signed by ${toBase32(record.publisher)}, not by the trust-domain owner ${toBase32(ownerPub)}`);
  }
  let policy: Policy;
  try {
    policy = decodePolicy(record.value);
  } catch (err) {
    throw new ThemisError('ERR_MESH_POLICY_INVALID', `policy record seq ${record.seq}: ${(err as Error).message}`, { cause: err });
  }
  if (policy.seq !== record.seq) throw invalid(`policy seq ${policy.seq} differs from its record's seq ${record.seq}`);
  return { policy, owner: record.publisher, seq: record.seq };
}
