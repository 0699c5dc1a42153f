import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FrameReader, FrameType, MAX_PLAINTEXT, encodeData, encodeGoaway, encodeOpen, encodePing, encodeReset, encodeSettings, encodeWindow } from '../../src/channel/frames.js';
import { TransportOpener, TransportSealer } from '../../src/channel/secure-framer.js';
import type { MuxStream } from '../../src/channel/index.js';
import { channelPair, cipherPair, holdLoop } from '../unit/channel/helpers.js';

test('transport messages split at random byte boundaries reassemble (§4.1)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: MAX_PLAINTEXT })), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (sizes, rawCuts) => {
        const keys = cipherPair();
        const sealer = new TransportSealer(keys.initiator.send);
        const plaintexts = sizes.map((size, i) => Buffer.alloc(size, i + 1));
        const wire = Buffer.concat(
          plaintexts.flatMap((plaintext) => {
            const ciphertext = sealer.seal(plaintext);
            const prefix = Buffer.alloc(2);
            prefix.writeUInt16BE(ciphertext.length);
            return [prefix, ciphertext];
          }),
        );
        const cuts = [...new Set(rawCuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const received: Buffer[] = [];
        const opener = new TransportOpener(keys.responder.recv, (plaintext) => (received.push(plaintext), true));
        let from = 0;
        for (const cut of [...cuts, wire.length]) {
          opener.push(wire.subarray(from, cut));
          from = cut;
        }
        assert.deepEqual(received, plaintexts);
        assert.equal(opener.midMessage, false);
      },
    ),
    { numRuns: 60 },
  );
});

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const streamId = fc.integer({ min: 1, max: 0xffff_ffff });
const text = (minLength: number) => fc.string({ unit: 'grapheme', minLength, maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 255 && Buffer.byteLength(s) >= minLength);

/** A frame as plain data, and how to write it. */
type Frame =
  | { type: 'DATA'; id: number; fin: boolean; payload: Uint8Array }
  | { type: 'OPEN'; id: number; kind: 1 | 2; name: string; timeoutMs: number }
  | { type: 'RESET'; id: number; code: number; message: string }
  | { type: 'WINDOW'; id: number; increment: number }
  | { type: 'PING'; ack: boolean; opaque: Uint8Array }
  | { type: 'GOAWAY'; lastStreamId: number; code: number; reason: string }
  | { type: 'SETTINGS'; maxStreams: number; initialWindow: number; maxMessageBytes: number };

const frameArbitrary: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant('DATA' as const), id: streamId, fin: fc.boolean(), payload: fc.uint8Array({ maxLength: 300 }) }),
  fc.oneof(
    fc.record({ type: fc.constant('OPEN' as const), id: streamId, kind: fc.constant(1 as const), name: text(1), timeoutMs: u32 }),
    fc.record({ type: fc.constant('OPEN' as const), id: streamId, kind: fc.constant(2 as const), name: text(1), timeoutMs: fc.constant(0) }),
  ),
  fc.record({ type: fc.constant('RESET' as const), id: streamId, code: u32, message: text(0) }),
  fc.record({ type: fc.constant('WINDOW' as const), id: fc.integer({ min: 0, max: 0xffff_ffff }), increment: fc.integer({ min: 1, max: 0x7fff_ffff }) }),
  fc.record({ type: fc.constant('PING' as const), ack: fc.boolean(), opaque: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
  fc.record({ type: fc.constant('GOAWAY' as const), lastStreamId: u32, code: u32, reason: text(0) }),
  fc.record({ type: fc.constant('SETTINGS' as const), maxStreams: u32, initialWindow: fc.integer({ min: 0, max: 0x7fff_ffff }), maxMessageBytes: u32 }),
);

function encode(buf: Buffer, at: number, f: Frame): number {
  switch (f.type) {
    case 'DATA':
      return encodeData(buf, at, f.id, f.fin, f.payload, 0, f.payload.length);
    case 'OPEN':
      return encodeOpen(buf, at, f.id, f.kind, Buffer.from(f.name), f.timeoutMs);
    case 'RESET':
      return encodeReset(buf, at, f.id, f.code, Buffer.from(f.message));
    case 'WINDOW':
      return encodeWindow(buf, at, f.id, f.increment);
    case 'PING':
      return encodePing(buf, at, f.ack, f.opaque);
    case 'GOAWAY':
      return encodeGoaway(buf, at, f.lastStreamId, f.code, Buffer.from(f.reason));
    case 'SETTINGS':
      return encodeSettings(buf, at, f);
  }
}

function decode(r: FrameReader): Frame {
  switch (r.type) {
    case FrameType.DATA:
      return { type: 'DATA', id: r.streamId, fin: r.flags === 1, payload: new Uint8Array(r.payload()) };
    case FrameType.OPEN:
      return { type: 'OPEN', id: r.streamId, kind: r.kind as 1 | 2, name: r.name, timeoutMs: r.timeoutMs };
    case FrameType.RESET:
      return { type: 'RESET', id: r.streamId, code: r.code, message: r.message };
    case FrameType.WINDOW:
      return { type: 'WINDOW', id: r.streamId, increment: r.increment };
    case FrameType.PING:
      return { type: 'PING', ack: r.flags === 1, opaque: new Uint8Array(r.payload()) };
    case FrameType.GOAWAY:
      return { type: 'GOAWAY', lastStreamId: r.lastStreamId, code: r.code, reason: r.message };
    default:
      return { type: 'SETTINGS', ...r.settings };
  }
}

/** Comparable form: an ordinary object, bytes as hex. */
function plain(f: Frame): Record<string, unknown> {
  return Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v]));
}

