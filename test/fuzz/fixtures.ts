// What the fuzz targets share: a cheap test network, identities, valid artifacts of every format
// (the seeds the mutations start from), frame builders, fixed-key transport ciphers, and a logger
// that catches handler failures that are not typed.
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { toBase32 } from '../../src/core/bytes.js';
import { CipherState } from '../../src/handshake/noise/index.js';
import { FRAME_HEADER_BYTES, encodeData, encodeGoaway, encodeOpen, encodePing, encodeReset, encodeSettings, encodeWindow, StreamKind } from '../../src/channel/frames.js';
import { DEFAULT_SETTINGS } from '../../src/channel/limits.js';
import { TransportSealer } from '../../src/channel/secure-framer.js';
import { Identity } from '../../src/identity/index.js';
import { endorse, endorsementCredential, parsePolicyYaml } from '../../src/mesh/index.js';
import { encodeRotationChain, rotationStatement } from '../../src/mesh/rotation.js';
import { CredentialType, type Credential } from '../../src/handshake/index.js';
import { testNetwork } from '../../src/testing/index.js';

export const network = testNetwork();
export const sha256 = (data: string | Uint8Array): Buffer => createHash('sha256').update(data).digest();

/** A selector byte in front of a payload: targets with several entry points read input[0]. */
export const tagged = (selector: number, payload: Uint8Array): Buffer => Buffer.concat([Buffer.of(selector), payload]);
/** The selector byte of an input (0 for an empty one). */
export const selector = (input: Buffer): number => input[0] ?? 0;

/** Identities made once per process (key generation is the slow part). */
export const ids = {
  owner: Identity.generate(network),
  host: Identity.generate(network),
  instance: Identity.generate(network),
  next: Identity.generate(network),
  third: Identity.generate(network),
};

export const codeDigest = sha256('users v1');

/** A valid host endorsement of `ids.instance` for service users of trust domain microbank. */
export const endorsement = endorse(ids.host, { instancePub: ids.instance.publicKey, trustDomain: 'microbank', service: 'users', codeDigest });

/** A valid rotation chain instance → next → third (ends at third's key). */
export const rotationChain = encodeRotationChain([
  rotationStatement(ids.instance, ids.next.publicKey, 1_700_000_000_000),
  rotationStatement(ids.next, ids.third.publicKey, 1_700_000_001_000),
]);

/** Credentials as an instance carries them in its identity proof. */
export const credentials: readonly Credential[] = [
  endorsementCredential(endorsement),
  { type: CredentialType.RotationChain, data: rotationChain },
  { type: 0x7777, data: Buffer.from('an unknown credential type is kept, not refused') },
];

export const policyYaml = `trustDomain: microbank
seq: 3
hosts:
  - { name: host-a, key: ${toBase32(ids.host.publicKey)} }
services:
  users: { digests: ["${codeDigest.toString('hex')}"] }
  gateway: { digests: [] }
  accounts: { digests: [] }
rules:
  - { from: gateway, to: users, methods: [create, login] }
  - { from: "*", to: accounts, methods: ["*"] }
revoked: [${toBase32(ids.third.publicKey)}]
tokenIssuers: [gateway]
refreshSeconds: 30
`;
export const policy = parsePolicyYaml(policyYaml);

// --- channel frames and transport messages ---------------------------------------------------

function encodeTo(size: number, encode: (buf: Buffer) => number): Buffer {
  const buf = Buffer.alloc(size);
  return buf.subarray(0, encode(buf));
}

/** One mux frame as bytes, through the codec's own encoders (docs/protocol.md §4.2). */
export const frame = {
  settings: (settings = DEFAULT_SETTINGS): Buffer => encodeTo(20, (b) => encodeSettings(b, 0, settings)),
  ping: (ack = false, opaque: Buffer = Buffer.alloc(8, 7)): Buffer => encodeTo(16, (b) => encodePing(b, 0, ack, opaque)),
  open: (id: number, kind: number, name: string, timeoutMs = 0): Buffer =>
    encodeTo(FRAME_HEADER_BYTES + 6 + Buffer.byteLength(name), (b) => encodeOpen(b, 0, id, kind, Buffer.from(name), timeoutMs)),
  data: (id: number, payload: Buffer, fin = false): Buffer => encodeTo(FRAME_HEADER_BYTES + payload.length, (b) => encodeData(b, 0, id, fin, payload, 0, payload.length)),
  window: (id: number, increment: number): Buffer => encodeTo(12, (b) => encodeWindow(b, 0, id, increment)),
  reset: (id: number, code: number, message = ''): Buffer => encodeTo(FRAME_HEADER_BYTES + 5 + Buffer.byteLength(message), (b) => encodeReset(b, 0, id, code, Buffer.from(message))),
  goaway: (last: number, code: number, reason = ''): Buffer => encodeTo(FRAME_HEADER_BYTES + 9 + Buffer.byteLength(reason), (b) => encodeGoaway(b, 0, last, code, Buffer.from(reason))),
};

