/**
 * Churn (issue 7): 30 DHT servers and 6 mesh instances on loopback, a third of them replaced within
 * 6 s (crashes and graceful leaves, restarts from LMDB and fresh nodes) while clients look up
 * records and nodes and call the service. Asserts what must hold whatever the timing: no record
 * stored before the churn is lost, calls succeed once it stops, and during it lookups and calls
 * fail no more often than the share of the population that was killed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChurn } from '../../src/testing/churn.js';

test('churn: records survive, calls recover, error rates stay below the share killed', async () => {
  const report = await runChurn({ nodes: 30, instances: 6, records: 24, seconds: 6, rate: 2, warmupSeconds: 1, afterSeconds: 2, instanceShare: 0.25 });
  const { during } = report.phases;
  const why = JSON.stringify({ phases: report.phases, events: report.events, final: report.final });

  // The churn happened: servers and instances died, both ways, and came back both ways.
  assert.equal(report.events.serverKills + report.events.instanceKills, 12);
  assert.equal(report.events.instanceKills, 3, why);
  assert.equal(report.events.crashes, 6, why);
  assert.ok(report.events.restarts > 0 && report.events.freshStarts > 0, why);
  assert.equal(report.events.failedStarts, 0, why);
  assert.equal(report.events.skipped, 0, why);
  assert.ok(during.recordLookups.attempts > 0 && during.nodeLookups.attempts > 0 && during.calls.attempts > 0, why);

  // Every record stored (on the k closest) before the churn is found after it.
  assert.deepEqual(report.final.records.lost, [], why);
  assert.equal(report.final.records.found, 24);
  // Calls succeed after the churn stops.
  assert.equal(report.final.calls.ok, report.final.calls.attempts, why);

  // During the churn, failures stay below the share of the population killed (a generous bound:
  // records have k replicas, lookups run over disjoint paths and calls retry on other instances).
  const bound = report.killedShare;
  assert.ok(bound >= 0.3, why);
  assert.ok(1 - during.recordLookups.successRate <= bound, why);
  assert.ok(1 - during.nodeLookups.successRate <= bound, why);
  assert.ok(1 - during.calls.successRate <= bound, why);
});
