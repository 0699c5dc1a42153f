import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isThemisError, type ErrorCode } from '../../src/core/errors.js';
import type { Mesh } from '../../src/mesh/index.js';
import { LISTEN, meshes, microbank, startDht } from './helpers/mesh.js';

const is = (code: ErrorCode) => (err: unknown) => isThemisError(err, code);

test('open mode: discover and call two instances; calls fail over when one is killed', async (t) => {
  const { bootstrap } = await startDht(t);
  const start = meshes(t);
  const instances: Mesh[] = [];
  for (let i = 0; i < 2; i++) {
    const mesh = await start({ listen: LISTEN, bootstrap });
    await mesh.provide('users', {
      get: (payload, ctx) => ({ id: (payload as { id: number }).id, servedBy: mesh.id, caller: ctx.caller.id, traceparent: ctx.traceparent, principal: ctx.principal ?? null }),
      echo: (payload) => payload,
      slow: async (_payload, ctx) => {
        await sleep(2_000, undefined, { signal: ctx.signal }).catch(() => undefined);
        return 'late';
      },
    });
    instances.push(mesh);
  }
  const caller = await start({ bootstrap, client: true });

  const found = await caller.discover('users');
  assert.deepEqual(found.map((instance) => instance.id).sort(), instances.map((mesh) => mesh.id).sort());
  for (const instance of found) {
    assert.ok(instance.addresses.length > 0);
    assert.equal(instance.noiseStatic.length, 32);
  }

  const servedBy = new Set<string>();
  let last = '';
  for (let i = 0; i < 12; i++) {
    const result = (await caller.call('users', 'get', { id: i }, { deadlineMs: 5_000, token: caller.issueToken({ subject: 'user-1', audience: 'users' }) })) as Record<string, unknown>;
    assert.equal(result.id, i);
    assert.equal(result.caller, caller.id);
    assert.equal((result.principal as { subject: string }).subject, 'user-1');
    assert.match(result.traceparent as string, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    servedBy.add(result.servedBy as string);
    last = result.servedBy as string;
  }
  assert.ok([...servedBy].every((id) => instances.some((mesh) => mesh.id === id)));

  // The caller's trace continues: same trace id, new span.
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const traced = (await caller.call('users', 'get', { id: 1 }, { traceparent: parent })) as { traceparent: string };
  assert.equal(traced.traceparent.split('-')[1], '0af7651916cd43dd8448eb211c80319c');
  assert.notEqual(traced.traceparent, parent);

  // Bytes travel raw, JSON values as JSON.
  const bytes = await caller.call('users', 'echo', Buffer.from([0, 1, 2, 255]));
  assert.ok(Buffer.isBuffer(bytes));
  assert.deepEqual([...(bytes as Buffer)], [0, 1, 2, 255]);
  assert.deepEqual(await caller.call('users', 'echo', { nested: [1, 'two', null] }), { nested: [1, 'two', null] });

  await assert.rejects(caller.call('users', 'slow', null, { deadlineMs: 150 }), is('ERR_MESH_DEADLINE'));
  await assert.rejects(caller.call('nobody', 'get', null, { deadlineMs: 2_000 }), is('ERR_MESH_NO_INSTANCES'));

  // Kill the instance the balancer prefers (it served the last call): its provider record is still
  // listed (and cached), so calls do reach it, fail, and are retried on the other — every call succeeds.
  const killed = instances.find((mesh) => mesh.id === last)!;
  const survivor = instances.find((mesh) => mesh !== killed)!;
  await killed.close();
  for (let i = 0; i < 10; i++) {
    const result = (await caller.call('users', 'get', { id: i }, { deadlineMs: 5_000 })) as { servedBy: string };
    assert.equal(result.servedBy, survivor.id);
  }
});

test('trust-domain mode: the callee enforces the owner policy on every call', async (t) => {
  const { servers, bootstrap } = await startDht(t);
  const { trust, endorsed } = await microbank(servers[0]!, ['get']);
  const start = meshes(t);

  const users = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('users') });
  assert.equal(users.authority?.policy?.seq, 1, 'the instance fetched the policy from the DHT at start');
  await users.provide('users', {
    get: (payload, ctx) => ({ id: (payload as { id: number }).id, caller: ctx.caller }),
    delete: () => 'deleted',
  });

  const gateway = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('gateway') });
  const answer = (await gateway.call('users', 'get', { id: 7 }, { deadlineMs: 5_000 })) as { id: number; caller: { id: string; service?: string } };
  assert.deepEqual(answer, { id: 7, caller: { id: gateway.id, service: 'gateway' } });

  // No rule allows gateway → users.delete: refused with the typed error, and never retried into success.
  await assert.rejects(gateway.call('users', 'delete', { id: 7 }, { deadlineMs: 5_000 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MESH_FORBIDDEN'), `got ${(err as Error).message}`);
    assert.match((err as Error).message, /ERR_MESH_FORBIDDEN/);
    assert.match((err as Error).message, /may not call users\.delete/);
    return true;
  });

  // An instance its host did not endorse is refused, whatever it calls.
  const rogue = await start({ listen: LISTEN, bootstrap, trust });
  await assert.rejects(rogue.call('users', 'get', { id: 7 }, { deadlineMs: 5_000 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MESH_UNENDORSED'), `got ${(err as Error).message}`);
    assert.match((err as Error).message, /ERR_MESH_UNENDORSED/);
    return true;
  });

  // The gateway still gets through afterwards (a refusal is not an instance failure).
  assert.equal(((await gateway.call('users', 'get', { id: 8 })) as { id: number }).id, 8);
});
