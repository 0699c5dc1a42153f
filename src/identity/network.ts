import { createHash } from 'node:crypto';
import { Writer } from '../core/codec.js';

/** The parameters every peer of one network agrees on (docs/protocol.md §2.5). */
export interface NetworkConfig {
  /** Static puzzle difficulty: leading zero bits of H(NodeId). */
  readonly c1: number;
  /** Dynamic puzzle difficulty: leading zero bits of H(NodeId ⊕ X). */
  readonly c2: number;
  /** Trust domain name; empty in open mode. */
  readonly trustDomain: string;
}

export const DEFAULT_NETWORK: NetworkConfig = Object.freeze({ c1: 4, c2: 8, trustDomain: '' });

const NETWORK_TAG = 'themis/network/v1';

export function networkConfig(init: Partial<NetworkConfig> = {}): NetworkConfig {
  const config = { ...DEFAULT_NETWORK, ...init };
  for (const key of ['c1', 'c2'] as const) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 0 || v > 64) throw new RangeError(`network ${key} must be an integer from 0 to 64, got ${v}`);
  }
  if (Buffer.byteLength(config.trustDomain, 'utf8') > 255) throw new RangeError('network trustDomain must be at most 255 bytes');
  return Object.freeze(config);
}

/** networkId = H("themis/network/v1" ‖ 0x00 ‖ u8 c1 ‖ u8 c2 ‖ str8 trustDomain). */
export function networkId(config: NetworkConfig): Buffer {
  const body = new Writer(64).raw(Buffer.from(NETWORK_TAG, 'ascii')).u8(0).u8(config.c1).u8(config.c2).str8(config.trustDomain).finish();
  return createHash('sha256').update(body).digest();
}
