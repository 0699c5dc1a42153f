import { EventEmitter } from 'node:events';
import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ThemisError, isThemisError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { Channel, type ChannelLimits, type RequestHandler, type StreamHandler } from '../channel/index.js';
import { createInitiator, createResponder, type Credential, type HandshakeOptions, type HandshakePattern, type VerifiedPeer } from '../handshake/index.js';
import { Identity, networkConfig, parseNodeId, type NetworkConfig } from '../identity/index.js';
import { runHandshake } from './handshake-io.js';
import { dialTcp, listenTcp } from './tcp.js';

/** The verified other side of a connection. */
export interface RemotePeer extends VerifiedPeer {
  readonly pattern: HandshakePattern;
  /** Noise handshake hash, identical on both sides: use it to bind higher-level tokens to this channel. */
  readonly handshakeHash: Buffer;
  /** Transport address the connection came from or went to. */
  readonly address: string;
}

export type Connection = Channel<RemotePeer>;

export interface PeerLimits {
  /** Handshakes in progress at once (half-open connections). Default 128. */
  readonly maxPendingHandshakes: number;
  /** Established connections at once. Default 1024. */
  readonly maxConnections: number;
  /** Inbound connections (pending or established) from one IP address. Default 64. */
  readonly maxConnectionsPerIp: number;
  /** Inbound handshakes in progress from one IP address, so one address cannot fill the half-open table. Default 16. */
  readonly maxPendingHandshakesPerIp: number;
  /** A handshake must complete within this. Default 10 s. */
  readonly handshakeTimeoutMs: number;
  /**
   * Slow-loris defence: when `maxPendingHandshakes` are in progress, the oldest inbound one that
   * has been running this long is closed to make room for the newcomer (an honest handshake takes
   * milliseconds); younger ones keep their place and the newcomer is refused. Default 1 s.
   */
  readonly stalledHandshakeMs: number;
  /** TCP connect timeout. Default 10 s. */
  readonly connectTimeoutMs: number;
}

export const DEFAULT_PEER_LIMITS: PeerLimits = Object.freeze({
  maxPendingHandshakes: 128,
  maxConnections: 1024,
  maxConnectionsPerIp: 64,
  maxPendingHandshakesPerIp: 16,
  handshakeTimeoutMs: 10_000,
  stalledHandshakeMs: 1_000,
  connectTimeoutMs: 10_000,
});

export interface PeerStats {
  /** Handshakes in progress (at most `limits.maxPendingHandshakes` of them inbound). */
  readonly pendingHandshakes: number;
  /** Established connections, both directions. */
  readonly connections: number;
  /** Distinct source IPs with inbound connections (pending or established). */
  readonly inboundIps: number;
}

export interface PeerInit {
  /** The peer's identity; a fresh one meeting the network's puzzles when omitted. */
  readonly identity?: Identity;
  /** Network parameters (c1, c2, trust domain); peers of different networks cannot connect. */
  readonly network?: Partial<NetworkConfig>;
  /** Addresses to listen on, e.g. `tcp://127.0.0.1:0`. None: the peer only dials. */
  readonly listen?: string | readonly string[];
  /** Join as a client: announced in the identity proof so others keep it out of routing tables. */
  readonly client?: boolean;
  /** Credentials to carry in the identity proof (endorsements, attestation evidence). */
  readonly credentials?: readonly Credential[];
  readonly limits?: Partial<PeerLimits>;
  readonly channel?: Partial<ChannelLimits>;
  readonly logger?: Logger;
}

export interface DialOptions {
  /** NodeId (bytes or base32 text) the dialled peer must have. */
  readonly expect?: Uint8Array | string;
  /** The peer's verified Noise static key (e.g. from a signed contact record): selects IK. */
  readonly remoteStatic?: Uint8Array;
  readonly signal?: AbortSignal;
}

const STATIC_KEY_CACHE_SIZE = 4096;

/**
 * A Themis peer: an identity, listeners, and verified encrypted connections (protocols 1 and 2).
 *
 * @example
 * const server = await createPeer({ listen: 'tcp://127.0.0.1:0' });
 * server.handle('echo', (body) => body);
 * const client = await createPeer();
 * const conn = await client.dial(server.addresses[0], { expect: server.id });
 * const reply = await conn.request('echo', Buffer.from('hi'));
 */
