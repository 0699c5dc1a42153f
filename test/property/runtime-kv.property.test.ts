import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { FunctionError, kvContext, openKv, type AppKv } from '../../src/runtime/index.js';

// Serializability of ctx.kv.transact on the real LMDB store: any batch of concurrent transfers
// leaves the total unchanged, no balance negative, and every acknowledged transfer applied exactly
// once (the ledger each transfer appends to in the same transaction agrees with the balances).

let dir: string;
let kv: AppKv;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'themis-kv-prop-'));
  kv = await openKv(dir);
});
after(async () => {
  await kv.close();
  rmSync(dir, { recursive: true, force: true });
});

const ACCOUNTS = 4;
const transfer = fc.record({
  from: fc.integer({ min: 0, max: ACCOUNTS - 1 }),
  to: fc.integer({ min: 0, max: ACCOUNTS - 1 }),
  amount: fc.integer({ min: 1, max: 60 }),
  /** Yield to the event loop this many times between the reads and the writes (interleavings). */
  pause: fc.integer({ min: 0, max: 3 }),
});

let run = 0;
test('concurrent transfers conserve the total and apply each acknowledged one exactly once', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(transfer, { minLength: 1, maxLength: 30 }), fc.array(fc.integer({ min: 0, max: 100 }), { minLength: ACCOUNTS, maxLength: ACCOUNTS }), async (transfers, opening) => {
      const bank = kvContext(kv, `bank-${run++}`);
      await bank.transact((tx) => opening.forEach((balance, i) => tx.put(`acct/${i}`, balance)));
      const outcomes = await Promise.all(
        transfers.map(async ({ from, to, amount, pause }, i) => {
          try {
            await bank.transact(async (tx) => {
              const balance = (await tx.get(`acct/${from}`)) as number;
              for (let p = 0; p < pause; p++) await new Promise((resolve) => setImmediate(resolve));
              if (balance < amount) throw new FunctionError(422, 'INSUFFICIENT_FUNDS', 'not enough');
              tx.put(`acct/${from}`, balance - amount);
              tx.put(`acct/${to}`, ((await tx.get(`acct/${to}`)) as number) + amount);
              tx.put(`ledger/${String(i).padStart(3, '0')}`, { from, to, amount });
            });
            return 'applied';
          } catch (err) {
            if (err instanceof FunctionError) return err.code;
            throw err;
          }
        }),
      );
      const balances = (await bank.list('acct/')).map((row) => row.value as number);
      const ledger = await bank.list('ledger/', { limit: 1000 });
      assert.equal(balances.reduce((a, b) => a + b, 0), opening.reduce((a, b) => a + b, 0));
      assert.ok(balances.every((b) => b >= 0));
      assert.equal(ledger.length, outcomes.filter((o) => o === 'applied').length);
      const expected = [...opening];
      for (const { value } of ledger) {
        const { from, to, amount } = value as { from: number; to: number; amount: number };
        expected[from]! -= amount;
        expected[to]! += amount;
      }
      assert.deepEqual(balances, expected);
      for (const outcome of outcomes) assert.ok(['applied', 'INSUFFICIENT_FUNDS', 'CONFLICT'].includes(outcome), outcome);
    }),
    { numRuns: 25 },
  );
});
