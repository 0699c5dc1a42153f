/**
 * The MicroBank payment saga under crashes at every step: the same function modules as the app
 * (examples/microbank/services), run in plain Node by the bench's function host with the runtime's
 * `kvContext` over a real LMDB store. Between services, a call can fail before the callee runs
 * or after it committed (an instance dying before it answered); clients retry with the same
 * Idempotency-Key, some send the same request several times at once, and a payee account can
 * appear while payments to it are in flight. fast-check draws the payments and the crash rate;
 * after every run the shared audit must find money conserved, every balance matching its ledger,
 * every acknowledged payment applied exactly once, and every copy of a request answered alike.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { FunctionError, openKv, type AppKv } from '../../src/runtime/index.js';
import type { FunctionPrincipal, ServiceCall } from '../../bench/lib/microbank-ctx.js';
import { audit, plainMicrobank, type Invoke } from './helpers/microbank.js';

let kv: AppKv;
let dataDir: string;
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'themis-microbank-saga-'));
  kv = await openKv(dataDir);
});
after(async () => {
  await kv?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** A deterministic stream of numbers in [0, 1) (mulberry32) for the crash decisions of one run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One bank with its own KV namespaces (`<service>#<run>`). Service-to-service calls cross a
 * JSON boundary, as over the mesh, and fail at `crashRate`: half before the callee runs, half
 * after it returned (its writes committed, its answer lost).
 */
async function bank(run: number, crashRate: number, seed: number) {
  const next = random(seed);
  let crashing = true;
  let invoke: Invoke | undefined;
  const call: ServiceCall = async (service, method, payload, principal) => {
    const roll = crashing ? next() : 1;
    if (roll < crashRate / 2) throw new FunctionError(503, 'UNAVAILABLE', `${service} died before ${method} ran`);
    const result = JSON.parse(JSON.stringify(await invoke!(service, method, JSON.parse(JSON.stringify(payload)), principal)));
    if (roll < crashRate) throw new FunctionError(503, 'UNAVAILABLE', `${service} died after ${method} ran`);
    return result;
  };
  invoke = await plainMicrobank(kv, { namespace: (service) => `${service}#${run}`, call });
  return { invoke, stopCrashing: () => void (crashing = false) };
}

const principal = (subject: string): FunctionPrincipal => ({ subject, claims: {} });

interface Answer {
  status: number;
  body: unknown;
}

const payment = fc.record({
  payer: fc.integer({ min: 0, max: 2 }),
  /** 0: the payer's account, 1: someone else's account, 2: an account that never exists */
  source: fc.constantFrom(0, 0, 0, 0, 1, 2),
  /** the payee: another user's first account, or u1's second account, opened during the run */
  payee: fc.constantFrom('u0.1', 'u1.1', 'u2.1', 'u1.2'),
  amount: fc.integer({ min: 1, max: 6000 }),
  copies: fc.integer({ min: 1, max: 3 }),
});

let runs = 0;
test('payments survive crashes before and after every step, duplicates and a payee appearing mid-run', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(payment, { minLength: 1, maxLength: 14 }), fc.double({ min: 0, max: 0.3, noNaN: true }), fc.integer(), fc.nat(14), async (payments, crashRate, seed, openAt) => {
      const run = runs++;
      const { invoke, stopCrashing } = await bank(run, crashRate, seed);
      for (const user of ['u0', 'u1', 'u2']) {
        await invoke('users', 'create', { body: { id: user, name: user } });
        await invoke('accounts', 'open', { params: { id: user }, body: {} }, principal(user));
      }
      /** Sends until the answer is definitive (not 5xx, not CONFLICT); crashes stop after 20 attempts. */
      const send = async (input: object, user: string): Promise<Answer> => {
        for (let attempt = 1; ; attempt++) {
          if (attempt === 20) stopCrashing();
          try {
            return { status: 200, body: await invoke('payment', 'pay', input, principal(user)) };
          } catch (err) {
            const { status, code } = err as FunctionError;
            if (status !== undefined && status < 500 && code !== 'CONFLICT') return { status, body: { code, message: (err as Error).message } };
            assert.ok(attempt < 40, `no definitive answer after 40 attempts: ${(err as Error).message}`);
          }
        }
      };
      const sends = payments.map(async (p, i) => {
        if (i === openAt) await invoke('accounts', 'open', { params: { id: 'u1' }, body: {} }, principal('u1'));
        const user = `u${p.payer}`;
        const from = [`${user}.1`, `u${(p.payer + 1) % 3}.1`, `${user}.9`][p.source]!;
        const to = p.payee === from ? `u${(p.payer + 2) % 3}.1` : p.payee;
        const input = { params: { id: user }, query: {}, body: { from, to, amount: p.amount }, idempotencyKey: `k${i}` };
        return Promise.all(Array.from({ length: p.copies }, () => send(input, user)));
      });
      const answers = await Promise.all(sends);
      for (const copies of answers) for (const answer of copies) assert.deepEqual(answer, copies[0], 'every copy of a request gets the same answer');
      for (const [copy] of answers) assert.ok([200, 403, 404, 422].includes(copy!.status), JSON.stringify(copy));
      const acked = answers.map(([copy]) => copy!).filter((answer) => answer.status === 200).map((answer) => answer.body);
      const report = await audit(invoke, acked);
      assert.deepEqual([report.conserved, report.ledgerConsistent, report.exactlyOnce, report.inFlight], [true, true, true, 0], report.problems.join('\n'));
      assert.equal(report.payments.pending, 0);
      assert.equal(report.payments.completed, acked.length);
    }),
    { numRuns: 25 },
  );
});
