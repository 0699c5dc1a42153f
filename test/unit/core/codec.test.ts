import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Reader, Writer } from '../../../src/core/codec.js';
import { fromBase32, leadingZeroBits, toBase32 } from '../../../src/core/bytes.js';
import { isThemisError } from '../../../src/core/errors.js';

test('base32 matches the RFC 4648 §10 vectors (lowercase, no padding)', () => {
  const vectors: [string, string][] = [['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi']];
  for (const [plain, encoded] of vectors) {
    assert.equal(toBase32(Buffer.from(plain)), encoded);
    assert.equal(fromBase32(encoded).toString(), plain);
  }
});

test('base32 rejects upper case, padding, stray characters and non-zero trailing bits', () => {
  for (const bad of ['MZXW6', 'mzxw6===', 'mzxw1', 'mz', 'mzxw6yr']) assert.throws(() => fromBase32(bad), TypeError, bad);
});

test('leadingZeroBits counts from the most significant bit', () => {
  assert.equal(leadingZeroBits(Buffer.from([0x80])), 0);
  assert.equal(leadingZeroBits(Buffer.from([0x01])), 7);
  assert.equal(leadingZeroBits(Buffer.from([0x00, 0x10])), 11);
  assert.equal(leadingZeroBits(Buffer.alloc(4)), 32);
});

test('codec round-trips every field kind in order', () => {
  const bytes = new Writer(4).u8(7).u16(0xbeef).u32(0xdeadbeef).u64(2 ** 53 - 1).vec8(Buffer.from('ab')).vec16(Buffer.alloc(300, 1)).vec32(Buffer.from('x')).str8('héllo').finish();
  const r = new Reader(bytes);
  assert.equal(r.u8(), 7);
  assert.equal(r.u16(), 0xbeef);
  assert.equal(r.u32(), 0xdeadbeef);
  assert.equal(r.u64(), 2 ** 53 - 1);
  assert.equal(r.vec8().toString(), 'ab');
  assert.equal(r.vec16().length, 300);
  assert.equal(r.vec32(10).toString(), 'x');
  assert.equal(r.str8(), 'héllo');
  r.end();
});

test('codec refuses truncated input, trailing bytes, oversized fields and invalid UTF-8 with typed errors', () => {
  const full = new Writer().u16(5).vec16(Buffer.from('hello')).finish();
  for (let cut = 0; cut < full.length; cut++) {
    assert.throws(() => {
      const r = new Reader(full.subarray(0, cut));
      r.u16();
      r.vec16();
    }, (e) => isThemisError(e, 'ERR_DECODE_TRUNCATED'));
  }
  assert.throws(() => new Reader(Buffer.from([1, 2])).end(), (e) => isThemisError(e, 'ERR_DECODE_TRAILING'));
  assert.throws(() => new Reader(new Writer().vec16(Buffer.alloc(20)).finish()).vec16(10), (e) => isThemisError(e, 'ERR_DECODE_TOO_LARGE'));
  assert.throws(() => new Reader(Buffer.from([2, 0xc3, 0x28])).str8(), (e) => isThemisError(e, 'ERR_DECODE_INVALID'));
  assert.throws(() => new Reader(Buffer.alloc(8, 0xff)).u64(), (e) => isThemisError(e, 'ERR_DECODE_INVALID'));
});
