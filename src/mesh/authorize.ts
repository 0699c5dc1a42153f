import { toBase32, toHex } from '../core/bytes.js';
import { ThemisError, type ErrorCode } from '../core/errors.js';
import { Lru } from '../core/lru.js';
import { CredentialType, type Credential } from '../handshake/index.js';
import { KEY_LENGTH } from '../identity/index.js';
import { checkEndorsementTime, openEndorsement, type Endorsement } from './endorsement.js';
import type { AttestationVerifierHook, EvidenceChallenge } from './attestation.js';
import { ANY, type OpenedPolicy, type Policy } from './policy.js';

/** What identify() needs of a peer that passed the handshake; a handshake VerifiedPeer has it. */
export interface RemoteIdentity {
  readonly identityPub: Buffer;
  readonly credentials: readonly Credential[];
}

/** A remote instance identified under the policy in force. */
export interface IdentifiedCaller {
  readonly service: string;
  readonly hostPub: Buffer;
  readonly codeDigest: Buffer;
  readonly instancePub: Buffer;
}

export interface PolicyAuthorityInit {
  /** Endorsements whose signature verified, remembered by their bytes. Default 4096. */
  readonly endorsementCacheSize?: number;
  /** Verifies attestation evidence when the policy requires more than the code digest (src/attest). */
  readonly attestation?: AttestationVerifierHook;
}

const DEFAULT_ENDORSEMENT_CACHE_SIZE = 4096;
const SIGN_HINT = 're-sign with `themis policy sign`';

/**
 * The callee's decision on a trust domain (issue 4: owner policy → host endorsement → instance
 * key → rule for this method; anything else is refused). Pure: no I/O, the caller brings the
 * verified policy and the clock.
 *
 * Call identify() for every call, not once per connection: it is cheap on a repeated endorsement
 * (the signature check is cached), and it re-checks expiry, revocation and membership against the
 * current policy, so a policy update takes effect at once.
 *
 * Refusals are ThemisErrors with an ERR_MESH_* code whose message says what to change. The
 * policy is public (a DHT record), so policy refusals are marked `expose` for the remote peer;
 * a bad signature is not.
 *
 * @example
 * const authority = new PolicyAuthority(ownerPub);
 * authority.update(openPolicyRecord(recordBytes, ownerPub, network));
 * const caller = authority.identify(connection.remote);
 * authority.authorize(caller, 'users', 'login');
 */
export class PolicyAuthority {
  /** The trust-domain owner's Ed25519 public key; only its policies are accepted. */
  readonly owner: Buffer;
  #current: LoadedPolicy | null = null;
  readonly #endorsements: Lru<string, Endorsement>;
  readonly #attestation: AttestationVerifierHook | null;

  constructor(owner: Uint8Array, init: PolicyAuthorityInit = {}) {
    if (owner.length !== KEY_LENGTH) throw new RangeError(`owner public key must be ${KEY_LENGTH} bytes, got ${owner.length}`);
    this.owner = Buffer.from(owner);
    this.#endorsements = new Lru(init.endorsementCacheSize ?? DEFAULT_ENDORSEMENT_CACHE_SIZE);
    this.#attestation = init.attestation ?? null;
  }

  /** The policy in force, or null before the first update. */
  get policy(): Policy | null {
    return this.#current?.policy ?? null;
  }

  /**
   * Puts a verified policy in force. Returns false (and keeps the current one) for the same seq;
   * refuses another owner's policy (ERR_MESH_POLICY_OWNER) and a lower seq (ERR_MESH_POLICY_ROLLBACK).
   */
  update(opened: OpenedPolicy): boolean {
    if (!opened.owner.equals(this.owner)) {
      throw new ThemisError('ERR_MESH_POLICY_OWNER', `policy is signed by ${toBase32(opened.owner)}, not by the trust-domain owner ${toBase32(this.owner)}`);
    }
    const seq = opened.policy.seq;
    const current = this.#current?.policy.seq;
    if (current !== undefined && seq < current) {
      throw new ThemisError(
        'ERR_MESH_POLICY_ROLLBACK',
        `policy seq ${seq} is older than seq ${current} already in force; a policy never goes back — publish changes with a higher seq`,
      );
    }
    if (seq === current) return false;
    this.#current = new LoadedPolicy(opened.policy);
    return true;
  }

