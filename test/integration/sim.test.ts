import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

test('themis sim: a small adversarial network, disjoint paths beat a single path, JSON on the last line', async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, 'sim', '--nodes', '80', '--malicious', '0.25', '--disjoint', '4', '--compare', '1', '--k', '8', '--lookups', '60', '--seed', '7', '--timeout', '2000', '--json'],
      { timeout: 240_000 },
      (err, out, stderr) => (err === null ? resolve(out) : reject(new Error(`${err.message}\n${stderr}`))),
    );
  });
  const lines = stdout.trim().split('\n');
  const result = JSON.parse(lines[lines.length - 1]!) as {
    nodes: number;
    malicious: number;
    disjoint: number;
    successRate: number;
    hops: { p50: number; p95: number; histogram: Record<string, number> };
    messagesPerLookup: number;
    wallMs: number;
    analyticSuccess: number;
    comparison: { disjoint: number; successRate: number }[];
  };
  assert.equal(result.nodes, 80);
  assert.equal(result.malicious, 0.25);
  assert.equal(result.disjoint, 4);
  assert.ok(result.hops.p95 >= result.hops.p50);
  assert.ok(Object.keys(result.hops.histogram).length > 0);
  assert.ok(result.messagesPerLookup > 0 && result.wallMs > 0);
  assert.ok(result.analyticSuccess > 0 && result.analyticSuccess <= 1);
  const single = result.comparison[0]!;
  assert.equal(single.disjoint, 1);
  assert.ok(result.successRate >= 0.9, `d = 4 found ${result.successRate}`);
  assert.ok(result.successRate >= single.successRate, `d = 4 (${result.successRate}) vs d = 1 (${single.successRate})`);
});