export class Peer extends EventEmitter {
  readonly identity: Identity;
  readonly network: NetworkConfig;
  readonly limits: PeerLimits;
  readonly connections = new Set<Connection>();
  /** NodeId (hex) → the newest connection with that peer, either direction. */
  private readonly byNode = new Map<string, Connection>();
  private readonly logger: Logger;
  private readonly servers: Server[] = [];
  private readonly boundAddresses: string[] = [];
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private readonly streamHandlers = new Map<string, StreamHandler>();
  private readonly handlers = {
    request: (name: string) => this.requestHandlers.get(name),
    stream: (name: string) => this.streamHandlers.get(name),
  };
  /** NodeId (hex) → Noise static key from verified handshakes; lets the next dial use IK. */
  private readonly staticKeys = new Map<string, Buffer>();
  private readonly pendingSockets = new Set<Duplex>();
  /** Inbound TCP handshakes in progress, oldest first, with their start (performance.now()). */
  private readonly inboundPending = new Map<Duplex, number>();
  private readonly pendingPerIp = new Map<string, number>();
  private readonly perIp = new Map<string, number>();
  private closing = false;

  constructor(private readonly init: PeerInit = {}) {
    super();
    this.network = networkConfig(init.network);
    this.identity = init.identity ?? Identity.generate(this.network);
    if (!this.identity.meets(this.network)) {
      throw new ThemisError('ERR_IDENTITY_PUZZLE', `identity ${this.identity.id} does not meet this network's puzzles (c1 = ${this.network.c1}, c2 = ${this.network.c2}); generate a new one`);
    }
    this.limits = Object.freeze({ ...DEFAULT_PEER_LIMITS, ...init.limits });
    this.logger = init.logger ?? createLogger();
  }

  /** Current counters, to watch them against `limits` (docs/protocol.md §3.6). */
  get stats(): PeerStats {
    return { pendingHandshakes: this.pendingSockets.size, connections: this.connections.size, inboundIps: this.perIp.size };
  }

  /** NodeId in base32 text form. */
  get id(): string {
    return this.identity.id;
  }

  get nodeId(): Buffer {
    return this.identity.nodeId;
  }

  /** The addresses this peer listens on, with real ports once bound. */
  get addresses(): readonly string[] {
    return this.boundAddresses;
  }

  /** Advertises an address served by another transport (an in-memory network). */
  announce(address: string): void {
    if (!this.boundAddresses.includes(address)) this.boundAddresses.push(address);
  }

  /** Serves request `name` on every connection, current and future. */
  handle(name: string, handler: RequestHandler): this {
    this.requestHandlers.set(checkName(name), handler);
    return this;
  }

  /** Serves byte streams opened under `name`. */
  handleStream(name: string, handler: StreamHandler): this {
    this.streamHandlers.set(checkName(name), handler);
    return this;
  }

  /** Starts listening on the addresses given at creation. */
  async listen(): Promise<void> {
    const listen = this.init.listen === undefined ? [] : typeof this.init.listen === 'string' ? [this.init.listen] : this.init.listen;
    for (const address of listen) {
      const { server, address: bound } = await listenTcp(address, (socket) => this.acceptTcp(socket));
      this.servers.push(server);
      this.boundAddresses.push(bound);
    }
  }

  /**
   * An open connection with this NodeId, dialled or accepted, if there is one: the handshake
   * proved who is at the other end, so either side may open streams on it (§4.2).
   */
  connectionTo(nodeId: Uint8Array): Connection | undefined {
    const conn = this.byNode.get(Buffer.from(nodeId.buffer, nodeId.byteOffset, nodeId.byteLength).toString('hex'));
    return conn !== undefined && conn.open ? conn : undefined;
  }

