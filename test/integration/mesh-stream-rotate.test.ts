import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isThemisError } from '../../src/core/errors.js';
import { CredentialType } from '../../src/handshake/index.js';
import { verifyRotationChain } from '../../src/mesh/index.js';
import type { Connection } from '../../src/transport/index.js';
import { LISTEN, meshes, microbank, startDht } from './helpers/mesh.js';

/** Reads a whole stream (the callee ends it). */
async function readAll(stream: Duplex): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

test('open mode: stream() opens a byte stream with its header; the handler reads the principal and trace', async (t) => {
  const { bootstrap } = await startDht(t);
  const start = meshes(t);
  const server = await start({ listen: LISTEN, bootstrap });
  await server.provideStream('echo', 'upper', (stream, ctx) => {
    stream.write(`${ctx.caller.id}|${ctx.principal?.subject ?? '-'}|${ctx.traceparent}|`);
    stream.on('data', (chunk: Buffer) => stream.write(chunk.toString('utf8').toUpperCase()));
    stream.on('end', () => stream.end());
  });
  const caller = await start({ bootstrap, client: true });
  const traceparent = '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01';
  const stream = await caller.stream('echo', 'upper', { deadlineMs: 5_000, token: caller.issueToken({ subject: 'ada', audience: 'echo' }), traceparent });
  stream.write('hello ');
  stream.end('world');
  const text = await readAll(stream);
  const [callerId, subject, trace, body] = text.split('|');
  assert.equal(callerId, caller.id);
  assert.equal(subject, 'ada');
  assert.match(trace!, /^00-0123456789abcdef0123456789abcdef-[0-9a-f]{16}-01$/, 'the stream continues the caller trace');
  assert.equal(body, 'HELLO WORLD');

  // A second stream reuses the connection.
  const connections = caller.node.peer.connections.size;
  const again = await caller.stream('echo', 'upper', { deadlineMs: 5_000 });
  again.end('x');
  assert.match(await readAll(again), /\|-\|.*\|X$/);
  assert.equal(caller.node.peer.connections.size, connections);

  await assert.rejects(caller.stream('nothing', 'here', { deadlineMs: 2_000 }), (err: unknown) => isThemisError(err, 'ERR_MESH_NO_INSTANCES'));

  // A stream whose header is malformed is reset with the typed refusal before the handler runs.
  const conn = [...caller.node.peer.connections].find((c: Connection) => c.remote.id === server.id)!;
  const raw = conn.openStream('mesh/echo/upper');
  raw.write(Buffer.from([0, 2, 9, 0]));
  await assert.rejects(readAll(raw), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_CHANNEL_HANDLER'), `got ${(err as Error).message}`);
    assert.match((err as Error).message, /^ERR_MESH_CALL_INVALID: stream header version 9/);
    return true;
  });
});

test('trust-domain mode: a stream is authorized when it opens; a refused one rejects typed', async (t) => {
  const { servers, bootstrap } = await startDht(t);
  const { trust, endorsed } = await microbank(servers[0]!, ['feed']);
  const start = meshes(t);
  const users = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('users') });
  let opened = 0;
  const handler = (stream: Duplex, ctx: { caller: { service?: string } }): void => {
    opened++;
    stream.end(`hi ${ctx.caller.service ?? '?'}`);
    stream.resume();
  };
  await users.provideStream('users', 'feed', handler);
  await users.provideStream('users', 'admin', handler);

  const gateway = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('gateway') });
  const feed = await gateway.stream('users', 'feed', { deadlineMs: 5_000 });
  feed.end();
  assert.equal(await readAll(feed), 'hi gateway');

  await assert.rejects(gateway.stream('users', 'admin', { deadlineMs: 5_000 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MESH_FORBIDDEN'), `got ${(err as Error).message}`);
    return true;
  });
  const rogue = await start({ listen: LISTEN, bootstrap, trust });
  await assert.rejects(rogue.stream('users', 'feed', { deadlineMs: 5_000 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MESH_UNENDORSED'), `got ${(err as Error).message}`);
    return true;
  });
  assert.equal(opened, 1, 'refused streams never reach the handler');
});

