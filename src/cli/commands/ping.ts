import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { Option } from 'commander';
import { Identity, readKeyFile } from '../../identity/index.js';
import { createPeer } from '../../transport/index.js';
import { jsonOption, keyOption, networkFrom, networkOptions, parseKey32, parsePositiveInt } from '../options.js';
import { percentile, printJson, printLine, round } from '../output.js';

interface PingOptions {
  expect?: string;
  static?: string;
  count: number;
  size: number;
  key?: string;
  json?: boolean;
  c1?: number;
  c2?: number;
  trustDomain?: string;
}

export function registerPing(program: Command): void {
  const ping = program
    .command('ping')
    .description("handshake with a peer, verify its identity, and time `echo` requests over the encrypted channel")
    .argument('<addr>', 'peer address, e.g. tcp://127.0.0.1:4000')
    .option('--expect <id>', 'the NodeId the peer must have; any other peer fails the ping')
    .option('--static <key>', "the peer's Noise static key (base32, as `themis serve --json` prints it): use the IK handshake")
    .addOption(new Option('--count <n>', 'number of echo requests').default(5).argParser(parsePositiveInt))
    .addOption(new Option('--size <bytes>', 'request body size').default(32).argParser((v) => parsePositiveInt(v)))
    .addOption(keyOption().default(undefined, 'a fresh identity for this run'))
    .addOption(jsonOption());
  for (const option of networkOptions()) ping.addOption(option);
  ping.action(async (addr: string, opts: PingOptions) => {
    const network = networkFrom(opts);
    const identity = opts.key === undefined ? Identity.generate(network) : await readKeyFile(opts.key, network);
    const peer = await createPeer({ identity, network });
    try {
      const started = performance.now();
      const conn = await peer.dial(addr, {
        ...(opts.expect === undefined ? {} : { expect: opts.expect }),
        ...(opts.static === undefined ? {} : { remoteStatic: parseKey32(opts.static, '--static') }),
      });
      const handshakeMs = performance.now() - started;
      const body = Buffer.alloc(opts.size, 0x61);
      const rtts: number[] = [];
      for (let i = 0; i < opts.count; i++) {
        const t = performance.now();
        const reply = await conn.request('echo', body);
        rtts.push(performance.now() - t);
        if (!reply.equals(body)) throw new Error(`the peer's echo reply differs from the request (${reply.length} bytes back for ${body.length} sent)`);
      }
      rtts.sort((a, b) => a - b);
      const result = {
        id: conn.remote.id,
        pattern: conn.remote.pattern,
        addr,
        handshakeMs: round(handshakeMs),
        count: opts.count,
        rttMs: { p50: round(percentile(rtts, 50)), p99: round(percentile(rtts, 99)) },
      };
      if (opts.json === true) printJson(result);
      else printLine(`${result.id} (${result.pattern}) handshake ${result.handshakeMs} ms, rtt p50 ${result.rttMs.p50} ms, p99 ${result.rttMs.p99} ms over ${opts.count} requests`);
      await conn.close();
    } finally {
      await peer.close();
    }
  });
}
