/** Themis settings shared by the bench server and client. Type-only imports: loading this never loads src/. */
import type { PeerInit, PeerLimits } from '../../src/transport/index.js';

/** No identity puzzles: the bench measures the channel, not identity generation. */
export const BENCH_NETWORK = { c1: 0, c2: 0 } as const;

/**
 * The server accepts every connection the bench makes: the defaults (64 per IP, 128 pending)
 * are abuse limits, and the handshake phases open thousands of connections from 127.0.0.1 whose
 * closes the server may see a little late. The TCP and TLS servers have no such limits either.
 */
export const THEMIS_SERVER_LIMITS: Partial<PeerLimits> = {
  maxConnections: 1_000_000,
  maxConnectionsPerIp: 1_000_000,
  maxPendingHandshakes: 1_000_000,
};

/**
 * Channel limits for both peers. The defaults (bodies up to 4 MiB, 1 MiB connection window) fit
 * the 1 MiB bulk messages, and the bench measures what a user gets, so nothing is tuned here.
 */
export function themisChannelLimits(): NonNullable<PeerInit['channel']> {
  return {};
}
