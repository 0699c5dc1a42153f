import type { Credential } from '../handshake/index.js';
import type { Identity } from '../identity/index.js';
import { CodeDigestAttestor } from './code-digest.js';
import type { AttestationKind } from './evidence.js';
import type { Measurement } from './measurement.js';
import { TpmAttestor, type TpmAttestorInit } from './tpm/attestor.js';

/** Which attestor a host runs: code digest only, or a TPM 2.0 at `tpm` (`socket:PATH` for swtpm, or a device path). */
export type AttestationMode = { readonly mode: 'code-digest' } | ({ readonly mode: 'tpm'; readonly tpm: string } & TpmAttestorInit);

/** The instance a host asks credentials for at its cold start. */
export interface InstanceMeasurement extends Measurement {
  /** The instance's NodeId (32 bytes). */
  readonly nodeId: Buffer;
}

/**
 * The host side of attestation (docs/attestation.md): one per host, shared by all its instances.
 * Both plugins keep an IMA-like log of what the host loaded; the TPM one also extends a PCR.
 */
export interface HostAttestor {
  readonly kind: AttestationKind;
  /** The host's Ed25519 public key: evidence is signed by, or bound to, it. */
  readonly hostPub: Buffer;
  /** Records that the host loads this code (a measurement is logged once, however many instances run it). */
  measure(measurement: Measurement): Promise<void>;
  /** Measures the instance's code, then returns the extra credentials for its identity proof (TPM: the AK binding; code digest: none, the endorsement carries the digest). */
  credentials(instance: InstanceMeasurement): Promise<Credential[]>;
  /** The host's evidence over a verifier's 32-byte nonce (a mesh's EvidenceResponder). */
  evidence(nonce: Uint8Array): Promise<Buffer>;
  /** The measurements so far, in order. */
  log(): Measurement[];
  close(): Promise<void>;
}

/**
 * Starts the host's attestor. TPM mode opens (or creates and persists) the AK, resets the
 * measurement PCR and starts an empty event log; it throws ERR_ATTEST_TPM when the TPM or
 * tpm2-tools is missing.
 *
 * @example
 * const attestor = await createHostAttestor({ mode: 'tpm', tpm: 'socket:/run/swtpm/tpm.sock' }, host);
 * const credentials = await attestor.credentials({ nodeId: instance.nodeId, service: 'users', digest });
 * const mesh = await createMesh({ identity: instance, credentials: [endorsement, ...credentials],
 *   attestation: { evidence: (nonce) => attestor.evidence(nonce) }, ... });
 */
export async function createHostAttestor(mode: AttestationMode, hostIdentity: Identity): Promise<HostAttestor> {
  switch (mode.mode) {
    case 'code-digest':
      return new CodeDigestAttestor(hostIdentity);
    case 'tpm':
      return TpmAttestor.open(mode.tpm, hostIdentity, mode);
    default:
      throw new RangeError(`attestation mode ${JSON.stringify((mode as { mode: unknown }).mode)} is not code-digest or tpm`);
  }
}
