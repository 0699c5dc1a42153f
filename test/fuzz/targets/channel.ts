// Protocol 2 (docs/protocol.md §4): transport messages (TransportOpener), mux frames (FrameReader),
// and a whole Channel under attack by a peer that holds the real transport keys, over in-memory
// duplex pairs and over TCP on 127.0.0.1.
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { ThemisError } from '../../../src/core/errors.js';
import { Channel, type ChannelHandlers } from '../../../src/channel/index.js';
import { FrameReader } from '../../../src/channel/frames.js';
import { TransportOpener, TransportSealer } from '../../../src/channel/secure-framer.js';
import { CipherState } from '../../../src/handshake/noise/index.js';
import { memoryDuplexPair } from '../../../src/transport/index.js';
import { dial, tcpServer } from '../../unit/channel/helpers.js';
import { frameSequences, joinProblems, plaintextsOf, sealAll, selector, sha256, tagged, transportKeys, untypedErrorLog } from '../fixtures.js';
import { defineTarget } from '../harness.js';

/** Reads every field of every frame in a plaintext, as the channel does. */
function walkFrames(reader: FrameReader, plaintext: Buffer): number {
  reader.reset(plaintext);
  let frames = 0;
  while (reader.next()) {
    frames++;
    if (reader.type === 0) reader.payload();
  }
  return frames;
}

/** Chunk lengths from a small xorshift seeded by the selector: the wire splits anywhere. */
function* chunks(bytes: Buffer, seed: number): Generator<Buffer> {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let at = 0; at < bytes.length; ) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const n = 1 + ((x >>> 0) % (seed & 1 ? 7 : 700));
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

export const framer = defineTarget({
  name: 'framer',
  description: 'TransportOpener: length-prefixed ChaCha20-Poly1305 transport messages split at any boundary, then their frames (selector bit 7: the input is sealed first, so mutated plaintexts reach the frame reader)',
  setup: () => ({ key: sha256('fuzz framer key'), reader: new FrameReader() }),
  seeds: ({ key }) => {
    const wire = sealAll(new TransportSealer(new CipherState('ChaChaPoly', key)), frameSequences());
    return [tagged(3, wire), tagged(4, wire), ...frameSequences().map((p) => tagged(0x80, p))];
  },
  run({ key, reader }, input) {
    const sel = selector(input);
    let payload = input.subarray(1);
    if ((sel & 0x80) !== 0) payload = sealAll(new TransportSealer(new CipherState('ChaChaPoly', key)), plaintextsOf(payload));
    const opener = new TransportOpener(new CipherState('ChaChaPoly', key), (plaintext) => walkFrames(reader, plaintext) >= 0);
    for (const chunk of chunks(payload, sel)) opener.push(chunk);
  },
});

export const muxFrames = defineTarget({
  name: 'mux-frames',
  description: 'FrameReader: every mux frame type, flag, length and field rule of one plaintext',
  setup: () => new FrameReader(),
  seeds: () => frameSequences(),
  run(reader, input) {
    walkFrames(reader, input);
  },
});

// --- a whole channel ------------------------------------------------------------------------

const handlers: ChannelHandlers = {
  request: (name) =>
    name === 'echo' ? (body) => body
    : name === 'slow' ? (_, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(Buffer.alloc(0))))
    : undefined,
  stream: (name) =>
    name === 'echo' ?
      (stream) => {
        stream.on('data', (chunk: Buffer) => stream.write(chunk));
        stream.on('end', () => stream.end());
        stream.on('error', () => {});
      }
    : undefined,
};

/** The victim is the responder; the attacker seals the input's plaintexts with the initiator's key. */
async function attackChannel(attacker: Duplex, victimSocket: Duplex, input: Buffer, logger: ReturnType<typeof untypedErrorLog>['logger']): Promise<void> {
  const keys = transportKeys();
  const victim = new Channel({ socket: victimSocket, ...keys.responder, initiator: false, remote: 'fuzz', handlers, logger, limits: { maxStreams: 8 } });
  const closed = once(victim, 'close') as Promise<[unknown]>;
  attacker.on('error', () => {});
  attacker.resume();
  attacker.end(sealAll(new TransportSealer(keys.initiator.send), plaintextsOf(input)));
  const [err] = await closed;
  if (err !== undefined && !(err instanceof ThemisError)) {
    throw new Error(`the channel closed with an untyped error: ${String(err)}`);
  }
  if (victim.stats.openStreams !== 0) throw new Error(`the closed channel still holds ${victim.stats.openStreams} streams`);
  attacker.destroy();
}

export const channelMemory = defineTarget({
  name: 'channel-memory',
  description: 'a Channel (settings, open, data, window, reset, ping, goaway; request and stream handlers) fed sealed frames by a keyed peer over in-memory pairs',
  setup: () => untypedErrorLog(),
  seeds: () => frameSequences(),
  async run({ logger }, input) {
    const [attacker, victim] = memoryDuplexPair();
    await attackChannel(attacker, victim, input, logger);
  },
  problems: ({ problems }) => joinProblems(problems),
  maxLength: 4096,
});

interface TcpContext {
  readonly server: Awaited<ReturnType<typeof tcpServer>>;
  readonly log: ReturnType<typeof untypedErrorLog>;
}

export const channelTcp = defineTarget({
  name: 'channel-tcp',
  description: 'the same Channel attack over real TCP connections on 127.0.0.1 (one connection per case)',
  setup: async (): Promise<TcpContext> => ({ server: await tcpServer(), log: untypedErrorLog() }),
  seeds: () => frameSequences(),
  async run({ server, log }, input) {
    const [attacker, victim] = await Promise.all([dial(server.port), server.accept()]);
    await attackChannel(attacker, victim, input, log.logger);
  },
  problems: ({ log }) => joinProblems(log.problems),
  teardown: ({ server }) => server.close(),
  maxLength: 4096,
  caseTimeoutMs: 5000,
});
