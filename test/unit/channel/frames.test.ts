import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import {
  FLAG_ACK,
  FLAG_FIN,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameType,
  MAX_PLAINTEXT,
  StreamKind,
  encodeData,
  encodeGoaway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeSettings,
  encodeWindow,
  str8Bytes,
} from '../../../src/channel/frames.js';

/** A raw frame, bypassing the encoders, to build malformed input. */
function raw(type: number, flags: number, streamId: number, payload: Buffer | number[]): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.alloc(FRAME_HEADER_BYTES + body.length);
  out[0] = type;
  out[1] = flags;
  out.writeUInt32BE(streamId, 2);
  out.writeUInt16BE(body.length, 6);
  body.copy(out, FRAME_HEADER_BYTES);
  return out;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

function str8(text: string | Buffer): Buffer {
  const bytes = Buffer.from(text);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

interface Decoded {
  readonly type: number;
  readonly name: string;
  readonly timeoutMs: number;
  readonly payload: Buffer;
}

function readAll(plaintext: Buffer): Decoded[] {
  const reader = new FrameReader();
  reader.reset(plaintext);
  const frames: Decoded[] = [];
  while (reader.next()) frames.push({ type: reader.type, name: reader.name, timeoutMs: reader.timeoutMs, payload: Buffer.from(reader.payload()) });
  return frames;
}

function rejects(plaintext: Buffer, code: ErrorCode, pattern: RegExp): void {
  assert.throws(() => readAll(plaintext), (err) => isThemisError(err, code) && pattern.test(err.message));
}

test('every frame type encodes to the §4.2 layout and decodes back', () => {
  const buf = Buffer.alloc(1024);
  let at = 0;
  at = encodeData(buf, at, 7, true, Buffer.from('xhello!'), 1, 6);
  at = encodeOpen(buf, at, 9, StreamKind.REQUEST, Buffer.from('échø'), 1500);
  at = encodeReset(buf, at, 9, 65_537, Buffer.from('nope'));
  at = encodeWindow(buf, at, 0, 0x7fff_ffff);
  at = encodePing(buf, at, true, Buffer.from('12345678'));
  at = encodeGoaway(buf, at, 41, 11, Buffer.from('bye'));
  at = encodeSettings(buf, at, { maxStreams: 3, initialWindow: 65_536, maxMessageBytes: 0xffff_ffff });
  const plaintext = buf.subarray(0, at);
  // Byte-exact header of the DATA frame: type, flags, u32 id, u16 length, payload.
  assert.deepEqual([...plaintext.subarray(0, 13)], [0x00, 0x01, 0, 0, 0, 7, 0, 5, ...Buffer.from('hello')]);

  const reader = new FrameReader();
  reader.reset(plaintext);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.flags, reader.streamId, reader.payload().toString()], [FrameType.DATA, FLAG_FIN, 7, 'hello']);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.streamId, reader.kind, reader.name, reader.timeoutMs], [FrameType.OPEN, 9, 1, 'échø', 1500]);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.streamId, reader.code, reader.message], [FrameType.RESET, 9, 65_537, 'nope']);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.streamId, reader.increment], [FrameType.WINDOW, 0, 0x7fff_ffff]);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.flags, reader.payload().toString()], [FrameType.PING, FLAG_ACK, '12345678']);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.lastStreamId, reader.code, reader.message], [FrameType.GOAWAY, 41, 11, 'bye']);
  assert.ok(reader.next());
  assert.deepEqual([reader.type, reader.settings], [FrameType.SETTINGS, { maxStreams: 3, initialWindow: 65_536, maxMessageBytes: 0xffff_ffff }]);
  assert.equal(reader.next(), false);
});

test('empty payloads: DATA with FIN only, RESET and GOAWAY with empty text', () => {
  const buf = Buffer.alloc(64);
  let at = encodeData(buf, 0, 1, true, Buffer.alloc(0), 0, 0);
  at = encodeReset(buf, at, 1, 5, Buffer.alloc(0));
  at = encodeGoaway(buf, at, 0, 0, Buffer.alloc(0));
  const reader = new FrameReader();
  reader.reset(buf.subarray(0, at));
  assert.ok(reader.next());
  assert.equal(reader.payload().length, 0);
  assert.equal(reader.flags, FLAG_FIN);
  assert.ok(reader.next());
  assert.deepEqual([reader.code, reader.message], [5, '']);
  assert.ok(reader.next());
  assert.deepEqual([reader.lastStreamId, reader.code, reader.message], [0, 0, '']);
  assert.equal(reader.next(), false);
});

