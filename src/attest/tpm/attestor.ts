import { ThemisError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { Credential } from '../../handshake/index.js';
import type { Identity } from '../../identity/index.js';
import type { HostAttestor, InstanceMeasurement } from '../attestor.js';
import { assertNonce } from '../code-digest.js';
import { bindAk, encodeTpmEvidence, qualifyingData, tpmCredential } from '../evidence.js';
import { EventLog, assertMeasurement, measurementEvent, measurementKey, type Measurement } from '../measurement.js';
import { parseAkPublic, type AkPublic } from './structures.js';
import { DEFAULT_AK_HANDLE, MEASUREMENT_PCR, Tpm2Tools } from './tpm2-tools.js';

export interface TpmAttestorInit {
  /** Persistent handle of the attestation key; created there when empty. Default 0x81010002. */
  readonly akHandle?: number;
  /**
   * Quotes waiting for the TPM at most; more evidence requests are refused at once
   * (ERR_ATTEST_UNAVAILABLE), so peers asking for evidence cannot queue unbounded TPM work. Default 16.
   */
  readonly maxPendingQuotes?: number;
  /** Structured logger (pino). Default: createLogger(). */
  readonly logger?: Logger;
}

const DEFAULT_MAX_PENDING_QUOTES = 16;

/**
 * TPM 2.0 attestation through tpm2-tools (docs/attestation.md §2–3): an AK persisted in the TPM and
 * bound to the host's Themis key; each distinct measurement extends PCR 16 and is appended to
 * the event log; a verifier's nonce is answered with a quote of PCR 16 and the log.
 * Commands run one at a time (Tpm2Tools.exclusive), so the log always matches the PCR it is
 * quoted with.
 */
export class TpmAttestor implements HostAttestor {
  readonly kind = 'tpm';
  readonly hostPub: Buffer;
  readonly ak: AkPublic;
  readonly #tools: Tpm2Tools;
  readonly #handle: number;
  readonly #maxPendingQuotes: number;
  #pendingQuotes = 0;
  readonly #binding: Buffer;
  readonly #log = new EventLog();
  /** Measurements being extended, so concurrent cold starts of one function extend once. */
  readonly #pending = new Map<string, Promise<void>>();
  /** Measurements waiting for the TPM, extended together by the next exclusive job. */
  #batch: { entries: Measurement[]; done: Promise<void> } | null = null;

  private constructor(tools: Tpm2Tools, host: Identity, handle: number, ak: AkPublic, maxPendingQuotes: number) {
    this.#tools = tools;
    this.#handle = handle;
    this.#maxPendingQuotes = maxPendingQuotes;
    this.ak = ak;
    this.hostPub = Buffer.from(host.publicKey);
    this.#binding = bindAk(host, ak.area);
  }

  /** Opens the TPM, loads or creates the AK, and resets PCR 16 so the log starts empty. */
  static async open(spec: string, host: Identity, init: TpmAttestorInit = {}): Promise<TpmAttestor> {
    const handle = init.akHandle ?? DEFAULT_AK_HANDLE;
    const tools = await Tpm2Tools.open(spec);
    try {
      const area = await tools.exclusive(async () => {
        const area = (await tools.readPublic(handle)) ?? (await tools.createAk(handle));
        await tools.pcrReset(MEASUREMENT_PCR);
        return area;
      });
      const attestor = new TpmAttestor(tools, host, handle, parseAkPublic(area), init.maxPendingQuotes ?? DEFAULT_MAX_PENDING_QUOTES);
      (init.logger ?? createLogger()).info({ tcti: tools.tcti, akHandle: `0x${handle.toString(16)}`, akHash: attestor.ak.digest.toString('hex') }, 'TPM attestor open, PCR 16 reset');
      return attestor;
    } catch (err) {
      await tools.close();
      throw err;
    }
  }

  /** The AK binding: the host's signature over the AK's public area. */
  get akBinding(): Buffer {
    return Buffer.from(this.#binding);
  }

  /**
   * Extends PCR 16 with the measurement's event and appends it to the log, once per distinct
   * measurement. Measurements that arrive while the TPM is busy are extended together, in arrival
   * order, by one tpm2_pcrextend (a cold start of many functions pays one process, not one each).
   * If the extend fails, the log is not appended: later quotes then fail to verify (the PCR may
   * hold events the log lacks) rather than attest something unmeasured.
   */
  measure(measurement: Measurement): Promise<void> {
    assertMeasurement(measurement);
    if (this.#log.has(measurement)) return Promise.resolve();
    const key = measurementKey(measurement);
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const batch = this.#batch ?? this.#startBatch();
    batch.entries.push({ service: measurement.service, digest: Buffer.from(measurement.digest) });
    this.#pending.set(key, batch.done);
    return batch.done;
  }

  #startBatch(): { entries: Measurement[]; done: Promise<void> } {
    const entries: Measurement[] = [];
    const done = this.#tools
      .exclusive(async () => {
        this.#batch = null; // from here on, new measurements go to the next batch
        await this.#tools.pcrExtend(MEASUREMENT_PCR, entries.map(measurementEvent));
        for (const entry of entries) this.#log.add(entry);
      })
      .finally(() => {
        for (const entry of entries) this.#pending.delete(measurementKey(entry));
      });
    this.#batch = { entries, done };
    return this.#batch;
  }

  async credentials(instance: InstanceMeasurement): Promise<Credential[]> {
    await this.measure(instance);
    return [tpmCredential(this.#binding)];
  }

  async evidence(nonce: Uint8Array): Promise<Buffer> {
    assertNonce(nonce);
    if (this.#pendingQuotes >= this.#maxPendingQuotes) {
      throw new ThemisError('ERR_ATTEST_UNAVAILABLE', `the host's TPM has ${this.#pendingQuotes} quotes waiting; ask again shortly`, { expose: true });
    }
    const qualifying = qualifyingData(this.hostPub, nonce);
    this.#pendingQuotes++;
    try {
      return await this.#tools.exclusive(async () => {
        const log = this.#log.entries(); // inside exclusive: no extend runs between reading the log and the quote
        const { attest, signature } = await this.#tools.quote(this.#handle, MEASUREMENT_PCR, qualifying);
        return encodeTpmEvidence(this.#binding, attest, signature, log);
      });
    } finally {
      this.#pendingQuotes--;
    }
  }

  log(): Measurement[] {
    return this.#log.entries();
  }

  /** The tpm2-tools TCTI string in use (for `themis attest`). */
  get tcti(): string {
    return this.#tools.tcti;
  }

  async close(): Promise<void> {
    await this.#tools.close();
  }
}