test('every frame type round-trips through encode and decode, several per plaintext (§4.2)', () => {
  fc.assert(
    fc.property(fc.array(frameArbitrary, { minLength: 1, maxLength: 20 }), (frames) => {
      const buf = Buffer.alloc(MAX_PLAINTEXT);
      let at = 0;
      for (const f of frames) at = encode(buf, at, f);
      const reader = new FrameReader();
      reader.reset(buf.subarray(0, at));
      const decoded: Frame[] = [];
      while (reader.next()) decoded.push(decode(reader));
      assert.deepEqual(decoded.map(plain), frames.map(plain));
    }),
    { numRuns: 300 },
  );
});

test('byte order within each stream survives random interleavings of many streams (§4.6)', async (t) => {
  holdLoop(t);
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 8 }),
      fc.array(fc.record({ stream: fc.nat(), size: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 70_000 })), yieldAfter: fc.boolean() }), { minLength: 1, maxLength: 40 }),
      async (streamCount, writes) => {
        const received = new Map<number, Buffer[]>();
        const done: Promise<void>[] = [];
        const pair = await channelPair('memory', {
          server: {
            streams: {
              collect: (stream: MuxStream) => {
                const parts: Buffer[] = [];
                received.set(stream.id, parts);
                stream.on('data', (chunk: Buffer) => parts.push(chunk));
                done.push(new Promise((resolve) => stream.once('end', () => resolve())));
                stream.resume();
              },
            },
          },
        });
        try {
          const streams = Array.from({ length: streamCount }, () => pair.client.openStream('collect'));
          const expected = streams.map(() => [] as Buffer[]);
          let sequence = 0;
          for (const { stream, size, yieldAfter } of writes) {
            const index = stream % streamCount;
            const chunk = Buffer.alloc(size, sequence++ & 0xff);
            expected[index]!.push(chunk);
            streams[index]!.write(chunk);
            if (yieldAfter) await new Promise((resolve) => setImmediate(resolve));
          }
          for (const s of streams) s.end();
          while (done.length < streamCount) await new Promise((resolve) => setImmediate(resolve));
          await Promise.all(done);
          streams.forEach((s, i) => assert.deepEqual(Buffer.concat(received.get(s.id) ?? []), Buffer.concat(expected[i]!), `stream ${s.id}`));
        } finally {
          await pair.dispose();
        }
      },
    ),
    { numRuns: 30 },
  );
});
