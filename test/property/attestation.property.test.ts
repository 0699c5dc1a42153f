import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EventLog, measurementEvent, replayLog, type Measurement } from '../../src/attest/index.js';
import { sha256 } from '../../src/attest/tpm/structures.js';
import { DEFAULT_ATTESTATION, decodePolicy, encodePolicy, type Policy, type PolicyAttestation } from '../../src/mesh/index.js';
import { domainPolicy } from '../unit/mesh/helpers.js';

const digest = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes));
const service = fc.constantFrom('gateway', 'users', 'accounts', 'transactions');
const measurement: fc.Arbitrary<Measurement> = fc.record({ service, digest });

const attestation: fc.Arbitrary<PolicyAttestation> = fc
  .record({
    require: fc.constantFrom('code-digest' as const, 'tpm' as const),
    tpmKeys: fc.uniqueArray(digest, { maxLength: 6, selector: (key) => key.toString('hex') }),
    quoteMaxAgeSeconds: fc.integer({ min: 1, max: 86_400 }),
  })
  .filter((a) => a.require === 'code-digest' || a.tpmKeys.length > 0);

const shuffled = <T>(items: readonly T[]): fc.Arbitrary<T[]> => fc.shuffledSubarray([...items], { minLength: items.length, maxLength: items.length });

test('any attestation section encodes canonically: key order never changes the bytes, decoding returns the same policy', () => {
  const base = domainPolicy();
  fc.assert(
    fc.property(
      attestation.chain((a) => fc.tuple(fc.constant(a), shuffled(a.tpmKeys))),
      ([section, keys]) => {
        const policy: Policy = { ...base, attestation: section };
        const bytes = encodePolicy(policy);
        assert.deepEqual(encodePolicy({ ...policy, attestation: { ...section, tpmKeys: keys } }), bytes);
        const decoded = decodePolicy(bytes);
        assert.deepEqual(encodePolicy(decoded), bytes);
        const isDefault = section.require === DEFAULT_ATTESTATION.require && section.tpmKeys.length === 0 && section.quoteMaxAgeSeconds === DEFAULT_ATTESTATION.quoteMaxAgeSeconds;
        assert.equal(bytes[0], isDefault ? 1 : 2);
        assert.equal(decoded.attestation === undefined, isDefault);
      },
    ),
    { numRuns: 300 },
  );
});

test('the event log replays like a PCR: each distinct measurement once, in first-seen order; any other order or subset replays elsewhere', () => {
  fc.assert(
    fc.property(fc.array(measurement, { minLength: 1, maxLength: 12 }), (measurements) => {
      const log = new EventLog();
      for (const m of measurements) if (!log.has(m)) log.add(m);
      const entries = log.entries();
      // PCR := H(PCR ‖ event), from 32 zero bytes
      let pcr = Buffer.alloc(32);
      for (const m of entries) pcr = sha256(pcr, measurementEvent(m));
      assert.deepEqual(replayLog(entries), pcr);
      if (entries.length > 1) {
        assert.notDeepEqual(replayLog([...entries].reverse()), pcr);
        assert.notDeepEqual(replayLog(entries.slice(1)), pcr);
      }
    }),
    { numRuns: 200 },
  );
});
