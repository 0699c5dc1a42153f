/** The attest layer (issue 6; docs/attestation.md): host attestors (code digest, TPM 2.0) and the verifier the mesh calls. */
export { createHostAttestor, type AttestationMode, type HostAttestor, type InstanceMeasurement } from './attestor.js';
export { CodeDigestAttestor } from './code-digest.js';
export { TpmAttestor, type TpmAttestorInit } from './tpm/attestor.js';
export {
  AttestationVerifier,
  CodeDigestVerifier,
  TpmVerifier,
  checkLog,
  checkMeasurement,
  createVerifier,
  verifyHostEvidence,
  type AttestationVerifierInit,
  type EvidenceVerifier,
} from './verifier.js';
export {
  AK_BINDING_TAG,
  CODE_EVIDENCE_TAG,
  EVIDENCE_VERSION,
  EvidenceKind,
  MAX_EVIDENCE_BYTES,
  NONCE_LENGTH,
  bindAk,
  encodeCodeEvidence,
  encodeTpmEvidence,
  openAkBinding,
  qualifyingData,
  readTpmCredential,
  tpmCredential,
  verifyEvidence,
  type AttestationKind,
  type BoundAk,
  type VerifiedEvidence,
  type VerifyEvidenceOptions,
} from './evidence.js';
export { EventLog, MAX_EVENTS, codeDigest, measurementEvent, replayLog, type Measurement } from './measurement.js';
export { parseAkPublic, parseEcdsaSignature, parseQuoteAttest, type AkPublic, type PcrSelection, type QuoteAttest } from './tpm/structures.js';
export { DEFAULT_AK_HANDLE, MEASUREMENT_PCR, Tpm2Tools, tctiFor } from './tpm/tpm2-tools.js';
