import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';
import type { Identity } from './identity.js';
import { KEY_LENGTH, SIGNATURE_LENGTH, verifyTagged } from './keys.js';

/** Largest body a signed envelope carries (docs/protocol.md §2.4). */
export const MAX_ENVELOPE_BODY = 1024 * 1024;
const ENVELOPE_VERSION = 1;

/** A verified signed statement: who signed what, under which tag. */
export interface SignedEnvelope {
  readonly tag: string;
  readonly signer: Buffer;
  readonly body: Buffer;
  readonly signature: Buffer;
}

/** Signs `body` under `tag` and encodes the envelope canonically. */
export function sealEnvelope(identity: Identity, tag: string, body: Uint8Array): Buffer {
  if (body.length > MAX_ENVELOPE_BODY) throw new RangeError(`envelope body is ${body.length} bytes; the limit is ${MAX_ENVELOPE_BODY}`);
  const signature = identity.sign(tag, body);
  return new Writer(body.length + 140)
    .u8(ENVELOPE_VERSION)
    .str8(tag)
    .fixed(identity.publicKey, KEY_LENGTH)
    .vec32(body)
    .fixed(signature, SIGNATURE_LENGTH)
    .finish();
}

/**
 * Decodes and verifies an envelope whose tag must be `expectedTag`. Copies its input first so a
 * caller's buffer cannot change between the check and the use.
 */
export function openEnvelope(bytes: Uint8Array, expectedTag: string): SignedEnvelope {
  const r = new Reader(Buffer.from(bytes), 'signed envelope');
  const version = r.u8();
  if (version !== ENVELOPE_VERSION) throw new ThemisError('ERR_DECODE_INVALID', `signed envelope version ${version} is not supported; expected ${ENVELOPE_VERSION}`);
  const tag = r.str8();
  const signer = r.fixed(KEY_LENGTH);
  const body = r.vec32(MAX_ENVELOPE_BODY);
  const signature = r.fixed(SIGNATURE_LENGTH);
  r.end();
  if (tag !== expectedTag) throw new ThemisError('ERR_IDENTITY_BAD_SIGNATURE', `signed envelope has tag "${tag}"; expected "${expectedTag}"`);
  if (!verifyTagged(signer, tag, body, signature)) throw new ThemisError('ERR_IDENTITY_BAD_SIGNATURE', `signed envelope "${tag}" has an invalid signature`);
  return { tag, signer, body, signature };
}
