import type { IdentifiedCaller, RemoteIdentity } from './authorize.js';
import type { Policy } from './policy.js';

/**
 * The attestation-verifier hook of the callee's decision (issue 6; docs/attestation.md §4). The mesh
 * defines it; src/attest implements it (imports point downward only). PolicyAuthority.attest calls it
 * after identify() accepted the endorsement, for every instance whose policy requires more than
 * the endorsement's code digest.
 */
export interface AttestationVerifierHook {
  /** Resolves when the instance's evidence satisfies the policy; rejects with a ThemisError (ERR_ATTEST_*) otherwise. */
  verify(check: AttestationCheck): Promise<void>;
}

export interface AttestationCheck {
  readonly remote: RemoteIdentity;
  /** What identify() established: the endorsing host, the service and the code digest. */
  readonly caller: IdentifiedCaller;
  readonly policy: Policy;
  readonly now: number;
  /** Sends a fresh nonce to the remote peer, which answers with its host's evidence (ATTEST_EVIDENCE_REQUEST). */
  readonly challenge: EvidenceChallenge;
}

/** Asks a peer for its host's evidence over a fresh nonce. */
export type EvidenceChallenge = (nonce: Buffer) => Promise<Buffer>;

/** What an instance answers a challenge with: its host attestor's evidence over the nonce. */
export type EvidenceResponder = (nonce: Buffer) => Promise<Uint8Array>;

/** The channel request a verifier sends its nonce in; the body of the answer is the evidence. */
export const ATTEST_EVIDENCE_REQUEST = 'themis/attest/evidence';
/** How long a verifier waits for evidence (a TPM quote takes ~20–50 ms; queued ones longer). */
export const ATTEST_CHALLENGE_TIMEOUT_MS = 10_000;
