export { createPeer, Peer, DEFAULT_PEER_LIMITS, type Connection, type DialOptions, type PeerInit, type PeerLimits, type PeerStats, type RemotePeer } from './peer.js';
export { parseTcpAddress, formatTcpAddress, type TcpAddress } from './address.js';
export { dialTcp, listenTcp } from './tcp.js';
export { memoryDuplexPair } from './memory.js';
export { runHandshake, type HandshakeOutcome } from './handshake-io.js';
export { MemoryNetwork } from './memory-network.js';
