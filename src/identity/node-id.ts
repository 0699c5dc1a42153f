import { createHash } from 'node:crypto';
import { fromBase32, leadingZeroBits, toBase32 } from '../core/bytes.js';
import { ThemisError } from '../core/errors.js';

export const NODE_ID_LENGTH = 32;
const NODE_ID_TAG = Buffer.from('themis/node-id/v1', 'ascii');

/** NodeId = SHA-256("themis/node-id/v1" ‖ ed25519_pub) (docs/protocol.md §2.1). */
export function nodeIdFromPublicKey(identityPub: Uint8Array): Buffer {
  if (identityPub.length !== 32) throw new RangeError(`identity public key must be 32 bytes, got ${identityPub.length}`);
  return createHash('sha256').update(NODE_ID_TAG).update(identityPub).digest();
}

/** Lowercase RFC 4648 base32 without padding: 52 characters. */
export function formatNodeId(id: Uint8Array): string {
  return toBase32(id);
}

export function parseNodeId(text: string): Buffer {
  let id: Buffer;
  try {
    id = fromBase32(text.trim());
  } catch (err) {
    throw new ThemisError('ERR_IDENTITY_INVALID', `"${text}" is not a NodeId: ${(err as Error).message}`, { cause: err });
  }
  if (id.length !== NODE_ID_LENGTH) {
    throw new ThemisError('ERR_IDENTITY_INVALID', `"${text}" is not a NodeId: expected 52 base32 characters (32 bytes), got ${id.length} bytes`);
  }
  return id;
}

/** S/Kademlia static puzzle (§2.2): H(NodeId) has at least c1 leading zero bits. */
export function meetsStaticPuzzle(nodeId: Uint8Array, c1: number): boolean {
  return leadingZeroBits(createHash('sha256').update(nodeId).digest()) >= c1;
}

/** S/Kademlia dynamic puzzle (§2.2): H(NodeId ⊕ X) has at least c2 leading zero bits. */
export function meetsDynamicPuzzle(nodeId: Uint8Array, nonce: Uint8Array, c2: number): boolean {
  if (nonce.length !== NODE_ID_LENGTH) return false;
  return leadingZeroBits(createHash('sha256').update(xor32(nodeId, nonce)).digest()) >= c2;
}

/** Finds X for the dynamic puzzle by counting upward from a random start. */
export function solveDynamicPuzzle(nodeId: Uint8Array, c2: number, start: Uint8Array): Buffer {
  const nonce = Buffer.from(start);
  const mixed = Buffer.allocUnsafe(NODE_ID_LENGTH);
  for (;;) {
    for (let i = 0; i < NODE_ID_LENGTH; i++) mixed[i] = nodeId[i]! ^ nonce[i]!;
    if (leadingZeroBits(createHash('sha256').update(mixed).digest()) >= c2) return nonce;
    increment(nonce);
  }
}

function xor32(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(NODE_ID_LENGTH);
  for (let i = 0; i < NODE_ID_LENGTH; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

function increment(bytes: Buffer): void {
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = (bytes[i]! + 1) & 0xff;
    if (bytes[i] !== 0) return;
  }
}