/** Plaintexts a peer sends after the handshake: each is the frames of one transport message. */
export function frameSequences(): Buffer[] {
  const { REQUEST, STREAM } = StreamKind;
  const body = Buffer.from('hello, fuzz');
  return [
    Buffer.concat([frame.settings(), frame.ping()]),
    Buffer.concat([frame.settings(), frame.open(1, REQUEST, 'echo', 1000), frame.data(1, body, true)]),
    Buffer.concat([frame.settings(), frame.open(1, REQUEST, 'echo'), frame.data(1, body), frame.data(1, body, true), frame.open(3, REQUEST, 'none'), frame.data(3, Buffer.alloc(0), true)]),
    Buffer.concat([frame.settings(), frame.open(1, STREAM, 'echo'), frame.data(1, body), frame.window(1, 4096), frame.window(0, 4096), frame.data(1, body, true)]),
    Buffer.concat([frame.settings(), frame.open(1, STREAM, 'echo'), frame.data(1, body), frame.reset(1, 5, 'cancelled')]),
    Buffer.concat([frame.settings({ maxStreams: 1, initialWindow: 1, maxMessageBytes: 16 }), frame.open(1, REQUEST, 'echo'), frame.data(1, body, true), frame.goaway(1, 0, 'bye')]),
    Buffer.concat([frame.settings(), frame.ping(true), frame.goaway(0, 1, 'protocol error')]),
  ];
}

/** Fixed keys (no handshake per case): both directions of a channel, as Noise Split() gives them. */
const KEY_I2R = sha256('fuzz initiator to responder');
const KEY_R2I = sha256('fuzz responder to initiator');
export function transportKeys(): { initiator: { send: CipherState; recv: CipherState }; responder: { send: CipherState; recv: CipherState } } {
  return {
    initiator: { send: new CipherState('ChaChaPoly', KEY_I2R), recv: new CipherState('ChaChaPoly', KEY_R2I) },
    responder: { send: new CipherState('ChaChaPoly', KEY_R2I), recv: new CipherState('ChaChaPoly', KEY_I2R) },
  };
}

/** Seals plaintexts as the wire bytes of transport messages (u16 length ‖ ciphertext, §4.1). */
export function sealAll(sealer: TransportSealer, plaintexts: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const plaintext of plaintexts) {
    const ciphertext = sealer.seal(plaintext);
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(ciphertext.length);
    parts.push(prefix, ciphertext);
  }
  return Buffer.concat(parts);
}

/** Splits an input into plaintexts of at most 65519 bytes (an empty input is one empty plaintext). */
export function plaintextsOf(input: Buffer, max = 65_519): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < input.length; at += max) out.push(input.subarray(at, at + max));
  return out.length === 0 ? [input] : out;
}

// --- loggers --------------------------------------------------------------------------------

/**
 * A pino logger that records every logged error that is not a ThemisError: a request or stream
 * handler that failed untyped, or a channel that failed on an internal error. The channel turns
 * such failures into HANDLER_ERROR or GOAWAY INTERNAL_ERROR on the wire, so only its log shows them.
 */
export function untypedErrorLog(): { logger: Logger; problems: string[] } {
  const problems: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.length === 0) continue;
        const entry = JSON.parse(line) as { msg?: string; err?: { type?: string; message?: string; stack?: string } };
        if (entry.err !== undefined && entry.err.type !== 'ThemisError' && entry.err.type !== 'ChannelError' && problems.length < 10) {
          problems.push(`${entry.msg ?? ''}: ${entry.err.type} ${entry.err.message ?? ''}\n${entry.err.stack ?? ''}`);
        }
      }
      callback();
    },
  });
  return { logger: pino({ level: 'warn' }, sink), problems };
}

/** A target's out-of-band problems as one report, or null when there are none. */
export const joinProblems = (problems: readonly string[]): string | null => (problems.length === 0 ? null : problems.join('\n'));
