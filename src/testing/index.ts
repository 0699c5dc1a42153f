import { networkConfig, type NetworkConfig } from '../identity/index.js';
import { createPeer, memoryDuplexPair, type Connection, type Peer, type PeerInit } from '../transport/index.js';

export { startDelayProxy, type CutMode, type Delay, type DelayProxy, type DelayProxyInit } from './delay-proxy.js';

export interface TestPeers {
  readonly peers: readonly Peer[];
  /** Closes every peer (GOAWAY on each connection) and frees the ports. */
  close(): Promise<void>;
}

/**
 * Starts `n` real peers listening on 127.0.0.1 with OS-assigned ports, on a cheap test network
 * (puzzles at difficulty 0 unless given), for application tests.
 *
 * @example
 * const net = await startTestPeers(2);
 * const [a, b] = net.peers;
 * b.handle('hello', () => Buffer.from('hi'));
 * const conn = await a.dial(b.addresses[0], { expect: b.id });
 * await net.close();
 */
export async function startTestPeers(n: number, init: Omit<PeerInit, 'listen'> = {}): Promise<TestPeers> {
  const network = testNetwork(init.network);
  const peers: Peer[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(peers.map((peer) => peer.close()));
  };
  try {
    for (let i = 0; i < n; i++) peers.push(await createPeer({ ...init, network, listen: 'tcp://127.0.0.1:0' }));
  } catch (err) {
    await close();
    throw err;
  }
  return { peers, close };
}

/** Connects two peers over an in-memory duplex pair: same handshake and channel, no sockets. */
export async function connectInMemory(dialer: Peer, listener: Peer): Promise<{ dialed: Connection; accepted: Connection }> {
  const [a, b] = memoryDuplexPair();
  const [dialed, accepted] = await Promise.all([
    dialer.connectOver(a, `memory://${listener.id}`, { expect: listener.nodeId }),
    listener.acceptOver(b, `memory://${dialer.id}`),
  ]);
  return { dialed, accepted };
}

/** The test network: cheap puzzles so tests spend no time on identities. */
export function testNetwork(init: Partial<NetworkConfig> = {}): NetworkConfig {
  return networkConfig({ c1: 0, c2: 0, ...init });
}
export { startSwtpm, swtpmAvailable, type Swtpm } from './swtpm.js';
export { runChurn, type ChurnEvent, type ChurnOptions, type ChurnPhase, type ChurnReport, type OperationFigures, type PhaseFigures } from './churn.js';
