/**
 * `npm run bench -- dht [--quick] [--skip-10k]`: lookup latency and hops on a 100-node network of
 * real DHT nodes over TCP on 127.0.0.1, with plain Kademlia lookups (d = 1) measured in the same
 * run as the baseline for S/Kademlia's disjoint lookups (d = 4); then the simulator at 1,000 and
 * 10,000 nodes (in-memory links, the same node code) with 20% adversaries and d = 1, 4, 8.
 * Writes bench/results/dht.json.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createDhtNode, type DhtNode } from '../src/dht/index.js';
import { testNetwork } from '../src/testing/index.js';
import { runSimulation, type LookupRound } from '../src/testing/dht-simulator.js';
import { Cleanup, Progress, RESULTS_DIR, UsageError, machineInfo, writeJson, type BenchContext } from './lib/bench.js';
import { percentile } from './lib/stats.js';

export const description = 'DHT lookups: 100 TCP nodes (d = 1 vs d = 4) and the simulator at 1,000 / 10,000 nodes with 20% adversaries';

interface LookupRoundAt extends LookupRound {
  readonly nodes: number;
  readonly malicious: number;
  /** Time to create the identities and join every node. */
  readonly buildMs: number;
}

interface LookupFigures {
  readonly disjoint: number;
  readonly lookups: number;
  readonly successRate: number;
  readonly latencyMs: { p50: number; p99: number };
  readonly hops: { p50: number; p95: number };
  readonly messagesPerLookup: number;
}

async function measureLookups(nodes: readonly DhtNode[], disjoint: number, count: number): Promise<LookupFigures> {
  const latencies: number[] = [];
  const hops: number[] = [];
  let found = 0;
  let messages = 0;
  for (let i = 0; i < count; i++) {
    const from = nodes[(i * 7) % nodes.length]!;
    const to = nodes[(i * 13 + 1) % nodes.length]!;
    if (from === to) continue;
    const started = performance.now();
    const result = await from.findNode(to.nodeId, { disjoint });
    latencies.push(performance.now() - started);
    messages += result.queries;
    if (result.target !== null) {
      found++;
      hops.push(result.hops ?? 0);
    }
  }
  latencies.sort((a, b) => a - b);
  hops.sort((a, b) => a - b);
  const round = (v: number): number => Math.round(v * 1000) / 1000;
  return {
    disjoint,
    lookups: latencies.length,
    successRate: found / latencies.length,
    latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)) },
    hops: { p50: percentile(hops, 50), p95: percentile(hops, 95) },
    messagesPerLookup: round(messages / latencies.length),
  };
}

export async function run(context: BenchContext): Promise<void> {
  const unknown = context.argv.filter((a) => a !== '--quick' && a !== '--skip-10k');
  if (unknown.length > 0) throw new UsageError(`unknown option ${unknown[0]}; options: --quick, --skip-10k`);
  const quick = context.argv.includes('--quick');
  const sizes = quick ? [300] : context.argv.includes('--skip-10k') ? [1000] : [1000, 10_000];
  const loopbackNodes = quick ? 40 : 100;
  const lookups = quick ? 60 : 300;
  const progress = new Progress('dht', 2 + sizes.length);
  const cleanup = new Cleanup();
  const network = testNetwork();
  const nodes: DhtNode[] = [];
  cleanup.add('close DHT nodes', () => Promise.all(nodes.map((n) => n.leave())).then(() => undefined));
  try {
    progress.step(`start and join ${loopbackNodes} TCP nodes`);
    const joinStarted = performance.now();
    for (let i = 0; i < loopbackNodes; i++) nodes.push(await createDhtNode({ network, listen: 'tcp://127.0.0.1:0', maintenance: false }));
    for (const node of nodes.slice(1)) await node.join([nodes[0]!.peer.addresses[0]!]);
    const joinMs = performance.now() - joinStarted;
    progress.tick();
    progress.step(`${lookups} lookups with d = 1 and d = 4`);
    const plain = await measureLookups(nodes, 1, lookups);
    const disjoint = await measureLookups(nodes, 4, lookups);
    progress.tick();
    await cleanup.run();

    const simulations: LookupRoundAt[] = [];
    for (const size of sizes) {
      progress.step(`simulator: ${size} nodes, 20% adversaries, d = 8, 4 and 1 on the same network`);
      const sim = await runSimulation({ nodes: size, malicious: 0.2, disjoint: 8, compare: [4, 1], k: 20, alpha: 3, lookups: quick ? 100 : 500, seed: 1 });
      for (const round of [sim, ...sim.comparison]) simulations.push({ ...round, nodes: sim.nodes, malicious: sim.malicious, buildMs: sim.phasesMs.identities + sim.phasesMs.join });
      progress.tick();
    }
    progress.stop();

    const result = {
      bench: 'dht',
      timestamp: new Date().toISOString(),
      quick,
      machine: machineInfo(),
      loopback: { nodes: loopbackNodes, joinMs: Math.round(joinMs), plain, disjoint },
      ratios: {
        latencyP50_d4_vs_d1: Math.round((disjoint.latencyMs.p50 / plain.latencyMs.p50) * 1000) / 1000,
        messages_d4_vs_d1: Math.round((disjoint.messagesPerLookup / plain.messagesPerLookup) * 1000) / 1000,
      },
      simulations,
    };
    const path = writeJson(join(RESULTS_DIR, 'dht.json'), result);
    const row = (f: LookupFigures): string =>
      `  d = ${f.disjoint}: success ${(f.successRate * 100).toFixed(1)}%, latency p50 ${f.latencyMs.p50} ms p99 ${f.latencyMs.p99} ms, hops p50 ${f.hops.p50} p95 ${f.hops.p95}, ${f.messagesPerLookup} messages`;
    process.stdout.write(`${loopbackNodes} TCP nodes on 127.0.0.1 (joined in ${(joinMs / 1000).toFixed(1)} s):\n${row(plain)}\n${row(disjoint)}\n`);
    process.stdout.write(`  ratios d=4 / d=1: latency p50 ${result.ratios.latencyP50_d4_vs_d1}, messages ${result.ratios.messages_d4_vs_d1}\n`);
    for (const s of result.simulations) {
      process.stdout.write(
        `simulator ${s.nodes} nodes, ${(s.malicious * 100).toFixed(0)}% adversarial, d = ${s.disjoint}: success ${(s.successRate * 100).toFixed(2)}% (analytic ${(s.analyticSuccess * 100).toFixed(2)}%), hops p50 ${s.hops.p50} p95 ${s.hops.p95}, ${s.messagesPerLookup.toFixed(1)} messages/lookup, lookups ${(s.wallMs / 1000).toFixed(1)} s (network built in ${(s.buildMs / 1000).toFixed(1)} s)\n`,
      );
    }
    process.stdout.write(`wrote ${path}\n`);
  } finally {
    progress.stop();
    await cleanup.run();
  }
}
