import { Reader, Writer } from '../core/codec.js';
import { ThemisError, isThemisError } from '../core/errors.js';
import { KEY_LENGTH, openEnvelope, sealEnvelope, type Identity } from '../identity/index.js';

/**
 * Key rotation. An instance or host that replaces its identity key signs, with the OLD key, a
 * statement naming the new one; a chain of statements leads from the key peers knew to the key
 * proven in the handshake, where it travels as credential type 3 (docs/protocol.md §3.4).
 *
 * A stolen old key can sign a rotation too: callers check every key of a verified chain
 * against their revocation list, not only the current one.
 */

/** Tag of the signed envelope of a rotation statement. */
export const ROTATION_TAG = 'themis/rotation/v1';
/** Most statements in one chain. */
export const MAX_ROTATION_CHAIN = 8;
/** A rotation statement's envelope is 192 bytes; a larger one is not a statement. */
const MAX_STATEMENT_BYTES = 256;

interface RotationLink {
  readonly oldPub: Buffer;
  readonly newPub: Buffer;
  readonly issuedAt: number;
}

/**
 * A statement by `oldIdentity` that its key moved to `newPub`: a signed envelope under
 * "themis/rotation/v1" whose body is `bytes[32] oldPub ‖ bytes[32] newPub ‖ u64 issuedAt` (ms).
 *
 * @example
 * const next = Identity.generate();
 * const statement = rotationStatement(current, next.publicKey);
 */
export function rotationStatement(oldIdentity: Identity, newPub: Uint8Array, now: number = Date.now()): Buffer {
  if (newPub.length !== KEY_LENGTH) throw new RangeError(`new public key must be ${KEY_LENGTH} bytes, got ${newPub.length}`);
  if (oldIdentity.publicKey.equals(newPub)) throw new RangeError('a key cannot rotate to itself');
  const body = new Writer(2 * KEY_LENGTH + 8).fixed(oldIdentity.publicKey, KEY_LENGTH).fixed(newPub, KEY_LENGTH).u64(now).finish();
  return sealEnvelope(oldIdentity, ROTATION_TAG, body);
}

/**
 * Encodes statements, oldest first, as one credential: `u8 count` (1..8) then `vec16` each.
 *
 * @example
 * const chain = encodeRotationChain([rotationStatement(first, second.publicKey), rotationStatement(second, third.publicKey)]);
 */
export function encodeRotationChain(statements: readonly Uint8Array[]): Buffer {
  if (statements.length < 1 || statements.length > MAX_ROTATION_CHAIN) {
    throw new RangeError(`a rotation chain holds 1 to ${MAX_ROTATION_CHAIN} statements, got ${statements.length}`);
  }
  const w = new Writer(1 + statements.length * (2 + MAX_STATEMENT_BYTES)).u8(statements.length);
  for (const statement of statements) w.vec16(statement);
  return w.finish();
}

/**
 * Verifies a rotation chain that must end at `currentPub` (the key proven in the handshake) and
 * returns the keys from the original to `currentPub`. Each statement must be signed by the key
 * it rotates away from, which must be the key the previous statement rotated to; `issuedAt`
 * strictly increases; no key appears twice. Any failure is ERR_MESH_ROTATION_INVALID.
 *
 * @example
 * const keys = verifyRotationChain(chain, third.publicKey); // [first, second, third] public keys
 * const known = keys.some((key) => key.equals(first.publicKey));
 */
export function verifyRotationChain(bytes: Uint8Array, currentPub: Uint8Array): Buffer[] {
  const links = decodeChain(bytes);
  const keys = [links[0]!.oldPub];
  const seen = new Set([links[0]!.oldPub.toString('hex')]);
  let issuedAfter = -1;
  for (const [i, link] of links.entries()) {
    if (!link.oldPub.equals(keys[keys.length - 1]!)) throw invalid(`rotation statement ${i} does not continue from the key before it`);
    if (link.issuedAt <= issuedAfter) throw invalid(`rotation statement ${i} is not newer than the one before it`);
    const hex = link.newPub.toString('hex');
    if (seen.has(hex)) throw invalid(`rotation statement ${i} returns to a key already in the chain`);
    seen.add(hex);
    keys.push(link.newPub);
    issuedAfter = link.issuedAt;
  }
  if (!keys[keys.length - 1]!.equals(currentPub)) throw invalid('rotation chain does not end at the key proven in the handshake');
  return keys;
}

function decodeChain(bytes: Uint8Array): RotationLink[] {
  try {
    const r = new Reader(Buffer.from(bytes), 'rotation chain');
    const count = r.u8();
    if (count < 1 || count > MAX_ROTATION_CHAIN) throw invalid(`rotation chain holds ${count} statements; expected 1 to ${MAX_ROTATION_CHAIN}`);
    const links: RotationLink[] = [];
    for (let i = 0; i < count; i++) links.push(openStatement(r.vec16(MAX_STATEMENT_BYTES)));
    r.end();
    return links;
  } catch (err) {
    if (isThemisError(err, 'ERR_MESH_ROTATION_INVALID')) throw err;
    throw invalid(`rotation chain: ${(err as Error).message}`, err);
  }
}

function openStatement(bytes: Buffer): RotationLink {
  const envelope = openEnvelope(bytes, ROTATION_TAG);
  const r = new Reader(envelope.body, 'rotation statement');
  const link = { oldPub: r.fixed(KEY_LENGTH), newPub: r.fixed(KEY_LENGTH), issuedAt: r.u64() };
  r.end();
  if (!envelope.signer.equals(link.oldPub)) throw invalid('rotation statement is not signed by the key it rotates away from');
  return link;
}

function invalid(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_MESH_ROTATION_INVALID', message, cause === undefined ? undefined : { cause });
}
