import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isThemisError } from '../../../src/core/errors.js';
import * as msg from '../../../src/dht/messages.js';

const decoders: [string, (b: Buffer) => unknown][] = [
  ['ping request', msg.decodePingRequest],
  ['ping response', msg.decodePingResponse],
  ['find_node request', msg.decodeFindNodeRequest],
  ['contacts response', msg.decodeContactsResponse],
  ['find_value response', msg.decodeFindValueResponse],
  ['store request', msg.decodeStoreRequest],
  ['store response', msg.decodeStoreResponse],
];

test('DHT messages round-trip', () => {
  const sender = Buffer.alloc(200, 1);
  const target = Buffer.alloc(32, 2);
  assert.deepEqual(msg.decodeFindNodeRequest(msg.encodeFindNodeRequest(sender, target)), { sender, body: target });
  assert.deepEqual(msg.decodePingRequest(msg.encodePingRequest(Buffer.alloc(0))).sender, Buffer.alloc(0));
  const contacts = [Buffer.from('a'), Buffer.from('bb')];
  assert.deepEqual(msg.decodeContactsResponse(msg.encodeContactsResponse(contacts)), contacts);
  const records = [Buffer.alloc(1000, 3)];
  assert.deepEqual(msg.decodeFindValueResponse(msg.encodeFindValueResponse(records, contacts)), { records, contacts });
  assert.equal(msg.decodeStoreResponse(msg.encodeStoreResponse(msg.StoreStatus.Quota)), msg.StoreStatus.Quota);
  assert.deepEqual(msg.decodeStoreRequest(msg.encodeStoreRequest(sender, records[0]!)).body, records[0]);
  assert.equal(msg.decodeContactsResponse(msg.encodeContactsResponse(Array.from({ length: 50 }, () => Buffer.from('c')))).length, msg.MAX_CONTACTS);
});

test('truncated, extended, wrong-version and oversized DHT messages fail with ERR_DHT_PROTOCOL only', () => {
  const samples = [
    msg.encodePingRequest(Buffer.alloc(100, 1)),
    msg.encodeFindNodeRequest(Buffer.alloc(100, 1), Buffer.alloc(32)),
    msg.encodeFindValueResponse([Buffer.alloc(10)], [Buffer.alloc(10)]),
    msg.encodeStoreRequest(Buffer.alloc(0), Buffer.alloc(50)),
  ];
  for (const sample of samples) {
    for (let cut = 0; cut < sample.length; cut++) {
      for (const [name, decode] of decoders) {
        try {
          decode(sample.subarray(0, cut));
        } catch (e) {
          assert.ok(isThemisError(e, 'ERR_DHT_PROTOCOL'), `${name} on a ${cut}-byte prefix threw ${String(e)}`);
        }
      }
    }
  }
  const wrongVersion = Buffer.from(samples[0]!);
  wrongVersion[0] = 2;
  assert.throws(() => msg.decodePingRequest(wrongVersion), (e) => isThemisError(e, 'ERR_DHT_PROTOCOL'));
  assert.throws(() => msg.decodePingRequest(Buffer.concat([samples[0]!, Buffer.from([0])])), (e) => isThemisError(e, 'ERR_DHT_PROTOCOL'));
  const tooMany = Buffer.from([1, 200]);
  assert.throws(() => msg.decodeContactsResponse(tooMany), (e) => isThemisError(e, 'ERR_DHT_PROTOCOL'));
  assert.throws(() => msg.decodeStoreResponse(Buffer.from([1, 99])), (e) => isThemisError(e, 'ERR_DHT_PROTOCOL'));
});

test('random bytes never crash a DHT decoder (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      for (const [, decode] of decoders) {
        try {
          decode(Buffer.from(bytes));
        } catch (e) {
          if (!isThemisError(e, 'ERR_DHT_PROTOCOL')) return false;
        }
      }
      return true;
    }),
    { numRuns: 2000 },
  );
});