  /**
   * Identifies a remote instance, checking in this order: a policy is in force; the peer presents
   * exactly one valid, unexpired host endorsement; for this trust domain; by a host of the policy
   * that is not revoked; for the peer's own key, which is not revoked; for a service of the
   * policy; with a code digest allowed for that service.
   */
  identify(remote: RemoteIdentity, now = Date.now()): IdentifiedCaller {
    const policy = this.#require();
    const endorsement = this.#endorsement(remote, policy, now);
    if (endorsement.trustDomain !== policy.trustDomain) {
      throw refuse(
        'ERR_MESH_WRONG_DOMAIN',
        `the peer is endorsed for trust domain "${endorsement.trustDomain}", but this peer enforces ${policy.label}; its host must endorse it for ${policy.trustDomain}`,
      );
    }
    const host = toBase32(endorsement.hostPub);
    const hostName = policy.hosts.get(host);
    if (hostName === undefined) {
      throw refuse('ERR_MESH_UNTRUSTED_HOST', `host ${host} is not in ${policy.label}; add it under \`hosts:\` and ${SIGN_HINT}`);
    }
    if (policy.revoked.has(host)) {
      throw refuse('ERR_MESH_REVOKED', `host ${hostName} (${host}) is revoked by ${policy.label}; start the instance on a trusted host`);
    }
    const instance = toBase32(endorsement.instancePub);
    if (!endorsement.instancePub.equals(remote.identityPub)) {
      throw refuse(
        'ERR_MESH_WRONG_INSTANCE',
        `the host endorsement names instance ${instance}, but the peer's key is ${toBase32(remote.identityPub)}; an endorsement is valid only for the instance it names`,
      );
    }
    if (policy.revoked.has(instance)) {
      throw refuse('ERR_MESH_REVOKED', `instance ${instance} is revoked by ${policy.label}; its host must start a new instance with a fresh key`);
    }
    const digests = policy.digests.get(endorsement.service);
    if (digests === undefined) {
      throw refuse('ERR_MESH_UNKNOWN_SERVICE', `service "${endorsement.service}" is not in ${policy.label}; declare it under \`services:\` and ${SIGN_HINT}`);
    }
    const digest = toHex(endorsement.codeDigest);
    if (digests.size > 0 && !digests.has(digest)) {
      throw refuse(
        'ERR_MESH_DIGEST_NOT_ALLOWED',
        `code digest ${digest} is not allowed for service "${endorsement.service}" by ${policy.label}; add it to that service's \`digests:\` and ${SIGN_HINT}`,
      );
    }
    // Copies: the cached endorsement must not change through a caller's hands.
    return {
      service: endorsement.service,
      hostPub: Buffer.from(endorsement.hostPub),
      codeDigest: Buffer.from(endorsement.codeDigest),
      instancePub: Buffer.from(endorsement.instancePub),
    };
  }

  /**
   * The attestation step after identify() (docs/attestation.md §4): under the default
   * `require: code-digest` identify() already checked the signed digest; under `require: tpm` the
   * verifier hook checks the host's TPM evidence, fetched with `challenge` when it has none fresh.
   * Without a hook, a policy that requires a TPM refuses (ERR_ATTEST_UNAVAILABLE).
   */
  async attest(remote: RemoteIdentity, caller: IdentifiedCaller, challenge: EvidenceChallenge, now = Date.now()): Promise<void> {
    const policy = this.#require().policy;
    if ((policy.attestation?.require ?? 'code-digest') === 'code-digest') return;
    if (this.#attestation === null) {
      throw refuse('ERR_ATTEST_UNAVAILABLE', `${this.#require().label} requires TPM attestation, but this peer has no attestation verifier; start it with one (themis-mesh/attest createVerifier)`);
    }
    await this.#attestation.verify({ remote, caller, policy, now, challenge });
  }

