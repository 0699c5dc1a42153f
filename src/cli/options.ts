import { homedir } from 'node:os';
import { join } from 'node:path';
import { Option } from 'commander';
import { fromBase32 } from '../core/bytes.js';
import { networkConfig, type NetworkConfig } from '../identity/index.js';

/** Where `themis` keeps the identity when --key is not given. */
export function defaultKeyPath(): string {
  const config = process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config');
  return join(config, 'themis', 'identity.key');
}

export const keyOption = (): Option => new Option('--key <file>', 'identity key file').env('THEMIS_KEY');
export const jsonOption = (): Option => new Option('--json', 'print machine-readable JSON');

/** Network parameters shared by every command that talks to peers (docs/protocol.md §2.5). */
export function networkOptions(): Option[] {
  return [
    new Option('--c1 <bits>', 'static puzzle difficulty of the network').env('THEMIS_C1').argParser(parseBits),
    new Option('--c2 <bits>', 'dynamic puzzle difficulty of the network').env('THEMIS_C2').argParser(parseBits),
    new Option('--trust-domain <name>', 'trust domain of the network (empty: open mode)').env('THEMIS_TRUST_DOMAIN'),
  ];
}

export function networkFrom(opts: { c1?: number; c2?: number; trustDomain?: string }): NetworkConfig {
  return networkConfig({
    ...(opts.c1 === undefined ? {} : { c1: opts.c1 }),
    ...(opts.c2 === undefined ? {} : { c2: opts.c2 }),
    ...(opts.trustDomain === undefined ? {} : { trustDomain: opts.trustDomain }),
  });
}

export function parsePositiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`expected a positive whole number, got "${text}"`);
  return n;
}

function parseBits(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new UsageError(`expected a number of bits from 0 to 64, got "${text}"`);
  return n;
}

/** A mistake in the command line: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A 32-byte public key in base32 text form (as NodeIds and Noise static keys are printed). */
export function parseKey32(text: string, what: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = fromBase32(text.trim());
  } catch {
    bytes = Buffer.alloc(0);
  }
  if (bytes.length !== 32) throw new UsageError(`${what} expects a 32-byte key in base32 (52 characters a-z, 2-7), got "${text}"`);
  return bytes;
}
