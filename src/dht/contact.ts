import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import { Lru } from '../core/lru.js';
import {
  formatNodeId,
  meetsDynamicPuzzle,
  meetsStaticPuzzle,
  nodeIdFromPublicKey,
  openEnvelope,
  sealEnvelope,
  type Identity,
  type NetworkConfig,
} from '../identity/index.js';
import { hour } from './constants.js';

/** docs/dht.md §2: a node's signed statement of how to reach it. */
export const CONTACT_TAG = 'themis/contact/v1';
export const CONTACT_TTL = hour;
const MAX_CONTACT_ADDRESSES = 8;
const FLAG_CLIENT = 0x01;

/** A verified contact: who a node is, where it listens, and its Noise static key (for IK). */
export interface Contact {
  readonly nodeId: Buffer;
  readonly id: string;
  readonly identityPub: Buffer;
  readonly noiseStatic: Buffer;
  readonly puzzleNonce: Buffer;
  readonly addresses: readonly string[];
  readonly client: boolean;
  /** Milliseconds since the epoch; a newer record from the same node replaces an older one. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** The signed record itself, passed on verbatim to other nodes. */
  readonly record: Buffer;
}

export function createContactRecord(identity: Identity, options: { addresses: readonly string[]; client?: boolean; now?: number; ttlMs?: number }): Buffer {
  const now = options.now ?? Date.now();
  if (options.addresses.length > MAX_CONTACT_ADDRESSES) throw new RangeError(`a contact record lists at most ${MAX_CONTACT_ADDRESSES} addresses`);
  const w = new Writer(160)
    .fixed(identity.noiseStatic.publicKey, 32)
    .fixed(identity.puzzleNonce, 32)
    .u8(options.client === true ? FLAG_CLIENT : 0)
    .u8(options.addresses.length);
  for (const address of options.addresses) w.str8(address);
  w.u64(now).u64(now + (options.ttlMs ?? CONTACT_TTL));
  return sealEnvelope(identity, CONTACT_TAG, w.finish());
}

/**
 * Contact records travel again and again (every FIND_NODE answer carries up to k of them), and
 * verifying one is a pure function of its bytes and the network's puzzles: remember the results.
 * Shared by every node of the process (the simulator runs thousands).
 */
const verified = new Lru<string, Contact>(65_536);

/**
 * Verifies a contact record received from anyone: signature, NodeId puzzles and expiry.
 * Throws ERR_DHT_CONTACT_INVALID (never anything else) so callers can drop the contact.
 * `ignoreExpiry` is for a node's own routing-table snapshot after a restart: an expired contact
 * is still a good address to try, because the handshake proves the identity again.
 */
export function verifyContactRecord(bytes: Uint8Array, network: NetworkConfig, now = Date.now(), options: { ignoreExpiry?: boolean } = {}): Contact {
  const key = `${network.c1}/${network.c2}/${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')}`;
  let contact = verified.get(key);
  if (contact === undefined) {
    contact = decodeContactRecord(bytes, network);
    verified.set(key, contact);
  }
  if (options.ignoreExpiry !== true) {
    if (contact.expiresAt <= now) throw new ThemisError('ERR_DHT_CONTACT_INVALID', 'contact record has expired');
    if (contact.issuedAt > now + 5 * 60_000) throw new ThemisError('ERR_DHT_CONTACT_INVALID', 'contact record is issued in the future');
  }
  return contact;
}

function decodeContactRecord(bytes: Uint8Array, network: NetworkConfig): Contact {
  try {
    const envelope = openEnvelope(bytes, CONTACT_TAG);
    const r = new Reader(envelope.body, 'contact record');
    const noiseStatic = r.fixed(32);
    const puzzleNonce = r.fixed(32);
    const flags = r.u8();
    if ((flags & ~FLAG_CLIENT) !== 0) throw new ThemisError('ERR_DHT_CONTACT_INVALID', 'contact record has reserved flag bits set');
    const count = r.u8();
    if (count > MAX_CONTACT_ADDRESSES) throw new ThemisError('ERR_DHT_CONTACT_INVALID', `contact record lists ${count} addresses; the limit is ${MAX_CONTACT_ADDRESSES}`);
    const addresses: string[] = [];
    for (let i = 0; i < count; i++) addresses.push(r.str8());
    const issuedAt = r.u64();
    const expiresAt = r.u64();
    r.end();
    const nodeId = nodeIdFromPublicKey(envelope.signer);
    if (!meetsStaticPuzzle(nodeId, network.c1) || !meetsDynamicPuzzle(nodeId, puzzleNonce, network.c2)) {
      throw new ThemisError('ERR_DHT_CONTACT_INVALID', 'contact record: the NodeId does not meet the network puzzles');
    }
    return {
      nodeId,
      id: formatNodeId(nodeId),
      identityPub: envelope.signer,
      noiseStatic,
      puzzleNonce,
      addresses,
      client: (flags & FLAG_CLIENT) !== 0,
      issuedAt,
      expiresAt,
      record: Buffer.from(bytes),
    };
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_DHT_CONTACT_INVALID') throw err;
    throw new ThemisError('ERR_DHT_CONTACT_INVALID', `invalid contact record: ${(err as Error).message}`, { cause: err });
  }
}
