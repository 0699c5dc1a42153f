/**
 * Provisioning benchmark (issue 6): 150 function instances of one host provisioned at once, each
 * from its start to a verified identity, with code-digest and with TPM 2.0 attestation (swtpm).
 *
 *   npm run bench -- provisioning [--quick] [--instances N] [--rounds N] [--help]
 *
 * One instance's provisioning, all in this process, as the host and a verifier do it:
 *   1. identity: a fresh Ed25519 identity on the default network (static and dynamic puzzles);
 *   2. measurement and credentials: HostAttestor.credentials (TPM: the first instance of a code
 *      extends PCR 16; every instance carries the AK binding);
 *   3. endorsement: the host signs instance key, service and code digest;
 *   4. verification by a verifier: the identity proof as a peer decodes it from the handshake
 *      (verifyProof), PolicyAuthority.identify (endorsement, policy, digest), then attest (TPM: the
 *      host's quote over the verifier's fresh nonce — fetched once, verified, reused for the host's
 *      other instances while fresh; in-process here, a channel round trip in a mesh).
 * All N instances start together (5 services, N/5 instances each); each latency is from the
 * instance's start to the end of step 4. Rounds:
 *   code-digest   fresh verifier per round;
 *   tpm           fresh verifier AND fresh host log (attestor reopened: PCR 16 reset) per round,
 *                 so every round pays the PCR extends and one quote;
 *   tpm-steady    the same host log and verifier in every round: after the first round the host's
 *                 verified quote is reused (the steady state while instances scale up and down);
 *   tpm-no-reuse  the baseline measured in the same run: a verifier per instance, so every
 *                 instance pays its own quote (per-instance attestation without the host cache).
 * Printed against the published reference: 252 ms average for 150 instances attested in parallel
 * on one node (SBRC 2021). Writes bench/results/provisioning.json.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHostAttestor, createVerifier, type HostAttestor, type TpmAttestor } from '../src/attest/index.js';
import { toBase32 } from '../src/core/bytes.js';
import { createLogger } from '../src/core/log.js';
import { encodeProof, verifyProof } from '../src/handshake/index.js';
import { DEFAULT_NETWORK, Identity, networkConfig, type NetworkConfig } from '../src/identity/index.js';
import { PolicyAuthority, endorse, endorsementCredential, parsePolicyYaml, type Policy } from '../src/mesh/index.js';
import { startSwtpm, swtpmAvailable } from '../src/testing/index.js';
import { Cleanup, Progress, RESULTS_DIR, UsageError, machineInfo, writeJson, type BenchContext } from './lib/bench.js';
import { percentile, round } from './lib/stats.js';

export const description = '150 instances provisioned at once to a verified identity: code-digest and TPM (swtpm) attestation vs the 252 ms reference';

const REFERENCE_MS = 252;
const GOAL_P50_MS = 25;
const SERVICES = ['gateway', 'users', 'accounts', 'transactions', 'payment'] as const;

const USAGE = `usage: npm run bench -- provisioning [options]

  --quick           3 rounds per mode, the no-reuse baseline once (< 60 s)
  --instances N     instances provisioned at once (default 150)
  --rounds N        rounds per mode (default 10; --quick 3)
  --network default|test   puzzles of the default network (c1 4, c2 8; default) or of the
                    tests' network (c1 0, c2 0), to see the attestation cost without them
  --help            this text

Needs swtpm and tpm2-tools for the TPM modes (apt-get install swtpm swtpm-tools tpm2-tools);
without them only code-digest is measured.`;

interface Options {
  readonly network: NetworkConfig;
  readonly networkName: string;
  readonly instances: number;
  readonly rounds: number;
  readonly baselineRounds: number;
}

function parseOptions(argv: readonly string[]): Options | null {
  const { values } = parseArgs({ args: [...argv], options: { quick: { type: 'boolean' }, instances: { type: 'string' }, rounds: { type: 'string' }, network: { type: 'string' }, help: { type: 'boolean' } }, strict: true });
  if (values.help === true) return null;
  const count = (text: string | undefined, fallback: number, name: string): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} expects a positive whole number, got "${text}"`);
    return n;
  };
  const quick = values.quick === true;
  const networkName = values.network ?? 'default';
  if (networkName !== 'default' && networkName !== 'test') throw new UsageError(`--network expects default or test, got "${networkName}"`);
  const network = networkName === 'default' ? DEFAULT_NETWORK : networkConfig({ c1: 0, c2: 0 });
  return { network, networkName, instances: count(values.instances, 150, 'instances'), rounds: count(values.rounds, quick ? 3 : 10, 'rounds'), baselineRounds: quick ? 1 : 3 };
}

/** The trust domain: the host, its policy (TPM attestation by `akDigest` when given) and the code of each service. */
function domain(host: Identity, akDigest: Buffer | null): { policy: Policy; code: Record<string, Buffer> } {
  const code = Object.fromEntries(SERVICES.map((service) => [service, randomBytes(32)]));
  const policy = parsePolicyYaml(`trustDomain: microbank
seq: 1
hosts:
  - { name: host-1, key: ${toBase32(host.publicKey)} }
services:
${SERVICES.map((service) => `  ${service}: { digests: ["${code[service]!.toString('hex')}"] }`).join('\n')}
${akDigest === null ? '' : `attestation: { require: tpm, tpmKeys: ["${akDigest.toString('hex')}"], quoteMaxAgeSeconds: 60 }`}
`);
  return { policy, code };
}

