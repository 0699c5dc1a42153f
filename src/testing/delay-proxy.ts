import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { formatTcpAddress, parseTcpAddress } from '../transport/index.js';

/** Delay added to each direction of a proxied connection, in milliseconds. */
export interface Delay {
  /** Client → target. Default 0. */
  readonly up?: number;
  /** Target → client. Default 0. */
  readonly down?: number;
}

/**
 * How a cut link behaves: `reset` closes every connection with an RST and resets new ones (a
 * crashed host, a refused port); `blackhole` keeps sockets open and accepts new ones but drops every
 * byte (a partition: peers only notice through their own deadlines).
 */
export type CutMode = 'reset' | 'blackhole';

export interface DelayProxyInit {
  /** Where connections go: `tcp://host:port`. */
  readonly target: string;
  /** Where the proxy listens. Default `tcp://127.0.0.1:0` (a free port). */
  readonly listen?: string;
  /** Initial delay per direction. Default none. */
  readonly delay?: Delay;
}

export interface DelayProxy {
  /** The bound address, `tcp://host:port` with the real port. */
  readonly address: string;
  /** Open proxied connections (blackholed ones included). */
  readonly connections: number;
  /** Connections accepted since the start, reset and blackholed ones included. */
  readonly accepted: number;
  /** The delay now in force; applies to bytes read from now on. */
  readonly delay: Required<Delay>;
  setDelay(delay: Delay): void;
  /** Cuts the link (see {@link CutMode}) until {@link restore}. */
  cut(mode?: CutMode): void;
  /** Forwards new connections again; connections held by a blackhole cut are closed. */
  restore(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Bytes queued per direction before the proxy stops reading from the sender (TCP backpressure). */
const HIGH_WATER = 1 << 20;

/**
 * A real TCP proxy for tests across hosts: it forwards each accepted connection to `target`,
 * holding every chunk for the direction's delay (order kept), and can cut and restore the link.
 * With nftables DNAT in front of it, it puts latency or a partition on one path of a network
 * namespace lab (test/multihost) where `tc netem` is not available.
 *
 * @example
 * const proxy = await startDelayProxy({ target: server.addresses[0], delay: { up: 20, down: 20 } });
 * const conn = await client.dial(proxy.address, { expect: server.id }); // every round trip ≥ 40 ms
 * proxy.cut('blackhole'); // calls now hit their deadlines
 * proxy.restore();
 * await proxy.close();
 */
export async function startDelayProxy(init: DelayProxyInit): Promise<DelayProxy> {
  const target = parseTcpAddress(init.target);
  let delay = checkDelay(init.delay ?? {});
  let cut: CutMode | null = null;
  const pairs = new Set<Pair>();

  let accepted = 0;
  const onSocket = (client: Socket): void => {
    accepted++;
    if (cut === 'reset') return void client.resetAndDestroy();
    const pair: Pair = { client, upstream: null, held: cut === 'blackhole', closed: 0 };
    pairs.add(pair);
    // Half-closes travel through (after the delay); the pair goes when both sockets closed or one failed.
    client.once('close', () => closed(pair));
    client.on('error', () => teardown(pair));
    if (pair.held) {
      client.on('data', () => undefined); // a blackhole reads and drops
      return;
    }
    const upstream = connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true });
    pair.upstream = upstream;
    upstream.once('close', () => closed(pair));
    upstream.on('error', () => teardown(pair));
    relay(client, upstream, () => delay.up, () => pair.held);
    relay(upstream, client, () => delay.down, () => pair.held);
  };
  const closed = (pair: Pair): void => {
    if (++pair.closed === (pair.upstream === null ? 1 : 2)) teardown(pair);
  };
  const teardown = (pair: Pair): void => {
    if (!pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  };
  const listen = parseTcpAddress(init.listen ?? 'tcp://127.0.0.1:0');
  const server = createServer({ noDelay: true, allowHalfOpen: true }, onSocket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const address = formatTcpAddress({ host: bound.address, port: bound.port });

  return {
    address,
    get connections() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    get delay() {
      return delay;
    },
    setDelay(next: Delay) {
      delay = checkDelay({ ...delay, ...next });
    },
    cut(mode: CutMode = 'reset') {
      if (mode !== 'reset' && mode !== 'blackhole') throw new RangeError(`cut mode must be 'reset' or 'blackhole', got ${String(mode)}`);
      cut = mode;
      for (const pair of pairs) {
        if (mode === 'blackhole') pair.held = true;
        else {
          pairs.delete(pair);
          pair.client.resetAndDestroy();
          pair.upstream?.resetAndDestroy();
        }
      }
    },
    restore() {
      cut = null;
      for (const pair of pairs) if (pair.held) teardown(pair);
    },
    close() {
      for (const pair of pairs) teardown(pair);
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Pair {
  readonly client: Socket;
  upstream: Socket | null;
  /** Blackholed: bytes are dropped in both directions. */
  held: boolean;
  /** Sockets of the pair that closed. */
  closed: number;
}

/**
 * Copies `from` to `to`, releasing each chunk `delayMs()` after it was read, in order; ends `to`
 * after the last one. Reading pauses while HIGH_WATER bytes wait or `to` does not drain.
 */
function relay(from: Socket, to: Socket, delayMs: () => number, dropped: () => boolean): void {
  const queue: { due: number; chunk: Buffer }[] = [];
  let queued = 0;
  let blocked = false;
  let ended = false;
  let timer: NodeJS.Timeout | null = null;
  const flow = (): void => void (blocked || queued >= HIGH_WATER ? from.pause() : from.resume());
  const flush = (): void => {
    timer = null;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      queued -= chunk.length;
      if (dropped() || to.destroyed || to.write(chunk) || blocked) continue;
      blocked = true;
      to.once('drain', () => {
        blocked = false;
        flow();
      });
    }
    flow();
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.due - now);
    else if (ended && !to.destroyed) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    if (dropped()) return;
    // Never earlier than the chunk before it, so a lowered delay cannot reorder bytes.
    const due = Math.max(Date.now() + delayMs(), queue.at(-1)?.due ?? 0);
    queue.push({ due, chunk });
    queued += chunk.length;
    flow();
    timer ??= setTimeout(flush, due - Date.now());
  });
  from.once('end', () => {
    ended = true;
    timer ??= setTimeout(flush, 0);
  });
}

function checkDelay(delay: Delay): Required<Delay> {
  const up = delay.up ?? 0;
  const down = delay.down ?? 0;
  for (const [name, ms] of [['up', up], ['down', down]] as const) {
    if (!Number.isFinite(ms) || ms < 0 || ms > 60_000) throw new RangeError(`delay.${name} must be 0..60000 ms, got ${ms}`);
  }
  return { up, down };
}
