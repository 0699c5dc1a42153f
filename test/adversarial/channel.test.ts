// Hostile peers against the channel (docs/protocol.md §4), over real TCP sockets. The attacker
// holds the real transport keys and writes raw bytes; every attack must end with a typed error on
// the victim's 'close' event, its socket destroyed, and the listener still serving honest peers.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { isThemisError, type ErrorCode, type ThemisError } from '../../src/core/errors.js';
import { Channel, type ChannelLimits } from '../../src/channel/index.js';
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameType,
  MAX_FRAME_PAYLOAD,
  StreamKind,
  encodeData,
  encodeOpen,
  encodePing,
  encodeSettings,
  encodeWindow,
} from '../../src/channel/frames.js';
import { DEFAULT_SETTINGS } from '../../src/channel/limits.js';
import { TransportOpener, TransportSealer } from '../../src/channel/secure-framer.js';
import { cipherPair, closeEvent, dial, handlers, tcpServer } from '../unit/channel/helpers.js';

/** One frame as bytes, through the codec's own encoders. */
const frame = {
  settings: (): Buffer => encodeTo(20, (b) => encodeSettings(b, 0, DEFAULT_SETTINGS)),
  ping: (ack: boolean, opaque: Buffer = Buffer.alloc(8)): Buffer => encodeTo(16, (b) => encodePing(b, 0, ack, opaque)),
  open: (id: number, kind: number, name: string): Buffer => encodeTo(64 + name.length, (b) => encodeOpen(b, 0, id, kind, Buffer.from(name), 0)),
  data: (id: number, payload: Buffer, fin = false): Buffer => encodeTo(FRAME_HEADER_BYTES + payload.length, (b) => encodeData(b, 0, id, fin, payload, 0, payload.length)),
  window: (id: number, increment: number): Buffer => encodeTo(12, (b) => encodeWindow(b, 0, id, increment)),
  raw: (type: number, flags: number, id: number, payload: Buffer): Buffer => {
    const out = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
    out[0] = type;
    out[1] = flags;
    out.writeUInt32BE(id, 2);
    out.writeUInt16BE(payload.length, 6);
    payload.copy(out, FRAME_HEADER_BYTES);
    return out;
  },
};

function encodeTo(size: number, encode: (buf: Buffer) => number): Buffer {
  const buf = Buffer.alloc(size);
  return buf.subarray(0, encode(buf));
}

/** The initiator side, speaking raw bytes with the real keys, and reading what the victim says. */
class Attacker {
  readonly goaways: number[] = [];
  readonly windows: number[] = [];
  readonly #sealer: TransportSealer;
  readonly #reader = new FrameReader();
  #pings: Buffer[] = [];