test('rotate(): the service stays reachable before, during and after; the new proof carries a valid chain', async (t) => {
  const { bootstrap } = await startDht(t);
  const start = meshes(t);
  const service = await start({ listen: LISTEN, bootstrap, discoveryCacheMs: 200 });
  const firstKey = Buffer.from(service.node.identity.publicKey);
  const firstId = service.id;
  await service.provide('clock', {
    now: () => ({ by: service.id, at: Date.now() }),
    slow: async () => {
      const by = service.id;
      await sleep(400);
      return { by };
    },
  });
  await service.provideStream('clock', 'tick', (stream) => {
    stream.end('tock');
    stream.resume();
  });
  const caller = await start({ bootstrap, client: true, discoveryCacheMs: 200 });

  let stop = false;
  let calls = 0;
  let retried = 0;
  const servedBy = new Set<string>();
  const loop = (async () => {
    while (!stop) {
      let lastError: unknown;
      let ok = false;
      for (let attempt = 0; attempt < 20 && !ok; attempt++) {
        try {
          const answer = (await caller.call('clock', 'now', null, { deadlineMs: 3_000 })) as { by: string };
          servedBy.add(answer.by);
          ok = true;
        } catch (err) {
          lastError = err;
          retried++;
          await sleep(50);
        }
      }
      if (!ok) throw lastError;
      calls++;
      await sleep(5);
    }
  })();

  await sleep(200);
  const before = calls;
  assert.ok(before > 0, 'calls succeed before the rotation');
  // An in-flight call on the old key finishes there (GOAWAY lets it complete), without any retry.
  const inFlight = caller.call('clock', 'slow', null, { deadlineMs: 5_000, retries: 0 });
  await sleep(50);
  await service.rotate();
  assert.notEqual(service.id, firstId);
  assert.deepEqual(await inFlight, { by: firstId });
  const afterRotate = calls;
  // Calls keep succeeding, and land on the new key.
  const deadline = Date.now() + 8_000;
  while (!servedBy.has(service.id) && Date.now() < deadline) await sleep(50);
  await sleep(300);
  stop = true;
  await loop;
  assert.ok(calls > afterRotate, 'calls succeed after the rotation');
  assert.ok(servedBy.has(firstId) && servedBy.has(service.id), `served by the old then the new key (${[...servedBy].join(', ')})`);
  t.diagnostic(`calls ${calls}, caller-level retries ${retried}`);

  // The new instance proves its key with a rotation chain from the first key.
  const conn = [...caller.node.peer.connections].find((c: Connection) => !c.closed && c.remote.id === service.id);
  assert.ok(conn !== undefined, 'the caller is connected to the new instance');
  const credential = conn.remote.credentials.find((c) => c.type === CredentialType.RotationChain);
  assert.ok(credential !== undefined, 'the identity proof carries credential type 3');
  const keys = verifyRotationChain(credential.data, conn.remote.identityPub);
  assert.equal(keys.length, 2);
  assert.ok(keys[0]!.equals(firstKey));
  assert.ok(keys[1]!.equals(service.node.identity.publicKey));

  // Streams are served under the new key too, and a second rotation extends the chain.
  const tick = await caller.stream('clock', 'tick', { deadlineMs: 5_000 });
  tick.end();
  assert.equal(await readAll(tick), 'tock');
  await service.rotate();
  assert.equal(service.rotationChain.length, 2);
  let answer: { by: string } | undefined;
  for (let attempt = 0; attempt < 40 && answer?.by !== service.id; attempt++) {
    answer = (await caller.call('clock', 'now', null, { deadlineMs: 3_000 }).catch(() => undefined)) as { by: string } | undefined;
    if (answer?.by !== service.id) await sleep(100);
  }
  assert.equal(answer?.by, service.id);
  const conn2 = [...caller.node.peer.connections].find((c: Connection) => !c.closed && c.remote.id === service.id)!;
  const chain2 = conn2.remote.credentials.find((c) => c.type === CredentialType.RotationChain)!;
  const keys2 = verifyRotationChain(chain2.data, conn2.remote.identityPub);
  assert.equal(keys2.length, 3);
  assert.ok(keys2[0]!.equals(firstKey));
});
