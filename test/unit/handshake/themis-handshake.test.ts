import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { Writer } from '../../../src/core/codec.js';
import { createInitiator, createResponder, decodeProof, encodeProof, type HandshakeResult, type ThemisHandshake } from '../../../src/handshake/index.js';
import { HandshakeState } from '../../../src/handshake/noise/index.js';
import { Identity, networkConfig, type NetworkConfig } from '../../../src/identity/index.js';
import { prologue, PROTOCOL_XX } from '../../../src/handshake/themis-handshake.js';

const network = networkConfig({ c1: 2, c2: 4 });
const alice = Identity.generate(network);
const bob = Identity.generate(network);

/** Runs two machines against each other in memory; returns both results. */
function run(initiator: ThemisHandshake, responder: ThemisHandshake): { i: HandshakeResult; r: HandshakeResult } {
  let toResponder: Buffer | null = initiator.start();
  let i: HandshakeResult | null = null;
  let r: HandshakeResult | null = null;
  while (toResponder !== null) {
    const rs = responder.receive(toResponder);
    r = rs.result ?? r;
    toResponder = null;
    if (rs.send !== null) {
      const is = initiator.receive(rs.send);
      i = is.result ?? i;
      toResponder = is.send;
    }
  }
  assert.ok(i !== null && r !== null, 'both sides complete');
  return { i, r };
}

function isCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => isThemisError(e, code);
}

test('XX: both sides learn each other’s verified NodeId, agree on the handshake hash, and talk', () => {
  const { i, r } = run(createInitiator({ identity: alice, network, expect: bob.nodeId, addresses: ['tcp://127.0.0.1:1'] }), createResponder({ identity: bob, network }));
  assert.equal(i.pattern, 'XX');
  assert.equal(i.remote.id, bob.id);
  assert.equal(r.remote.id, alice.id);
  assert.deepEqual(r.remote.addresses, ['tcp://127.0.0.1:1']);
  assert.deepEqual(i.remote.noiseStatic, bob.noiseStatic.publicKey);
  assert.deepEqual(i.handshakeHash, r.handshakeHash);
  assert.equal(r.recv.decryptWithAd(Buffer.alloc(0), i.send.encryptWithAd(Buffer.alloc(0), Buffer.from('ping'))).toString(), 'ping');
  assert.equal(i.recv.decryptWithAd(Buffer.alloc(0), r.send.encryptWithAd(Buffer.alloc(0), Buffer.from('pong'))).toString(), 'pong');
});

test('IK: one round trip when the initiator holds the responder’s static key', () => {
  const initiator = createInitiator({ identity: alice, network, expect: bob.nodeId, remoteStatic: bob.noiseStatic.publicKey, client: true });
  const first = initiator.start();
  assert.ok(first !== null && first.length >= 96);
  const responder = createResponder({ identity: bob, network });
  const step = responder.receive(first);
  assert.ok(step.result !== null && step.send !== null, 'responder completes on message 1');
  assert.equal(step.result.remote.client, true);
  const done = initiator.receive(step.send);
  assert.equal(done.send, null);
  assert.ok(done.result !== null);
  assert.equal(done.result.pattern, 'IK');
  assert.deepEqual(done.result.handshakeHash, step.result.handshakeHash);
});

test('IK with a stale static key fails at the responder, which learns nothing', () => {
  const stale = Identity.generate(network).noiseStatic.publicKey;
  const initiator = createInitiator({ identity: alice, network, expect: bob.nodeId, remoteStatic: stale });
  assert.throws(() => createResponder({ identity: bob, network }).receive(initiator.start()!), isCode('ERR_HANDSHAKE_DECRYPT'));
});

test('the initiator refuses an unexpected peer after message 2 and never sends its own proof', () => {
  const mallory = Identity.generate(network);
  const initiator = createInitiator({ identity: alice, network, expect: bob.nodeId });
  const responder = createResponder({ identity: mallory, network });
  const second = responder.receive(initiator.start()!).send!;
  assert.throws(() => initiator.receive(second), (e) => isThemisError(e, 'ERR_HANDSHAKE_UNEXPECTED_PEER') && (e as Error).message.includes(mallory.id));
});

test('a peer of another network id fails the handshake (prologue mismatch)', () => {
  const other = networkConfig({ c1: 2, c2: 4, trustDomain: 'elsewhere' });
  const carol = Identity.generate(other);
  const initiator = createInitiator({ identity: alice, network });
  const responder = createResponder({ identity: carol, network: other });
  const second = responder.receive(initiator.start()!).send!;
  assert.throws(() => initiator.receive(second), isCode('ERR_HANDSHAKE_DECRYPT'));
});

/** A responder that speaks correct Noise but sends a proof of its choosing. */
function forgingResponder(staticKey: Identity, network: NetworkConfig, proof: Buffer): ThemisHandshake {
  const state = new HandshakeState({ protocolName: PROTOCOL_XX, initiator: false, prologue: prologue(network), s: staticKey.noiseStatic });
  return {
    pattern: 'XX',
    start: () => null,
    receive(message) {
      state.readMessage(message);
      return { send: state.writeMessage(proof), result: null };
    },
  };
}

test('man in the middle: replaying the victim’s identity proof with another static key is refused', () => {
  const mallory = Identity.generate(network);
  const stolenProof = encodeProof(bob); // what bob sends to anyone who connects to him
  const initiator = createInitiator({ identity: alice, network, expect: bob.nodeId });
  const second = forgingResponder(mallory, network, stolenProof).receive(initiator.start()!).send!;
  assert.throws(() => initiator.receive(second), isCode('ERR_HANDSHAKE_PROOF'));
});

