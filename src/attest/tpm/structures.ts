import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { Reader } from '../../core/codec.js';
import { ThemisError } from '../../core/errors.js';

/**
 * The few TPM 2.0 structures a verifier reads, parsed by hand (TPM 2.0 Library, Part 2:
 * Structures, rev 1.59). All integers are big-endian. Only what Themis uses is accepted: an ECC
 * P-256 restricted signing key with ECDSA-SHA256, quotes over SHA-256 PCR banks.
 */

// Part 2 §6.3 TPM_ALG_ID, §6.4 TPM_ECC_CURVE, §6.2 TPM_GENERATED, §6.9 TPM_ST
export const TPM_ALG_SHA256 = 0x000b;
const TPM_ALG_ECC = 0x0023;
const TPM_ALG_ECDSA = 0x0018;
const TPM_ALG_NULL = 0x0010;
const TPM_ECC_NIST_P256 = 0x0003;
const TPM_GENERATED_VALUE = 0xff544347;
const TPM_ST_ATTEST_QUOTE = 0x8018;
// Part 2 §8.3 TPMA_OBJECT bits an attestation key must have
const TPMA_OBJECT_FIXED_TPM = 1 << 1;
const TPMA_OBJECT_FIXED_PARENT = 1 << 4;
const TPMA_OBJECT_SENSITIVE_DATA_ORIGIN = 1 << 5;
const TPMA_OBJECT_RESTRICTED = 1 << 16;
const TPMA_OBJECT_SIGN = 1 << 18;
const AK_REQUIRED_ATTRIBUTES = TPMA_OBJECT_FIXED_TPM | TPMA_OBJECT_FIXED_PARENT | TPMA_OBJECT_SENSITIVE_DATA_ORIGIN | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN;
const P256_COORDINATE = 32;
const SHA256_LENGTH = 32;

function bad(what: string, message: string): ThemisError {
  return new ThemisError('ERR_ATTEST_EVIDENCE_INVALID', `${what}: ${message}`);
}

/** Runs a parser over a copy of `bytes`; a decoding failure (truncated, trailing bytes, a bad length) becomes ERR_ATTEST_EVIDENCE_INVALID too. */
function parsing<T>(what: string, bytes: Uint8Array, parse: (r: Reader) => T): T {
  try {
    return parse(new Reader(Buffer.from(bytes), what));
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_ATTEST_EVIDENCE_INVALID') throw err;
    throw bad(what, (err as Error).message);
  }
}

/** An attestation key's public area (TPMT_PUBLIC), checked to be a TPM-resident P-256 restricted signing key. */
export interface AkPublic {
  /** The TPMT_PUBLIC bytes as given. */
  readonly area: Buffer;
  /** SHA-256 of `area`: the AK's TPM name without the 000b algorithm prefix; what policies list. */
  readonly digest: Buffer;
  readonly key: KeyObject;
}

/** Part 2 §12.2.4 TPMT_PUBLIC with §12.2.3.6 TPMS_ECC_PARMS and §11.2.5.2 TPMS_ECC_POINT. */
export function parseAkPublic(area: Uint8Array): AkPublic {
  const what = 'TPM attestation key';
  const bytes = Buffer.from(area);
  return parsing(what, bytes, (r) => {
    if (r.u16() !== TPM_ALG_ECC) throw bad(what, 'is not an ECC key');
    if (r.u16() !== TPM_ALG_SHA256) throw bad(what, 'name algorithm is not SHA-256');
    const attributes = r.u32();
    if ((attributes & AK_REQUIRED_ATTRIBUTES) !== AK_REQUIRED_ATTRIBUTES) {
      throw bad(what, 'is not a TPM-resident restricted signing key (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign)');
    }
    r.vec16(); // authPolicy
    if (r.u16() !== TPM_ALG_NULL) throw bad(what, 'has a symmetric algorithm; a signing key has none');
    if (r.u16() !== TPM_ALG_ECDSA || r.u16() !== TPM_ALG_SHA256) throw bad(what, 'scheme is not ECDSA with SHA-256');
    if (r.u16() !== TPM_ECC_NIST_P256) throw bad(what, 'curve is not NIST P-256');
    if (r.u16() !== TPM_ALG_NULL) throw bad(what, 'has a KDF; a signing key has none');
    const x = r.vec16();
    const y = r.vec16();
    r.end();
    if (x.length !== P256_COORDINATE || y.length !== P256_COORDINATE) throw bad(what, 'point coordinates are not 32 bytes');
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
    return { area: bytes, digest: sha256(bytes), key };
  });
}

