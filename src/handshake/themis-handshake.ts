import { ThemisError } from '../core/errors.js';
import { networkId, type Identity, type NetworkConfig } from '../identity/index.js';
import { CipherState, HandshakeState } from './noise/index.js';
import { encodeProof, verifyProof, type ProofOptions, type VerifiedPeer } from './proof.js';

/** docs/protocol.md §3.1 */
export const PROTOCOL_XX = 'Noise_XX_25519_ChaChaPoly_SHA256';
export const PROTOCOL_IK = 'Noise_IK_25519_ChaChaPoly_SHA256';
const PROLOGUE_PREFIX = Buffer.from('themis/1', 'ascii');
/** §3.3: an XX message 1 is exactly `e`; an IK message 1 is at least e + encrypted s + a tag. */
const XX_FIRST_LENGTH = 32;
const IK_FIRST_MIN_LENGTH = 32 + 48 + 16;

export type HandshakePattern = 'XX' | 'IK';

export interface HandshakeOptions extends ProofOptions {
  readonly identity: Identity;
  readonly network: NetworkConfig;
}

export interface InitiatorOptions extends HandshakeOptions {
  /** The NodeId the initiator means to reach; anyone else fails the handshake. */
  readonly expect?: Uint8Array;
  /** The responder's verified Noise static key: selects IK (one round trip fewer). */
  readonly remoteStatic?: Uint8Array;
}

export interface HandshakeResult {
  readonly pattern: HandshakePattern;
  readonly initiator: boolean;
  readonly remote: VerifiedPeer;
  /** Noise handshake hash h, for channel binding. */
  readonly handshakeHash: Buffer;
  readonly send: CipherState;
  readonly recv: CipherState;
}

/** One step of a handshake: what to send next, and the result once complete. */
export interface HandshakeStep {
  readonly send: Buffer | null;
  readonly result: HandshakeResult | null;
}

/** "themis/1" ‖ networkId (§3.1). */
export function prologue(network: NetworkConfig): Buffer {
  return Buffer.concat([PROLOGUE_PREFIX, networkId(network)]);
}

/**
 * The Themis identity handshake as a pure state machine (no I/O): feed it each Noise message
 * received, send what it returns. Transport code frames the messages (§3.2).
 */
export interface ThemisHandshake {
  /** The first message to send (initiator) or null (responder). Call once. */
  start(): Buffer | null;
  /** Process one received Noise message. Throws ThemisError on any failure. */
  receive(message: Buffer): HandshakeStep;
  /** Known once the first message is chosen (initiator) or read (responder). */
  readonly pattern: HandshakePattern | null;
}

export function createInitiator(options: InitiatorOptions): ThemisHandshake {
  const pattern: HandshakePattern = options.remoteStatic === undefined ? 'XX' : 'IK';
  const state = new HandshakeState({
    protocolName: pattern === 'XX' ? PROTOCOL_XX : PROTOCOL_IK,
    initiator: true,
    prologue: prologue(options.network),
    s: options.identity.noiseStatic,
    ...(options.remoteStatic === undefined ? {} : { rs: Buffer.from(options.remoteStatic) }),
  });
  const proof = (): Buffer => encodeProof(options.identity, options);
  let started = false;
  return {
    pattern,
    start() {
      if (started) throw new ThemisError('ERR_HANDSHAKE_STATE', 'handshake already started');
      started = true;
      // XX message 1 carries no payload (§3.2); IK message 1 carries the initiator's proof.
      return state.writeMessage(pattern === 'XX' ? Buffer.alloc(0) : proof());
    },
    receive(message) {
      if (!started || state.isComplete) throw new ThemisError('ERR_HANDSHAKE_STATE', 'unexpected handshake message');
      // Message 2 in both patterns: the responder's proof. Verify before revealing ours (XX).
      const remote = verifyRemote(state, state.readMessage(message), options.network, options.expect);
      const send = pattern === 'XX' ? state.writeMessage(proof()) : null;
      return { send, result: finish(state, pattern, true, remote) };
    },
  };
}

export function createResponder(options: HandshakeOptions): ThemisHandshake {
  let state: HandshakeState | null = null;
  let pattern: HandshakePattern | null = null;
  const newState = (protocolName: string): HandshakeState =>
    new HandshakeState({ protocolName, initiator: false, prologue: prologue(options.network), s: options.identity.noiseStatic });
  return {
    get pattern() {
      return pattern;
    },
    start() {
      return null;
    },
    receive(message) {
      if (state === null) {
        pattern = selectPattern(message.length);
        state = newState(pattern === 'XX' ? PROTOCOL_XX : PROTOCOL_IK);
        const payload = state.readMessage(message);
        if (pattern === 'XX') {
          return { send: state.writeMessage(encodeProof(options.identity, options)), result: null };
        }
        const remote = verifyRemote(state, payload, options.network);
        const send = state.writeMessage(encodeProof(options.identity, options));
        return { send, result: finish(state, pattern, false, remote) };
      }
      if (pattern !== 'XX' || state.isComplete) throw new ThemisError('ERR_HANDSHAKE_STATE', 'unexpected handshake message');
      const remote = verifyRemote(state, state.readMessage(message), options.network);
      return { send: null, result: finish(state, pattern, false, remote) };
    },
  };
}

function selectPattern(length: number): HandshakePattern {
  if (length === XX_FIRST_LENGTH) return 'XX';
  if (length >= IK_FIRST_MIN_LENGTH) return 'IK';
  throw new ThemisError('ERR_HANDSHAKE_MESSAGE', `first handshake message of ${length} bytes is neither XX (32) nor IK (>= ${IK_FIRST_MIN_LENGTH})`);
}

function verifyRemote(state: HandshakeState, payload: Buffer, network: NetworkConfig, expect?: Uint8Array): VerifiedPeer {
  const rs = state.remoteStatic;
  if (rs === null) throw new ThemisError('ERR_HANDSHAKE_STATE', 'the remote static key is not known yet');
  return verifyProof(payload, rs, network, expect);
}

function finish(state: HandshakeState, pattern: HandshakePattern, initiator: boolean, remote: VerifiedPeer): HandshakeResult {
  const { send, recv } = state.split();
  return { pattern, initiator, remote, handshakeHash: state.handshakeHash, send, recv };
}
