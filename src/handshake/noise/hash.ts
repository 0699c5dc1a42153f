import { createHash, createHmac } from 'node:crypto';

/** Noise §12.5: the `SHA256` hash function. */
export const HASHLEN = 32;
/** Noise §12.5; HMAC's block size `B` (node:crypto applies it inside createHmac). */
export const BLOCKLEN = 64;

const BYTE_1 = Buffer.from([0x01]);
const BYTE_2 = Buffer.from([0x02]);
const BYTE_3 = Buffer.from([0x03]);

/**
 * Noise §4.3 `HASH(data)` over the concatenation of `parts`, without building the concatenation.
 * @example hash(h, data) // = HASH(h || data), as MixHash needs it
 */
export function hash(...parts: readonly Uint8Array[]): Buffer {
  const sha = createHash('sha256');
  for (const part of parts) sha.update(part);
  return sha.digest();
}

function hmacHash(key: Uint8Array, ...parts: readonly Uint8Array[]): Buffer {
  const mac = createHmac('sha256', key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/**
 * Noise §4.3 `HKDF(chaining_key, input_key_material, num_outputs)`: RFC 5869 HKDF with the
 * chaining key as salt and empty info, spelled out as in the spec (three or four HMACs; this is
 * ~1.4× faster here than `crypto.hkdfSync`, which the unit tests check it against).
 * @example const [ck, tempK] = hkdf(ck, dhOutput, 2);
 */
export function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2): [Buffer, Buffer];
export function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 3): [Buffer, Buffer, Buffer];
export function hkdf(
  chainingKey: Uint8Array,
  inputKeyMaterial: Uint8Array,
  numOutputs: 2 | 3,
): [Buffer, Buffer] | [Buffer, Buffer, Buffer] {
  const tempKey = hmacHash(chainingKey, inputKeyMaterial);
  const output1 = hmacHash(tempKey, BYTE_1);
  const output2 = hmacHash(tempKey, output1, BYTE_2);
  if (numOutputs === 2) return [output1, output2];
  return [output1, output2, hmacHash(tempKey, output2, BYTE_3)];
}
