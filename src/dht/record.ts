import { createHash } from 'node:crypto';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import { nodeIdFromPublicKey, openEnvelope, sealEnvelope, type Identity, type NetworkConfig } from '../identity/index.js';
import { hour, minute } from './constants.js';
import { verifyContactRecord } from './contact.js';

/** docs/dht.md §3: every value in the DHT is a signed record under this tag. */
export const RECORD_TAG = 'themis/record/v1';

export const RecordType = Object.freeze({
  Contact: 1,
  Provider: 2,
  Mutable: 3,
  Immutable: 4,
  Policy: 5,
  Revocation: 6,
} as const);
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
const RECORD_TYPES = new Set<number>(Object.values(RecordType));

export interface RecordLimits {
  /** Largest value in a record. Default 64 KiB. */
  readonly maxValueBytes: number;
  /** Longest time to live a holder accepts. Default 48 h. */
  readonly maxTtlMs: number;
  /** Clock skew tolerated on expiry. Default 5 min. */
  readonly clockSkewMs: number;
}

export const DEFAULT_RECORD_LIMITS: RecordLimits = Object.freeze({ maxValueBytes: 64 * 1024, maxTtlMs: 48 * hour, clockSkewMs: 5 * minute });

/** A verified record. */
export interface DhtRecord {
  readonly type: RecordType;
  readonly key: Buffer;
  readonly salt: Buffer;
  readonly value: Buffer;
  readonly seq: number;
  readonly expiresAt: number;
  /** Ed25519 public key of the publisher. */
  readonly publisher: Buffer;
  /** NodeId of the publisher. */
  readonly publisherId: Buffer;
  /** The signed envelope, stored and sent verbatim. */
  readonly bytes: Buffer;
}

export interface RecordInit {
  readonly type: RecordType;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly salt?: Uint8Array;
  readonly seq?: number;
  readonly ttlMs?: number;
  readonly now?: number;
}

function taggedHash(tag: string, ...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256').update(tag, 'ascii').update(Buffer.from([0]));
  for (const part of parts) h.update(part);
  return h.digest();
}

/** Key of a mutable value: H("themis/mutable/v1" ‖ 0x00 ‖ publisher ‖ salt). */
export function mutableKey(publisher: Uint8Array, salt: Uint8Array = Buffer.alloc(0)): Buffer {
  return taggedHash('themis/mutable/v1', publisher, salt);
}

/** Key of an immutable value: SHA-256(value). */
export function immutableKey(value: Uint8Array): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Key under which the instances of a service are listed: H("themis/provider/v1" ‖ 0x00 ‖ service). */
export function providerKey(service: string): Buffer {
  return taggedHash('themis/provider/v1', Buffer.from(service, 'utf8'));
}

/** Key of an owner's policy: H("themis/policy/v1" ‖ 0x00 ‖ owner public key). */
export function policyKey(owner: Uint8Array): Buffer {
  return taggedHash('themis/policy/v1', owner);
}

/** Key of revocations of a public key: H("themis/revocation/v1" ‖ 0x00 ‖ revoked key). */
export function revocationKey(revoked: Uint8Array): Buffer {
  return taggedHash('themis/revocation/v1', revoked);
}

/** Value of a provider record: str8 service ‖ vec16 contact record of the instance. */
export function encodeProviderValue(service: string, contactRecord: Uint8Array): Buffer {
  return new Writer(contactRecord.length + 64).str8(service).vec16(contactRecord).finish();
}

export function decodeProviderValue(value: Uint8Array): { service: string; contactRecord: Buffer } {
  const r = new Reader(value, 'provider record value');
  const service = r.str8();
  const contactRecord = r.vec16();
  r.end();
  return { service, contactRecord };
}

export function createRecord(identity: Identity, init: RecordInit): Buffer {
  const now = init.now ?? Date.now();
  const body = new Writer(init.value.length + 96)
    .u8(init.type)
    .fixed(init.key, 32)
    .vec8(init.salt ?? Buffer.alloc(0))
    .vec32(init.value)
    .u64(init.seq ?? 0)
    .u64(now + (init.ttlMs ?? hour))
    .finish();
  return sealEnvelope(identity, RECORD_TAG, body);
}

function invalid(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_DHT_RECORD_INVALID', message, cause === undefined ? undefined : { cause });
}

/**
 * Verifies a record from anyone: the signature, the encoding, the key against the type's rule,
 * size and expiry. Holders call it before storing, readers before returning.
 */
