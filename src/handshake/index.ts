export {
  createInitiator,
  createResponder,
  prologue,
  PROTOCOL_IK,
  PROTOCOL_XX,
  type HandshakeOptions,
  type HandshakePattern,
  type HandshakeResult,
  type HandshakeStep,
  type InitiatorOptions,
  type ThemisHandshake,
} from './themis-handshake.js';
export { CredentialType, decodeProof, encodeProof, verifyProof, type Credential, type IdentityProof, type ProofOptions, type VerifiedPeer } from './proof.js';
export * as noise from './noise/index.js';
export { CipherState, HandshakeState } from './noise/index.js';
