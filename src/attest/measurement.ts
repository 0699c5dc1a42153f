import { Reader, Writer } from '../core/codec.js';
import { isName } from '../mesh/index.js';
import { sha256 } from './tpm/structures.js';

/**
 * A code measurement (docs/attestation.md §1): the service an instance runs and the SHA-256 code
 * digest the host computed for it (codeDigest: its module and its manifest entry).
 */
export interface Measurement {
  readonly service: string;
  /** 32 bytes. */
  readonly digest: Buffer;
}

export const DIGEST_LENGTH = 32;
/** Most entries in one event log. */
export const MAX_EVENTS = 1024;
const MEASUREMENT_TAG = 'themis/measurement/v1';
const CODE_TAG = 'themis/code/v1';

/**
 * The code digest of a function: SHA-256("themis/code/v1" ‖ 0x00 ‖ SHA-256(module) ‖
 * SHA-256(manifest entry)), so changing either the code or its manifest entry (limits,
 * environment, entry point) changes the measurement.
 */
export function codeDigest(module: Uint8Array, manifestEntry: Uint8Array): Buffer {
  return sha256(Buffer.from(`${CODE_TAG}\0`), sha256(module), sha256(manifestEntry));
}

/** The event a measurement extends the PCR with: SHA-256("themis/measurement/v1" ‖ 0x00 ‖ str8 service ‖ bytes[32] digest). */
export function measurementEvent(measurement: Measurement): Buffer {
  return sha256(Buffer.from(`${MEASUREMENT_TAG}\0`), new Writer(72).str8(measurement.service).fixed(measurement.digest, DIGEST_LENGTH).finish());
}

/** Replays an event log from the PCR's reset value (32 zero bytes): PCR := SHA-256(PCR ‖ event) per entry (TPM 2.0 Part 1 §17.2). */
export function replayLog(log: readonly Measurement[]): Buffer {
  let pcr: Buffer = Buffer.alloc(DIGEST_LENGTH);
  for (const measurement of log) pcr = sha256(pcr, measurementEvent(measurement));
  return pcr;
}

/** A measurement's key in sets and caches. */
export function measurementKey(measurement: Measurement): string {
  return `${measurement.service}/${measurement.digest.toString('hex')}`;
}

export function assertMeasurement(measurement: Measurement): void {
  if (!isName(measurement.service)) throw new RangeError(`service ${JSON.stringify(measurement.service)} is not a valid name (1..64 characters a-z, 0-9 and -)`);
  if (!(measurement.digest instanceof Uint8Array) || measurement.digest.length !== DIGEST_LENGTH) {
    throw new RangeError(`a code digest is ${DIGEST_LENGTH} bytes (SHA-256)`);
  }
}

/** u16 n ‖ n × (str8 service ‖ bytes[32] digest) */
export function writeLog(w: Writer, log: readonly Measurement[]): Writer {
  w.u16(log.length);
  for (const m of log) w.str8(m.service).fixed(m.digest, DIGEST_LENGTH);
  return w;
}

export function readLog(r: Reader): Measurement[] {
  const count = r.u16();
  if (count > MAX_EVENTS) throw new RangeError(`event log of ${count} entries; the limit is ${MAX_EVENTS}`);
  const log: Measurement[] = [];
  for (let i = 0; i < count; i++) {
    const service = r.str8();
    if (!isName(service)) throw new RangeError(`event ${i}: service ${JSON.stringify(service)} is not a valid name`);
    log.push({ service, digest: r.fixed(DIGEST_LENGTH) });
  }
  return log;
}

/** An IMA-like measurement list: each distinct measurement once, in the order first measured. */
export class EventLog {
  readonly #entries: Measurement[] = [];
  readonly #keys = new Set<string>();

  has(measurement: Measurement): boolean {
    return this.#keys.has(measurementKey(measurement));
  }

  add(measurement: Measurement): void {
    if (this.#entries.length >= MAX_EVENTS) throw new RangeError(`the event log holds at most ${MAX_EVENTS} measurements`);
    this.#keys.add(measurementKey(measurement));
    this.#entries.push({ service: measurement.service, digest: Buffer.from(measurement.digest) });
  }

  /** A copy of the entries so far. */
  entries(): Measurement[] {
    return [...this.#entries];
  }
}
