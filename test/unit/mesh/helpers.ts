// Shared by the mesh unit and adversarial tests: a MicroBank trust domain (MiSSFIRE's case study)
// with an owner, two trusted hosts, code digests per service, and instances seen the way a callee
// sees them after a real identity-proof exchange.
import { createHash } from 'node:crypto';
import { toBase32 } from '../../../src/core/bytes.js';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { encodeProof, verifyProof, type Credential, type VerifiedPeer } from '../../../src/handshake/index.js';
import { Identity, networkConfig } from '../../../src/identity/index.js';
import {
  PolicyAuthority,
  endorse,
  endorsementCredential,
  openPolicyRecord,
  parsePolicyYaml,
  signPolicy,
  type EndorsementInit,
  type Policy,
} from '../../../src/mesh/index.js';

export const network = networkConfig({ c1: 0, c2: 0 });
export const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);
export const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();
export const b32 = (identity: Identity): string => toBase32(identity.publicKey);

export const owner = Identity.generate(network);
export const hostA = Identity.generate(network);
export const hostB = Identity.generate(network);
/** A host the policy does not list. */
export const stranger = Identity.generate(network);
export const code = { gateway: sha256('gateway v1'), users: sha256('users v1'), accounts: sha256('accounts v1') };

export interface DomainOptions {
  readonly seq?: number;
  readonly hosts?: readonly Identity[];
  readonly revoked?: readonly Identity[];
}

/** The domain's policy in its source form. */
export function domainYaml({ seq = 1, hosts = [hostA, hostB], revoked = [] }: DomainOptions = {}): string {
  return `# MicroBank
trustDomain: microbank
seq: ${seq}
hosts:
${hosts.map((host, i) => `  - name: host-${i}\n    key: ${b32(host)}\n`).join('')}services:
  gateway: { digests: ["${code.gateway.toString('hex')}"] }
  users: { digests: ["${code.users.toString('hex')}"] }
  accounts: { digests: ["${code.accounts.toString('hex')}"] }
  transactions: { digests: [] }   # any code: development only
rules:
  - { from: gateway, to: users, methods: [create, login] }
  - { from: "*", to: accounts, methods: ["*"] }
  - { from: users, to: transactions, methods: [list] }
revoked: [${revoked.map(b32).join(', ')}]
tokenIssuers: [gateway]
refreshSeconds: 30
`;
}

export function domainPolicy(options: DomainOptions = {}): Policy {
  return parsePolicyYaml(domainYaml(options));
}

/** Loads a policy the way a peer does: owner-signed record, verified, then put in force. */
export function load(authority: PolicyAuthority, policy: Policy, signer: Identity = owner): boolean {
  return authority.update(openPolicyRecord(signPolicy(signer, policy), signer.publicKey, network));
}

export function authorityFor(policy: Policy = domainPolicy()): PolicyAuthority {
  const authority = new PolicyAuthority(owner.publicKey);
  load(authority, policy);
  return authority;
}

/** What a callee learns of `identity` when its identity proof carries `credentials`. */
export function seenByCallee(identity: Identity, credentials: readonly Credential[]): VerifiedPeer {
  return verifyProof(encodeProof(identity, { credentials }), identity.noiseStatic.publicKey, network);
}

export type InstanceInit = Partial<EndorsementInit> & { readonly service: string };

/** A fresh instance started and endorsed by `host` with the service's code unless told otherwise. */
export function startInstance(host: Identity, init: InstanceInit): { identity: Identity; endorsement: Buffer; remote: VerifiedPeer } {
  const identity = Identity.generate(network);
  const endorsement = endorse(host, {
    instancePub: identity.publicKey,
    trustDomain: 'microbank',
    codeDigest: code[init.service as keyof typeof code] ?? sha256(`${init.service} v1`),
    ...init,
  });
  return { identity, endorsement, remote: seenByCallee(identity, [endorsementCredential(endorsement)]) };
}
