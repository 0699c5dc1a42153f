import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { Identity, formatNodeId, readKeyFile, writeKeyFile } from '../../identity/index.js';
import { defaultKeyPath, jsonOption, keyOption, networkFrom, networkOptions } from '../options.js';
import { printJson, printLine } from '../output.js';

interface KeygenOptions {
  out?: string;
  force?: boolean;
  json?: boolean;
  c1?: number;
  c2?: number;
  trustDomain?: string;
}

export function registerKeyCommands(program: Command): void {
  const keygen = program
    .command('keygen')
    .description('create a new identity (Ed25519 identity key, Noise static key, puzzle solutions) in a key file with mode 0600')
    .option('--out <file>', `where to write the key file (default: ${defaultKeyPath()})`)
    .option('--force', 'replace an existing key file')
    .addOption(jsonOption());
  for (const option of networkOptions()) keygen.addOption(option);
  keygen.action(async (opts: KeygenOptions) => {
    const path = opts.out ?? defaultKeyPath();
    if (opts.out === undefined) await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const identity = Identity.generate(networkFrom(opts));
    await writeKeyFile(path, identity, { overwrite: opts.force === true });
    if (opts.json === true) printJson({ id: identity.id, path, noiseStatic: formatNodeId(identity.noiseStatic.publicKey) });
    else printLine(`wrote identity ${identity.id} to ${path}`);
  });

  const id = program
    .command('id')
    .description('print the NodeId of an identity key file')
    .addOption(keyOption())
    .addOption(jsonOption());
  for (const option of networkOptions()) id.addOption(option);
  id.action(async (opts: KeygenOptions & { key?: string }) => {
    const identity = await readKeyFile(opts.key ?? defaultKeyPath(), networkFrom(opts));
    if (opts.json === true) {
      printJson({ id: identity.id, publicKey: identity.publicKey.toString('hex'), noiseStatic: formatNodeId(identity.noiseStatic.publicKey) });
    } else printLine(identity.id);
  });
}