  /** Refuses (ERR_MESH_FORBIDDEN) a call no rule allows: rules are default deny. */
  authorize(caller: IdentifiedCaller, targetService: string, method: string): void {
    const policy = this.#require();
    const allowed = policy.rules.some(
      (rule) => rule.to === targetService && (rule.from === ANY || rule.from === caller.service) && (rule.methods.has(ANY) || rule.methods.has(method)),
    );
    if (!allowed) {
      throw refuse(
        'ERR_MESH_FORBIDDEN',
        `service "${caller.service}" may not call ${targetService}.${method}: no rule of ${policy.label} allows it; ` +
          `add one under \`rules:\` (e.g. { from: ${caller.service}, to: ${targetService}, methods: [${method}] }) and ${SIGN_HINT}`,
      );
    }
  }

  /** Whether the policy in force lets `service` mint end-user principal tokens. */
  mayIssueTokens(service: string): boolean {
    return this.#current?.tokenIssuers.has(service) ?? false;
  }

  #require(): LoadedPolicy {
    if (this.#current === null) {
      throw refuse('ERR_MESH_NO_POLICY', `no policy of trust-domain owner ${toBase32(this.owner)} is in force yet; the owner publishes it with \`themis policy sign\``);
    }
    return this.#current;
  }

  /** The one host endorsement the peer presents, its signature verified once per distinct bytes. */
  #endorsement(remote: RemoteIdentity, policy: LoadedPolicy, now: number): Endorsement {
    const presented = remote.credentials.filter((credential) => credential.type === CredentialType.HostEndorsement);
    const [credential] = presented;
    if (credential === undefined) {
      throw refuse(
        'ERR_MESH_UNENDORSED',
        `peer ${toBase32(remote.identityPub)} presents no host endorsement; every instance of trust domain ${policy.trustDomain} must be started and endorsed by a trusted host`,
      );
    }
    if (presented.length > 1) {
      throw new ThemisError('ERR_MESH_ENDORSEMENT_INVALID', `peer ${toBase32(remote.identityPub)} presents ${presented.length} host endorsements; an instance presents exactly one`);
    }
    const key = credential.data.toString('base64');
    let endorsement = this.#endorsements.get(key);
    if (endorsement === undefined) {
      endorsement = openEndorsement(credential.data);
      this.#endorsements.set(key, endorsement);
    }
    checkEndorsementTime(endorsement, now);
    return endorsement;
  }
}

/** The lookups identify() and authorize() make, built once per policy (keys in base32). */
class LoadedPolicy {
  readonly trustDomain: string;
  /** "policy seq N of trust domain D", for messages. */
  readonly label: string;
  readonly hosts: ReadonlyMap<string, string>;
  readonly revoked: ReadonlySet<string>;
  /** Allowed code digests (hex) by service; an empty set allows any code. */
  readonly digests: ReadonlyMap<string, ReadonlySet<string>>;
  readonly rules: readonly { readonly from: string; readonly to: string; readonly methods: ReadonlySet<string> }[];
  readonly tokenIssuers: ReadonlySet<string>;

  constructor(readonly policy: Policy) {
    this.trustDomain = policy.trustDomain;
    this.label = `policy seq ${policy.seq} of trust domain ${policy.trustDomain}`;
    this.hosts = new Map(policy.hosts.map((host) => [toBase32(host.key), host.name]));
    this.revoked = new Set(policy.revoked.map((key) => toBase32(key)));
    this.digests = new Map(policy.services.map((service) => [service.name, new Set(service.digests.map((digest) => toHex(digest)))]));
    this.rules = policy.rules.map((rule) => ({ from: rule.from, to: rule.to, methods: new Set(rule.methods) }));
    this.tokenIssuers = new Set(policy.tokenIssuers);
  }
}

function refuse(code: ErrorCode, message: string): ThemisError {
  return new ThemisError(code, message, { expose: true });
}