  /** Dials `tcp://host:port`, runs the handshake (IK when the static key is known, else XX). */
  async dial(address: string, options: DialOptions = {}): Promise<Connection> {
    const expect = options.expect === undefined ? undefined : typeof options.expect === 'string' ? parseNodeId(options.expect) : Buffer.from(options.expect);
    const known = options.remoteStatic ?? (expect === undefined ? undefined : this.staticKeys.get(expect.toString('hex')));
    const attempt = async (remoteStatic: Uint8Array | undefined): Promise<Connection> => {
      const socket = await dialTcp(address, { timeoutMs: this.limits.connectTimeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
      return this.connectOver(socket, address, { expect, remoteStatic, signal: options.signal });
    };
    if (known === undefined) return attempt(undefined);
    try {
      return await attempt(known);
    } catch (err) {
      // §3.3: a responder whose static key changed closes an IK attempt unanswered; retry with XX.
      if (!isThemisError(err, 'ERR_HANDSHAKE_CLOSED')) throw err;
      if (expect !== undefined) this.staticKeys.delete(expect.toString('hex'));
      this.logger.debug({ address }, 'IK handshake refused; retrying with XX');
      return attempt(undefined);
    }
  }

  /** Runs the initiator side over an already-connected duplex (in-memory transports, tests). */
  async connectOver(
    socket: Duplex,
    address: string,
    options: { expect?: Uint8Array | undefined; remoteStatic?: Uint8Array | undefined; signal?: AbortSignal | undefined } = {},
  ): Promise<Connection> {
    this.assertOpen();
    const machine = createInitiator({
      ...this.handshakeOptions(),
      ...(options.expect === undefined ? {} : { expect: options.expect }),
      ...(options.remoteStatic === undefined ? {} : { remoteStatic: options.remoteStatic }),
    });
    return this.establish(socket, address, machine, true, options.signal);
  }

  /** Runs the responder side over an accepted duplex (in-memory transports, tests). */
  acceptOver(socket: Duplex, address: string): Promise<Connection> {
    return this.establish(socket, address, createResponder(this.handshakeOptions()), false, undefined);
  }

  /** What this peer proves about itself in every handshake (docs/protocol.md §3.4). */
  private handshakeOptions(): HandshakeOptions {
    return {
      identity: this.identity,
      network: this.network,
      addresses: this.boundAddresses,
      client: this.init.client === true,
      credentials: this.init.credentials ?? [],
    };
  }

  /** Stops listening, closes every connection with GOAWAY and waits for in-flight streams. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const socket of this.pendingSockets) socket.destroy();
    await Promise.all([
      ...this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      ...[...this.connections].map((conn) => conn.close()),
    ]);
  }

  private acceptTcp(socket: Socket): void {
    const ip = socket.remoteAddress ?? 'unknown';
    const address = `tcp://${ip}:${socket.remotePort ?? 0}`;
    const fromIp = this.perIp.get(ip) ?? 0;
    const pendingFromIp = this.pendingPerIp.get(ip) ?? 0;
    const refusal =
      this.closing ? 'closing'
      : pendingFromIp >= this.limits.maxPendingHandshakesPerIp ? 'too many handshakes in progress from this address'
      : this.pendingSockets.size >= this.limits.maxPendingHandshakes && !this.evictStalledHandshake() ? 'too many handshakes in progress'
      : this.connections.size >= this.limits.maxConnections ? 'too many connections'
      : fromIp >= this.limits.maxConnectionsPerIp ? 'too many connections from this address'
      : null;
    if (refusal !== null) {
      this.logger.warn({ address, code: 'ERR_TRANSPORT_LIMIT' }, `refused inbound connection: ${refusal}`);
      socket.destroy();
      return;
    }
    this.perIp.set(ip, fromIp + 1);
    socket.once('close', () => decrement(this.perIp, ip));
    this.inboundPending.set(socket, performance.now());
    this.pendingPerIp.set(ip, pendingFromIp + 1);
    this.acceptOver(socket, address)
      .catch(() => {
        // Already logged with its precise code in establish(); the socket is closed.
      })
      .finally(() => {
        this.inboundPending.delete(socket);
        decrement(this.pendingPerIp, ip);
      });
  }

  /** Closes the oldest inbound handshake if it has stalled for `stalledHandshakeMs`; true when it made room. */
  private evictStalledHandshake(): boolean {
    const oldest = this.inboundPending.entries().next().value;
    if (oldest === undefined) return false;
    const [socket, since] = oldest;
    if (performance.now() - since < this.limits.stalledHandshakeMs) return false;
    this.inboundPending.delete(socket);
    this.pendingSockets.delete(socket);
    socket.destroy();
    this.logger.debug({ code: 'ERR_TRANSPORT_LIMIT' }, 'closed a stalled inbound handshake to make room');
    return true;
  }

  private async establish(
    socket: Duplex,
    address: string,
    machine: ReturnType<typeof createInitiator>,
    initiator: boolean,
    signal: AbortSignal | undefined,
  ): Promise<Connection> {
    this.pendingSockets.add(socket);
    try {
      const { result, head } = await runHandshake(socket, machine, { timeoutMs: this.limits.handshakeTimeoutMs, ...(signal ? { signal } : {}) });
      this.assertOpen();
      const remote: RemotePeer = { ...result.remote, pattern: result.pattern, handshakeHash: result.handshakeHash, address };
      this.rememberStaticKey(remote);
      const conn: Connection = new Channel<RemotePeer>({
        socket,
        head,
        send: result.send,
        recv: result.recv,
        initiator,
        remote,
        handlers: this.handlers,
        limits: this.init.channel ?? {},
        logger: this.logger,
      });
      this.connections.add(conn);
      const node = remote.nodeId.toString('hex');
      this.byNode.set(node, conn);
      conn.once('close', (err?: ThemisError) => {
        this.connections.delete(conn);
        if (this.byNode.get(node) === conn) this.byNode.delete(node);
        if (err !== undefined) this.logger.debug({ peer: remote.id, code: err.code }, err.message);
      });
      // docs/protocol.md §7: an IK message 1 can be replayed; the initiator is really there only
      // once its first transport message authenticates.
      if (!initiator && result.pattern === 'IK') await authenticated(conn, this.limits.handshakeTimeoutMs);
      this.logger.debug({ peer: remote.id, pattern: result.pattern, initiator }, 'handshake complete');
      this.emit('connection', conn);
      return conn;
    } catch (err) {
      socket.destroy();
      // The remote learns nothing but a closed socket (docs/protocol.md §3.5); the reason stays here.
      this.logger.debug({ address, initiator, code: isThemisError(err) ? err.code : 'ERR_HANDSHAKE_MESSAGE' }, 'handshake failed');
      throw err;
    } finally {
      this.pendingSockets.delete(socket);
    }
  }

  private rememberStaticKey(remote: VerifiedPeer): void {
    const key = remote.nodeId.toString('hex');
    this.staticKeys.delete(key);
    if (this.staticKeys.size >= STATIC_KEY_CACHE_SIZE) {
      const oldest = this.staticKeys.keys().next().value;
      if (oldest !== undefined) this.staticKeys.delete(oldest);
    }
    this.staticKeys.set(key, remote.noiseStatic);
  }

  private assertOpen(): void {
    if (this.closing) throw new ThemisError('ERR_TRANSPORT_CLOSED', 'this peer is closed; create a new one');
  }
}

function authenticated(conn: Connection, timeoutMs: number): Promise<void> {
  if (conn.authenticated) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      conn.off('authenticated', onReady);
      conn.off('close', onClose);
      if (err === undefined) resolve();
      else {
        conn.destroy(err);
        reject(err);
      }
    };
    const onReady = (): void => done();
    const onClose = (): void => done(new ThemisError('ERR_HANDSHAKE_CLOSED', 'the peer closed the connection before its first transport message'));
    const timer = setTimeout(() => done(new ThemisError('ERR_HANDSHAKE_TIMEOUT', `no authenticated transport message within ${timeoutMs} ms after an IK handshake`)), timeoutMs);
    conn.once('authenticated', onReady);
    conn.once('close', onClose);
  });
}

/** One fewer for `key`; a count that reaches 0 is removed, so the map holds only live keys. */
function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n === 0) counts.delete(key);
  else counts.set(key, n);
}

function checkName(name: string): string {
  const length = Buffer.byteLength(name, 'utf8');
  if (length < 1 || length > 255) throw new RangeError(`handler names are 1 to 255 bytes of UTF-8, got ${length}`);
  return name;
}

/** Creates a peer and starts its listeners. */
export async function createPeer(init: PeerInit = {}): Promise<Peer> {
  const peer = new Peer(init);
  try {
    await peer.listen();
  } catch (err) {
    await peer.close();
    throw err;
  }
  return peer;
}
