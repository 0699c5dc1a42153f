import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { Identity } from '../../src/identity/index.js';
import { createPeer, type Peer } from '../../src/transport/index.js';
import { connectInMemory, startTestPeers, testNetwork } from '../../src/testing/index.js';

async function echoServer(t: { after: (fn: () => Promise<void>) => void }, init: Parameters<typeof startTestPeers>[1] = {}): Promise<{ server: Peer; client: Peer }> {
  const net = await startTestPeers(2, init);
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  server.handle('echo', (body) => body);
  server.handleStream('echo', (stream) => void stream.pipe(stream));
  return { server, client };
}

test('dial over TCP: XX first, IK on the next dial, the verified identity on both sides', async (t) => {
  const { server, client } = await echoServer(t);
  const accepted = new Promise<string>((resolve) => server.once('connection', (conn) => resolve(conn.remote.id)));
  const first = await client.dial(server.addresses[0]!, { expect: server.id });
  assert.equal(first.remote.pattern, 'XX');
  assert.equal(first.remote.id, server.id);
  assert.equal(await accepted, client.id);
  assert.equal((await first.request('echo', Buffer.from('one'))).toString(), 'one');
  const second = await client.dial(server.addresses[0]!, { expect: server.id });
  assert.equal(second.remote.pattern, 'IK');
  assert.equal((await second.request('echo', Buffer.from('two'))).toString(), 'two');
  assert.notDeepEqual(first.remote.handshakeHash, second.remote.handshakeHash);
  await Promise.all([first.close(), second.close()]);
});

test('an IK dial with a stale static key falls back to XX and still checks the NodeId', async (t) => {
  const { server, client } = await echoServer(t);
  const stale = Identity.generate(testNetwork()).noiseStatic.publicKey;
  const conn = await client.dial(server.addresses[0]!, { expect: server.id, remoteStatic: stale });
  assert.equal(conn.remote.pattern, 'XX');
  assert.equal(conn.remote.id, server.id);
  await conn.close();
});

test('streams carry bytes both ways over TCP', async (t) => {
  const { server, client } = await echoServer(t);
  const conn = await client.dial(server.addresses[0]!, { expect: server.id });
  const stream = conn.openStream('echo');
  const payload = Buffer.alloc(1024 * 1024 + 17, 7);
  const received: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = new Promise((resolve) => stream.once('end', resolve));
  stream.end(payload);
  await ended;
  assert.deepEqual(Buffer.concat(received), payload);
  await conn.close();
});

test('a dial that expects another NodeId is refused, and the server stays healthy', async (t) => {
  const { server, client } = await echoServer(t);
  const other = Identity.generate(testNetwork());
  await assert.rejects(client.dial(server.addresses[0]!, { expect: other.id }), (e) => isThemisError(e, 'ERR_HANDSHAKE_UNEXPECTED_PEER'));
  const conn = await client.dial(server.addresses[0]!, { expect: server.id });
  assert.equal((await conn.request('echo', Buffer.from('ok'))).toString(), 'ok');
});

test('a peer of another network cannot connect (wrong network id in the prologue)', async (t) => {
  const { server } = await echoServer(t);
  const foreign = await createPeer({ network: testNetwork({ trustDomain: 'other' }) });
  t.after(() => foreign.close());
  await assert.rejects(foreign.dial(server.addresses[0]!), (e) => isThemisError(e) && e.code.startsWith('ERR_HANDSHAKE_'));
});

test('in-memory connections run the same handshake and channel', async (t) => {
  const net = await startTestPeers(2);
  t.after(() => net.close());
  const [a, b] = net.peers as [Peer, Peer];
  b.handle('who', (_body, ctx) => Buffer.from(ctx.channel.remote.id));
  const { dialed, accepted } = await connectInMemory(a, b);
  assert.equal(dialed.remote.id, b.id);
  assert.equal(accepted.remote.id, a.id);
  assert.equal((await dialed.request('who', Buffer.alloc(0))).toString(), a.id);
});

test('closing a peer sends GOAWAY and lets in-flight requests finish', async (t) => {
  const net = await startTestPeers(2);
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  server.handle('slow', async (body) => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    return body;
  });
  const conn = await client.dial(server.addresses[0]!, { expect: server.id });
  const inflight = conn.request('slow', Buffer.from('done'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const closing = server.close();
  assert.equal((await inflight).toString(), 'done');
  await closing;
  await assert.rejects(conn.request('slow', Buffer.from('late')), (e) => isThemisError(e));
});

test('connectionTo finds the open connection with a NodeId in either direction, and forgets it once closing', async (t) => {
  const { server, client } = await echoServer(t);
  client.handle('echo', (body) => body);
  assert.equal(server.connectionTo(client.nodeId), undefined);
  const accepted = new Promise<void>((resolve) => server.once('connection', () => resolve()));
  const dialed = await client.dial(server.addresses[0]!, { expect: server.id });
  await accepted;
  assert.equal(client.connectionTo(server.nodeId), dialed);
  const reverse = server.connectionTo(client.nodeId);
  assert.ok(reverse !== undefined);
  // The accepting side opens its own streams on the dialler's connection (even stream ids).
  assert.equal((await reverse.request('echo', Buffer.from('back'))).toString(), 'back');
  assert.equal(server.connectionTo(server.nodeId), undefined);
  const closed = new Promise<void>((resolve) => reverse.once('close', () => resolve()));
  const closing = dialed.close();
  assert.equal(client.connectionTo(server.nodeId), undefined, 'a draining connection is not offered');
  await Promise.all([closing, closed]);
  assert.equal(server.connectionTo(client.nodeId), undefined);
});
