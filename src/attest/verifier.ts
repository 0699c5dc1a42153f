import { randomBytes } from 'node:crypto';
import { toBase32, toHex } from '../core/bytes.js';
import { createLogger, type Logger } from '../core/log.js';
import { Lru } from '../core/lru.js';
import { DEFAULT_ATTESTATION, type AttestationCheck, type AttestationVerifierHook, type Policy, type PolicyAttestation } from '../mesh/index.js';
import { NONCE_LENGTH, fail, openAkBinding, readTpmCredential, verifyEvidence, type AttestationKind, type BoundAk, type VerifiedEvidence } from './evidence.js';
import { measurementKey, type Measurement } from './measurement.js';

/** One plugin's check of an instance (both plugins implement it; AttestationVerifier runs them). */
export interface EvidenceVerifier extends AttestationVerifierHook {
  readonly kind: AttestationKind;
}

export interface AttestationVerifierInit {
  /** Reuse a host's verified quote at most this long, whatever the policy allows. Default 5 min. */
  readonly maxAgeMs?: number;
  /** Hosts whose verified quotes are remembered. Default 1024. */
  readonly cacheSize?: number;
  /** Structured logger (pino). Default: createLogger(). */
  readonly logger?: Logger;
}

const DEFAULT_MAX_AGE_MS = 5 * 60_000;
const DEFAULT_CACHE_SIZE = 1024;
const SIGN_HINT = 're-sign the policy with `themis policy sign`';

/** Refuses a measurement the policy does not allow: an unknown service, or a digest not listed for it. */
export function checkMeasurement(policy: Policy, measurement: Measurement): void {
  const service = policy.services.find((s) => s.name === measurement.service);
  if (service === undefined) {
    throw fail('ERR_ATTEST_MEASUREMENT_REFUSED', `the host loaded code of service "${measurement.service}", which is not in policy seq ${policy.seq}; declare it and ${SIGN_HINT}`);
  }
  if (service.digests.length > 0 && !service.digests.some((d) => d.equals(measurement.digest))) {
    throw fail(
      'ERR_ATTEST_MEASUREMENT_REFUSED',
      `the host loaded code ${toHex(measurement.digest)} for service "${measurement.service}", which policy seq ${policy.seq} does not allow: the code changed after the policy was signed; add its digest and ${SIGN_HINT}`,
    );
  }
}

/** Every measurement of a host's log must be allowed (IMA appraisal: one unapproved load taints the host). */
export function checkLog(policy: Policy, log: readonly Measurement[]): void {
  for (const measurement of log) checkMeasurement(policy, measurement);
}

/** Code-digest plugin: the endorsement's signed digest (identify() verified the signature) must be allowed. */
export class CodeDigestVerifier implements EvidenceVerifier {
  readonly kind = 'code-digest';

  async verify(check: AttestationCheck): Promise<void> {
    checkMeasurement(check.policy, { service: check.caller.service, digest: check.caller.codeDigest });
  }
}

interface HostQuote {
  readonly log: readonly Measurement[];
  readonly keys: ReadonlySet<string>;
  readonly verifiedAt: number;
  /** The policy the whole log was last found allowed by (checkLog runs again only for another policy). */
  allowedBy: Policy | null;
}

/**
 * TPM plugin (docs/attestation.md §4): the instance's AK binding must be by its endorsing host and
 * name a trusted AK; the host's quote over a fresh nonce is fetched through the check's challenge,
 * verified, and reused for the host's other instances until it is older than the bound or lacks
 * the instance's measurement. Concurrent checks of one host share one challenge.
 */
export class TpmVerifier implements EvidenceVerifier {
  readonly kind = 'tpm';
  readonly #maxAgeMs: number;
  readonly #quotes: Lru<string, HostQuote>;
  readonly #bindings = new Lru<string, BoundAk>(DEFAULT_CACHE_SIZE);
  readonly #inFlight = new Map<string, Promise<HostQuote>>();
  readonly #log: Logger;
  /** Fresh quotes this verifier fetched and verified (for benches and tests). */
  quotesVerified = 0;

  constructor(init: AttestationVerifierInit = {}) {
    this.#maxAgeMs = init.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.#quotes = new Lru(init.cacheSize ?? DEFAULT_CACHE_SIZE);
    this.#log = init.logger ?? createLogger();
  }

