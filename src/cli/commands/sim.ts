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
  compare?: number[];
  json?: boolean;
}

function parseList(text: string): number[] {
  const values = text.split(',').map((part) => Number(part.trim()));
  if (values.some((v) => !Number.isSafeInteger(v) || v < 1)) throw new UsageError(`--compare expects a comma-separated list of path counts, e.g. 1,4; got "${text}"`);
  return values;
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
    .addOption(new Option('--timeout <ms>', 'RPC timeout; dropped queries cost this much').default(2000).argParser(parsePositiveInt))
    .addOption(new Option('--compare <d,...>', 'also measure these path counts on the same network and lookups').argParser(parseList))
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
        ...(opts.compare === undefined ? {} : { compare: opts.compare }),
        onProgress: (phase, done, total) => bar.update(phase, done, total),
      });
      bar.stop();
      printLine(`${result.nodes} nodes, ${(result.malicious * 100).toFixed(1)}% adversarial, k = ${result.k}, ${result.lookups} lookups; built in ${((result.phasesMs.identities + result.phasesMs.join) / 1000).toFixed(1)} s, whole run ${(result.wallMs / 1000).toFixed(1)} s`);
      for (const round of [result, ...result.comparison]) {
        printLine(
          `  d = ${round.disjoint}: ${(round.successRate * 100).toFixed(2)}% succeeded (analytic estimate ${(round.analyticSuccess * 100).toFixed(2)}%), ` +
            `hops p50 ${round.hops.p50} p95 ${round.hops.p95}, ${round.messagesPerLookup.toFixed(1)} messages per lookup, histogram ${JSON.stringify(round.hops.histogram)}`,
        );
      }
      if (opts.json === true) printJson(result);
    });
}
