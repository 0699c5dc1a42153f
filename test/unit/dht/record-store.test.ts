import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { open } from 'lmdb';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { Identity, networkConfig } from '../../../src/identity/index.js';
import { hour, minute } from '../../../src/dht/constants.js';
import { createContactRecord } from '../../../src/dht/contact.js';
import {
  RecordType,
  createRecord,
  encodeProviderValue,
  immutableKey,
  mutableKey,
  providerKey,
  slotOf,
  verifyRecord,
  type DhtRecord,
} from '../../../src/dht/record.js';
import { MemoryRecordStore, openLmdbRecordStore, type RecordStore, type RecordStoreLimits } from '../../../src/dht/record-store.js';

const network = networkConfig({ c1: 0, c2: 0 });
const [alice, bob, carol] = [Identity.generate(network), Identity.generate(network), Identity.generate(network)] as const;

/** Record times are real ones, so that LMDB reopens (which verify at Date.now()) see them live. */
const T0 = Date.now();

function mutable(identity: Identity, init: { seq?: number; value?: string; salt?: string; ttlMs?: number; now?: number } = {}): DhtRecord {
  const now = init.now ?? T0;
  const salt = Buffer.from(init.salt ?? '');
  const bytes = createRecord(identity, {
    type: RecordType.Mutable,
    key: mutableKey(identity.publicKey, salt),
    salt,
    value: Buffer.from(init.value ?? 'v'),
    seq: init.seq ?? 0,
    ttlMs: init.ttlMs ?? hour,
    now,
  });
  return verifyRecord(bytes, network, { now });
}

function provider(identity: Identity, service: string, now = T0): DhtRecord {
  const contact = createContactRecord(identity, { addresses: ['127.0.0.1:7000'], now });
  const bytes = createRecord(identity, { type: RecordType.Provider, key: providerKey(service), value: encodeProviderValue(service, contact), now });
  return verifyRecord(bytes, network, { now });
}

function immutable(identity: Identity, value: string, seq: number): DhtRecord {
  const bytes = createRecord(identity, { type: RecordType.Immutable, key: immutableKey(Buffer.from(value)), value: Buffer.from(value), seq, now: T0 });
  return verifyRecord(bytes, network, { now: T0 });
}

function fails(code: ErrorCode, message?: RegExp): (err: unknown) => boolean {
  return (err) => isThemisError(err, code) && (message === undefined || message.test(err.message));
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'themis-record-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Backend {
  readonly name: string;
  open(t: TestContext, limits?: Partial<RecordStoreLimits>): Promise<RecordStore>;
}

const backends: readonly Backend[] = [
  {
    name: 'memory',
    async open(t, limits) {
      const store = new MemoryRecordStore(limits);
      t.after(() => store.close());
      return store;
    },
  },
  {
    name: 'lmdb',
    async open(t, limits) {
      const dir = await tempDir(t);
      const store = await openLmdbRecordStore(dir, network, limits);
      t.after(() => store.close()); // runs before the directory is removed (after hooks run in reverse)
      return store;
    },
  },
];