test('a peer claiming another’s NodeId with its own binding signature is refused', () => {
  const mallory = Identity.generate(network);
  const forged = Buffer.from(encodeProof(mallory));
  bob.publicKey.copy(forged, 2); // identityPub field: claim bob's identity key
  const initiator = createInitiator({ identity: alice, network, expect: bob.nodeId });
  const second = forgingResponder(mallory, network, forged).receive(initiator.start()!).send!;
  assert.throws(() => initiator.receive(second), isCode('ERR_HANDSHAKE_PROOF'));
});

test('identities that miss the network’s puzzles are refused', () => {
  const strict = networkConfig({ c1: 2, c2: 12 });
  let weak: Identity;
  do weak = Identity.generate(networkConfig({ c1: 2, c2: 0 }));
  while (weak.meets(strict));
  const initiator = createInitiator({ identity: alice, network: strict });
  const second = createResponder({ identity: weak, network: strict }).receive(initiator.start()!).send!;
  assert.throws(() => initiator.receive(second), isCode('ERR_HANDSHAKE_PROOF'));
});

test('malformed identity proofs are refused with typed errors: truncated, trailing bytes, reserved flags, too many entries', () => {
  const good = encodeProof(bob, { addresses: ['tcp://10.0.0.1:1'] });
  assert.equal(decodeProof(good).addresses[0], 'tcp://10.0.0.1:1');
  for (let cut = 0; cut < good.length; cut++) assert.throws(() => decodeProof(good.subarray(0, cut)), (e) => isThemisError(e), `cut ${cut}`);
  assert.throws(() => decodeProof(Buffer.concat([good, Buffer.from([0])])), isCode('ERR_DECODE_TRAILING'));
  const flagged = Buffer.from(good);
  flagged[1] = 0x80;
  assert.throws(() => decodeProof(flagged), isCode('ERR_HANDSHAKE_PROOF'));
  const versioned = Buffer.from(good);
  versioned[0] = 2;
  assert.throws(() => decodeProof(versioned), isCode('ERR_HANDSHAKE_PROOF'));
  const many = new Writer().u8(1).u8(0).raw(bob.publicKey).raw(bob.bindingSignature).raw(bob.puzzleNonce).u8(17).finish();
  assert.throws(() => decodeProof(many), isCode('ERR_HANDSHAKE_PROOF'));
  assert.throws(() => encodeProof(bob, { addresses: Array.from({ length: 17 }, () => 'x') }), RangeError);
});

test('unknown credential types travel through and are passed up', () => {
  const { r } = run(createInitiator({ identity: alice, network, credentials: [{ type: 999, data: Buffer.from('opaque') }] }), createResponder({ identity: bob, network }));
  assert.equal(r.remote.credentials[0]?.type, 999);
  assert.equal(r.remote.credentials[0]?.data.toString(), 'opaque');
});

test('every bit flip in every handshake message ends in a typed error on the receiving side', () => {
  const transcript: Buffer[] = [];
  const initiator = createInitiator({ identity: alice, network });
  const responder = createResponder({ identity: bob, network });
  transcript.push(initiator.start()!);
  transcript.push(responder.receive(transcript[0]!).send!);
  transcript.push(initiator.receive(transcript[1]!).send!);
  for (let m = 0; m < 3; m++) {
    // Every 7th bit of message m (lengths come from the honest run above), each in a fresh session
    // because ephemeral keys differ per session.
    for (let bit = 0; bit < transcript[m]!.length * 8; bit += 7) {
      const a = createInitiator({ identity: alice, network });
      const b = createResponder({ identity: bob, network });
      const msgs = [a.start()!];
      const flip = (buf: Buffer): Buffer => {
        const copy = Buffer.from(buf);
        copy[bit >> 3]! ^= 1 << (bit & 7);
        return copy;
      };
      const deliver = (i: number, to: ThemisHandshake, msg: Buffer): Buffer | null => to.receive(i === m ? flip(msg) : msg).send;
      try {
        msgs.push(deliver(0, b, msgs[0]!)!);
        msgs.push(deliver(1, a, msgs[1]!)!);
        // A flip in message 1's ephemeral key changes the keys both derive, so it fails later.
        deliver(2, b, msgs[2]!);
        assert.fail(`flip of bit ${bit} in message ${m + 1} went unnoticed`);
      } catch (e) {
        assert.ok(isThemisError(e), `message ${m + 1} bit ${bit}: ${String(e)}`);
      }
    }
  }
});

test('replayed and reordered handshake messages fail', () => {
  const a1 = createInitiator({ identity: alice, network });
  const b1 = createResponder({ identity: bob, network });
  const m1 = a1.start()!;
  const m2 = b1.receive(m1).send!;
  const m3 = a1.receive(m2).send!;
  b1.receive(m3);
  // Message 3 of an old session replayed into a new session with the same message 1.
  const b2 = createResponder({ identity: bob, network });
  b2.receive(m1);
  assert.throws(() => b2.receive(m3), isCode('ERR_HANDSHAKE_DECRYPT'));
  // Message 3 delivered before message 1 (reordered): wrong size for a first message.
  assert.throws(() => createResponder({ identity: bob, network }).receive(m3), (e) => isThemisError(e));
  // A completed machine takes no more messages.
  assert.throws(() => b1.receive(m3), isCode('ERR_HANDSHAKE_STATE'));
  assert.throws(() => a1.receive(m2), isCode('ERR_HANDSHAKE_STATE'));
  // Truncated first messages.
  for (const length of [0, 31, 33, 95]) assert.throws(() => createResponder({ identity: bob, network }).receive(Buffer.alloc(length, 1)), (e) => isThemisError(e));
});
