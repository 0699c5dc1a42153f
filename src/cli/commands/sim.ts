import type { Command } from 'commander';
import { Option } from 'commander';
import { runSimulation } from '../../testing/dht-simulator.js';
import { jsonOption, parsePositiveInt, UsageError } from '../options.js';
import { printJson, printLine } from '../output.js';
import { progressBar } from '../progress.js';

interface SimOptions {
  nodes: number;
  malicious: number;
  disjoint: number;
  k: number;
  alpha: number;
  lookups: number;
  seed: number;
  timeout: number;
  json?: boolean;
}

function parseFraction(text: string): number {
  const n = Number(text);
  if (!(n >= 0 && n < 1)) throw new UsageError(`--malicious expects a fraction from 0 to below 1, got "${text}"`);
  return n;
}

export function registerSim(program: Command): void {
  program
    .command('sim')
    .description('simulate N DHT nodes in this process (real handshakes over in-memory links) with a fraction of adversaries, and measure lookup success (S/Kademlia)')
    .addOption(new Option('--nodes <n>', 'number of nodes').default(1000).argParser(parsePositiveInt))
    .addOption(new Option('--malicious <fraction>', 'fraction of adversarial nodes').default(0).argParser(parseFraction))
    .addOption(new Option('--disjoint <d>', 'disjoint lookup paths').default(4).argParser(parsePositiveInt))
    .addOption(new Option('--k <k>', 'bucket size / replication').default(20).argParser(parsePositiveInt))
    .addOption(new Option('--alpha <a>', 'parallel queries per path').default(3).argParser(parsePositiveInt))
    .addOption(new Option('--lookups <n>', 'lookups to measure').default(1000).argParser(parsePositiveInt))
    .addOption(new Option('--seed <s>', 'random seed (same seed, same network)').default(1).argParser(parsePositiveInt))
    .addOption(new Option('--timeout <ms>', 'RPC timeout; dropped queries cost this much').default(300).argParser(parsePositiveInt))
    .addOption(jsonOption())
    .action(async (opts: SimOptions) => {
      const bar = progressBar('sim');
      const result = await runSimulation({
        nodes: opts.nodes,
        malicious: opts.malicious,
        disjoint: opts.disjoint,
        k: opts.k,
        alpha: opts.alpha,
        lookups: opts.lookups,
        seed: opts.seed,
        requestTimeoutMs: opts.timeout,
        onProgress: (phase, done, total) => bar.update(phase, done, total),
      });
      bar.stop();
      printLine(
        `${result.nodes} nodes, ${(result.malicious * 100).toFixed(1)}% adversarial, d = ${result.disjoint}, k = ${result.k}: ` +
          `${(result.successRate * 100).toFixed(2)}% of ${result.lookups} lookups succeeded (analytic estimate ${(result.analyticSuccess * 100).toFixed(2)}%), ` +
          `hops p50 ${result.hops.p50} p95 ${result.hops.p95}, ${result.messagesPerLookup.toFixed(1)} messages per lookup, ${(result.wallMs / 1000).toFixed(1)} s`,
      );
      printLine(`hop histogram: ${JSON.stringify(result.hops.histogram)}`);
      if (opts.json === true) printJson(result);
    });
}
