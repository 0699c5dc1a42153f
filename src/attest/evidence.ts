import { verify as verifySignature } from 'node:crypto';
import { toBase32, toHex } from '../core/bytes.js';
import { Reader, Writer } from '../core/codec.js';
import { ThemisError, type ErrorCode } from '../core/errors.js';
import { CredentialType, type Credential } from '../handshake/index.js';
import { KEY_LENGTH, openEnvelope, sealEnvelope, type Identity } from '../identity/index.js';
import { readLog, replayLog, writeLog, type Measurement } from './measurement.js';
import { MEASUREMENT_PCR } from './tpm/tpm2-tools.js';
import { TPM_ALG_SHA256, parseAkPublic, parseEcdsaSignature, parseQuoteAttest, sha256, type AkPublic, type QuoteAttest } from './tpm/structures.js';

/**
 * Byte formats of attestation evidence (docs/attestation.md §2, notation of docs/protocol.md §1).
 *
 * Instance credential (type 2, CredentialType.Attestation), TPM mode only:
 *   u8 version = 1 ‖ u8 kind = 1 (tpm) ‖ vec16 akBinding
 * AK binding: a signed envelope by the host's identity key, tag "themis/tpm-ak/v1",
 *   body = vec16 TPMT_PUBLIC of the attestation key
 * Evidence, a host's answer to a verifier's 32-byte nonce:
 *   u8 version = 1 ‖ u8 kind ‖
 *   kind 0 (code-digest): vec16 statement — an envelope by the host, tag "themis/code-evidence/v1",
 *                         body = bytes[32] nonce ‖ log
 *   kind 1 (tpm):         vec16 akBinding ‖ vec16 TPMS_ATTEST ‖ vec16 TPMT_SIGNATURE ‖ log
 *   log = u16 n ‖ n × (str8 service ‖ bytes[32] digest)
 * The quote's qualifyingData is SHA-256("themis/tpm-quote/v1" ‖ 0x00 ‖ hostPub ‖ nonce): the AK
 * quotes over the host's Themis key, and the host's key signs the AK (both bindings).
 */
export const EVIDENCE_VERSION = 1;
export const AK_BINDING_TAG = 'themis/tpm-ak/v1';
export const CODE_EVIDENCE_TAG = 'themis/code-evidence/v1';
const QUOTE_TAG = 'themis/tpm-quote/v1';
export const NONCE_LENGTH = 32;
/** Evidence kinds on the wire. */
export const EvidenceKind = Object.freeze({ CodeDigest: 0, Tpm: 1 });
export type AttestationKind = 'code-digest' | 'tpm';
/** Largest evidence accepted: 1024 log entries of at most 97 bytes, plus the quote. */
export const MAX_EVIDENCE_BYTES = 128 * 1024;

export function qualifyingData(hostPub: Uint8Array, nonce: Uint8Array): Buffer {
  return sha256(Buffer.from(`${QUOTE_TAG}\0`), hostPub, nonce);
}

/** The host's signature over its attestation key's public area. */
export function bindAk(host: Identity, akArea: Uint8Array): Buffer {
  return sealEnvelope(host, AK_BINDING_TAG, new Writer(akArea.length + 2).vec16(akArea).finish());
}

/** An AK binding whose signature verified: the host that signed it and its AK. */
export interface BoundAk {
  readonly hostPub: Buffer;
  readonly ak: AkPublic;
}

export function openAkBinding(bytes: Uint8Array): BoundAk {
  let envelope;
  try {
    envelope = openEnvelope(bytes, AK_BINDING_TAG);
  } catch (err) {
    throw fail('ERR_ATTEST_SIGNATURE', `the host's binding of its TPM attestation key does not verify: ${(err as Error).message}`, err);
  }
  const r = new Reader(envelope.body, 'AK binding');
  const area = decoding(() => {
    const area = r.vec16();
    r.end();
    return area;
  });
  return { hostPub: envelope.signer, ak: parseAkPublic(area) };
}

export function tpmCredential(akBinding: Uint8Array): Credential {
  return { type: CredentialType.Attestation, data: new Writer(akBinding.length + 4).u8(EVIDENCE_VERSION).u8(EvidenceKind.Tpm).vec16(akBinding).finish() };
}

