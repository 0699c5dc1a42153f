import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import { Lru } from '../core/lru.js';
import {
  KEY_LENGTH,
  NOISE_STATIC_TAG,
  SIGNATURE_LENGTH,
  formatNodeId,
  meetsDynamicPuzzle,
  meetsStaticPuzzle,
  nodeIdFromPublicKey,
  verifyTagged,
  type Identity,
  type NetworkConfig,
} from '../identity/index.js';

/** docs/protocol.md §3.4 */
const PROOF_VERSION = 1;
export const PROOF_FLAG_CLIENT = 0x01;
const PROOF_FLAGS_KNOWN = PROOF_FLAG_CLIENT;
export const MAX_ADDRESSES = 16;
export const MAX_CREDENTIALS = 8;

/** Credential types carried in an identity proof (docs/protocol.md §3.4). */
export const CredentialType = Object.freeze({ HostEndorsement: 1, Attestation: 2, RotationChain: 3 });

export interface Credential {
  readonly type: number;
  readonly data: Buffer;
}

export interface IdentityProof {
  readonly flags: number;
  readonly identityPub: Buffer;
  readonly bindingSignature: Buffer;
  readonly puzzleNonce: Buffer;
  readonly addresses: readonly string[];
  readonly credentials: readonly Credential[];
}

/** What a peer learned about the other side from a verified handshake. */
export interface VerifiedPeer {
  /** 32-byte NodeId. */
  readonly nodeId: Buffer;
  /** NodeId as base32 text. */
  readonly id: string;
  readonly identityPub: Buffer;
  /** The peer's Noise static key, authenticated by Noise and bound by the identity key. */
  readonly noiseStatic: Buffer;
  readonly addresses: readonly string[];
  readonly credentials: readonly Credential[];
  /** The peer joined as a client (never to be placed in routing tables). */
  readonly client: boolean;
}

export interface ProofOptions {
  readonly addresses?: readonly string[];
  readonly credentials?: readonly Credential[];
  readonly client?: boolean;
}

export function encodeProof(identity: Identity, options: ProofOptions = {}): Buffer {
  const addresses = options.addresses ?? [];
  const credentials = options.credentials ?? [];
  if (addresses.length > MAX_ADDRESSES) throw new RangeError(`at most ${MAX_ADDRESSES} addresses fit in an identity proof`);
  if (credentials.length > MAX_CREDENTIALS) throw new RangeError(`at most ${MAX_CREDENTIALS} credentials fit in an identity proof`);
  const w = new Writer(256)
    .u8(PROOF_VERSION)
    .u8(options.client === true ? PROOF_FLAG_CLIENT : 0)
    .fixed(identity.publicKey, KEY_LENGTH)
    .fixed(identity.bindingSignature, SIGNATURE_LENGTH)
    .fixed(identity.puzzleNonce, 32)
    .u8(addresses.length);
  for (const address of addresses) w.str8(address);
  w.u8(credentials.length);
  for (const credential of credentials) w.u16(credential.type).vec16(credential.data);
  return w.finish();
}

export function decodeProof(bytes: Uint8Array): IdentityProof {
  const r = new Reader(bytes, 'identity proof');
  const version = r.u8();
  if (version !== PROOF_VERSION) throw new ThemisError('ERR_HANDSHAKE_PROOF', `identity proof version ${version} is not supported`);
  const flags = r.u8();
  if ((flags & ~PROOF_FLAGS_KNOWN) !== 0) throw new ThemisError('ERR_HANDSHAKE_PROOF', 'identity proof has reserved flag bits set');
  const identityPub = r.fixed(KEY_LENGTH);
  const bindingSignature = r.fixed(SIGNATURE_LENGTH);
  const puzzleNonce = r.fixed(32);
  const addressCount = r.u8();
  if (addressCount > MAX_ADDRESSES) throw new ThemisError('ERR_HANDSHAKE_PROOF', `identity proof lists ${addressCount} addresses; the limit is ${MAX_ADDRESSES}`);
  const addresses: string[] = [];
  for (let i = 0; i < addressCount; i++) addresses.push(r.str8());
  const credentialCount = r.u8();
  if (credentialCount > MAX_CREDENTIALS) throw new ThemisError('ERR_HANDSHAKE_PROOF', `identity proof carries ${credentialCount} credentials; the limit is ${MAX_CREDENTIALS}`);
  const credentials: Credential[] = [];
  for (let i = 0; i < credentialCount; i++) credentials.push({ type: r.u16(), data: r.vec16() });
  r.end();
  return { flags, identityPub, bindingSignature, puzzleNonce, addresses, credentials };
}

/**
 * Verified (identityPub, noiseStatic, signature) triples. A binding signature that verified once
 * stays valid, so a reconnecting peer skips the Ed25519 verification (the costliest step of a
 * handshake after the DH operations).
 */
const bindingCache = new Lru<string, true>(4096);

/**
 * docs/protocol.md §3.5, in order: decode; binding signature over the Noise-authenticated static
 * key; NodeId and both puzzles; the expected NodeId. Throws ERR_HANDSHAKE_PROOF or
 * ERR_HANDSHAKE_UNEXPECTED_PEER.
 */
export function verifyProof(payload: Uint8Array, remoteStatic: Buffer, network: NetworkConfig, expect?: Uint8Array): VerifiedPeer {
  const proof = decodeProof(Buffer.from(payload));
  const cacheKey = Buffer.concat([proof.identityPub, remoteStatic, proof.bindingSignature]).toString('base64');
  if (bindingCache.get(cacheKey) === undefined) {
    if (!verifyTagged(proof.identityPub, NOISE_STATIC_TAG, remoteStatic, proof.bindingSignature)) {
      throw new ThemisError('ERR_HANDSHAKE_PROOF', 'identity proof: the binding signature over the Noise static key does not verify');
    }
    bindingCache.set(cacheKey, true);
  }
  const nodeId = nodeIdFromPublicKey(proof.identityPub);
  if (!meetsStaticPuzzle(nodeId, network.c1)) throw new ThemisError('ERR_HANDSHAKE_PROOF', `identity proof: NodeId does not meet the static puzzle (c1 = ${network.c1})`);
  if (!meetsDynamicPuzzle(nodeId, proof.puzzleNonce, network.c2)) throw new ThemisError('ERR_HANDSHAKE_PROOF', `identity proof: puzzle nonce does not meet the dynamic puzzle (c2 = ${network.c2})`);
  if (expect !== undefined && !nodeId.equals(expect)) {
    throw new ThemisError('ERR_HANDSHAKE_UNEXPECTED_PEER', `the peer is ${formatNodeId(nodeId)}, not the expected ${formatNodeId(expect)}`);
  }
  return {
    nodeId,
    id: formatNodeId(nodeId),
    identityPub: proof.identityPub,
    noiseStatic: remoteStatic,
    addresses: proof.addresses,
    credentials: proof.credentials,
    client: (proof.flags & PROOF_FLAG_CLIENT) !== 0,
  };
}