  async verify(check: AttestationCheck): Promise<void> {
    const requirement = check.policy.attestation ?? DEFAULT_ATTESTATION;
    const binding = readTpmCredential(check.remote.credentials);
    if (binding === null) {
      throw fail('ERR_ATTEST_MISSING', `instance ${toBase32(check.remote.identityPub)} presents no TPM attestation credential, but policy seq ${check.policy.seq} requires TPM attestation; start it on a host with a TPM`);
    }
    const { hostPub, ak } = this.#openBinding(binding);
    if (!hostPub.equals(check.caller.hostPub)) {
      throw fail('ERR_ATTEST_UNTRUSTED_KEY', `the instance's TPM key is bound by host ${toBase32(hostPub)}, not by its endorsing host ${toBase32(check.caller.hostPub)}`);
    }
    if (!requirement.tpmKeys.some((key) => key.equals(ak.digest))) {
      throw fail('ERR_ATTEST_UNTRUSTED_KEY', `TPM attestation key ${toHex(ak.digest)} of host ${toBase32(hostPub)} is not in policy seq ${check.policy.seq}; add it under \`attestation.tpmKeys:\` and ${SIGN_HINT}`);
    }
    const measurement = { service: check.caller.service, digest: check.caller.codeDigest };
    const wanted = measurementKey(measurement);
    const cacheKey = `${hostPub.toString('hex')}/${ak.digest.toString('hex')}`;
    const maxAgeMs = Math.min(this.#maxAgeMs, requirement.quoteMaxAgeSeconds * 1000);
    let quote = this.#quotes.get(cacheKey);
    // A quote in flight may predate this instance's measurement: then one more, fresh.
    for (let attempt = 0; attempt < 2 && (quote === undefined || check.now - quote.verifiedAt > maxAgeMs || !quote.keys.has(wanted)); attempt++) {
      quote = await this.#fetch(cacheKey, check, requirement, ak.digest, attempt > 0);
    }
    if (!quote!.keys.has(wanted)) {
      throw fail('ERR_ATTEST_NOT_MEASURED', `host ${toBase32(hostPub)} did not measure code ${toHex(measurement.digest)} of service "${measurement.service}" into its TPM; its event log does not hold it`);
    }
    if (quote!.allowedBy !== check.policy) {
      checkLog(check.policy, quote!.log);
      quote!.allowedBy = check.policy;
    }
  }

  #openBinding(binding: Buffer): BoundAk {
    const key = binding.toString('base64');
    let bound = this.#bindings.get(key);
    if (bound === undefined) {
      bound = openAkBinding(binding);
      this.#bindings.set(key, bound);
    }
    return bound;
  }

  #fetch(cacheKey: string, check: AttestationCheck, requirement: PolicyAttestation, akDigest: Buffer, fresh: boolean): Promise<HostQuote> {
    const pending = this.#inFlight.get(cacheKey);
    if (pending !== undefined && !fresh) return pending;
    const started = check.now;
    const next = (async () => {
      const nonce = randomBytes(NONCE_LENGTH);
      let bytes: Buffer;
      try {
        bytes = await check.challenge(nonce);
      } catch (err) {
        throw fail('ERR_ATTEST_UNAVAILABLE', `could not get attestation evidence from instance ${toBase32(check.remote.identityPub)}: ${(err as Error).message}`, err);
      }
      const evidence: VerifiedEvidence = verifyEvidence(bytes, { nonce, hostPub: check.caller.hostPub, tpmKeys: requirement.tpmKeys });
      if (evidence.tpm === undefined) throw fail('ERR_ATTEST_MISSING', 'the host answered with code-digest evidence, but the policy requires a TPM quote');
      if (!evidence.tpm.ak.digest.equals(akDigest)) {
        throw fail('ERR_ATTEST_UNTRUSTED_KEY', `the host quoted with TPM key ${toHex(evidence.tpm.ak.digest)}, not with ${toHex(akDigest)} its instance presents`);
      }
      this.quotesVerified++;
      this.#log.debug({ host: toBase32(check.caller.hostPub), akHash: akDigest.toString('hex'), events: evidence.log.length }, 'verified a fresh TPM quote');
      const quote: HostQuote = { log: evidence.log, keys: new Set(evidence.log.map(measurementKey)), verifiedAt: started, allowedBy: null };
      this.#quotes.set(cacheKey, quote);
      return quote;
    })();
    this.#inFlight.set(cacheKey, next);
    const forget = (): void => void (this.#inFlight.get(cacheKey) === next && this.#inFlight.delete(cacheKey));
    next.then(forget, forget);
    return next;
  }
}

/**
 * The attestation verifier a mesh takes (MeshInit.attestation.verifier): the code-digest plugin
 * always, and the TPM plugin when the policy requires it.
 *
 * @example
 * const verifier = createVerifier();
 * const mesh = await createMesh({ trust: { owner }, attestation: { verifier }, ... });
 */
export class AttestationVerifier implements AttestationVerifierHook {
  readonly codeDigest = new CodeDigestVerifier();
  readonly tpm: TpmVerifier;

  constructor(init: AttestationVerifierInit = {}) {
    this.tpm = new TpmVerifier(init);
  }

  async verify(check: AttestationCheck): Promise<void> {
    await this.codeDigest.verify(check);
    if ((check.policy.attestation ?? DEFAULT_ATTESTATION).require === 'tpm') await this.tpm.verify(check);
  }
}

export function createVerifier(init: AttestationVerifierInit = {}): AttestationVerifier {
  return new AttestationVerifier(init);
}

/**
 * Checks a host's evidence file against a policy (`themis verify`): verifyEvidence with the
 * policy's trusted TPM keys, then every measurement of the log. TPM evidence is required when the
 * policy requires it.
 */
export function verifyHostEvidence(bytes: Uint8Array, options: { nonce: Uint8Array; policy: Policy; hostPub?: Uint8Array }): VerifiedEvidence {
  const requirement = options.policy.attestation ?? DEFAULT_ATTESTATION;
  const evidence = verifyEvidence(bytes, { nonce: options.nonce, tpmKeys: requirement.tpmKeys, ...(options.hostPub === undefined ? {} : { hostPub: options.hostPub }) });
  if (requirement.require === 'tpm' && evidence.kind !== 'tpm') throw fail('ERR_ATTEST_MISSING', `policy seq ${options.policy.seq} requires TPM evidence; this is code-digest evidence`);
  checkLog(options.policy, evidence.log);
  return evidence;
}