/** The AK binding an instance presents (its one type-2 credential), or null when it presents none. */
export function readTpmCredential(credentials: readonly Credential[]): Buffer | null {
  const presented = credentials.filter((c) => c.type === CredentialType.Attestation);
  if (presented.length === 0) return null;
  if (presented.length > 1) throw fail('ERR_ATTEST_EVIDENCE_INVALID', `the peer presents ${presented.length} attestation credentials; an instance presents one`);
  const r = new Reader(presented[0]!.data, 'attestation credential');
  return decoding(() => {
    readHeader(r, EvidenceKind.Tpm);
    const binding = r.vec16();
    r.end();
    return binding;
  });
}

export function encodeTpmEvidence(akBinding: Uint8Array, attest: Uint8Array, signature: Uint8Array, log: readonly Measurement[]): Buffer {
  const w = new Writer(512).u8(EVIDENCE_VERSION).u8(EvidenceKind.Tpm).vec16(akBinding).vec16(attest).vec16(signature);
  return writeLog(w, log).finish();
}

export function encodeCodeEvidence(host: Identity, nonce: Uint8Array, log: readonly Measurement[]): Buffer {
  const statement = sealEnvelope(host, CODE_EVIDENCE_TAG, writeLog(new Writer(256).fixed(nonce, NONCE_LENGTH), log).finish());
  return new Writer(statement.length + 4).u8(EVIDENCE_VERSION).u8(EvidenceKind.CodeDigest).vec16(statement).finish();
}

/** Evidence whose signatures, nonce and log verified (not yet checked against a policy). */
export interface VerifiedEvidence {
  readonly kind: AttestationKind;
  readonly hostPub: Buffer;
  /** The measurements, in the order the host made them. */
  readonly log: readonly Measurement[];
  /** TPM mode: the attestation key, the quoted PCR value and the quote. */
  readonly tpm?: { readonly ak: AkPublic; readonly pcr: Buffer; readonly quote: QuoteAttest };
}

export interface VerifyEvidenceOptions {
  /** The nonce the verifier sent (32 bytes). */
  readonly nonce: Uint8Array;
  /** The host the evidence must come from (the instance's endorsing host). */
  readonly hostPub?: Uint8Array;
  /** Trusted AK hashes (policy `attestation.tpmKeys`); absent: any AK (the caller checks later). */
  readonly tpmKeys?: readonly Uint8Array[];
}

/**
 * Verifies evidence in the order of docs/attestation.md §3. TPM: AK binding signature by the host;
 * the AK's form; the AK is trusted; the quote signature (ECDSA P-256 over SHA-256 of the
 * TPMS_ATTEST, verified with node:crypto); the nonce (extraData); the PCR selection; the event
 * log replays to the quoted PCR digest. Code digest: the host's signature, the nonce. Throws
 * ERR_ATTEST_*; the input is copied first.
 */
export function verifyEvidence(bytes: Uint8Array, options: VerifyEvidenceOptions): VerifiedEvidence {
  if (options.nonce.length !== NONCE_LENGTH) throw new RangeError(`a nonce is ${NONCE_LENGTH} bytes, got ${options.nonce.length}`);
  if (bytes.length > MAX_EVIDENCE_BYTES) throw fail('ERR_ATTEST_EVIDENCE_INVALID', `evidence of ${bytes.length} bytes; the limit is ${MAX_EVIDENCE_BYTES}`);
  const r = new Reader(Buffer.from(bytes), 'attestation evidence');
  const kind = decoding(() => readHeader(r));
  return kind === EvidenceKind.Tpm ? verifyTpm(r, options) : verifyCode(r, options);
}

function verifyCode(r: Reader, options: VerifyEvidenceOptions): VerifiedEvidence {
  const statement = decoding(() => {
    const statement = r.vec16();
    r.end();
    return statement;
  });
  let envelope;
  try {
    envelope = openEnvelope(statement, CODE_EVIDENCE_TAG);
  } catch (err) {
    throw fail('ERR_ATTEST_SIGNATURE', `the host's code-digest evidence does not verify: ${(err as Error).message}`, err);
  }
  expectHost(envelope.signer, options);
  const body = new Reader(envelope.body, 'code-digest evidence');
  const { nonce, log } = decoding(() => {
    const fields = { nonce: body.fixed(NONCE_LENGTH), log: readLog(body) };
    body.end();
    return fields;
  });
  if (!nonce.equals(Buffer.from(options.nonce))) throw fail('ERR_ATTEST_NONCE', 'the evidence answers another nonce: it is replayed or stale; ask again with a fresh nonce');
  return { kind: 'code-digest', hostPub: envelope.signer, log };
}

