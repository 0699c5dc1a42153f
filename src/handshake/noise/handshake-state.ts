import type { KeyObject } from 'node:crypto';
import { ThemisError } from '../../core/errors.js';
import { TAGLEN, type CipherState } from './cipher.js';
import { DHLEN, dh25519, generateKeyPair25519, importPublicKey25519, type KeyPair25519 } from './dh25519.js';
import { parseProtocolName, type DhToken, type MessagePattern, type NoiseProtocol } from './patterns.js';
import { SymmetricState } from './symmetric-state.js';

/** Noise §3: every Noise message, handshake or transport, is at most 65535 bytes. */
export const MAX_MESSAGE_LENGTH = 65535;
/** Noise §9: a pre-shared symmetric key is 32 bytes. */
export const PSKLEN = 32;

export interface HandshakeStateInit {
  /** A name parseProtocolName accepts, e.g. `Noise_XX_25519_ChaChaPoly_SHA256`. */
  readonly protocolName: string;
  readonly initiator: boolean;
  /** Noise §6: context both sides must agree on; may be empty. */
  readonly prologue: Uint8Array;
  /** The local static key pair; required exactly when the pattern uses it. */
  readonly s?: KeyPair25519;
  /** A fixed ephemeral key pair, for known-answer tests only; a fresh one is generated otherwise. */
  readonly e?: KeyPair25519;
  /** The remote static public key; required exactly when the pattern pre-shares it (NK, XK, IK for the initiator; KK for both). */
  readonly rs?: Uint8Array;
  /** One 32-byte key per "psk" token of the pattern, in the order the tokens appear. */
  readonly psks?: readonly Uint8Array[];
}

/** The transport cipher states of one side, from `split()`. */
export interface TransportCipherStates {
  readonly send: CipherState;
  readonly recv: CipherState;
}

/** A remote public key, imported once for all the DH operations that use it; `raw` is a copy that pins no caller buffer. */
interface RemoteKey {
  readonly raw: Buffer;
  readonly key: KeyObject;
}

function remoteKey(raw: Uint8Array): RemoteKey {
  const copy = Buffer.from(raw);
  return { raw: copy, key: importPublicKey25519(copy) };
}

function copyKeyPair(pair: KeyPair25519, what: string): KeyPair25519 {
  if (pair.publicKey.length !== DHLEN) throw new RangeError(`${what} public key must be ${DHLEN} bytes, got ${pair.publicKey.length}`);
  return { publicKey: Buffer.from(pair.publicKey), privateKey: pair.privateKey };
}

function stateError(message: string): ThemisError {
  return new ThemisError('ERR_HANDSHAKE_STATE', message);
}

function malformed(message: string): ThemisError {
  return new ThemisError('ERR_HANDSHAKE_MESSAGE', message);
}

/**
 * Noise §5.3 `HandshakeState`: runs one side of a handshake. Messages alternate, the initiator
 * writing first; the wrong call for the turn throws ERR_HANDSHAKE_STATE. Any error while a
 * message is processed fails the handshake for good (§5), and so does every later call.
 * @example
 * const alice = new HandshakeState({ protocolName: 'Noise_XX_25519_ChaChaPoly_SHA256', initiator: true, prologue, s: aliceStatic });
 * const bob = new HandshakeState({ protocolName: 'Noise_XX_25519_ChaChaPoly_SHA256', initiator: false, prologue, s: bobStatic });
 * bob.readMessage(alice.writeMessage(Buffer.alloc(0)));
 * alice.readMessage(bob.writeMessage(bobProof));
 * bob.readMessage(alice.writeMessage(aliceProof));
 * const { send, recv } = alice.split();
 */
export class HandshakeState {
  readonly protocol: NoiseProtocol;
  readonly initiator: boolean;
  readonly #symmetric: SymmetricState;
  readonly #psks: readonly Buffer[];
  #pskIndex = 0;
  readonly #s: KeyPair25519 | null;
  #e: KeyPair25519 | null;
  #rs: RemoteKey | null;
  #re: RemoteKey | null = null;
  #messageIndex = 0;
  #failed = false;
  #splitDone = false;