test('a DATA frame can fill a whole plaintext', () => {
  const buf = Buffer.alloc(MAX_PLAINTEXT);
  const payload = Buffer.alloc(MAX_PLAINTEXT - FRAME_HEADER_BYTES, 0xab);
  assert.equal(encodeData(buf, 0, 3, false, payload, 0, payload.length), MAX_PLAINTEXT);
  const [frame] = readAll(buf);
  assert.equal(frame!.payload.length, 65_511);
});

test('an empty plaintext is rejected: a transport message carries at least one frame (§4.1)', () => {
  assert.throws(() => new FrameReader().reset(Buffer.alloc(0)), (err) => isThemisError(err, 'ERR_CHANNEL_FRAME'));
});

test('truncated headers and frames running past the plaintext are rejected', () => {
  rejects(Buffer.from([0, 0, 0, 0, 0, 1, 0]), 'ERR_CHANNEL_FRAME', /truncated frame header/);
  rejects(raw(0, 0, 1, Buffer.alloc(10)).subarray(0, 12), 'ERR_CHANNEL_FRAME', /runs past the end/);
});

test('unknown frame types are rejected', () => {
  for (const type of [0x07, 0x7f, 0xff]) rejects(raw(type, 0, 0, []), 'ERR_CHANNEL_FRAME', /unknown frame type/);
});

test('flags not listed for a type are rejected', () => {
  const cases: [number, number, number, Buffer][] = [
    [FrameType.DATA, 0x02, 1, Buffer.alloc(0)],
    [FrameType.OPEN, 0x01, 1, Buffer.concat([Buffer.from([1]), str8('a'), u32(0)])],
    [FrameType.RESET, 0x01, 1, Buffer.concat([u32(5), str8('')])],
    [FrameType.WINDOW, 0x01, 0, u32(1)],
    [FrameType.PING, 0x02, 0, Buffer.alloc(8)],
    [FrameType.GOAWAY, 0x80, 0, Buffer.concat([u32(0), u32(0), str8('')])],
    [FrameType.SETTINGS, 0x80, 0, Buffer.alloc(12)],
  ];
  for (const [type, flags, id, payload] of cases) rejects(raw(type, flags, id, payload), 'ERR_CHANNEL_FRAME', /does not allow flags/);
});

test('stream id rules: DATA, OPEN and RESET need a stream; PING, GOAWAY and SETTINGS belong on stream 0', () => {
  rejects(raw(FrameType.DATA, 0, 0, []), 'ERR_CHANNEL_FRAME', /on stream 0/);
  rejects(raw(FrameType.OPEN, 0, 0, Buffer.concat([Buffer.from([1]), str8('a'), u32(0)])), 'ERR_CHANNEL_FRAME', /on stream 0/);
  rejects(raw(FrameType.RESET, 0, 0, Buffer.concat([u32(5), str8('')])), 'ERR_CHANNEL_FRAME', /on stream 0/);
  rejects(raw(FrameType.PING, 0, 1, Buffer.alloc(8)), 'ERR_CHANNEL_FRAME', /belongs on stream 0/);
  rejects(raw(FrameType.GOAWAY, 0, 2, Buffer.concat([u32(0), u32(0), str8('')])), 'ERR_CHANNEL_FRAME', /belongs on stream 0/);
  rejects(raw(FrameType.SETTINGS, 0, 3, Buffer.alloc(12)), 'ERR_CHANNEL_FRAME', /belongs on stream 0/);
  // WINDOW may name any stream, including 0 (the connection).
  assert.equal(readAll(Buffer.concat([raw(FrameType.WINDOW, 0, 0, u32(1)), raw(FrameType.WINDOW, 0, 5, u32(1))])).length, 2);
});

