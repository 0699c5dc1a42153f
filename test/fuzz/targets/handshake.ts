// Protocol 1 (docs/protocol.md §3): the identity proof decoder and verifier, the responder and
// initiator state machines (pure), and the handshake driven by a Peer over in-memory duplex pairs
// and over TCP on 127.0.0.1.
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { createInitiator, createResponder, encodeProof, prologue, PROTOCOL_IK, PROTOCOL_XX, verifyProof } from '../../../src/handshake/index.js';
import { HandshakeState } from '../../../src/handshake/noise/index.js';
import { Identity } from '../../../src/identity/index.js';
import { createPeer, memoryDuplexPair, type Peer } from '../../../src/transport/index.js';
import { credentials, ids, joinProblems, network, selector, tagged, untypedErrorLog } from '../fixtures.js';
import { defineTarget } from '../harness.js';

const responderId = ids.host;
const initiatorId = ids.instance;
const provers = [ids.instance, ids.host, ids.owner] as const;
const ADDRESSES = ['tcp://127.0.0.1:4000', 'tcp://[::1]:4000'];
/** The attacker never writes a Noise message above the 65535-byte limit (§3.2). */
const MAX_PAYLOAD = 60_000;

const proofOf = (identity: Identity): Buffer => encodeProof(identity, { addresses: ADDRESSES, credentials });

/** u16 length ‖ message, as on the wire (§3.2). */
function framed(...messages: Buffer[]): Buffer {
  return Buffer.concat(
    messages.flatMap((message) => {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(message.length);
      return [prefix, message];
    }),
  );
}

/** The wire bytes a real initiator sends (XX: messages 1 and 3; IK: message 1) to a real responder. */
function transcripts(): { xx: Buffer; ik: Buffer; xx2: Buffer; ik2: Buffer } {
  const options = { identity: initiatorId, network, addresses: ADDRESSES, credentials };
  const responder = createResponder({ identity: responderId, network });
  const initiator = createInitiator(options);
  const m1 = initiator.start()!;
  const m2 = responder.receive(m1).send!;
  const m3 = initiator.receive(m2).send!;
  const ikResponder = createResponder({ identity: responderId, network });
  const ikInitiator = createInitiator({ ...options, remoteStatic: responderId.noiseStatic.publicKey });
  const ik1 = ikInitiator.start()!;
  const ik2 = ikResponder.receive(ik1).send!;
  return { xx: framed(m1, m3), ik: framed(ik1), xx2: m2, ik2 };
}

/** Splits wire bytes into handshake messages as handshake-io does; a partial tail is dropped. */
function unframe(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const length = bytes.readUInt16BE(at);
    if (at + 2 + length > bytes.length) break;
    out.push(bytes.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return out;
}

const noiseInitiator = (pattern: 'XX' | 'IK'): HandshakeState =>
  new HandshakeState({
    protocolName: pattern === 'XX' ? PROTOCOL_XX : PROTOCOL_IK,
    initiator: true,
    prologue: prologue(network),
    s: initiatorId.noiseStatic,
    ...(pattern === 'IK' ? { rs: responderId.noiseStatic.publicKey } : {}),
  });

const noiseResponder = (pattern: 'XX' | 'IK'): HandshakeState =>
  new HandshakeState({ protocolName: pattern === 'XX' ? PROTOCOL_XX : PROTOCOL_IK, initiator: false, prologue: prologue(network), s: responderId.noiseStatic });

export const proof = defineTarget({
  name: 'proof',
  description: 'identity proofs and their credentials: decodeProof + verifyProof (binding signature, puzzles, expected NodeId)',
  setup: () => null,
  seeds: () => provers.map((identity, i) => tagged(i, i === 2 ? encodeProof(identity, { client: true }) : proofOf(identity))),
  run(_, input) {
    const prover = provers[selector(input) % provers.length]!;
    const expect = (selector(input) & 0x80) !== 0 ? ids.host.nodeId : undefined;
    verifyProof(input.subarray(1), prover.noiseStatic.publicKey, network, expect);
  },
});

export const handshakeResponder = defineTarget({
  name: 'handshake-responder',
  description: 'the XX/IK responder state machine: raw wire messages, and initiator proofs encrypted under real Noise keys (XX message 3, IK message 1)',
  setup: () => transcripts(),
  seeds: (t) => [tagged(0, t.xx), tagged(0, t.ik), tagged(1, proofOf(initiatorId)), tagged(2, proofOf(initiatorId))],
  run(_, input) {
    const responder = createResponder({ identity: responderId, network, addresses: ADDRESSES });
    const payload = input.subarray(1, 1 + MAX_PAYLOAD);
    switch (selector(input) % 3) {
      case 0:
        for (const message of unframe(payload)) if (responder.receive(message).result !== null) return;
        return;
      case 1: {
        const attacker = noiseInitiator('XX');
        attacker.readMessage(responder.receive(attacker.writeMessage(Buffer.alloc(0))).send!);
        responder.receive(attacker.writeMessage(payload));
        return;
      }
      default:
        responder.receive(noiseInitiator('IK').writeMessage(payload));
    }
  },
});

export const handshakeInitiator = defineTarget({
  name: 'handshake-initiator',
  description: 'the XX/IK initiator state machine: raw message 2, and responder proofs encrypted under real Noise keys',
  setup: () => transcripts(),
  seeds: (t) => [tagged(0, t.xx2), tagged(1, t.ik2), tagged(2, proofOf(responderId)), tagged(3, proofOf(responderId)), tagged(6, proofOf(responderId))],
  run(_, input) {
    const mode = selector(input) % 4;
    const ik = mode === 1 || mode === 3;
    const initiator = createInitiator({
      identity: initiatorId,
      network,
      ...(ik ? { remoteStatic: responderId.noiseStatic.publicKey } : {}),
      ...((selector(input) & 0x04) !== 0 ? { expect: responderId.nodeId } : {}),
    });
    const first = initiator.start()!;
    const payload = input.subarray(1, 1 + MAX_PAYLOAD);
    if (mode < 2) {
      if (payload.length > 0) initiator.receive(payload);
      return;
    }
    const attacker = noiseResponder(ik ? 'IK' : 'XX');
    attacker.readMessage(first);
    initiator.receive(attacker.writeMessage(payload));
  },
});

/**
 * The attacker's side over a duplex: mode 0 writes raw wire bytes then ends; mode 1 writes them
 * in two chunks then destroys the duplex; mode 2 runs a real XX initiator whose message 3 carries
 * the input as its identity proof.
 */
async function attack(socket: Duplex, input: Buffer): Promise<void> {
  socket.on('error', () => {});
  const payload = input.subarray(1, 1 + MAX_PAYLOAD);
  const mode = selector(input) % 3;
  // What the victim answers is read (and dropped) so its writes never stall on backpressure.
  if (mode !== 2) socket.resume();
  if (mode === 0) {
    socket.end(payload);
    return;
  }
  if (mode === 1) {
    const cut = payload.length === 0 ? 0 : selector(input) % payload.length;
    socket.write(payload.subarray(0, cut));
    socket.write(payload.subarray(cut), () => socket.destroy());
    return;
  }
  const noise = noiseInitiator('XX');
  socket.write(framed(noise.writeMessage(Buffer.alloc(0))));
  let buffered = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const [message] = unframe(buffered);
      if (message === undefined) return;
      socket.off('data', onData);
      try {
        noise.readMessage(message);
        socket.write(framed(noise.writeMessage(payload)));
      } catch {
        socket.destroy();
      }
      resolve();
    };
    socket.on('data', onData);
    socket.once('close', () => resolve());
  });
}

