import { ThemisError } from '../core/errors.js';
import { memoryDuplexPair } from './memory.js';
import type { Connection, Peer } from './peer.js';

/**
 * Peers connected through in-memory duplex pairs instead of TCP: the same handshake and channel
 * byte for byte, without sockets. Used by tests and the DHT simulator. Addresses are
 * `memory://N`. A detached peer is unreachable, as a crashed host would be.
 */
export class MemoryNetwork {
  private readonly peers = new Map<string, Peer>();
  private next = 1;

  /** Registers a peer and announces its `memory://` address; returns the address. */
  attach(peer: Peer): string {
    const address = `memory://${this.next++}`;
    this.peers.set(address, peer);
    peer.announce(address);
    return address;
  }

  detach(address: string): void {
    this.peers.delete(address);
  }

  get size(): number {
    return this.peers.size;
  }

  /** Opens a verified connection from `from` to the peer at `address`. */
  async dial(from: Peer, address: string, options: { expect?: Uint8Array; remoteStatic?: Uint8Array; signal?: AbortSignal } = {}): Promise<Connection> {
    const target = this.peers.get(address);
    if (target === undefined) throw new ThemisError('ERR_TRANSPORT_CONNECT', `nothing listens at ${address}`);
    const [a, b] = memoryDuplexPair();
    const origin = from.addresses.find((x) => x.startsWith('memory://')) ?? 'memory://client';
    target.acceptOver(b, origin).catch(() => {
      // The responder's failure reaches the dialler as a closed connection.
    });
    return from.connectOver(a, address, options);
  }
}