const logger = createLogger();

function authorityFor(policy: Policy, shared: boolean): () => PolicyAuthority {
  const owner = randomBytes(32);
  const make = (): PolicyAuthority => {
    const authority = new PolicyAuthority(owner, { attestation: createVerifier({ logger }) });
    authority.update({ policy, owner, seq: policy.seq });
    return authority;
  };
  if (!shared) return make;
  const one = make();
  return () => one;
}

/** Time spent per step, summed over instances (ms). */
interface Steps {
  identity: number;
  credentials: number;
  endorsement: number;
  verification: number;
}

interface Round {
  readonly host: Identity;
  readonly attestor: HostAttestor;
  readonly policy: Policy;
  readonly code: Record<string, Buffer>;
  readonly instances: number;
  readonly verifierFor: () => PolicyAuthority;
}

/**
 * Provisions `instances` at once (or one after another with `sequential`); returns each one's
 * start-to-verified latency in ms, and adds the time of each step to `steps`.
 */
async function provision(round: Round, network: NetworkConfig, steps: Steps, sequential = false): Promise<number[]> {
  const { host, attestor, policy, code } = round;
  const challenge = (nonce: Buffer): Promise<Buffer> => attestor.evidence(nonce);
  const one = async (i: number): Promise<number> => {
    const started = performance.now();
    const service = SERVICES[i % SERVICES.length]!;
    const digest = code[service]!;
    const identity = Identity.generate(network);
    const t1 = performance.now();
    const extra = await attestor.credentials({ nodeId: identity.nodeId, service, digest });
    const t2 = performance.now();
    const endorsement = endorsementCredential(endorse(host, { instancePub: identity.publicKey, trustDomain: policy.trustDomain, service, codeDigest: digest }));
    const t3 = performance.now();
    const seen = verifyProof(encodeProof(identity, { credentials: [endorsement, ...extra] }), identity.noiseStatic.publicKey, network);
    const authority = round.verifierFor();
    const caller = authority.identify(seen);
    await authority.attest(seen, caller, challenge);
    const done = performance.now();
    steps.identity += t1 - started;
    steps.credentials += t2 - t1;
    steps.endorsement += t3 - t2;
    steps.verification += done - t3;
    return done - started;
  };
  if (sequential) {
    const latencies: number[] = [];
    for (let i = 0; i < round.instances; i++) latencies.push(await one(i));
    return latencies;
  }
  // Every instance starts in this turn of the event loop: "in parallel" on one node.
  return Promise.all(Array.from({ length: round.instances }, (_, i) => Promise.resolve().then(() => one(i))));
}

interface ModeResult {
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly meanMs: number | null;
  readonly maxMs: number | null;
  readonly samples: number;
  /** Wall time of a whole round (all instances verified), median over rounds. */
  readonly roundMs: number | null;
  /** Mean time per instance in each step, when instances are provisioned one after another (no queueing). */
  readonly sequentialStepMs?: Record<keyof Steps, number | null>;
}

function summarize(samples: number[], rounds: number[]): ModeResult {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return {
    p50Ms: round(percentile(sorted, 50)),
    p95Ms: round(percentile(sorted, 95)),
    meanMs: round(mean),
    maxMs: round(sorted[sorted.length - 1] ?? Number.NaN),
    samples: samples.length,
    roundMs: round(percentile(Float64Array.from(rounds).sort(), 50)),
  };
}

const noSteps = (): Steps => ({ identity: 0, credentials: 0, endorsement: 0, verification: 0 });

