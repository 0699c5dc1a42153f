import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import {
  NONCE_LENGTH,
  TpmAttestor,
  createHostAttestor,
  verifyEvidence,
  verifyHostEvidence,
  type Measurement,
  type VerifiedEvidence,
} from '../../attest/index.js';
import { fromBase32, fromHex, toBase32, toHex } from '../../core/bytes.js';
import { ThemisError } from '../../core/errors.js';
import { Identity, readKeyFile, type NetworkConfig } from '../../identity/index.js';
import { ATTEST_CHALLENGE_TIMEOUT_MS, ATTEST_EVIDENCE_REQUEST, PolicyAuthority, parsePolicyYaml, type Policy } from '../../mesh/index.js';
import { createPeer } from '../../transport/index.js';
import { defaultKeyPath, jsonOption, keyOption, networkFrom, networkOptions, UsageError } from '../options.js';
import { printJson, printLine } from '../output.js';

/**
 * `themis attest` prints (and optionally saves) the host's evidence, verified on the spot;
 * `themis verify` checks a peer's evidence — a running instance dialed with a fresh nonce, or a
 * saved evidence file — against a policy (docs/attestation.md §7).
 */

interface NetOpts {
  c1?: number;
  c2?: number;
  trustDomain?: string;
}

interface AttestOptions extends NetOpts {
  tpm?: string;
  key?: string;
  measure: Measurement[];
  nonce?: string;
  out?: string;
  json?: boolean;
}

interface VerifyOptions extends NetOpts {
  policy: string;
  peer?: string;
  expect?: string;
  evidence?: string;
  nonce?: string;
  host?: string;
  json?: boolean;
}

function parseMeasure(text: string, previous: Measurement[] = []): Measurement[] {
  const match = /^([a-z0-9-]{1,64})=([0-9a-f]{64})$/.exec(text);
  if (match === null) throw new UsageError(`--measure expects SERVICE=DIGEST (a service name, then 64 hex digits of SHA-256), got "${text}"`);
  return [...previous, { service: match[1]!, digest: fromHex(match[2]!) }];
}

function parseNonce(text: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(text)) throw new UsageError(`--nonce expects ${NONCE_LENGTH} bytes as 64 hex digits, got "${text}"`);
  return fromHex(text);
}

async function readHostKey(path: string, network: NetworkConfig): Promise<Identity> {
  try {
    return await readKeyFile(path, network);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`host key ${path} does not exist (create it with: themis keygen --out ${path})`);
    throw err;
  }
}

