/**
 * MicroBank (examples/microbank) under startApp with TPM attestation against a real software TPM
 * (swtpm, one per host here; nothing simulated): the derived policy requires TPM quotes of this
 * host's AK, every instance and the gateway prove their code with them, and a peer that holds the
 * host key but not its TPM is refused (docs/attestation.md §6, "a stolen host key used on
 * another machine").
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { createHostAttestor, createVerifier, type TpmAttestor } from '../../src/attest/index.js';
import { fromBase32 } from '../../src/core/bytes.js';
import { Identity, readKeyFile } from '../../src/identity/index.js';
import { createMesh, endorse, endorsementCredential, type Mesh } from '../../src/mesh/index.js';
import { startApp, type RunningApp } from '../../src/runtime/index.js';
import { startSwtpm, swtpmAvailable } from '../../src/testing/index.js';
import { refusedWith } from './helpers/attest.js';
import { MICROBANK } from './helpers/microbank.js';

const skip = swtpmAvailable() ? false : 'swtpm and tpm2-tools are not installed (apt-get install -y swtpm swtpm-tools tpm2-tools)';

/** Starts a swtpm and MicroBank (from `dir`) under TPM attestation on it; all of it is stopped and removed after. */
async function tpmApp(dir: string): Promise<{ app: RunningApp; dataDir: string; stop: () => Promise<void> }> {
  const tpm = await startSwtpm();
  const dataDir = mkdtempSync(join(tmpdir(), 'themis-microbank-tpm-'));
  const stop = async (): Promise<void> => {
    await app?.close();
    await tpm.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  let app: RunningApp | undefined;
  try {
    app = await startApp({ dir, dataDir, attestation: { mode: 'tpm', tpm: tpm.spec } });
  } catch (err) {
    await stop();
    throw err;
  }
  return { app, dataDir, stop };
}

/**
 * A mesh peer posing as an instance of `payment` (the one service allowed to call accounts.debit),
 * endorsed by the app's real host key for the real payment code, with its own fresh verifier;
 * with `attestor`, it carries that attestor's TPM credential and answers with its evidence.
 */
async function paymentPeer(t: TestContext, app: RunningApp, dataDir: string, attestor?: TpmAttestor): Promise<Mesh> {
  const hostIdentity = await readKeyFile(join(dataDir, 'host.key'), app.network);
  const digest = createHash('sha256').update(readFileSync(join(app.manifest.dir, 'services/payment.js'))).digest();
  const identity = Identity.generate(app.network);
  const endorsement = endorse(hostIdentity, { instancePub: identity.publicKey, trustDomain: app.manifest.trustDomain, service: 'payment', codeDigest: digest });
  const extra = attestor === undefined ? [] : await attestor.credentials({ nodeId: identity.nodeId, service: 'payment', digest });
  const mesh = await createMesh({
    identity,
    credentials: [endorsementCredential(endorsement), ...extra],
    network: app.network,
    bootstrap: [app.bootstrap],
    client: true,
    trust: { owner: fromBase32(app.owner) },
    maintenance: false,
    attestation: { verifier: createVerifier(), ...(attestor === undefined ? {} : { evidence: (nonce: Buffer) => attestor.evidence(nonce) }) },
  });
  t.after(() => mesh.close());
  return mesh;
}

const DEBIT = { account: 'alice.1', amount: 1, payment: 'rogue:1' };

describe('MicroBank with TPM attestation (startApp, swtpm)', { skip }, () => {
  let app: RunningApp;
  let dataDir: string;
  let stop: (() => Promise<void>) | undefined;

  before(async () => {
    ({ app, dataDir, stop } = await tpmApp(MICROBANK));
  });
  after(() => stop?.());

  async function ok(method: string, path: string, init: { body?: unknown; token?: string; key?: string; status?: number } = {}): Promise<any> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (init.token !== undefined) headers['authorization'] = `Bearer ${init.token}`;
    if (init.key !== undefined) headers['idempotency-key'] = init.key;
    const res = await fetch(app.gateway + path, { method, headers, body: init.body === undefined ? null : JSON.stringify(init.body) });
    const body = await res.json();
    assert.equal(res.status, init.status ?? 200, `${method} ${path}: ${JSON.stringify(body)}`);
    return body;
  }

  test('the derived policy requires TPM attestation by this host\'s AK; register, login, accounts and a payment succeed over verified quotes', async (t) => {
    assert.equal(app.attestation.mode, 'tpm');
    assert.match(app.attestation.akHash ?? '', /^[0-9a-f]{64}$/);
    assert.equal(app.policy.attestation?.require, 'tpm');
    assert.deepEqual(app.policy.attestation?.tpmKeys.map((key) => key.toString('hex')), [app.attestation.akHash]);

    const users = await Promise.all(
      ['alice', 'bob'].map(async (id) => {
        const password = `${id} secret words`;
        await ok('POST', '/users', { body: { id, name: id, password }, status: 201 });
        const { token } = await ok('POST', '/login', { body: { id, password } });
        const { id: account } = await ok('POST', `/users/${id}/accounts`, { token, body: {} });
        return { id, token, account };
      }),
    );
    const [alice, bob] = users as [(typeof users)[0], (typeof users)[0]];
    const paid = await ok('POST', '/users/alice/pay', { token: alice.token, key: 'tpm-1', body: { from: alice.account, to: bob.account, amount: 1234 } });
    assert.equal(paid.status, 'completed');
    const { accounts } = await ok('GET', '/users/bob/accounts', { token: bob.token });
    assert.equal(accounts[0].balance, 10000 + 1234);

    // The peers of the instances and the gateway fetched and verified real quotes (shared verifier:
    // a handful for the whole app, not one per call or instance).
    const quotes = app.attestation.verifier.tpm.quotesVerified;
    assert.ok(quotes >= 1, 'at least one TPM quote was verified');
    assert.ok(quotes <= 12, `quotes are reused across instances and calls (${quotes} verified)`);
    t.diagnostic(`${quotes} fresh TPM quotes verified for the whole session`);
  });

  test('a peer with the host key but another TPM (AK not in the policy), or with no TPM credential, is refused', async (t) => {
    const other = await startSwtpm();
    t.after(() => other.stop());
    const hostIdentity = await readKeyFile(join(dataDir, 'host.key'), app.network);
    const rogueAttestor = (await createHostAttestor({ mode: 'tpm', tpm: other.spec }, hostIdentity)) as TpmAttestor;
    t.after(() => rogueAttestor.close());
    assert.notEqual(rogueAttestor.ak.digest.toString('hex'), app.attestation.akHash, 'another TPM, another AK');
    await assert.rejects((await paymentPeer(t, app, dataDir, rogueAttestor)).call('accounts', 'debit', DEBIT, { deadlineMs: 5_000 }), refusedWith('ERR_ATTEST_UNTRUSTED_KEY'));
    await assert.rejects((await paymentPeer(t, app, dataDir)).call('accounts', 'debit', DEBIT, { deadlineMs: 5_000 }), refusedWith('ERR_ATTEST_MISSING'));
  });
});