interface PeerContext {
  readonly peer: Peer;
  readonly problems: string[];
  readonly seeds: Buffer[];
}

async function victimPeer(listen: boolean): Promise<PeerContext> {
  const { logger, problems } = untypedErrorLog();
  const peer = await createPeer({
    identity: responderId,
    network,
    logger,
    limits: { handshakeTimeoutMs: 1000 },
    ...(listen ? { listen: 'tcp://127.0.0.1:0' } : {}),
  });
  const t = transcripts();
  return { peer, problems, seeds: [tagged(0, t.xx), tagged(0, t.ik), tagged(1, t.xx), tagged(2, proofOf(initiatorId))] };
}

/** Waits until the victim holds no handshake in progress, so every case starts from nothing. */
async function settled(peer: Peer): Promise<void> {
  while (peer.stats.pendingHandshakes > 0) await new Promise((resolve) => setImmediate(resolve));
}

/** What both victim-peer targets check after each case and after the run, and how they end. */
const victimChecks = {
  leaks: ({ peer }: PeerContext): string | null =>
    peer.stats.connections > 0 || peer.stats.pendingHandshakes > 0 ? `${peer.stats.connections} connections, ${peer.stats.pendingHandshakes} handshakes in progress` : null,
  problems: ({ problems }: PeerContext): string | null => joinProblems(problems),
  teardown: ({ peer }: PeerContext): Promise<void> => peer.close(),
};

export const handshakeMemory = defineTarget({
  name: 'handshake-memory',
  description: 'Peer.acceptOver (handshake I/O, pattern selection, proof checks, channel set-up) over in-memory duplex pairs',
  setup: () => victimPeer(false),
  seeds: (c) => c.seeds,
  async run({ peer }, input) {
    const [attacker, victim] = memoryDuplexPair();
    const accepted = peer.acceptOver(victim, 'memory://fuzz');
    accepted.catch(() => undefined);
    await attack(attacker, input);
    try {
      // A valid proof completes the handshake; the connection is then closed at once.
      const conn = await accepted;
      conn.destroy();
      await new Promise((resolve) => (conn.closed ? setImmediate(resolve) : conn.once('close', resolve)));
    } finally {
      attacker.destroy();
      await settled(peer);
    }
  },
  ...victimChecks,
});

export const handshakeTcp = defineTarget({
  name: 'handshake-tcp',
  description: 'a listening Peer: raw and live handshake bytes over real TCP connections on 127.0.0.1',
  setup: () => victimPeer(true),
  seeds: (c) => c.seeds,
  async run({ peer }, input) {
    const [host, port] = peer.addresses[0]!.replace('tcp://', '').split(':') as [string, string];
    const socket = connect({ host, port: Number(port), noDelay: true });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve).once('close', resolve));
    // The victim closes a failed handshake; a completed one is closed from this side.
    let onConnection = (): void => undefined;
    const established = new Promise<void>((resolve) => peer.once('connection', (onConnection = resolve)));
    await attack(socket, input);
    await Promise.race([closed, established]);
    peer.off('connection', onConnection);
    socket.destroy();
    await closed;
    while (peer.stats.pendingHandshakes > 0 || peer.stats.connections > 0) await new Promise((resolve) => setImmediate(resolve));
  },
  ...victimChecks,
  caseTimeoutMs: 3000,
});