  /** Noise §5.3 `Initialize(handshake_pattern, initiator, prologue, s, e, rs, re)`. */
  constructor(init: HandshakeStateInit) {
    this.protocol = parseProtocolName(init.protocolName);
    this.initiator = init.initiator;
    const pattern = this.protocol.handshake;

    const ownPreMessage = this.initiator ? pattern.initiatorPreMessage : pattern.responderPreMessage;
    const remotePreMessage = this.initiator ? pattern.responderPreMessage : pattern.initiatorPreMessage;
    const ownMessages = pattern.messages.filter((_, i) => i % 2 === (this.initiator ? 0 : 1));
    const usesStatic = ownPreMessage.includes('s') || ownMessages.some((tokens) => tokens.includes('s'));
    const knowsRemoteStatic = remotePreMessage.includes('s');
    const pskTokens = pattern.messages.flat().filter((token) => token === 'psk').length;
    const role = this.initiator ? 'initiator' : 'responder';

    if (usesStatic !== (init.s !== undefined)) {
      throw new TypeError(`the ${role} of ${this.protocol.name} ${usesStatic ? 'needs a' : 'takes no'} local static key pair (s)`);
    }
    if (knowsRemoteStatic !== (init.rs !== undefined)) {
      throw new TypeError(`the ${role} of ${this.protocol.name} ${knowsRemoteStatic ? 'needs the' : 'takes no'} remote static public key (rs)`);
    }
    const psks = init.psks ?? [];
    if (psks.length !== pskTokens) throw new TypeError(`${this.protocol.name} needs ${pskTokens} PSKs, got ${psks.length}`);
    for (const psk of psks) if (psk.length !== PSKLEN) throw new RangeError(`a PSK must be ${PSKLEN} bytes, got ${psk.length}`);

    this.#s = init.s === undefined ? null : copyKeyPair(init.s, 'the local static');
    this.#e = init.e === undefined ? null : copyKeyPair(init.e, 'the local ephemeral');
    this.#rs = init.rs === undefined ? null : remoteKey(init.rs);
    this.#psks = psks.map((psk) => Buffer.from(psk));

    this.#symmetric = new SymmetricState(this.protocol.name, this.protocol.cipher);
    this.#symmetric.mixHash(init.prologue);
    // §5.3: MixHash() each pre-message public key, the initiator's first. (§9.2's extra MixKey
    // applies to pre-message "e" keys only, which no supported pattern has.)
    if (pattern.initiatorPreMessage.includes('s')) this.#symmetric.mixHash(this.#preSharedStatic(this.initiator));
    if (pattern.responderPreMessage.includes('s')) this.#symmetric.mixHash(this.#preSharedStatic(!this.initiator));
  }

  /** True once every handshake message has been written or read; then call split(). */
  get isComplete(): boolean {
    return this.#messageIndex === this.protocol.handshake.messages.length;
  }

  /** How many handshake messages this side has written or read so far. */
  get messageIndex(): number {
    return this.#messageIndex;
  }

  /** Noise §5.2 `GetHandshakeHash()` (a copy): the channel binding once the handshake is complete (§11.2). */
  get handshakeHash(): Buffer {
    return this.#symmetric.handshakeHash;
  }

  /** The remote static public key (a copy), once pre-shared or received; null before. */
  get remoteStatic(): Buffer | null {
    return this.#rs === null ? null : Buffer.from(this.#rs.raw);
  }

  /** The remote ephemeral public key (a copy), once received; null before. */
  get remoteEphemeral(): Buffer | null {
    return this.#re === null ? null : Buffer.from(this.#re.raw);
  }

