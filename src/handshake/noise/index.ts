/**
 * The Noise Protocol Framework core (revision 34) for 25519 / ChaChaPoly or AESGCM / SHA256:
 * pure state machines, no I/O. SymmetricState and HKDF stay internal to this folder.
 */
export { CipherState, TAGLEN, cipherKeyLength, type CipherName } from './cipher.js';
export {
  DHLEN,
  dh25519,
  generateKeyPair25519,
  importPublicKey25519,
  keyPair25519FromPrivate,
  type KeyPair25519,
} from './dh25519.js';
export { HASHLEN } from './hash.js';
export {
  HandshakeState,
  MAX_MESSAGE_LENGTH,
  PSKLEN,
  type HandshakeStateInit,
  type TransportCipherStates,
} from './handshake-state.js';
export {
  PATTERNS,
  parseProtocolName,
  type DhToken,
  type HandshakePattern,
  type MessagePattern,
  type NoiseProtocol,
  type PatternName,
  type Token,
} from './patterns.js';
