import type { Command } from 'commander';
import { Option } from 'commander';
import { toBase32 } from '../../core/bytes.js';
import { createDhtNode, RPC, type DhtNode, type DhtRecord, type NodeInspection } from '../../dht/index.js';
import { Identity, readKeyFile, type NetworkConfig } from '../../identity/index.js';
import { createPeer } from '../../transport/index.js';
import { jsonOption, keyOption, networkFrom, networkOptions, parseKey32, UsageError } from '../options.js';
import { printJson, printLine } from '../output.js';
import { waitForSignal } from '../signals.js';

interface NetworkOpts {
  c1?: number;
  c2?: number;
  trustDomain?: string;
  key?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

async function identityFrom(opts: NetworkOpts, network: NetworkConfig): Promise<Identity> {
  return opts.key === undefined ? Identity.generate(network) : readKeyFile(opts.key, network);
}

/** A client-mode node that joins through `via` for one operation, then leaves. */
async function withClient<T>(via: string, opts: NetworkOpts, work: (node: DhtNode) => Promise<T>): Promise<T> {
  const network = networkFrom(opts);
  const node = await createDhtNode({ identity: await identityFrom(opts, network), network, client: true, maintenance: false });
  try {
    await node.join([via]);
    return await work(node);
  } finally {
    await node.leave();
  }
}

function recordJson(record: DhtRecord): Record<string, unknown> {
  return {
    key: toBase32(record.key),
    value: record.value.toString('utf8'),
    valueBase64: record.value.toString('base64'),
    seq: record.seq,
    publisher: toBase32(record.publisher),
    expiresAt: new Date(record.expiresAt).toISOString(),
  };
}

function withNetwork(command: Command): Command {
  for (const option of networkOptions()) command.addOption(option);
  return command;
}

export function registerDht(program: Command): void {
  withNetwork(
    program
      .command('node')
      .description('run a DHT node (server mode) until SIGINT/SIGTERM; prints {"id","addr"}')
      .addOption(new Option('--listen <addr>', 'address to listen on').env('THEMIS_LISTEN').default('tcp://127.0.0.1:0'))
      .addOption(new Option('--bootstrap <addr>', 'a node to join through, tcp://HOST:PORT or ID@tcp://HOST:PORT (repeatable, or comma-separated)').env('THEMIS_BOOTSTRAP').argParser(collect))
      .addOption(new Option('--data <dir>', 'LMDB data directory: records and the routing table survive restarts').env('THEMIS_DATA'))
      .addOption(keyOption())
      .addOption(jsonOption()),
  ).action(async (opts: NetworkOpts & { listen: string; bootstrap?: string[] | string; data?: string }) => {
    const network = networkFrom(opts);
    // THEMIS_BOOTSTRAP arrives as one comma-separated value; --bootstrap may also repeat.
    const bootstrap = [opts.bootstrap ?? []].flat().flatMap((entry) => entry.split(',')).filter((entry) => entry !== '');
    const node = await createDhtNode({ identity: await identityFrom(opts, network), network, listen: opts.listen, ...(opts.data === undefined ? {} : { dataDir: opts.data }) });
    try {
      if (bootstrap.length > 0 || opts.data !== undefined) {
        await node.join(bootstrap).catch((err: Error) => {
          if (bootstrap.length > 0) throw err;
          process.stderr.write(`themis: starting without peers: ${err.message}\n`);
        });
      }
      const stopped = waitForSignal(); // listen before announcing, so a prompt SIGTERM is not missed
      const addr = node.peer.addresses[0];
      if (opts.json === true) printJson({ id: node.id, addr, contacts: node.table.size });
      else printLine(`DHT node ${node.id} on ${addr} with ${node.table.size} contacts (Ctrl-C to stop)`);
      await stopped;
    } finally {
      await node.leave();
    }
  });

  withNetwork(
    program
      .command('put')
      .description('publish a value through a running node: mutable (signed, under your key and a salt) or --immutable (under its SHA-256)')
      .argument('<value>', 'the value (UTF-8 text)')
      .requiredOption('--via <addr>', 'a running node, tcp://HOST:PORT')
      .option('--immutable', 'store under SHA-256(value) instead')
      .option('--salt <text>', 'mutable values: a name for this value among your others', '')
      .addOption(keyOption().default(undefined, 'a fresh identity (mutable values then cannot be updated)'))
      .addOption(jsonOption()),
  ).action(async (value: string, opts: NetworkOpts & { via: string; immutable?: boolean; salt: string }) => {
    const bytes = Buffer.from(value, 'utf8');
    const out = await withClient(opts.via, opts, async (node) => {
      if (opts.immutable === true) return { key: toBase32(await node.putImmutable(bytes)) };
      const result = await node.putMutable(bytes, { salt: Buffer.from(opts.salt, 'utf8') });
      return { key: toBase32(result.key), seq: result.seq, publisher: toBase32(node.identity.publicKey), salt: opts.salt, stored: result.stored };
    });
    if (opts.json === true) printJson(out);
    else printLine('publisher' in out ? `stored seq ${out.seq} on ${out.stored} nodes; read it with: themis get --publisher ${out.publisher}${opts.salt ? ` --salt ${opts.salt}` : ''} --via ${opts.via}` : `stored; read it with: themis get ${out.key} --via ${opts.via}`);
  });

  withNetwork(
    program
      .command('get')
      .description('read a value through a running node: an immutable one by its key, or the latest mutable one by --publisher and --salt')
      .argument('[key]', 'key of an immutable value (base32, as `themis put --immutable` prints it)')
      .requiredOption('--via <addr>', 'a running node, tcp://HOST:PORT')
      .option('--publisher <key>', "publisher's public key (base32) of a mutable value")
      .option('--salt <text>', 'salt of the mutable value', '')
      .addOption(jsonOption()),
  ).action(async (key: string | undefined, opts: NetworkOpts & { via: string; publisher?: string; salt: string }) => {
    if ((key === undefined) === (opts.publisher === undefined)) throw new UsageError('give either a KEY (immutable) or --publisher (mutable)');
    const found = await withClient(opts.via, opts, async (node) => {
      if (key !== undefined) {
        const value = await node.getImmutable(parseKey32(key, 'KEY'));
        return value === null ? null : { key, value: value.toString('utf8'), valueBase64: value.toString('base64') };
      }
      const record = await node.getMutable(parseKey32(opts.publisher!, '--publisher'), Buffer.from(opts.salt, 'utf8'));
      return record === null ? null : recordJson(record);
    });
    if (found === null) {
      if (opts.json === true) printJson({ error: { code: 'ERR_DHT_NOT_FOUND', message: 'no such value' } });
      process.stderr.write('themis: no such value in the DHT (ERR_DHT_NOT_FOUND)\n');
      process.exitCode = 1;
      return;
    }
    if (opts.json === true) printJson(found);
    else printLine(String(found['value']));
  });

  withNetwork(
    program
      .command('inspect')
      .description("show a running node's routing table (buckets) and record counts")
      .argument('<addr>', 'the node, tcp://HOST:PORT')
      .addOption(jsonOption()),
  ).action(async (addr: string, opts: NetworkOpts) => {
    const network = networkFrom(opts);
    const peer = await createPeer({ network, client: true });
    try {
      const conn = await peer.dial(addr);
      const info = JSON.parse((await conn.request(RPC.Inspect, Buffer.alloc(0), { timeoutMs: 5000 })).toString('utf8')) as NodeInspection;
      if (opts.json === true) printJson(info);
      else {
        printLine(`node ${info.id} at ${info.addresses.join(', ')}: ${info.table.size} contacts, ${info.records.records} records (${info.records.bytes} bytes), ${info.connections} connections`);
        for (const b of info.table.buckets) printLine(`  bucket ${String(b.index).padStart(3)}: ${b.size} contacts, ${b.replacements} replacements`);
      }
      await conn.close();
    } finally {
      await peer.close();
    }
  });
}