  /** Noise §5.3 `WriteMessage(payload, message_buffer)`: returns the message to send. */
  writeMessage(payload: Uint8Array): Buffer {
    const tokens = this.#nextMessage(true);
    try {
      const parts: Buffer[] = [];
      for (const token of tokens) {
        if (token === 'e') {
          const e = (this.#e ??= generateKeyPair25519());
          parts.push(e.publicKey);
          this.#mixEphemeral(e.publicKey);
        } else if (token === 's') {
          parts.push(this.#symmetric.encryptAndHash(this.#required(this.#s, 'the local static key').publicKey));
        } else if (token === 'psk') {
          this.#mixPsk();
        } else {
          this.#mixDh(token);
        }
      }
      parts.push(this.#symmetric.encryptAndHash(payload));
      const message = Buffer.concat(parts);
      if (message.length > MAX_MESSAGE_LENGTH) {
        throw new RangeError(`the handshake message would be ${message.length} bytes; Noise allows ${MAX_MESSAGE_LENGTH}`);
      }
      this.#messageIndex++;
      return message;
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  /** Noise §5.3 `ReadMessage(message, payload_buffer)`: returns the decrypted payload. */
  readMessage(message: Uint8Array): Buffer {
    const tokens = this.#nextMessage(false);
    try {
      if (message.length > MAX_MESSAGE_LENGTH) throw malformed(`a handshake message is longer than ${MAX_MESSAGE_LENGTH} bytes`);
      // A private copy, so the caller's buffer cannot change while it is being checked.
      const input = Buffer.from(message);
      let offset = 0;
      const need = (length: number): void => {
        if (input.length - offset < length) throw malformed(`handshake message ${this.#messageIndex} is too short`);
      };
      const take = (length: number): Buffer => {
        need(length);
        offset += length;
        return input.subarray(offset - length, offset);
      };
      for (const token of tokens) {
        if (token === 'e') {
          const re = take(DHLEN);
          this.#re = remoteKey(re);
          this.#mixEphemeral(re);
        } else if (token === 's') {
          // §5.3: DHLEN + 16 bytes when k is set, DHLEN bytes otherwise.
          const temp = take(DHLEN + (this.#symmetric.hasKey() ? TAGLEN : 0));
          this.#rs = remoteKey(this.#symmetric.decryptAndHash(temp));
        } else if (token === 'psk') {
          this.#mixPsk();
        } else {
          this.#mixDh(token);
        }
      }
      // The payload takes the rest: at least its 16-byte tag once k is set.
      need(this.#symmetric.hasKey() ? TAGLEN : 0);
      const payload = this.#symmetric.decryptAndHash(input.subarray(offset));
      this.#messageIndex++;
      return payload;
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  /**
   * Noise §5.2 `Split()`, oriented to this side: the initiator sends with c1 and receives
   * with c2, the responder the other way round. Allowed once, after the last message.
   */
  split(): TransportCipherStates {
    if (!this.isComplete) throw stateError('split() before the handshake is complete');
    if (this.#splitDone) throw stateError('split() was already called; a second pair of cipher states would reuse nonces');
    this.#splitDone = true;
    const [c1, c2] = this.#symmetric.split();
    return this.initiator ? { send: c1, recv: c2 } : { send: c2, recv: c1 };
  }

  /** The tokens of the next message, if it is this side's turn to write (or read) it. */
  #nextMessage(writing: boolean): MessagePattern {
    if (this.#failed) throw stateError('the handshake has failed; start a new one');
    const tokens = this.protocol.handshake.messages[this.#messageIndex];
    if (tokens === undefined) throw stateError('the handshake is already complete');
    const initiatorsTurn = this.#messageIndex % 2 === 0;
    if ((initiatorsTurn === this.initiator) !== writing) {
      throw stateError(`handshake message ${this.#messageIndex} is for the ${writing ? 'other side' : 'this side'} to write`);
    }
    return tokens;
  }

  #preSharedStatic(ownKey: boolean): Buffer {
    return ownKey ? this.#required(this.#s, 'the local static key').publicKey : this.#required(this.#rs, 'the remote static key').raw;
  }

  /** §5.3 "e" token: MixHash(e.public_key), followed in a PSK handshake by MixKey(e.public_key) (§9.2). */
  #mixEphemeral(publicKey: Buffer): void {
    this.#symmetric.mixHash(publicKey);
    if (this.#psks.length > 0) this.#symmetric.mixKey(publicKey);
  }

  /** §9.2 "psk" token: MixKeyAndHash(psk), the PSKs taken in token order. */
  #mixPsk(): void {
    this.#symmetric.mixKeyAndHash(this.#required(this.#psks[this.#pskIndex++], 'a PSK'));
  }

  /**
   * §5.3 "ee", "es", "se", "ss": MixKey(DH(...)) between the initiator's key (first letter)
   * and the responder's (second letter), seen from this side.
   */
  #mixDh(token: DhToken): void {
    const localLetter = token.charAt(this.initiator ? 0 : 1);
    const remoteLetter = token.charAt(this.initiator ? 1 : 0);
    const local = this.#required(localLetter === 'e' ? this.#e : this.#s, `the local ${localLetter} key`);
    const remote = this.#required(remoteLetter === 'e' ? this.#re : this.#rs, `the remote ${remoteLetter} key`);
    this.#symmetric.mixKey(dh25519(local.privateKey, remote.key));
  }

  /** The constructor checks make these unreachable for the supported patterns; kept as a guard. */
  #required<T>(value: T | null | undefined, what: string): T {
    if (value === null || value === undefined) throw stateError(`${what} is not available at this point of the handshake`);
    return value;
  }
}
