/**
 * Attacks on who a mesh peer believes it talks to (SECURITY.md): an endorsed instance of one
 * service that lists itself as a provider of another, and revocations published by a key with no
 * authority over the key they name. Real DHT servers and meshes on loopback (trust-domain mode).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { Identity } from '../../src/identity/index.js';
import { RevocationReason, createRevocation } from '../../src/mesh/index.js';
import { LISTEN, meshes, microbank, network, startDht } from '../integration/helpers/mesh.js';

test('an instance endorsed for another service that lists itself under users is refused by the caller; no request reaches it', async (t) => {
  const { servers, bootstrap } = await startDht(t);
  const { trust, endorsed } = await microbank(servers[0]!, ['get']);
  const start = meshes(t);

  let reached = 0;
  const impostor = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('gateway') });
  await impostor.provide('users', { get: () => ++reached });
  const caller = await start({ bootstrap, client: true, trust, ...endorsed('gateway') });

  await assert.rejects(caller.call('users', 'get', { id: 1 }, { deadlineMs: 3_000 }), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MESH_UNKNOWN_SERVICE'), `got ${(err as Error).message}`);
    assert.match((err as Error).message, /endorsed for service "gateway", not "users"/);
    return true;
  });
  assert.equal(reached, 0, 'the impostor never received the request');

  // A genuine instance is reached; the impostor is still listed and still refused.
  const users = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('users') });
  await users.provide('users', { get: () => 'genuine' });
  for (let i = 0; i < 4; i++) assert.equal(await caller.call('users', 'get', { id: i }, { deadlineMs: 5_000, retries: 2 }), 'genuine');
  assert.equal(reached, 0);
});

test('a revocation signed by a key with no authority over the caller is ignored; one signed by the owner is believed', async (t) => {
  const { servers, bootstrap } = await startDht(t);
  const { owner, trust, endorsed } = await microbank(servers[0]!, ['get']);
  const start = meshes(t);
  const users = await start({ listen: LISTEN, bootstrap, trust, ...endorsed('users') });
  await users.provide('users', { get: () => 'ok' });
  const gateway = await start({ bootstrap, client: true, trust, ...endorsed('gateway') });
  assert.equal(await gateway.call('users', 'get', null, { deadlineMs: 5_000 }), 'ok'); // users now watches the gateway's key

  // Anyone may publish a revocation record naming the gateway's key: the DHT stores it (the record
  // is well formed and signed), but the callee believes only the key itself, its host or the owner.
  const stranger = Identity.generate(network);
  await servers[1]!.store(createRevocation(stranger, gateway.node.identity.publicKey, RevocationReason.Unspecified));
  assert.equal(await users.refreshRevocations(), 0);
  assert.equal(await gateway.call('users', 'get', null, { deadlineMs: 5_000 }), 'ok');

  await servers[2]!.store(createRevocation(owner, gateway.node.identity.publicKey, RevocationReason.Unspecified));
  assert.equal(await users.refreshRevocations(), 1);
  await assert.rejects(gateway.call('users', 'get', null, { deadlineMs: 5_000 }), (err: unknown) => isThemisError(err, 'ERR_MESH_REVOKED'));
});
