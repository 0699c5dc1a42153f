import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { isThemisError } from '../../src/core/errors.js';
import { startDelayProxy, startTestPeers, type DelayProxy } from '../../src/testing/index.js';
import type { Peer } from '../../src/transport/index.js';

type After = { after: (fn: () => Promise<void> | void) => void };

/** A TCP server that echoes every byte and half-closes when the client does. */
async function echoTcp(t: After): Promise<{ server: Server; address: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, address: `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets };
}

async function proxyTo(t: After, target: string, delay?: { up?: number; down?: number }): Promise<DelayProxy> {
  const proxy = await startDelayProxy({ target, ...(delay === undefined ? {} : { delay }) });
  t.after(() => proxy.close());
  return proxy;
}

function open(address: string): Socket {
  const url = new URL(address);
  const socket = connect({ host: url.hostname, port: Number(url.port), allowHalfOpen: true });
  socket.on('error', () => undefined);
  return socket;
}

function dial(address: string): Promise<Socket> {
  const socket = open(address);
  return once(socket, 'connect').then(() => socket);
}

/** Writes `chunks` one by one, half-closes, and collects everything read until the other side ends. */
async function roundTrip(socket: Socket, chunks: readonly Buffer[]): Promise<Buffer> {
  const read: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => read.push(chunk));
  const ended = once(socket, 'end');
  for (const chunk of chunks) socket.write(chunk);
  socket.end();
  await ended;
  return Buffer.concat(read);
}

/** Resolves when the other side closed the socket (FIN or RST). */
function closedByPeer(socket: Socket): Promise<void> {
  if (socket.closed || socket.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('end', () => resolve());
    socket.once('close', () => resolve());
    socket.resume();
  });
}

test('forwards every byte in order both ways, through the half-close, with and without a delay', async (t) => {
  const { address } = await echoTcp(t);
  const direct = await proxyTo(t, address);
  const delayed = await proxyTo(t, address, { up: 3, down: 2 });
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 12 }), fc.boolean(), async (arrays, slow) => {
      const chunks = arrays.map((a) => Buffer.from(a));
      const echoed = await roundTrip(await dial((slow ? delayed : direct).address), chunks);
      assert.deepEqual(echoed, Buffer.concat(chunks));
    }),
    { numRuns: 40 },
  );
});

test('a transfer larger than the high-water mark arrives whole (reading pauses and resumes)', async (t) => {
  const { address } = await echoTcp(t);
  const proxy = await proxyTo(t, address, { up: 2, down: 2 });
  const bulk = Buffer.alloc(6 * 1024 * 1024);
  for (let i = 0; i < bulk.length; i += 4096) bulk.writeUInt32BE(i, i);
  assert.ok((await roundTrip(await dial(proxy.address), [bulk])).equals(bulk));
});

test('a round trip takes at least the up plus the down delay; setDelay applies to later bytes', async (t) => {
  const { address } = await echoTcp(t);
  const proxy = await proxyTo(t, address, { up: 40, down: 30 });
  const socket = await dial(proxy.address);
  t.after(() => void socket.destroy());
  const echoOnce = async (text: string): Promise<number> => {
    const started = performance.now();
    socket.write(text);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    assert.equal(chunk.toString(), text);
    return performance.now() - started;
  };
  // A lower bound only: a busy machine makes it slower, never faster (timers may round 1 ms early).
  assert.ok((await echoOnce('a')) >= 70 - 2);
  proxy.setDelay({ up: 150 });
  assert.deepEqual(proxy.delay, { up: 150, down: 30 });
  assert.ok((await echoOnce('b')) >= 180 - 2);
  assert.throws(() => proxy.setDelay({ down: -1 }), RangeError);
});

test('cut("reset") closes open connections and resets new ones until restore()', async (t) => {
  const { address, sockets } = await echoTcp(t);
  const proxy = await proxyTo(t, address);
  const live = await dial(proxy.address);
  t.after(() => void live.destroy());
  live.write('x');
  await once(live, 'data');
  assert.equal(proxy.connections, 1);

  proxy.cut('reset');
  await closedByPeer(live);
  assert.equal(proxy.connections, 0);
  await closedByPeer(open(proxy.address));
  assert.equal(proxy.connections, 0);
  assert.equal(proxy.accepted, 2, 'the reset one counts as accepted');
  while (sockets.size > 0) await new Promise((resolve) => setTimeout(resolve, 10)); // the target side went too

  proxy.restore();
  const again = await dial(proxy.address);
  assert.deepEqual(await roundTrip(again, [Buffer.from('back')]), Buffer.from('back'));
});

test('cut("blackhole") drops bytes silently, so the caller hits its own deadline; restore() heals', async (t) => {
  const net = await startTestPeers(2, { limits: { handshakeTimeoutMs: 1000 } });
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  server.handle('echo', (body) => body);
  const proxy = await proxyTo(t, server.addresses[0]!, { up: 5, down: 5 });

  // The Themis handshake and channel run unchanged through the proxy.
  const conn = await client.dial(proxy.address, { expect: server.id });
  assert.equal((await conn.request('echo', Buffer.from('hi'))).toString(), 'hi');

  proxy.cut('blackhole');
  assert.equal(proxy.connections, 1, 'a blackhole keeps the connection open');
  await assert.rejects(conn.request('echo', Buffer.from('lost'), { timeoutMs: 300 }), (err) => isThemisError(err, 'ERR_CHANNEL_TIMEOUT'));
  await assert.rejects(client.dial(proxy.address, { expect: server.id }), (err) => isThemisError(err, 'ERR_HANDSHAKE_TIMEOUT'));

  proxy.restore();
  assert.equal(proxy.connections, 0, 'restore() closes what the blackhole held');
  const healed = await client.dial(proxy.address, { expect: server.id });
  assert.equal((await healed.request('echo', Buffer.from('again'))).toString(), 'again');
});

test('a target that refuses closes the client side; close() frees the port', async (t) => {
  const { server, address } = await echoTcp(t);
  const proxy = await startDelayProxy({ target: address });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await closedByPeer(open(proxy.address));
  await proxy.close();
  await assert.rejects(dial(proxy.address));
  await assert.rejects(startDelayProxy({ target: 'not-an-address' }), (err) => isThemisError(err, 'ERR_TRANSPORT_ADDRESS'));
});