test('payloads of the wrong size are rejected', () => {
  rejects(raw(FrameType.WINDOW, 0, 0, Buffer.alloc(3)), 'ERR_CHANNEL_FRAME', /WINDOW payload is 3 bytes; expected 4/);
  rejects(raw(FrameType.WINDOW, 0, 0, Buffer.alloc(5)), 'ERR_CHANNEL_FRAME', /expected 4/);
  rejects(raw(FrameType.PING, 0, 0, Buffer.alloc(7)), 'ERR_CHANNEL_FRAME', /PING payload is 7 bytes; expected 8/);
  rejects(raw(FrameType.SETTINGS, 0, 0, Buffer.alloc(13)), 'ERR_CHANNEL_FRAME', /expected 12/);
  rejects(raw(FrameType.RESET, 0, 1, Buffer.alloc(4)), 'ERR_CHANNEL_FRAME', /at least 5/);
  rejects(raw(FrameType.RESET, 0, 1, Buffer.concat([u32(5), Buffer.from([3]), Buffer.from('ab')])), 'ERR_CHANNEL_FRAME', /expected 8/);
  rejects(raw(FrameType.RESET, 0, 1, Buffer.concat([u32(5), str8('ab'), Buffer.from('!')])), 'ERR_CHANNEL_FRAME', /expected 7/);
  rejects(raw(FrameType.GOAWAY, 0, 0, Buffer.alloc(8)), 'ERR_CHANNEL_FRAME', /at least 9/);
  rejects(raw(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(0), str8('x'), Buffer.from('y')])), 'ERR_CHANNEL_FRAME', /expected 10/);
  rejects(raw(FrameType.OPEN, 0, 1, Buffer.from([1, 1, 0x61])), 'ERR_CHANNEL_FRAME', /at least 6/);
  rejects(raw(FrameType.OPEN, 0, 1, Buffer.concat([Buffer.from([1]), str8('ab'), u32(0), Buffer.from([0])])), 'ERR_CHANNEL_FRAME', /expected 8/);
});

test('OPEN: kind 1 or 2, a name of 1..255 bytes of UTF-8, and timeoutMs 0 for streams', () => {
  const open = (kind: number, name: Buffer, timeout: number): Buffer => raw(FrameType.OPEN, 0, 1, Buffer.concat([Buffer.from([kind]), str8(name), u32(timeout)]));
  rejects(open(0, Buffer.from('a'), 0), 'ERR_CHANNEL_FRAME', /kind 0/);
  rejects(open(3, Buffer.from('a'), 0), 'ERR_CHANNEL_FRAME', /kind 3/);
  rejects(open(1, Buffer.alloc(0), 0), 'ERR_CHANNEL_FRAME', /name is empty/);
  rejects(open(1, Buffer.from([0xc3, 0x28]), 0), 'ERR_CHANNEL_FRAME', /not valid UTF-8/);
  rejects(open(2, Buffer.from('s'), 10), 'ERR_CHANNEL_FRAME', /must be 0/);
  const [longest] = readAll(open(1, Buffer.alloc(255, 0x61), 0xffff_ffff));
  assert.equal(longest!.name.length, 255);
  assert.equal(longest!.timeoutMs, 0xffff_ffff);
});

test('RESET messages and GOAWAY reasons must be UTF-8', () => {
  rejects(raw(FrameType.RESET, 0, 1, Buffer.concat([u32(7), str8(Buffer.from([0xff]))])), 'ERR_CHANNEL_FRAME', /RESET message is not valid UTF-8/);
  rejects(raw(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(1), str8(Buffer.from([0xe2, 0x82]))])), 'ERR_CHANNEL_FRAME', /GOAWAY reason is not valid UTF-8/);
});

test('WINDOW increments are 1..2^31-1; SETTINGS initialWindow at most 2^31-1', () => {
  rejects(raw(FrameType.WINDOW, 0, 1, u32(0)), 'ERR_CHANNEL_FRAME', /increment 0/);
  rejects(raw(FrameType.WINDOW, 0, 1, u32(0x8000_0000)), 'ERR_CHANNEL_FRAME', /increment 2147483648/);
  rejects(raw(FrameType.SETTINGS, 0, 0, Buffer.concat([u32(1), u32(0x8000_0000), u32(1)])), 'ERR_CHANNEL_FLOW_CONTROL', /initialWindow/);
});

test('str8Bytes cuts long text at a code point boundary, at most 255 bytes', () => {
  assert.equal(str8Bytes('abc').toString(), 'abc');
  const cut = str8Bytes('€'.repeat(100)); // 3 bytes each: 255 = 85 whole characters
  assert.equal(cut.length, 255);
  assert.equal(cut.toString(), '€'.repeat(85));
  const uneven = str8Bytes('a' + '€'.repeat(100)); // 1 + 84 * 3 = 253 bytes fit, the 85th character would not
  assert.equal(uneven.length, 253);
  assert.equal(uneven.toString(), 'a' + '€'.repeat(84));
});
