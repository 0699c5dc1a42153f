// The fuzz targets with a short budget in CI: every target runs a fixed number of random and
// mutated-valid cases (fixed seed; FUZZ_SEED=n picks another) through the real code and must
// pass the oracle (typed rejections only, no hang, nothing left open). Long runs: `npm run fuzz`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runTarget } from './harness.js';
import { TARGETS } from './targets/index.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20_261_122);
const CASES = 200;
/** A cap per target so a slow machine keeps the suite fast; the count reached is still checked. */
const CAP_MS = 1000;
const MIN_CASES = 30;

for (const target of TARGETS) {
  test(`fuzz ${target.name}: ${CASES} cases, typed rejections only`, async () => {
    const report = await runTarget(target, { numRuns: CASES, timeMs: CAP_MS, seed: SEED, heapCheck: false });
    assert.equal(report.failure, null, report.failure ?? '');
    assert.ok(report.cases >= MIN_CASES, `only ${report.cases} cases ran within ${CAP_MS} ms`);
  });
}