for (const backend of backends) {
  describe(`${backend.name} record store`, () => {
    test('a higher seq replaces, the same record again is "same", a replayed older record is stale', async (t) => {
      const store = await backend.open(t);
      const v1 = mutable(alice, { seq: 1, value: 'one' });
      const v2 = mutable(alice, { seq: 2, value: 'two' });
      assert.equal(store.put(v1, T0), 'stored');
      assert.equal(store.put(v2, T0), 'stored');
      assert.deepEqual(store.getSlot(v2.key, alice.nodeId)?.bytes, v2.bytes);
      assert.equal(store.put(mutable(alice, { seq: 2, value: 'two' }), T0), 'same');
      assert.throws(() => store.put(v1, T0), fails('ERR_DHT_RECORD_STALE', /seq 2.*seq 1/));
      // Same seq, other content: a conflicting record, not a newer one.
      assert.throws(() => store.put(mutable(alice, { seq: 2, value: 'forked' }), T0), fails('ERR_DHT_RECORD_STALE'));
      assert.deepEqual(
        store.get(v2.key, T0).map((r) => r.value.toString()),
        ['two'],
      );
      assert.deepEqual(store.stats(), { records: 1, bytes: v2.bytes.length, keys: 1 });
      assert.deepEqual(store.usage(alice.nodeId), { records: 1, bytes: v2.bytes.length });
    });

    test('a republish of the same seq with a later expiry is stored; the earlier copy is then stale', async (t) => {
      const store = await backend.open(t);
      const first = mutable(alice, { seq: 4, value: 'x' });
      const renewed = mutable(alice, { seq: 4, value: 'x', now: T0 + 10 * minute });
      assert.equal(store.put(first, T0), 'stored');
      assert.equal(store.put(renewed, T0 + 10 * minute), 'stored');
      assert.equal(store.getSlot(first.key, alice.nodeId)?.expiresAt, renewed.expiresAt);
      assert.throws(() => store.put(first, T0 + 10 * minute), fails('ERR_DHT_RECORD_STALE'));
      // The first copy's expiry passing drops nothing: the slot holds the renewed record.
      assert.equal(store.sweep(first.expiresAt), 0);
      assert.equal(store.get(first.key, first.expiresAt).length, 1);
      assert.equal(store.stats().records, 1);
    });

    test('several providers under one key, one per publisher, ordered by publisher id', async (t) => {
      const store = await backend.open(t);
      const records = [provider(alice, 'payments'), provider(bob, 'payments'), provider(carol, 'payments')];
      for (const record of records) assert.equal(store.put(record, T0), 'stored');
      assert.equal(store.put(provider(bob, 'accounts'), T0), 'stored');
      const expected = [...records].sort((a, b) => Buffer.compare(a.publisherId, b.publisherId)).map((r) => r.bytes);
      const key = providerKey('payments');
      assert.deepEqual(store.get(key, T0).map((r) => r.bytes), expected);
      assert.deepEqual(store.get(key, T0, 2).map((r) => r.bytes), expected.slice(0, 2));
      assert.deepEqual(store.getSlot(key, bob.nodeId)?.bytes, records[1]!.bytes);
      assert.deepEqual(store.stats(), { records: 4, bytes: [...records, provider(bob, 'accounts')].reduce((n, r) => n + r.bytes.length, 0), keys: 2 });
      assert.deepEqual(store.get(providerKey('nobody'), T0), []);
      assert.throws(() => store.get(key, T0, 0), RangeError);
      assert.throws(() => store.get(Buffer.alloc(31), T0), RangeError);
    });

    test('get() ranks by highest seq first, then publisher id, and never returns more than asked', async (t) => {
      const store = await backend.open(t);
      const held = [immutable(alice, 'shared', 0), immutable(bob, 'shared', 7), immutable(carol, 'shared', 7)];
      for (const record of held) store.put(record, T0);
      const [low, ...high] = held;
      high.sort((a, b) => Buffer.compare(a.publisherId, b.publisherId));
      assert.deepEqual(store.get(immutableKey(Buffer.from('shared')), T0).map((r) => r.bytes), [...high, low!].map((r) => r.bytes));
      assert.deepEqual(store.get(immutableKey(Buffer.from('shared')), T0, 1).map((r) => r.bytes), [high[0]!.bytes]);

      const many = Array.from({ length: 40 }, (_, i) => immutable(Identity.generate(network), 'popular', (i * 7) % 5));
      for (const record of many) store.put(record, T0);
      const ranked = [...many].sort((a, b) => b.seq - a.seq || Buffer.compare(a.publisherId, b.publisherId)).map((r) => r.bytes);
      const key = immutableKey(Buffer.from('popular'));
      assert.deepEqual(store.get(key, T0, 10).map((r) => r.bytes), ranked.slice(0, 10));
      assert.deepEqual(store.get(key, T0).map((r) => r.bytes), ranked);
    });

    test('get() leaves out expired records; an expired record is refused and does not block its slot', async (t) => {
      const store = await backend.open(t);
      const short = mutable(alice, { seq: 5, ttlMs: minute });
      const long = mutable(bob, { ttlMs: hour });
      store.put(short, T0);
      store.put(long, T0);
      assert.equal(store.get(short.key, T0 + 30_000).length, 1);
      assert.deepEqual(store.get(short.key, T0 + 2 * minute), []);
      assert.equal(store.get(long.key, T0 + 2 * minute).length, 1);
      assert.ok(store.getSlot(short.key, alice.nodeId), 'held until swept');
      assert.throws(() => store.put(mutable(carol, { ttlMs: minute }), T0 + 2 * minute), fails('ERR_DHT_RECORD_EXPIRED'));
      // Once the slot's record has expired, the publisher may start again at a lower seq.
      const restart = mutable(alice, { seq: 1, now: T0 + 2 * minute });
      assert.equal(store.put(restart, T0 + 2 * minute), 'stored');
      assert.deepEqual(store.get(short.key, T0 + 2 * minute).map((r) => r.seq), [1]);
      assert.deepEqual(store.usage(alice.nodeId), { records: 1, bytes: restart.bytes.length });
    });

    test('sweep() drops expired records, counts them, and frees their quota', async (t) => {
      const store = await backend.open(t);
      const records = [
        mutable(alice, { salt: 'a', ttlMs: minute }),
        mutable(alice, { salt: 'b', ttlMs: 2 * minute }),
        mutable(bob, { ttlMs: hour }),
      ];
      for (const record of records) store.put(record, T0);
      assert.equal(store.sweep(T0), 0);
      assert.equal(store.sweep(T0 + 90_000), 1);
      assert.equal(store.sweep(T0 + 90_000), 0);
      assert.deepEqual(store.usage(alice.nodeId), { records: 1, bytes: records[1]!.bytes.length });
      assert.equal(store.sweep(T0 + 3 * minute), 1);
      assert.deepEqual(store.usage(alice.nodeId), { records: 0, bytes: 0 });
      assert.deepEqual([...store.records()].map((r) => r.bytes), [records[2]!.bytes]);
      assert.equal(store.sweep(T0 + 2 * hour), 1);
      assert.deepEqual(store.stats(), { records: 0, bytes: 0, keys: 0 });
    });

    test('per-publisher count quota: a flood past it is refused, other publishers still store, replacing frees first', async (t) => {
      const store = await backend.open(t, { maxRecordsPerPublisher: 3 });
      const results = Array.from({ length: 10 }, (_, i) => {
        try {
          return store.put(mutable(alice, { salt: `flood-${i}` }), T0);
        } catch (err) {
          assert.ok(isThemisError(err, 'ERR_DHT_QUOTA'));
          assert.match(err.message, new RegExp(`publisher ${alice.id} would hold 4 records; the limit is 3 per publisher`));
          return 'refused';
        }
      });
      assert.deepEqual(results, ['stored', 'stored', 'stored', ...Array(7).fill('refused')]);
      assert.equal(store.usage(alice.nodeId).records, 3);
      assert.equal(store.put(mutable(bob), T0), 'stored');
      // A newer version of a held record takes the old one's place within the quota.
      assert.equal(store.put(mutable(alice, { salt: 'flood-0', seq: 1 }), T0), 'stored');
      assert.equal(store.usage(alice.nodeId).records, 3);
      assert.equal(store.delete(mutableKey(alice.publicKey, Buffer.from('flood-1')), alice.nodeId), true);
      assert.equal(store.put(mutable(alice, { salt: 'flood-9' }), T0), 'stored');
    });

    test('per-publisher byte quota counts envelope bytes', async (t) => {
      const size = mutable(alice, { salt: 'x0', value: 'a'.repeat(100) }).bytes.length;
      const store = await backend.open(t, { maxBytesPerPublisher: 2 * size + 50 });
      assert.equal(store.put(mutable(alice, { salt: 'x0', value: 'a'.repeat(100) }), T0), 'stored');
      assert.equal(store.put(mutable(alice, { salt: 'x1', value: 'b'.repeat(100) }), T0), 'stored');
      assert.throws(
        () => store.put(mutable(alice, { salt: 'x2', value: 'c'.repeat(100) }), T0),
        fails('ERR_DHT_QUOTA', new RegExp(`would hold ${3 * size} bytes of records; the limit is ${2 * size + 50} bytes per publisher`)),
      );
      // Growing a held record counts only the difference: 50 more bytes fit, 51 do not.
      assert.equal(store.put(mutable(alice, { salt: 'x1', seq: 1, value: 'b'.repeat(150) }), T0), 'stored');
      assert.throws(() => store.put(mutable(alice, { salt: 'x0', seq: 1, value: 'a'.repeat(101) }), T0), fails('ERR_DHT_QUOTA'));
      assert.deepEqual(store.usage(alice.nodeId), { records: 2, bytes: 2 * size + 50 });
      assert.equal(store.put(mutable(bob, { value: 'c'.repeat(100) }), T0), 'stored');
    });

    test('records that expired but were not swept do not hold quota against new ones', async (t) => {
      const store = await backend.open(t, { maxRecordsPerPublisher: 2 });
      store.put(mutable(alice, { salt: 'a', ttlMs: minute }), T0);
      store.put(mutable(alice, { salt: 'b', ttlMs: minute }), T0);
      assert.throws(() => store.put(mutable(alice, { salt: 'c' }), T0), fails('ERR_DHT_QUOTA'));
      const later = T0 + 2 * minute;
      assert.equal(store.put(mutable(alice, { salt: 'c', now: later }), later), 'stored');
      assert.equal(store.usage(alice.nodeId).records, 1);
    });

    test('global limits on records and bytes hold across publishers', async (t) => {
      const counted = await backend.open(t, { maxRecords: 4 });
      for (const [salt, identity] of [['s0', alice], ['s1', alice], ['s2', bob], ['s3', bob]] as const) counted.put(mutable(identity, { salt }), T0);
      assert.throws(() => counted.put(mutable(carol), T0), fails('ERR_DHT_QUOTA', /the record store would hold 5 records; its limit is 4/));
      assert.equal(counted.put(mutable(bob, { salt: 's2', seq: 1 }), T0), 'stored', 'replacing needs no room');

      const size = mutable(alice).bytes.length;
      const sized = await backend.open(t, { maxBytes: 3 * size });
      sized.put(mutable(alice), T0);
      sized.put(mutable(bob), T0);
      sized.put(mutable(carol), T0);
      assert.throws(() => sized.put(mutable(carol, { salt: 'more' }), T0), fails('ERR_DHT_QUOTA', new RegExp(`its limit is ${3 * size} bytes`)));
      assert.deepEqual(sized.stats(), { records: 3, bytes: 3 * size, keys: 3 });
    });

    test('delete() drops one slot and its quota', async (t) => {
      const store = await backend.open(t);
      const a = provider(alice, 'payments');
      const b = provider(bob, 'payments');
      store.put(a, T0);
      store.put(b, T0);
      assert.equal(store.delete(a.key, alice.nodeId), true);
      assert.equal(store.delete(a.key, alice.nodeId), false);
      assert.equal(store.getSlot(a.key, alice.nodeId), undefined);
      assert.deepEqual(store.get(a.key, T0).map((r) => r.bytes), [b.bytes]);
      assert.deepEqual(store.usage(alice.nodeId), { records: 0, bytes: 0 });
      assert.deepEqual(store.stats(), { records: 1, bytes: b.bytes.length, keys: 1 });
      assert.equal(store.delete(b.key, bob.nodeId), true);
      assert.deepEqual(store.stats(), { records: 0, bytes: 0, keys: 0 });
      assert.throws(() => store.delete(b.key, Buffer.alloc(8)), RangeError);
    });

    test('usage() and stats() add up what each publisher holds', async (t) => {
      const store = await backend.open(t);
      const held = [mutable(alice, { salt: '1' }), mutable(alice, { salt: '2' }), provider(alice, 'payments'), provider(bob, 'payments')];
      for (const record of held) store.put(record, T0);
      const bytesOf = (records: DhtRecord[]): number => records.reduce((n, r) => n + r.bytes.length, 0);
      assert.deepEqual(store.usage(alice.nodeId), { records: 3, bytes: bytesOf(held.slice(0, 3)) });
      assert.deepEqual(store.usage(bob.nodeId), { records: 1, bytes: bytesOf(held.slice(3)) });
      assert.deepEqual(store.usage(carol.nodeId), { records: 0, bytes: 0 });
      assert.deepEqual(store.stats(), { records: 4, bytes: bytesOf(held), keys: 3 });
      assert.equal([...store.records()].length, 4);
    });

    test('meta blobs: stored, replaced, copied in and out', async (t) => {
      const store = await backend.open(t);
      assert.equal(store.getMeta('routing-table'), undefined);
      const blob = Buffer.from('snapshot-1');
      await store.putMeta('routing-table', blob);
      blob.fill(0);
      const read = store.getMeta('routing-table');
      assert.deepEqual(read, Buffer.from('snapshot-1'));
      read!.fill(0);
      assert.deepEqual(store.getMeta('routing-table'), Buffer.from('snapshot-1'));
      await store.putMeta('routing-table', new Uint8Array([1, 2, 3]));
      assert.deepEqual(store.getMeta('routing-table'), Buffer.from([1, 2, 3]));
      assert.throws(() => store.putMeta('', Buffer.alloc(1)), RangeError);
    });

    test('after close() every call is refused with ERR_DHT_CLOSED; closing twice is fine', async (t) => {
      const store = await backend.open(t);
      store.put(mutable(alice), T0);
      await store.close();
      await store.close();
      assert.throws(() => store.put(mutable(bob), T0), fails('ERR_DHT_CLOSED'));
      assert.throws(() => store.get(mutable(alice).key, T0), fails('ERR_DHT_CLOSED'));
      assert.throws(() => store.sweep(T0), fails('ERR_DHT_CLOSED'));
      assert.throws(() => store.putMeta('x', Buffer.alloc(1)), fails('ERR_DHT_CLOSED'));
    });

    test('limits are validated', async (t) => {
      await assert.rejects(backend.open(t, { maxRecords: 0 }), RangeError);
      await assert.rejects(backend.open(t, { maxBytes: 1.5 }), RangeError);
      await assert.rejects(backend.open(t, { maxRecordz: 3 } as Partial<RecordStoreLimits>), RangeError);
    });
  });
}

