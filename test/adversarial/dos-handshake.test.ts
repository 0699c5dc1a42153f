// Slow-loris and handshake floods against a DHT node over real TCP on 127.0.0.1, from a hostile
// process using four other loopback addresses, while an honest node keeps dialling new
// connections and sending RPCs over an established one. Measured: every honest request succeeds
// within its protocol deadline (handshake 10 s, RPC 2 s), and the victim's half-open handshakes
// never exceed their cap.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createDhtNode, RPC, type DhtNode } from '../../src/dht/index.js';
import { encodePingRequest } from '../../src/dht/messages.js';
import { testNetwork } from '../../src/testing/index.js';
import { ATTACKER_IPS, honestLoad, runAttacker, sampleMax } from './helpers/dos.js';

const network = testNetwork();
const LIMITS = { maxPendingHandshakes: 32, maxConnectionsPerIp: 16, maxPendingHandshakesPerIp: 4 };
const ROUNDS = 30;
const INTERVAL_MS = 80;

async function victimAndHonest(t: { after(fn: () => Promise<void>): void }): Promise<{ victim: DhtNode; honest: DhtNode; address: string; port: string }> {
  const victim = await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false, limits: LIMITS });
  t.after(() => victim.leave());
  const honest = await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false });
  t.after(() => honest.leave());
  const address = victim.peer.addresses[0]!;
  await honest.pingAddress(address, victim.nodeId); // the established connection findNode reuses
  return { victim, honest, address, port: address.split(':').pop()! };
}

/** A new connection (handshake), a ping RPC over it, and GOAWAY. */
async function dialAndPing(victim: DhtNode, honest: DhtNode, address: string): Promise<void> {
  const conn = await honest.peer.dial(address, { expect: victim.nodeId });
  try {
    await conn.request(RPC.Ping, encodePingRequest(honest.contactRecord()), { timeoutMs: honest.options.requestTimeoutMs });
  } finally {
    await conn.close();
  }
}

/** Each round: a new connection with a ping, and a find_node over the established connection. */
function honestRounds(victim: DhtNode, honest: DhtNode, address: string) {
  return honestLoad(ROUNDS * 2, INTERVAL_MS / 2, (i) => (i % 2 === 0 ? dialAndPing(victim, honest, address) : honest.findNode(randomBytes(32))));
}

test('slow-loris: stalled handshakes from four addresses stay capped; every honest dial and RPC succeeds', async (t) => {
  const { victim, honest, address, port } = await victimAndHonest(t);
  const watch = sampleMax(() => ({ ...victim.peer.stats }));
  const attack = runAttacker(['slowloris', '127.0.0.1', port, ATTACKER_IPS.join(','), 16, 150, ROUNDS * INTERVAL_MS + 500]);
  await new Promise((resolve) => setTimeout(resolve, 300)); // the attack is under way
  const load = await honestRounds(victim, honest, address);
  const attacker = await attack;
  const max = watch.stop();
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, ROUNDS * 2);
  assert.ok(max.pendingHandshakes <= LIMITS.maxPendingHandshakes, `half-open handshakes peaked at ${max.pendingHandshakes}`);
  // Four addresses hold at most four half-open handshakes each; the rest of the table stays free for honest peers.
  assert.ok(max.pendingHandshakes >= ATTACKER_IPS.length * LIMITS.maxPendingHandshakesPerIp, `the attack held its share of the table (${max.pendingHandshakes})`);
  assert.ok(max.pendingHandshakes <= ATTACKER_IPS.length * LIMITS.maxPendingHandshakesPerIp + 2, `half-open handshakes peaked at ${max.pendingHandshakes}`);
  assert.ok(attacker.refused + attacker.closedByVictim > 0, `the victim refused or closed stalled handshakes: ${JSON.stringify(attacker)}`);
  assert.ok(max.inboundIps <= ATTACKER_IPS.length + 1);
});

test('handshake flood: valid first messages as fast as 64 connections allow; every honest dial and RPC succeeds', async (t) => {
  const { victim, honest, address, port } = await victimAndHonest(t);
  const watch = sampleMax(() => ({ ...victim.peer.stats }));
  const attack = runAttacker(['flood', '127.0.0.1', port, ATTACKER_IPS.join(','), 64, ROUNDS * INTERVAL_MS + 500]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const load = await honestRounds(victim, honest, address);
  const attacker = await attack;
  const max = watch.stop();
  assert.deepEqual(load.errors, []);
  assert.equal(load.ok, ROUNDS * 2);
  assert.ok(attacker.answered > 100, `the victim answered the flood (${JSON.stringify(attacker)})`);
  assert.ok(max.pendingHandshakes <= LIMITS.maxPendingHandshakes, `half-open handshakes peaked at ${max.pendingHandshakes}`);
  // Flooders never finish a handshake: the only established connections are the honest ones.
  assert.ok(max.connections <= ROUNDS + 2, `connections peaked at ${max.connections}`);
});
