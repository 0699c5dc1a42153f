import { randomBytes, sign, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { ThemisError } from '../core/errors.js';
import { generateKeyPair, keyPairFromRaw, rawPrivateKey, signTagged, type OkpKeyPair } from './keys.js';
import { DEFAULT_NETWORK, type NetworkConfig } from './network.js';
import { formatNodeId, meetsDynamicPuzzle, meetsStaticPuzzle, nodeIdFromPublicKey, solveDynamicPuzzle } from './node-id.js';

/** Tag of the signature that binds a Noise static key to an identity key (docs/protocol.md §2.3). */
export const NOISE_STATIC_TAG = 'themis/noise-static/v1';

/** RFC 7515 §7.1: the part of a compact JWS that is signed. */
const JWS_SIGNING_INPUT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface IdentitySecrets {
  /** 32-byte Ed25519 seed. */
  readonly identity: Uint8Array;
  /** 32-byte X25519 private key of the Noise static key pair. */
  readonly noiseStatic: Uint8Array;
  /** 32-byte dynamic puzzle nonce; solved again when missing or too weak for the network. */
  readonly puzzleNonce?: Uint8Array;
}

/**
 * A peer's self-certifying identity: an Ed25519 identity key whose hash is the NodeId, a Noise
 * static X25519 key bound to it by a signature, and the S/Kademlia puzzle solutions.
 * Secrets never appear in logs: util.inspect and JSON show only public parts.
 */
export class Identity {
  readonly publicKey: Buffer;
  readonly nodeId: Buffer;
  /** NodeId in base32 text form. */
  readonly id: string;
  readonly puzzleNonce: Buffer;
  readonly noiseStatic: OkpKeyPair;
  /** Ed25519(identity, "themis/noise-static/v1" ‖ 0x00 ‖ noiseStaticPub), computed once. */
  readonly bindingSignature: Buffer;
  readonly #signingKey: KeyObject;

  private constructor(signing: OkpKeyPair, noiseStatic: OkpKeyPair, puzzleNonce: Buffer) {
    this.#signingKey = signing.privateKey;
    this.publicKey = signing.publicKey;
    this.nodeId = nodeIdFromPublicKey(signing.publicKey);
    this.id = formatNodeId(this.nodeId);
    this.noiseStatic = noiseStatic;
    this.puzzleNonce = puzzleNonce;
    this.bindingSignature = signTagged(signing.privateKey, NOISE_STATIC_TAG, noiseStatic.publicKey);
  }

  /** A fresh identity meeting the network's puzzles (draws keys until H(NodeId) meets c1). */
  static generate(network: NetworkConfig = DEFAULT_NETWORK): Identity {
    let signing: OkpKeyPair;
    do signing = generateKeyPair('Ed25519').pair;
    while (!meetsStaticPuzzle(nodeIdFromPublicKey(signing.publicKey), network.c1));
    const nonce = solveDynamicPuzzle(nodeIdFromPublicKey(signing.publicKey), network.c2, randomBytes(32));
    return new Identity(signing, generateKeyPair('X25519').pair, nonce);
  }

  /**
   * Rebuilds an identity from stored secrets. Fails when the key does not meet the network's
   * static puzzle; solves the dynamic puzzle again when the stored nonce is missing or too weak.
   */
  static fromSecrets(secrets: IdentitySecrets, network: NetworkConfig = DEFAULT_NETWORK): Identity {
    const signing = keyPairFromRaw('Ed25519', secrets.identity);
    const nodeId = nodeIdFromPublicKey(signing.publicKey);
    if (!meetsStaticPuzzle(nodeId, network.c1)) {
      throw new ThemisError(
        'ERR_IDENTITY_PUZZLE',
        `this identity key does not meet the network's static puzzle (c1 = ${network.c1}); generate a new key with \`themis keygen\``,
      );
    }
    const stored = secrets.puzzleNonce === undefined ? null : Buffer.from(secrets.puzzleNonce);
    const nonce = stored !== null && meetsDynamicPuzzle(nodeId, stored, network.c2) ? stored : solveDynamicPuzzle(nodeId, network.c2, randomBytes(32));
    return new Identity(signing, keyPairFromRaw('X25519', secrets.noiseStatic), nonce);
  }

  /** Whether this identity's puzzles satisfy a network (a stored identity may predate a stricter one). */
  meets(network: NetworkConfig): boolean {
    return meetsStaticPuzzle(this.nodeId, network.c1) && meetsDynamicPuzzle(this.nodeId, this.puzzleNonce, network.c2);
  }

  /** Domain-separated signature (docs/protocol.md §2.3). */
  sign(tag: string, body: Uint8Array): Buffer {
    return signTagged(this.#signingKey, tag, body);
  }

  /**
   * Ed25519 signature over a JWS signing input, `BASE64URL(header) '.' BASE64URL(payload)`
   * (RFC 7515 §5.1), so JWTs can be signed without the key leaving this object. Such input has
   * no NUL byte, so it never equals a tagged message `tag ‖ 0x00 ‖ body` (docs/protocol.md §2.3):
   * the two kinds of signature stay apart.
   *
   * @example
   * const input = `${Buffer.from('{"alg":"EdDSA"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}`;
   * const jws = `${input}.${identity.signJwsInput(input).toString('base64url')}`;
   */
  signJwsInput(signingInput: string): Buffer {
    if (!JWS_SIGNING_INPUT.test(signingInput)) throw new TypeError('expected a JWS signing input: base64url header, ".", base64url payload');
    return sign(null, Buffer.from(signingInput, 'ascii'), this.#signingKey);
  }

  /** The raw secrets, for writing a key file. Handle with care. */
  exportSecrets(): Required<IdentitySecrets> {
    return { identity: rawPrivateKey(this.#signingKey), noiseStatic: rawPrivateKey(this.noiseStatic.privateKey), puzzleNonce: this.puzzleNonce };
  }

  toJSON(): { id: string; publicKey: string; noiseStatic: string } {
    return { id: this.id, publicKey: this.publicKey.toString('hex'), noiseStatic: this.noiseStatic.publicKey.toString('hex') };
  }

  [inspect.custom](): string {
    return `Identity(${this.id})`;
  }
}
