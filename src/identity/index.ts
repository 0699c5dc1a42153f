export { Identity, NOISE_STATIC_TAG, type IdentitySecrets } from './identity.js';
export { sealEnvelope, openEnvelope, MAX_ENVELOPE_BODY, type SignedEnvelope } from './envelope.js';
export { readKeyFile, writeKeyFile } from './key-file.js';
export {
  KEY_LENGTH,
  SIGNATURE_LENGTH,
  generateKeyPair,
  keyPairFromRaw,
  publicKeyFromRaw,
  rawPublicKey,
  signTagged,
  verifyTagged,
  signedMessage,
  type OkpCurve,
  type OkpKeyPair,
} from './keys.js';
export { DEFAULT_NETWORK, networkConfig, networkId, type NetworkConfig } from './network.js';
export {
  NODE_ID_LENGTH,
  formatNodeId,
  parseNodeId,
  nodeIdFromPublicKey,
  meetsStaticPuzzle,
  meetsDynamicPuzzle,
  solveDynamicPuzzle,
} from './node-id.js';
