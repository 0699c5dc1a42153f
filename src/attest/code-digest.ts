import type { Credential } from '../handshake/index.js';
import type { Identity } from '../identity/index.js';
import type { HostAttestor, InstanceMeasurement } from './attestor.js';
import { NONCE_LENGTH, encodeCodeEvidence } from './evidence.js';
import { EventLog, assertMeasurement, type Measurement } from './measurement.js';

/**
 * Code-digest attestation: the host's endorsement of each instance carries the signed code digest
 * (mesh endorse()), and the policy lists the allowed digests per service. The host's evidence is
 * its signature over the verifier's nonce and its measurement log — no hardware root, so it is
 * only as trustworthy as the host key (docs/attestation.md §6).
 */
export class CodeDigestAttestor implements HostAttestor {
  readonly kind = 'code-digest';
  readonly hostPub: Buffer;
  readonly #host: Identity;
  readonly #log = new EventLog();

  constructor(host: Identity) {
    this.#host = host;
    this.hostPub = Buffer.from(host.publicKey);
  }

  async measure(measurement: Measurement): Promise<void> {
    assertMeasurement(measurement);
    if (!this.#log.has(measurement)) this.#log.add(measurement);
  }

  async credentials(instance: InstanceMeasurement): Promise<Credential[]> {
    await this.measure(instance);
    return [];
  }

  async evidence(nonce: Uint8Array): Promise<Buffer> {
    assertNonce(nonce);
    return encodeCodeEvidence(this.#host, nonce, this.#log.entries());
  }

  log(): Measurement[] {
    return this.#log.entries();
  }

  async close(): Promise<void> {}
}

export function assertNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_LENGTH) throw new RangeError(`a verifier's nonce is ${NONCE_LENGTH} bytes`);
}