/** Part 2 §10.6.2 TPMS_PCR_SELECTION: a bank and the PCR indexes selected in it. */
export interface PcrSelection {
  readonly hash: number;
  readonly pcrs: readonly number[];
}

/** Part 2 §10.12.12 TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (§10.12.1 TPMS_QUOTE_INFO). */
export interface QuoteAttest {
  readonly qualifiedSigner: Buffer;
  /** The verifier's nonce as the quote's qualifyingData (TPM2B_DATA). */
  readonly extraData: Buffer;
  readonly clock: number;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
  readonly firmwareVersion: Buffer;
  readonly selections: readonly PcrSelection[];
  /** Hash (the AK's name algorithm) of the selected PCR values concatenated in selection order. */
  readonly pcrDigest: Buffer;
}

export function parseQuoteAttest(bytes: Uint8Array): QuoteAttest {
  const what = 'TPM quote (TPMS_ATTEST)';
  return parsing(what, bytes, (r) => {
    if (r.u32() !== TPM_GENERATED_VALUE) throw bad(what, 'magic is not TPM_GENERATED_VALUE: not produced by a TPM');
    if (r.u16() !== TPM_ST_ATTEST_QUOTE) throw bad(what, 'is not a quote (type TPM_ST_ATTEST_QUOTE)');
    const quote = {
      // fields in wire order: an object literal evaluates its properties in order
      qualifiedSigner: r.vec16(),
      extraData: r.vec16(),
      clock: r.u64(),
      resetCount: r.u32(),
      restartCount: r.u32(),
      safe: r.u8() === 1,
      firmwareVersion: r.fixed(8),
      selections: readSelections(r),
      pcrDigest: r.vec16(),
    };
    r.end();
    return quote;
  });
}

/** Part 2 §10.9.7 TPML_PCR_SELECTION. */
function readSelections(r: Reader): PcrSelection[] {
  const count = r.u32();
  if (count > 16) throw new RangeError(`${count} PCR banks selected; at most 16`);
  const selections: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hash = r.u16();
    const select = r.vec8(4); // sizeofSelect ‖ pcrSelect: bit n of byte b selects PCR 8b + n
    const pcrs: number[] = [];
    select.forEach((byte, b) => {
      for (let bit = 0; bit < 8; bit++) if ((byte >> bit) & 1) pcrs.push(8 * b + bit);
    });
    selections.push({ hash, pcrs });
  }
  return selections;
}

/** Part 2 §11.3.4 TPMT_SIGNATURE with §11.3.2 TPMS_SIGNATURE_ECDSA, as IEEE P1363 r ‖ s for node:crypto. */
export function parseEcdsaSignature(bytes: Uint8Array): Buffer {
  const what = 'TPM quote signature (TPMT_SIGNATURE)';
  return parsing(what, bytes, (r) => {
    if (r.u16() !== TPM_ALG_ECDSA) throw bad(what, 'is not ECDSA');
    if (r.u16() !== TPM_ALG_SHA256) throw bad(what, 'hash is not SHA-256');
    const sigR = r.vec16();
    const sigS = r.vec16();
    r.end();
    if (sigR.length > P256_COORDINATE || sigS.length > P256_COORDINATE) throw bad(what, 'r or s is longer than 32 bytes');
    return Buffer.concat([leftPad(sigR), leftPad(sigS)]);
  });
}

function leftPad(n: Buffer): Buffer {
  return Buffer.concat([Buffer.alloc(P256_COORDINATE - n.length), n]);
}

/** Strips the TPM2B size prefix of a TPM2B_PUBLIC (what `tpm2_readpublic -f tss` writes). */
export function publicAreaOf(tpm2bPublic: Uint8Array): Buffer {
  const r = new Reader(Buffer.from(tpm2bPublic), 'TPM2B_PUBLIC');
  const area = r.vec16();
  r.end();
  return area;
}

export function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

export { SHA256_LENGTH };