  constructor(
    readonly socket: Socket,
    keys: ReturnType<typeof cipherPair>['initiator'],
  ) {
    this.#sealer = new TransportSealer(keys.send);
    const opener = new TransportOpener(keys.recv, (plaintext) => {
      this.#reader.reset(plaintext);
      while (this.#reader.next()) {
        if (this.#reader.type === FrameType.GOAWAY) this.goaways.push(this.#reader.code);
        if (this.#reader.type === FrameType.WINDOW && this.#reader.streamId === 0) this.windows.push(this.#reader.increment);
        if (this.#reader.type === FrameType.PING && this.#reader.flags === 0) this.#pings.push(Buffer.from(this.#reader.payload()));
      }
      return true;
    });
    socket.on('data', (chunk: Buffer) => opener.push(chunk));
    socket.on('error', () => {});
  }

  /** One transport message (length ‖ ciphertext) holding `frames`. */
  message(...frames: Buffer[]): Buffer {
    const ciphertext = this.#sealer.seal(Buffer.concat(frames));
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(ciphertext.length);
    return Buffer.concat([prefix, ciphertext]);
  }

  send(...frames: Buffer[]): void {
    this.socket.write(this.message(...frames));
  }

  /** Behaves for a moment: SETTINGS, then answers the PING after the victim's SETTINGS so its own limits apply (§4.3). */
  async start(): Promise<void> {
    this.send(frame.settings());
    while (this.#pings.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    this.send(...this.#pings.map((opaque) => frame.ping(true, opaque)));
    this.#pings = [];
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Arena {
  readonly victim: Channel<null>;
  readonly victimSocket: Socket;
  readonly attacker: Attacker;
  /** The victim's 'close' error, once the victim's socket is destroyed too. */
  readonly closed: Promise<ThemisError | undefined>;
}

const victimHandlers = handlers({
  requests: { echo: (b) => b },
  streams: { sink: () => {} /* never reads */, echo: (s) => void s.pipe(s) },
});

/** A listener whose every connection is served by a victim channel; `honest()` proves it still serves. */
async function setup(t: { after(fn: () => Promise<void>): void }) {
  const server = await tcpServer();
  const channels: Channel<null>[] = [];
  t.after(async () => {
    for (const channel of channels) channel.destroy();
    await server.close();
  });
  const victimOver = async (options: { limits?: Partial<ChannelLimits>; nonceLimit?: number }, keys: ReturnType<typeof cipherPair>): Promise<[Channel<null>, Socket]> => {
    const socket = await server.accept();
    const channel = new Channel({ socket, ...keys.responder, initiator: false, remote: null, handlers: victimHandlers, limits: options.limits ?? {}, ...(options.nonceLimit === undefined ? {} : { nonceLimit: options.nonceLimit }) });
    channels.push(channel);
    return [channel, socket];
  };
  return {
    async arena(options: { limits?: Partial<ChannelLimits>; nonceLimit?: number } = {}): Promise<Arena> {
      const keys = cipherPair();
      const [attackerSocket, [victim, victimSocket]] = await Promise.all([dial(server.port), victimOver(options, keys)]);
      t.after(async () => void attackerSocket.destroy());
      const closed = closeEvent(victim);
      return { victim, victimSocket, attacker: new Attacker(attackerSocket, keys.initiator), closed };
    },
    async honest(): Promise<void> {
      const keys = cipherPair();
      const [socket, [, victimSocket]] = await Promise.all([dial(server.port), victimOver({}, keys)]);
      const client = new Channel({ socket, ...keys.initiator, initiator: true, remote: null, handlers: handlers() });
      channels.push(client);
      assert.deepEqual(await client.request('echo', Buffer.from('still serving')), Buffer.from('still serving'));
      client.destroy();
      victimSocket.destroy();
    },
  };
}

/** Runs one attack and checks the outcome every attack must have. */
function attack(name: string, expected: ErrorCode, options: { limits?: Partial<ChannelLimits>; nonceLimit?: number; goaway?: number | null }, run: (arena: Arena) => Promise<void>): void {
  test(name, { timeout: 30_000 }, async (t) => {
    const { arena, honest } = await setup(t);
    const a = await arena(options);
    await run(a);
    const err = await a.closed;
    assert.ok(isThemisError(err, expected), `expected ${expected}, got ${String(err)}`);
    assert.equal(a.victimSocket.destroyed, true, 'the victim socket is destroyed');
    assert.equal(a.victim.closed, true);
    if (options.goaway !== undefined) {
      // §4.1: authentication failures get no reply; §4.8: violations get GOAWAY with their code.
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(a.attacker.goaways, options.goaway === null ? [] : [options.goaway]);
    }
    await honest();
  });
}

attack('a bit-flipped transport message', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  await attacker.start();
  const message = attacker.message(frame.ping(false));
  message[10]! ^= 0x01;
  attacker.socket.write(message);
});

attack('a replayed transport message', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  await attacker.start();
  const message = attacker.message(frame.ping(false));
  attacker.socket.write(message);
  attacker.socket.write(message);
});

attack('reordered transport messages', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  await attacker.start();
  const first = attacker.message(frame.ping(false, Buffer.alloc(8, 1)));
  const second = attacker.message(frame.ping(false, Buffer.alloc(8, 2)));
  attacker.socket.write(second);
  attacker.socket.write(first);
});

attack('a truncated transport message, then the connection ends', 'ERR_CHANNEL_CLOSED', {}, async ({ attacker }) => {
  await attacker.start();
  const message = attacker.message(frame.ping(false));
  attacker.socket.end(message.subarray(0, message.length - 5));
});

attack('an oversized length prefix (65535) with junk behind it', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  await attacker.start();
  attacker.socket.write(Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(0xffff, 0x5a)]));
});

attack('a length prefix below 16', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  await attacker.start();
  attacker.socket.write(Buffer.from([0x00, 0x0f, ...Buffer.alloc(15)]));
});

attack('garbage bytes instead of a message', 'ERR_CHANNEL_DECRYPT', { goaway: null }, async ({ attacker }) => {
  // An HTTP request line reads as a length of 0x4745 bytes; enough garbage follows to fill it.
  attacker.socket.write(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: victim\r\n\r\n'), Buffer.alloc(0x4745, 0x41)]));
});

attack('half a message, then silence: the dead-peer timer closes it', 'ERR_CHANNEL_TIMEOUT', { limits: { keepAliveMs: 50, deadPeerMs: 150 }, goaway: null }, async ({ attacker }) => {
  await attacker.start();
  const message = attacker.message(frame.ping(false));
  attacker.socket.write(message.subarray(0, 9));
});

attack('more messages than the nonce limit allows', 'ERR_CHANNEL_NONCE_EXHAUSTED', { nonceLimit: 8, goaway: null }, async ({ attacker }) => {
  await attacker.start(); // two messages
  for (let i = 0; i < 7; i++) attacker.send(frame.ping(false, Buffer.alloc(8, i)));
});

attack('a stream flood past maxStreams', 'ERR_CHANNEL_STREAM_LIMIT', { goaway: 4 }, async ({ attacker }) => {
  await attacker.start();
  const opens = Array.from({ length: DEFAULT_SETTINGS.maxStreams + 1 }, (_, i) => frame.open(1 + 2 * i, StreamKind.STREAM, 'sink'));
  attacker.send(...opens);
});

attack('DATA past the stream window', 'ERR_CHANNEL_FLOW_CONTROL', { goaway: 3 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.open(1, StreamKind.STREAM, 'sink'));
  // The sink never reads, so the window stays at its initial 256 KiB.
  let sent = 0;
  while (sent < DEFAULT_SETTINGS.initialWindow) {
    const n = Math.min(MAX_FRAME_PAYLOAD, DEFAULT_SETTINGS.initialWindow - sent);
    attacker.send(frame.data(1, Buffer.alloc(n)));
    sent += n;
  }
  attacker.send(frame.data(1, Buffer.alloc(1)));
});