async function readPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read policy ${path}: ${(err as Error).message}`);
  }
  return parsePolicyYaml(text, path);
}

/** Evidence as JSON: what the host measured and, with a TPM, the key and PCR it is rooted in. */
function describe(evidence: VerifiedEvidence, nonce: Buffer): Record<string, unknown> {
  return {
    kind: evidence.kind,
    host: toBase32(evidence.hostPub),
    nonce: toHex(nonce),
    ...(evidence.tpm === undefined
      ? {}
      : {
          tpm: {
            akHash: toHex(evidence.tpm.ak.digest),
            akName: `000b${toHex(evidence.tpm.ak.digest)}`,
            pcr: 16,
            pcrValue: toHex(evidence.tpm.pcr),
            resetCount: evidence.tpm.quote.resetCount,
            restartCount: evidence.tpm.quote.restartCount,
          },
        }),
    events: evidence.log.map((m) => ({ service: m.service, digest: toHex(m.digest) })),
  };
}

function printEvidence(result: Record<string, unknown>, title: string): void {
  printLine(title);
  for (const [key, value] of Object.entries(result)) {
    if (key === 'events') {
      const events = value as { service: string; digest: string }[];
      printLine(`  events (${events.length}):`);
      for (const event of events) printLine(`    ${event.service} ${event.digest}`);
    } else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) printLine(`  ${key}.${k}: ${String(v)}`);
    } else {
      printLine(`  ${key}: ${String(value)}`);
    }
  }
}

export function registerAttest(program: Command): void {
  const attest = program
    .command('attest')
    .description("print this host's attestation evidence, verified: with --tpm a TPM 2.0 quote over PCR 16 and the event log, else code-digest evidence")
    .addOption(new Option('--tpm <where>', 'the TPM: socket:PATH (a swtpm unix socket) or a device path such as /dev/tpmrm0').env('THEMIS_TPM'))
    .addOption(keyOption().default(undefined, `the host key (default ${defaultKeyPath()})`))
    .addOption(new Option('--measure <service=digest>', 'measure this code before quoting (repeatable)').argParser(parseMeasure).default([], 'none'))
    .option('--nonce <hex>', "the verifier's 32-byte nonce (64 hex digits); default a fresh random one")
    .option('--out <file>', 'also write the evidence bytes to this file (for `themis verify --evidence`)')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nOpening the TPM resets PCR 16 and starts an empty event log: do not point this at a TPM a running host uses.\nExit codes: 0 evidence made and verified, 1 the TPM or the verification failed, 2 usage.',
    );
  for (const option of networkOptions()) attest.addOption(option);
  attest.action(async (opts: AttestOptions) => {
    const network = networkFrom(opts);
    const nonce = opts.nonce === undefined ? randomBytes(NONCE_LENGTH) : parseNonce(opts.nonce);
    const host = await readHostKey(opts.key ?? defaultKeyPath(), network);
    const attestor = await createHostAttestor(opts.tpm === undefined ? { mode: 'code-digest' } : { mode: 'tpm', tpm: opts.tpm }, host);
    try {
      for (const measurement of opts.measure) await attestor.measure(measurement);
      const bytes = await attestor.evidence(nonce);
      const verified = verifyEvidence(bytes, { nonce, hostPub: host.publicKey });
      if (opts.out !== undefined) await writeFile(opts.out, bytes);
      const result = {
        ...describe(verified, nonce),
        ...(attestor instanceof TpmAttestor ? { tcti: attestor.tcti } : {}),
        evidenceBytes: bytes.length,
        ...(opts.out === undefined ? {} : { out: opts.out }),
        verified: true,
      };
      if (opts.json === true) printJson(result);
      else printEvidence(result, `evidence of host ${toBase32(host.publicKey)} (verified):`);
    } finally {
      await attestor.close();
    }
  });

  const verify = program
    .command('verify')
    .description("check a peer's attestation evidence against a policy: dial a running instance (--peer) or read an evidence file (--evidence with its --nonce)")
    .requiredOption('--policy <file>', 'the trust-domain policy (YAML) to check against')
    .option('--peer <addr>', 'a running instance: tcp://HOST:PORT or ID@tcp://HOST:PORT; it is sent a fresh nonce')
    .option('--expect <id>', 'with --peer: the NodeId the peer must have')
    .option('--evidence <file>', 'an evidence file written by `themis attest --out`')
    .option('--nonce <hex>', 'with --evidence: the nonce the evidence must answer (64 hex digits)')
    .option('--host <pub>', "with --evidence: the host key (base32) the evidence must come from")
    .addOption(jsonOption())
    .addHelpText('after', '\nExit codes: 0 the evidence satisfies the policy, 1 it is refused (the reason and its ERR_* code on stderr), 2 usage.');
  for (const option of networkOptions()) verify.addOption(option);
  verify.action(async (opts: VerifyOptions) => {
    if ((opts.peer === undefined) === (opts.evidence === undefined)) throw new UsageError('give either --peer ADDR or --evidence FILE (with --nonce)');
    const policy = await readPolicy(opts.policy);
    const result = opts.peer === undefined ? await verifyFile(opts, policy) : await verifyPeer(opts.peer, opts, policy);
    if (opts.json === true) printJson(result);
    else printEvidence(result, `evidence satisfies policy seq ${policy.seq} of trust domain ${policy.trustDomain}:`);
  });
}

async function verifyFile(opts: VerifyOptions, policy: Policy): Promise<Record<string, unknown>> {
  if (opts.nonce === undefined) throw new UsageError('--evidence needs the --nonce it answers');
  const nonce = parseNonce(opts.nonce);
  let bytes: Buffer;
  try {
    bytes = await readFile(opts.evidence!);
  } catch (err) {
    throw new UsageError(`cannot read evidence ${opts.evidence}: ${(err as Error).message}`);
  }
  const hostPub = opts.host === undefined ? undefined : parseHost(opts.host);
  const evidence = verifyHostEvidence(bytes, { nonce, policy, ...(hostPub === undefined ? {} : { hostPub }) });
  const trusted = policy.hosts.some((h) => h.key.equals(evidence.hostPub));
  if (!trusted) throw new ThemisError('ERR_MESH_UNTRUSTED_HOST', `host ${toBase32(evidence.hostPub)} is not in policy seq ${policy.seq}; add it under \`hosts:\``);
  return { ...describe(evidence, nonce), verified: true };
}

function parseHost(text: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = fromBase32(text);
  } catch {
    bytes = Buffer.alloc(0);
  }
  if (bytes.length !== 32) throw new UsageError(`--host expects a 32-byte key in base32, got "${text}"`);
  return bytes;
}

/**
 * Dials the peer, identifies it under the policy (its host endorsement), sends a fresh nonce,
 * and checks the evidence: from its endorsing host, every measurement allowed, its own among them.
 */
async function verifyPeer(addr: string, opts: VerifyOptions, policy: Policy): Promise<Record<string, unknown>> {
  const network = networkFrom(opts);
  const peer = await createPeer({ identity: Identity.generate(network), network });
  try {
    const conn = await peer.dial(addr, opts.expect === undefined ? {} : { expect: opts.expect });
    try {
      // The local policy file stands in for the owner-signed record: the operator vouches for it.
      const owner = randomBytes(32);
      const authority = new PolicyAuthority(owner);
      authority.update({ policy, owner, seq: policy.seq });
      const caller = authority.identify(conn.remote);
      const nonce = randomBytes(NONCE_LENGTH);
      const bytes = await conn.request(ATTEST_EVIDENCE_REQUEST, nonce, { timeoutMs: ATTEST_CHALLENGE_TIMEOUT_MS });
      const evidence = verifyHostEvidence(bytes, { nonce, policy, hostPub: caller.hostPub });
      if (!evidence.log.some((m) => m.service === caller.service && m.digest.equals(caller.codeDigest))) {
        throw new ThemisError('ERR_ATTEST_NOT_MEASURED', `the host's event log does not hold the peer's own code ${toHex(caller.codeDigest)} of service "${caller.service}"`);
      }
      return { peer: conn.remote.id, service: caller.service, codeDigest: toHex(caller.codeDigest), ...describe(evidence, nonce), verified: true };
    } finally {
      await conn.close();
    }
  } finally {
    await peer.close();
  }
}
