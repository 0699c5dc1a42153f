/** The mesh layer: trust domains (owner-signed policy, host endorsements, the callee's decision). */
export {
  ANY,
  DEFAULT_REFRESH_SECONDS,
  POLICY_LIMITS,
  POLICY_TTL,
  decodePolicy,
  encodePolicy,
  isName,
  openPolicyRecord,
  parsePolicyYaml,
  policyToPlain,
  policyToYaml,
  signPolicy,
  type OpenedPolicy,
  type Policy,
  type PolicyHost,
  type PolicyRule,
  type PolicyService,
} from './policy.js';
export {
  DEFAULT_ENDORSEMENT_TTL,
  ENDORSEMENT_CLOCK_SKEW,
  ENDORSEMENT_TAG,
  MAX_ENDORSEMENT_TTL,
  checkEndorsementTime,
  endorse,
  endorsementCredential,
  openEndorsement,
  verifyEndorsement,
  type Endorsement,
  type EndorsementInit,
} from './endorsement.js';
export { PolicyAuthority, type IdentifiedCaller, type PolicyAuthorityInit, type RemoteIdentity } from './authorize.js';
export {
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  PRINCIPAL_TOKEN_TYPE,
  ReplayCache,
  issuePrincipalToken,
  reissueForAudience,
  verifyPrincipalToken,
  type IssueInit,
  type VerifiedPrincipal,
  type VerifyInit,
} from './tokens.js';
export { MAX_ROTATION_CHAIN, ROTATION_TAG, encodeRotationChain, rotationStatement, verifyRotationChain } from './rotation.js';
export { RevocationList, RevocationReason, createRevocation, openRevocation, type Revocation, type RevocationEntry } from './revocation.js';
export { CircuitBreaker, EwmaLatency, RetryBudget, backoff, pickPowerOfTwo, type Candidate, type CircuitState } from './balancer.js';
export {
  Mesh,
  createMesh,
  methodName,
  type CallContext,
  type CallOptions,
  type Instance,
  type MeshInit,
  type MethodHandler,
} from './mesh.js';
export {
  CALL_VERSION,
  PayloadCodec,
  childTraceparent,
  decodeCallRequest,
  decodeCallResponse,
  encodeCallRequest,
  encodeCallResponse,
  newTraceparent,
  type CallRequest,
} from './call-codec.js';
export { MeshMetrics } from './metrics.js';
export type { CallPrincipal, IssueTokenInit } from './mesh.js';
export type { MeshStreamHandler, RotateOptions, StreamCallContext, StreamCallOptions } from './mesh.js';
export { MAX_STREAM_HEADER_BYTES, STREAM_ACCEPTED, STREAM_HEADER_VERSION, decodeStreamHeader, encodeStreamHeader, type StreamHeader } from './stream-header.js';
export {
  ATTEST_CHALLENGE_TIMEOUT_MS,
  ATTEST_EVIDENCE_REQUEST,
  type AttestationCheck,
  type AttestationVerifierHook,
  type EvidenceChallenge,
  type EvidenceResponder,
} from './attestation.js';
export { ATTESTATION_LIMITS, DEFAULT_ATTESTATION, type AttestationRequirement, type PolicyAttestation } from './policy.js';