export async function run(context: BenchContext): Promise<void> {
  const options = parseOptions(context.argv);
  if (options === null) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { network } = options;
  const cleanup = new Cleanup();
  const tpmAvailable = swtpmAvailable();
  const modes = tpmAvailable ? 2 : 1;
  const steps = 1 + modes * (options.rounds + 1) + (tpmAvailable ? options.rounds + options.baselineRounds : 0);
  const progress = new Progress('provisioning', steps);
  const results: Record<string, ModeResult> = {};
  try {
    const host = Identity.generate(network);
    /** `rounds` concurrent rounds, then one sequential pass for the per-step cost. */
    const measure = async (label: string, rounds: number, prepare: () => Promise<Round>, sequential = true): Promise<ModeResult> => {
      const samples: number[] = [];
      const walls: number[] = [];
      for (let r = 0; r < rounds; r++) {
        progress.step(`${label} round ${r + 1}/${rounds}`);
        const pass = await prepare();
        const t0 = performance.now();
        samples.push(...(await provision(pass, network, noSteps())));
        walls.push(performance.now() - t0);
        progress.tick();
      }
      const result = summarize(samples, walls);
      if (!sequential) return result;
      progress.step(`${label} sequential pass`);
      const stepSums = noSteps();
      const pass = await prepare();
      await provision(pass, network, stepSums, true);
      progress.tick();
      const perInstance = (ms: number): number | null => round(ms / pass.instances);
      return {
        ...result,
        sequentialStepMs: {
          identity: perInstance(stepSums.identity),
          credentials: perInstance(stepSums.credentials),
          endorsement: perInstance(stepSums.endorsement),
          verification: perInstance(stepSums.verification),
        },
      };
    };

    progress.step('warm-up');
    const warm = domain(host, null);
    const codeAttestor = await createHostAttestor({ mode: 'code-digest' }, host);
    await provision({ host, attestor: codeAttestor, ...warm, instances: Math.min(options.instances, 30), verifierFor: authorityFor(warm.policy, true) }, network, noSteps());
    progress.tick();

    results['codeDigest'] = await measure('code-digest', options.rounds, async () => {
      const attestor = await createHostAttestor({ mode: 'code-digest' }, host);
      const { policy, code } = domain(host, null);
      return { host, attestor, policy, code, instances: options.instances, verifierFor: authorityFor(policy, true) };
    });

    if (tpmAvailable) {
      const tpm = await startSwtpm();
      cleanup.add('swtpm', () => tpm.stop());
      let attestor = (await createHostAttestor({ mode: 'tpm', tpm: tpm.spec }, host)) as TpmAttestor;
      cleanup.add('attestor', () => attestor.close());
      /**
       * A fresh host log (attestor reopened: PCR 16 reset, same AK) and a fresh trust domain. Without
       * a shared verifier every instance asks for a quote: all of them may wait for the TPM.
       */
      const fresh = async (sharedVerifier: boolean): Promise<Round> => {
        await attestor.close();
        attestor = (await createHostAttestor({ mode: 'tpm', tpm: tpm.spec, ...(sharedVerifier ? {} : { maxPendingQuotes: options.instances }) }, host)) as TpmAttestor;
        const { policy, code } = domain(host, attestor.ak.digest);
        return { host, attestor, policy, code, instances: options.instances, verifierFor: authorityFor(policy, sharedVerifier) };
      };
      results['tpm'] = await measure('tpm', options.rounds, () => fresh(true));
      // Steady state: the same host log and verifier every round, so the host's quote verified in the
      // first round is reused (while younger than quoteMaxAgeSeconds) and no code is measured again.
      const steady = await fresh(true);
      const sharedVerifier = steady.verifierFor;
      results['tpmSteady'] = await measure('tpm-steady', options.rounds, async () => ({ ...steady, verifierFor: sharedVerifier }), false);
      results['tpmNoReuse'] = await measure('tpm-no-reuse (baseline)', options.baselineRounds, () => fresh(false), false);
    } else {
      progress.note('swtpm or tpm2-tools is not installed: TPM modes skipped (apt-get install swtpm swtpm-tools tpm2-tools)');
    }
  } finally {
    progress.stop();
    await cleanup.run();
  }

  const line = (label: string, r: ModeResult | undefined): string =>
    r === undefined
      ? `  ${label.padEnd(28)} skipped (no swtpm)`
      : `  ${label.padEnd(28)} p50 ${String(r.p50Ms).padStart(7)} ms  p95 ${String(r.p95Ms).padStart(7)} ms  mean ${String(r.meanMs).padStart(7)} ms  (${(REFERENCE_MS / (r.meanMs ?? Number.NaN)).toFixed(2)}× the reference's speed)` +
        (r.sequentialStepMs === undefined
          ? ''
          : `\n  ${''.padEnd(28)} per instance alone: identity ${r.sequentialStepMs.identity} ms, credentials ${r.sequentialStepMs.credentials} ms, endorsement ${r.sequentialStepMs.endorsement} ms, verification ${r.sequentialStepMs.verification} ms`);
  process.stdout.write(
    [
      `provisioning: ${options.instances} instances at once to a verified identity, ${options.rounds} rounds, ${options.networkName} network (c1 ${network.c1}, c2 ${network.c2})`,
      `  reference: ${REFERENCE_MS} ms average (SBRC 2021, 150 instances attested in parallel on one node); goal p50 ≤ ${GOAL_P50_MS} ms; load average ${machineInfo().loadAverage1m}`,
      line('code-digest', results['codeDigest']),
      line('tpm (one quote per host)', results['tpm']),
      line('tpm, quote already verified', results['tpmSteady']),
      line('tpm, quote per instance', results['tpmNoReuse']),
      '',
    ].join('\n'),
  );
  const path = writeJson(join(RESULTS_DIR, 'provisioning.json'), {
    bench: 'provisioning',
    instances: options.instances,
    rounds: options.rounds,
    network: { name: options.networkName, c1: network.c1, c2: network.c2 },
    referenceMs: REFERENCE_MS,
    goalP50Ms: GOAL_P50_MS,
    codeDigest: results['codeDigest'],
    tpm: results['tpm'] ?? null,
    tpmSteady: results['tpmSteady'] ?? null,
    tpmNoReuse: results['tpmNoReuse'] ?? null,
    machine: machineInfo(),
    at: new Date().toISOString(),
  });
  process.stdout.write(`wrote ${path}\n`);
}