describe('MicroBank with TPM attestation: code modified after the policy was signed', { skip }, () => {
  test('its instance is refused, and a fresh verifier refuses every instance of the host that loaded it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'themis-microbank-copy-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(MICROBANK, dir, { recursive: true, filter: (path) => !path.endsWith('.themis') });
    const { app, dataDir, stop } = await tpmApp(dir);
    t.after(stop);

    // Before: accounts passes the caller's check (a fresh quote, a clean log) and refuses this
    // peer only because it has no TPM credential.
    await assert.rejects((await paymentPeer(t, app, dataDir)).call('accounts', 'debit', DEBIT, { deadlineMs: 5_000 }), refusedWith('ERR_ATTEST_MISSING'));

    // users (min 0 instances) changes on disk after the policy was signed; its first request
    // cold-starts an instance of the new code, which the host measures into PCR 16.
    appendFileSync(join(dir, 'services/users.js'), '\n// patched after the policy was signed\n');
    const res = await fetch(`${app.gateway}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'mallory', name: 'M', password: 'mallory secret words' }) });
    assert.equal(res.status, 502, 'the gateway refuses the modified users instance (its digest is not in the policy)');

    // After: the host's quoted log holds code the policy does not allow, so a fresh verifier
    // refuses even the unmodified accounts instance.
    await assert.rejects((await paymentPeer(t, app, dataDir)).call('accounts', 'debit', DEBIT, { deadlineMs: 5_000 }), refusedWith('ERR_ATTEST_MEASUREMENT_REFUSED'));
  });
});