describe('lmdb record store on disk', () => {
  function rawRecords(dir: string) {
    const env = open({ path: dir, compression: false });
    return { env, records: env.openDB<Buffer, Buffer>('records', { encoding: 'binary', keyEncoding: 'binary' }) };
  }

  test('records and meta survive close and reopen; deleted, replaced and swept records stay so', async (t) => {
    const dir = await tempDir(t);
    const first = await openLmdbRecordStore(dir, network);
    const kept = [provider(alice, 'payments'), provider(bob, 'payments'), mutable(carol, { seq: 1, value: 'old' })];
    for (const record of kept) first.put(record, T0);
    const newer = mutable(carol, { seq: 2, value: 'new' });
    first.put(newer, T0);
    first.put(mutable(alice, { salt: 'gone' }), T0);
    first.delete(mutableKey(alice.publicKey, Buffer.from('gone')), alice.nodeId);
    first.put(mutable(bob, { salt: 'short', ttlMs: 1 }), T0);
    assert.equal(first.sweep(T0 + 1), 1);
    // Many writes not awaited: close() waits for them.
    const many = Array.from({ length: 100 }, (_, i) => immutable(carol, `item-${i}`, 0));
    for (const record of many) first.put(record, T0);
    void first.putMeta('routing-table', Buffer.from('snapshot'));
    const before = { stats: first.stats(), alice: first.usage(alice.nodeId), carol: first.usage(carol.nodeId) };
    await first.close();

    const second = await openLmdbRecordStore(dir, network);
    t.after(() => second.close());
    assert.deepEqual({ stats: second.stats(), alice: second.usage(alice.nodeId), carol: second.usage(carol.nodeId) }, before);
    assert.equal(second.stats().records, 103);
    const payments = kept.slice(0, 2).sort((a, b) => Buffer.compare(a.publisherId, b.publisherId));
    assert.deepEqual(second.get(providerKey('payments'), Date.now()).map((r) => r.bytes), payments.map((r) => r.bytes));
    assert.deepEqual(second.getSlot(newer.key, carol.nodeId)?.bytes, newer.bytes);
    assert.equal(second.getSlot(mutableKey(alice.publicKey, Buffer.from('gone')), alice.nodeId), undefined);
    assert.equal(second.getSlot(mutableKey(bob.publicKey, Buffer.from('short')), bob.nodeId), undefined);
    assert.deepEqual(second.getMeta('routing-table'), Buffer.from('snapshot'));
    // The rebuilt index applies the same rules.
    assert.throws(() => second.put(kept[2]!, Date.now()), fails('ERR_DHT_RECORD_STALE'));
  });

  test('a record tampered with on disk, or moved under another slot, is dropped at open and deleted', async (t) => {
    const dir = await tempDir(t);
    const store = await openLmdbRecordStore(dir, network);
    const [victim, moved, honest] = [mutable(alice, { value: 'pay 10' }), mutable(bob, { value: 'mine' }), provider(carol, 'payments')];
    for (const record of [victim, moved, honest]) store.put(record, T0);
    await store.close();

    const raw = rawRecords(dir);
    const tampered = Buffer.from(victim.bytes);
    tampered[tampered.indexOf('pay 10') + 4] = '9'.charCodeAt(0);
    await raw.records.put(slotOf(victim), tampered);
    const foreignSlot = Buffer.concat([moved.key, carol.nodeId]);
    await raw.records.put(foreignSlot, moved.bytes);
    await raw.records.remove(slotOf(moved));
    await raw.env.close();

    const reopened = await openLmdbRecordStore(dir, network);
    assert.equal(reopened.getSlot(victim.key, alice.nodeId), undefined);
    assert.equal(reopened.getSlot(moved.key, carol.nodeId), undefined);
    assert.equal(reopened.getSlot(moved.key, bob.nodeId), undefined);
    assert.deepEqual(reopened.getSlot(honest.key, carol.nodeId)?.bytes, honest.bytes);
    assert.deepEqual(reopened.stats(), { records: 1, bytes: honest.bytes.length, keys: 1 });
    await reopened.close();

    const after = rawRecords(dir);
    const onDisk = [...after.records.getKeys()].map((k) => Buffer.from(k));
    await after.env.close();
    assert.deepEqual(onDisk, [slotOf(honest)]);
  });

  test('an expired record is dropped at open, also one still inside the clock-skew allowance', async (t) => {
    const dir = await tempDir(t);
    const store = await openLmdbRecordStore(dir, network);
    const past = Date.now() - 2 * hour;
    const longGone = mutable(alice, { now: past, ttlMs: hour });
    const justGone = mutable(bob, { now: past, ttlMs: 2 * hour - minute });
    const live = mutable(carol, { now: past, ttlMs: 3 * hour });
    for (const record of [longGone, justGone, live]) store.put(record, past);
    await store.close();

    const reopened = await openLmdbRecordStore(dir, network);
    t.after(() => reopened.close());
    assert.deepEqual([...reopened.records()].map((r) => r.bytes), [live.bytes]);
    assert.deepEqual(reopened.usage(alice.nodeId), { records: 0, bytes: 0 });
    assert.deepEqual(reopened.usage(bob.nodeId), { records: 0, bytes: 0 });
  });

  test('reopening with a lower quota keeps what fits and drops the rest', async (t) => {
    const dir = await tempDir(t);
    const store = await openLmdbRecordStore(dir, network);
    for (let i = 0; i < 5; i++) store.put(mutable(alice, { salt: `q${i}` }), T0);
    await store.close();
    const reopened = await openLmdbRecordStore(dir, network, { maxRecordsPerPublisher: 2 });
    t.after(() => reopened.close());
    assert.deepEqual(reopened.usage(alice.nodeId).records, 2);
  });

  test('a directory that cannot hold an environment fails with ERR_DHT_STORAGE', async (t) => {
    const dir = await tempDir(t);
    const store = await openLmdbRecordStore(join(dir, 'a'), network);
    await store.close();
    await assert.rejects(openLmdbRecordStore(join(dir, 'a', 'data.mdb', 'x'), network), fails('ERR_DHT_STORAGE'));
  });
});