function verifyTpm(r: Reader, options: VerifyEvidenceOptions): VerifiedEvidence {
  const fields = decoding(() => {
    const fields = { binding: r.vec16(), attest: r.vec16(), signature: r.vec16(), log: readLog(r) };
    r.end();
    return fields;
  });
  const { hostPub, ak } = openAkBinding(fields.binding);
  expectHost(hostPub, options);
  if (options.tpmKeys !== undefined && !options.tpmKeys.some((key) => ak.digest.equals(Buffer.from(key)))) {
    throw fail('ERR_ATTEST_UNTRUSTED_KEY', `TPM attestation key ${toHex(ak.digest)} of host ${toBase32(hostPub)} is not trusted by the policy; add it under \`attestation.tpmKeys:\` and re-sign the policy`);
  }
  // TPM 2.0 Part 3 §18.4: the signature is over the hash (the AK scheme's, SHA-256) of the TPMS_ATTEST.
  const signature = parseEcdsaSignature(fields.signature);
  if (!verifySignature('sha256', fields.attest, { key: ak.key, dsaEncoding: 'ieee-p1363' }, signature)) {
    throw fail('ERR_ATTEST_SIGNATURE', `the TPM quote's signature does not verify with attestation key ${toHex(ak.digest)}`);
  }
  const quote = parseQuoteAttest(fields.attest);
  if (!quote.extraData.equals(qualifyingData(hostPub, options.nonce))) {
    throw fail('ERR_ATTEST_NONCE', 'the TPM quote answers another nonce (or another host key): it is replayed or stale; ask again with a fresh nonce');
  }
  const [selection, ...others] = quote.selections;
  if (selection === undefined || others.length > 0 || selection.hash !== TPM_ALG_SHA256 || selection.pcrs.length !== 1 || selection.pcrs[0] !== MEASUREMENT_PCR) {
    throw fail('ERR_ATTEST_EVIDENCE_INVALID', `the TPM quote must select exactly PCR ${MEASUREMENT_PCR} of the SHA-256 bank`);
  }
  // TPM 2.0 Part 3 §18.4: pcrDigest = H(PCR values of the selection, concatenated), H = the AK's name algorithm.
  const pcr = replayLog(fields.log);
  if (!sha256(pcr).equals(quote.pcrDigest)) {
    throw fail('ERR_ATTEST_LOG_MISMATCH', `the event log (${fields.log.length} entries) does not replay to the quoted PCR ${MEASUREMENT_PCR}: entries are missing, added or altered`);
  }
  return { kind: 'tpm', hostPub, log: fields.log, tpm: { ak, pcr, quote } };
}

function expectHost(signer: Buffer, options: VerifyEvidenceOptions): void {
  if (options.hostPub !== undefined && !signer.equals(Buffer.from(options.hostPub))) {
    throw fail('ERR_ATTEST_UNTRUSTED_KEY', `the evidence is signed by host ${toBase32(signer)}, not by the instance's endorsing host ${toBase32(options.hostPub)}`);
  }
  if (signer.length !== KEY_LENGTH) throw fail('ERR_ATTEST_EVIDENCE_INVALID', 'the evidence signer is not an Ed25519 key');
}

function readHeader(r: Reader, expectKind?: number): number {
  const version = r.u8();
  if (version !== EVIDENCE_VERSION) throw new RangeError(`version ${version} is not supported; expected ${EVIDENCE_VERSION}`);
  const kind = r.u8();
  if (kind !== EvidenceKind.CodeDigest && kind !== EvidenceKind.Tpm) throw new RangeError(`kind ${kind} is unknown`);
  if (expectKind !== undefined && kind !== expectKind) throw new RangeError(`kind ${kind} where ${expectKind} is expected`);
  return kind;
}

/** Runs a decoder; any failure becomes ERR_ATTEST_EVIDENCE_INVALID. */
function decoding<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ThemisError && err.code.startsWith('ERR_ATTEST_')) throw err;
    throw fail('ERR_ATTEST_EVIDENCE_INVALID', `attestation evidence is malformed: ${(err as Error).message}`, err);
  }
}

/** Refusals are exposed to the remote peer (the policy is public), except failed signatures. */
export function fail(code: ErrorCode, message: string, cause?: unknown): ThemisError {
  return new ThemisError(code, message, { expose: code !== 'ERR_ATTEST_SIGNATURE', ...(cause === undefined ? {} : { cause }) });
}
