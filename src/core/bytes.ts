import { timingSafeEqual } from 'node:crypto';

/** Constant-time equality for secrets (MACs, keys). Lengths are public. */
export function equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

export function concat(parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

export function utf8(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(hex: string): Buffer {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError('expected an even-length hex string');
  return Buffer.from(hex, 'hex');
}

/** A Buffer view over the same memory (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A copy, so untrusted input cannot change underneath a check. */
export function copyBytes(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes);
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const BASE32_INDEX = new Map([...BASE32].map((c, i) => [c, i]));

/** RFC 4648 §6 base32, lowercase, without padding. */
export function toBase32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** Inverse of toBase32; rejects padding, upper case, other characters and non-zero trailing bits. */
export function fromBase32(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const v = BASE32_INDEX.get(c);
    if (v === undefined) throw new TypeError(`invalid base32 character ${JSON.stringify(c)}; expected lowercase a-z and 2-7`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  if (bits >= 5 || (value & ((1 << bits) - 1)) !== 0) throw new TypeError('invalid base32 length or trailing bits');
  return Buffer.from(out);
}

/** Number of leading zero bits (S/Kademlia puzzle difficulty). */
export function leadingZeroBits(bytes: Uint8Array): number {
  let n = 0;
  for (const byte of bytes) {
    if (byte === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(byte) - 24;
  }
  return n;
}
