import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { encodeProof } from '../../src/handshake/index.js';
import { HandshakeState } from '../../src/handshake/noise/index.js';
import { prologue, PROTOCOL_XX } from '../../src/handshake/themis-handshake.js';
import { Identity } from '../../src/identity/index.js';
import { listenTcp, parseTcpAddress, runHandshake, type Peer } from '../../src/transport/index.js';
import { startTestPeers, testNetwork } from '../../src/testing/index.js';

// Handshake (protocol 1) attacks over real sockets on 127.0.0.1. Pure state-machine attacks
// (bit flips, replays, forged proofs) are in test/unit/handshake/themis-handshake.test.ts.

function rawSocket(address: string): Promise<Socket> {
  const { host, port } = parseTcpAddress(address);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

async function echoServer(t: { after: (fn: () => Promise<void>) => void }): Promise<{ server: Peer; client: Peer }> {
  const net = await startTestPeers(2);
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  server.handle('echo', (body) => body);
  return { server, client };
}

test('a peer that stalls mid-handshake is timed out and its socket freed', async (t) => {
  const net = await startTestPeers(1, { limits: { handshakeTimeoutMs: 200 } });
  t.after(() => net.close());
  const socket = await rawSocket(net.peers[0]!.addresses[0]!);
  socket.write(Buffer.from([0x00, 0x20])); // announces a 32-byte message 1, then sends nothing
  const started = Date.now();
  await closed(socket);
  assert.ok(Date.now() - started >= 150, 'closed by the handshake timer, not at once');
});

test('garbage, oversized and empty handshake messages close the socket; the peer keeps serving', async (t) => {
  const { server, client } = await echoServer(t);
  const inputs = [
    Buffer.alloc(200, 0xab), // garbage: length 0xabab then junk
    Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(0xffff, 1)]), // the largest message, not Noise
    Buffer.from([0x00, 0x00]), // an empty message
    Buffer.concat([Buffer.from([0x00, 0x21]), Buffer.alloc(33, 2)]), // neither XX nor IK
  ];
  for (const input of inputs) {
    const socket = await rawSocket(server.addresses[0]!);
    socket.on('error', () => {});
    socket.write(input);
    if (input[0] === 0xab) socket.end();
    await closed(socket);
  }
  const conn = await client.dial(server.addresses[0]!, { expect: server.id });
  assert.equal((await conn.request('echo', Buffer.from('still here'))).toString(), 'still here');
});

test('a half-open handshake flood is capped; honest peers still connect', async (t) => {
  const net = await startTestPeers(2, { limits: { maxPendingHandshakes: 4, handshakeTimeoutMs: 5000 } });
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  server.handle('echo', (body) => body);
  const stalled = await Promise.all(Array.from({ length: 8 }, () => rawSocket(server.addresses[0]!)));
  for (const s of stalled) s.on('error', () => {});
  // The four over the cap are closed at once.
  await Promise.race([Promise.all(stalled.slice(4).map(closed)), new Promise((_, reject) => setTimeout(() => reject(new Error('flood not capped')), 3000))]);
  for (const s of stalled) s.destroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const conn = await client.dial(server.addresses[0]!, { expect: server.id });
  assert.equal((await conn.request('echo', Buffer.from('x'))).toString(), 'x');
});


test('a man in the middle that answers with its own static key and the victim’s stolen proof is refused', async (t) => {
  const { server, client } = await echoServer(t);
  const network = testNetwork();
  const mallory = Identity.generate(network);
  const stolen = encodeProof(server.identity);
  const { server: mitm, address } = await listenTcp('tcp://127.0.0.1:0', (socket) => {
    socket.on('error', () => {});
    const state = new HandshakeState({ protocolName: PROTOCOL_XX, initiator: false, prologue: prologue(network), s: mallory.noiseStatic });
    runHandshake(socket, {
      pattern: 'XX',
      start: () => null,
      receive(message) {
        state.readMessage(message);
        return { send: state.writeMessage(stolen), result: null };
      },
    }, { timeoutMs: 2000 }).catch(() => {});
  });
  t.after(() => new Promise<void>((resolve) => mitm.close(() => resolve())));
  await assert.rejects(client.dial(address, { expect: server.id }), (e) => isThemisError(e, 'ERR_HANDSHAKE_PROOF'));
  // Without an expected id the forged proof is refused all the same: the binding signature is over the server's static key.
  await assert.rejects(client.dial(address), (e) => isThemisError(e, 'ERR_HANDSHAKE_PROOF'));
});

test('a replayed IK message 1 completes no connection: the server waits for an authenticated transport message', async (t) => {
  const net = await startTestPeers(2, { limits: { handshakeTimeoutMs: 300 } });
  t.after(() => net.close());
  const [server, client] = net.peers as [Peer, Peer];
  let announced = 0;
  server.on('connection', () => announced++);
  // A recording relay between the client and the server captures the client's IK message 1.
  let recorded = Buffer.alloc(0);
  const relayed: Socket[] = [];
  const { server: relay, address } = await listenTcp('tcp://127.0.0.1:0', (inbound) => {
    const upstream = connect(parseTcpAddress(server.addresses[0]!));
    relayed.push(inbound, upstream);
    inbound.once('data', (first: Buffer) => {
      recorded = Buffer.from(first);
      upstream.write(first);
      inbound.pipe(upstream);
    });
    upstream.pipe(inbound);
    inbound.on('error', () => upstream.destroy());
    upstream.on('error', () => inbound.destroy());
  });
  t.after(() => {
    for (const socket of relayed) socket.destroy();
    return new Promise<void>((resolve) => relay.close(() => resolve()));
  });
  const genuine = await client.dial(address, { expect: server.id, remoteStatic: server.identity.noiseStatic.publicKey });
  assert.equal(genuine.remote.pattern, 'IK');
  await genuine.request('echo', Buffer.from('x')).catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(announced, 1);
  assert.ok(recorded.length >= 98, 'message 1 was recorded');
  // The attacker replays it: the server answers message 2 but no connection is announced, and
  // the socket is closed when no authenticated transport message follows.
  const replay = await rawSocket(server.addresses[0]!);
  replay.on('error', () => {});
  replay.resume(); // read (and drop) message 2, so the socket can see the server's close
  replay.write(recorded.subarray(0, 2 + recorded.readUInt16BE(0)));
  await closed(replay);
  assert.equal(announced, 1, 'the replay was never announced as a connection');
});