attack('WINDOW that makes the connection window exceed 2^31-1', 'ERR_CHANNEL_FLOW_CONTROL', { goaway: 3 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.window(0, 0x7fff_ffff));
});

attack('a request body past maxMessageBytes', 'ERR_CHANNEL_MESSAGE_TOO_LARGE', { limits: { maxMessageBytes: 100_000 }, goaway: 8 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.open(1, StreamKind.REQUEST, 'echo'), frame.data(1, Buffer.alloc(60_000)));
  attacker.send(frame.data(1, Buffer.alloc(40_001)));
});

test('a pending-bytes flood: the victim stops granting window at maxPendingBytes, so the flood is a flow-control violation', { timeout: 30_000 }, async (t) => {
  const maxPendingBytes = 2 * 1024 * 1024;
  const { arena, honest } = await setup(t);
  const { victim, victimSocket, attacker, closed } = await arena({ limits: { maxPendingBytes, maxMessageBytes: 1024 * 1024 } });
  await attacker.start();
  let maxPending = 0;
  const sampler = setInterval(() => (maxPending = Math.max(maxPending, victim.stats.pendingBytes)), 1);
  t.after(() => clearInterval(sampler));
  // Sixteen requests whose bodies never end: each stays within its stream window (credited on
  // receipt, as bodies are collected), but together they are far past what the victim holds.
  const streams = 16;
  attacker.send(...Array.from({ length: streams }, (_, i) => frame.open(1 + 2 * i, StreamKind.REQUEST, 'echo')));
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < streams; i++) attacker.send(frame.data(1 + 2 * i, Buffer.alloc(50_000)));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const err = await closed;
  clearInterval(sampler);
  assert.ok(isThemisError(err, 'ERR_CHANNEL_FLOW_CONTROL'), String(err));
  assert.ok(maxPending <= maxPendingBytes, `the victim held ${maxPending} bytes`);
  // It granted window while it had room, then stopped.
  const granted = attacker.windows.reduce((a, b) => a + b, 0);
  assert.ok(granted > 0 && 1024 * 1024 + granted <= maxPendingBytes, `granted ${granted} bytes of connection window`);
  assert.equal(victimSocket.destroyed, true);
  await honest();
});

attack('a PING flood from a peer that does not read', 'ERR_CHANNEL_PENDING_LIMIT', { limits: { maxPendingBytes: 1024 * 1024, maxMessageBytes: 0 } }, async ({ attacker, victim }) => {
  await attacker.start();
  attacker.socket.pause();
  const pings = Array.from({ length: 4000 }, (_, i) => frame.ping(false, Buffer.alloc(8, i & 0xff)));
  const message = (): Buffer => attacker.message(...pings);
  for (let sent = 0; sent < 256 * 1024 * 1024 && !victim.closed; sent += 64_000) {
    if (!attacker.socket.write(message())) await Promise.race([once(attacker.socket, 'drain').catch(() => {}), new Promise((resolve) => setTimeout(resolve, 50))]);
  }
});

attack('an unknown frame type', 'ERR_CHANNEL_FRAME', { goaway: 1 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.raw(0x7f, 0, 0, Buffer.alloc(0)));
});

attack('OPEN with a stream id that does not increase', 'ERR_CHANNEL_PROTOCOL', { goaway: 1 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.open(5, StreamKind.REQUEST, 'echo'), frame.data(5, Buffer.alloc(0), true));
  attacker.send(frame.open(3, StreamKind.REQUEST, 'echo'));
});

attack('OPEN with the responder parity (even id from the initiator)', 'ERR_CHANNEL_PROTOCOL', { goaway: 1 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.open(2, StreamKind.REQUEST, 'echo'));
});

attack('a first frame that is not SETTINGS', 'ERR_CHANNEL_PROTOCOL', { goaway: 1 }, async ({ attacker }) => {
  attacker.send(frame.ping(false));
});

attack('SETTINGS twice', 'ERR_CHANNEL_PROTOCOL', { goaway: 1 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.settings());
});

attack('DATA on a stream that was never opened', 'ERR_CHANNEL_PROTOCOL', { goaway: 1 }, async ({ attacker }) => {
  await attacker.start();
  attacker.send(frame.data(9, Buffer.from('hello')));
});
