import type { Command } from 'commander';
import { Option } from 'commander';
import { Identity, formatNodeId, readKeyFile } from '../../identity/index.js';
import { createPeer } from '../../transport/index.js';
import { jsonOption, keyOption, networkFrom, networkOptions } from '../options.js';
import { printJson, printLine } from '../output.js';
import { waitForSignal } from '../signals.js';

interface ServeOptions {
  listen: string[];
  key?: string;
  json?: boolean;
  c1?: number;
  c2?: number;
  trustDomain?: string;
}

export function registerServe(program: Command): void {
  const serve = program
    .command('serve')
    .description('run a peer that serves the `echo` request and stream handlers (docs/protocol.md §5) until SIGINT/SIGTERM')
    .addOption(
      new Option('--listen <addr...>', 'address(es) to listen on')
        .env('THEMIS_LISTEN')
        .default(['tcp://127.0.0.1:0'])
        .argParser((value: string, previous: string[] | undefined) => (previous === undefined || previous[0] === 'tcp://127.0.0.1:0' ? [value] : [...previous, value])),
    )
    .addOption(keyOption().default(undefined, 'a fresh identity for this run'))
    .addOption(jsonOption());
  for (const option of networkOptions()) serve.addOption(option);
  serve.action(async (opts: ServeOptions) => {
    const network = networkFrom(opts);
    const identity = opts.key === undefined ? Identity.generate(network) : await readKeyFile(opts.key, network);
    const peer = await createPeer({ identity, network, listen: opts.listen });
    peer.handle('echo', (body) => body);
    peer.handleStream('echo', (stream) => {
      stream.pipe(stream);
    });
    const stopped = waitForSignal(); // listen before announcing, so a prompt SIGTERM is not missed
    const addr = peer.addresses[0];
    if (opts.json === true) printJson({ id: peer.id, addr, addrs: peer.addresses, noiseStatic: formatNodeId(identity.noiseStatic.publicKey) });
    else printLine(`serving ${peer.id} on ${peer.addresses.join(', ')} (Ctrl-C to stop)`);
    await stopped;
    await peer.close();
  });
}
