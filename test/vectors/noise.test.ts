/**
 * Known-answer tests against the third-party Noise vectors in ../shared/vectors/noise/
 * (cacophony and snow; see the README there). Every message of every vector is produced byte
 * for byte by one side and decrypted back to its payload by the other, handshake and transport.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { fromHex, toHex } from '../../src/core/bytes.js';
import {
  HandshakeState,
  keyPair25519FromPrivate,
  parseProtocolName,
  type TransportCipherStates,
} from '../../src/handshake/noise/index.js';

interface NoiseVector {
  protocol_name: string;
  init_prologue: string;
  init_psks?: string[];
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_psks?: string[];
  resp_static?: string;
  resp_ephemeral: string;
  resp_remote_static?: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

const VECTORS_DIR = new URL('../../../shared/vectors/noise/', import.meta.url);
const MIN_REQUIRED_VECTORS = 28;

assert.ok(existsSync(VECTORS_DIR), `the Noise vectors folder is missing: ${VECTORS_DIR.pathname}`);
const files = readdirSync(VECTORS_DIR).filter((name) => name.endsWith('.json')).sort();
assert.ok(files.length > 0, `no Noise vector files (*.json) in ${VECTORS_DIR.pathname}`);

const keyPair = (hex: string | undefined) => (hex === undefined ? undefined : keyPair25519FromPrivate(fromHex(hex)));
const optionalHex = (hex: string | undefined) => (hex === undefined ? undefined : fromHex(hex));

function runVector(vector: NoiseVector): void {
  const initiator = new HandshakeState({
    protocolName: vector.protocol_name,
    initiator: true,
    prologue: fromHex(vector.init_prologue),
    s: keyPair(vector.init_static),
    e: keyPair(vector.init_ephemeral),
    rs: optionalHex(vector.init_remote_static),
    psks: vector.init_psks?.map(fromHex),
  });
  const responder = new HandshakeState({
    protocolName: vector.protocol_name,
    initiator: false,
    prologue: fromHex(vector.resp_prologue),
    s: keyPair(vector.resp_static),
    e: keyPair(vector.resp_ephemeral),
    rs: optionalHex(vector.resp_remote_static),
    psks: vector.resp_psks?.map(fromHex),
  });
  let transport: { initiator: TransportCipherStates; responder: TransportCipherStates } | undefined;

  for (const [i, message] of vector.messages.entries()) {
    const payload = fromHex(message.payload);
    const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
    let ciphertext: Buffer;
    let received: Buffer;
    if (!writer.isComplete) {
      ciphertext = writer.writeMessage(payload);
      received = reader.readMessage(ciphertext);
    } else {
      transport ??= { initiator: initiator.split(), responder: responder.split() };
      const [send, recv] =
        i % 2 === 0 ? [transport.initiator.send, transport.responder.recv] : [transport.responder.send, transport.initiator.recv];
      ciphertext = send.encrypt(payload);
      received = recv.decrypt(ciphertext);
    }
    assert.equal(toHex(ciphertext), message.ciphertext, `message ${i}: ciphertext`);
    assert.equal(toHex(received), message.payload, `message ${i}: decrypted payload`);
  }

  assert.ok(initiator.isComplete && responder.isComplete, 'the vector completes the handshake');
  assert.ok(transport !== undefined, 'the vector has transport messages');
  assert.deepEqual(initiator.handshakeHash, responder.handshakeHash, 'both sides hold the same handshake hash');
  if (vector.handshake_hash !== undefined) assert.equal(toHex(initiator.handshakeHash), vector.handshake_hash, 'handshake_hash');
}

let requiredRan = 0;
let pskRan = 0;

for (const file of files) {
  const { vectors } = JSON.parse(readFileSync(new URL(file, VECTORS_DIR), 'utf8')) as { vectors: NoiseVector[] };
  for (const vector of vectors) {
    // Every vector in shared/ must pass: a pattern we do not implement fails here, loudly.
    const name = `${file} ${vector.protocol_name}`;
    test(name, () => {
      runVector(vector);
      if (parseProtocolName(vector.protocol_name).modifiers.length === 0) requiredRan++;
      else pskRan++;
    });
  }
}

test(`at least ${MIN_REQUIRED_VECTORS} vectors of NN, NK, XK, XX, KK, IK and IX passed`, (t) => {
  t.diagnostic(`${requiredRan} without modifiers, ${pskRan} with psk modifiers`);
  assert.ok(requiredRan >= MIN_REQUIRED_VECTORS, `only ${requiredRan} passed`);
});