export function verifyRecord(bytes: Uint8Array, network: NetworkConfig, options: { now?: number; limits?: RecordLimits } = {}): DhtRecord {
  const now = options.now ?? Date.now();
  const limits = options.limits ?? DEFAULT_RECORD_LIMITS;
  let envelope;
  try {
    envelope = openEnvelope(bytes, RECORD_TAG);
  } catch (err) {
    throw invalid(`record: ${(err as Error).message}`, err);
  }
  let record: DhtRecord;
  try {
    const r = new Reader(envelope.body, 'record');
    const type = r.u8();
    if (!RECORD_TYPES.has(type)) throw invalid(`record type ${type} is unknown`);
    const key = r.fixed(32);
    const salt = r.vec8(64);
    const value = r.vec32(limits.maxValueBytes);
    const seq = r.u64();
    const expiresAt = r.u64();
    r.end();
    record = { type: type as RecordType, key, salt, value, seq, expiresAt, publisher: envelope.signer, publisherId: nodeIdFromPublicKey(envelope.signer), bytes: Buffer.from(bytes) };
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_DECODE_TOO_LARGE') throw new ThemisError('ERR_DHT_TOO_LARGE', `record value is larger than ${limits.maxValueBytes} bytes`, { cause: err });
    if (err instanceof ThemisError && err.code.startsWith('ERR_DHT_')) throw err;
    throw invalid(`record: ${(err as Error).message}`, err);
  }
  if (record.expiresAt + limits.clockSkewMs <= now) throw new ThemisError('ERR_DHT_RECORD_EXPIRED', 'record has expired');
  if (record.expiresAt - now > limits.maxTtlMs + limits.clockSkewMs) throw invalid(`record lives longer than the ${limits.maxTtlMs / hour} h limit`);
  checkKey(record, network, now);
  return record;
}

/** Each type binds its key to its content or publisher, so nobody can write under another's key. */
function checkKey(record: DhtRecord, network: NetworkConfig, now: number): void {
  let expected: Buffer;
  switch (record.type) {
    case RecordType.Contact: {
      const contact = verifyContactRecord(record.value, network, now);
      if (!contact.identityPub.equals(record.publisher)) throw invalid('contact record published by another key');
      expected = contact.nodeId;
      break;
    }
    case RecordType.Provider: {
      let decoded;
      try {
        decoded = decodeProviderValue(record.value);
      } catch (err) {
        throw invalid(`provider record: ${(err as Error).message}`, err);
      }
      const contact = verifyContactRecord(decoded.contactRecord, network, now);
      if (!contact.identityPub.equals(record.publisher)) throw invalid('provider record names an instance other than its publisher');
      expected = providerKey(decoded.service);
      break;
    }
    case RecordType.Mutable:
      expected = mutableKey(record.publisher, record.salt);
      break;
    case RecordType.Immutable:
      expected = immutableKey(record.value);
      break;
    case RecordType.Policy:
      expected = policyKey(record.publisher);
      break;
    case RecordType.Revocation:
      // The value starts with the revoked public key; who may revoke it is the mesh layer's rule.
      if (record.value.length < 32) throw invalid('revocation record is too short');
      expected = revocationKey(record.value.subarray(0, 32));
      break;
  }
  if (record.salt.length > 0 && record.type !== RecordType.Mutable) throw invalid('only mutable records carry a salt');
  if (!expected.equals(record.key)) throw invalid('record key does not match its content or publisher');
}

/**
 * Records under one key are told apart by publisher (providers: one per instance). Within one
 * (key, publisher) slot a higher sequence number replaces a lower one; an equal one must be
 * the same record (else it is refused as a conflicting replay); a lower one is stale.
 */
export function slotOf(record: DhtRecord): Buffer {
  return Buffer.concat([record.key, record.publisherId]);
}

export type StoreDecision = 'store' | 'same' | 'stale';

export function decide(existing: DhtRecord | undefined, incoming: DhtRecord): StoreDecision {
  if (existing === undefined || incoming.seq > existing.seq) return 'store';
  if (incoming.seq === existing.seq && incoming.bytes.equals(existing.bytes)) return 'same';
  // Same seq with another expiry is a republish of the same content: keep the later expiry.
  if (incoming.seq === existing.seq && incoming.value.equals(existing.value) && incoming.expiresAt > existing.expiresAt) return 'store';
  return 'stale';
}
