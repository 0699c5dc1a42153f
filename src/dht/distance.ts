/** XOR metric of Kademlia over 32-byte ids. */

/** -1, 0 or 1 as a is closer to, as close as, or farther from target than b. */
export function compareDistance(a: Uint8Array, b: Uint8Array, target: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const da = a[i]! ^ target[i]!;
    const db = b[i]! ^ target[i]!;
    if (da !== db) return da < db ? -1 : 1;
  }
  return 0;
}

export function xorDistance(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Number of leading bits a and b share (256 when equal): the bucket index of b in a's table. */
export function commonPrefixLength(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return a.length * 8;
}

/** Sorts ids (or things with an id) by distance to target, closest first. */
export function sortByDistance<T>(items: T[], target: Uint8Array, idOf: (item: T) => Uint8Array): T[] {
  return items.sort((x, y) => compareDistance(idOf(x), idOf(y), target));
}
