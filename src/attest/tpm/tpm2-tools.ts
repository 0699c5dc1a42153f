import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toHex } from '../../core/bytes.js';
import { ThemisError } from '../../core/errors.js';
import { publicAreaOf } from './structures.js';

/** Persistent handle of the host's attestation key (TPM 2.0 Part 1 §32.4.3: owner persistent range 0x81000000–0x817FFFFF). */
export const DEFAULT_AK_HANDLE = 0x81010002;
/** The PCR the host extends with code measurements: 16, the debug PCR, resettable at locality 0 (PC Client PTP §3.3.4). */
export const MEASUREMENT_PCR = 16;
/** A tpm2-tools command that runs longer than this has lost its TPM. */
const COMMAND_TIMEOUT_MS = 30_000;

/**
 * Where the TPM is: `socket:PATH` is a swtpm unix socket (TCTI `swtpm:path=PATH`); any other
 * absolute path is a TPM character device (TCTI `device:PATH`, e.g. /dev/tpmrm0).
 */
export function tctiFor(spec: string): string {
  if (spec.startsWith('socket:') && spec.length > 'socket:'.length) return `swtpm:path=${spec.slice('socket:'.length)}`;
  if (spec.startsWith('/')) return `device:${spec}`;
  throw new RangeError(`TPM location "${spec}" is neither socket:PATH (a swtpm socket) nor an absolute device path such as /dev/tpmrm0`);
}

/**
 * A TPM reached through tpm2-tools child processes. There is no resource manager in front of a
 * swtpm socket, so commands run one at a time and every command that loads a transient object
 * or session flushes it afterwards (TPM 2.0 Part 3 §28.4 TPM2_FlushContext); otherwise the TPM
 * runs out of object slots (TPM_RC_OBJECT_MEMORY, 0x902).
 */
export class Tpm2Tools {
  readonly tcti: string;
  readonly #dir: string;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(tcti: string, dir: string) {
    this.tcti = tcti;
    this.#dir = dir;
  }

  static async open(spec: string): Promise<Tpm2Tools> {
    const tcti = tctiFor(spec);
    return new Tpm2Tools(tcti, await mkdtemp(join(tmpdir(), 'themis-tpm-')));
  }

  /** Runs `work` after every earlier command finished: the TPM sees one client at a time. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** TPM2_ReadPublic of a persistent handle: its TPMT_PUBLIC, or null when nothing is persisted there. */
  async readPublic(handle: number): Promise<Buffer | null> {
    const out = this.#file('read.pub');
    try {
      await this.#run('tpm2_readpublic', ['-c', hex(handle), '-f', 'tss', '-o', out]);
    } catch (err) {
      // TPM_RC_HANDLE (0x18B): nothing is persisted at that handle
      if (err instanceof ThemisError && /0x18b/i.test(err.message)) return null;
      throw err;
    }
    return publicAreaOf(await readFile(out));
  }

  /**
   * Creates the endorsement key (ECC P-256, TCG EK Credential Profile template) and under it an
   * attestation key (ECC P-256, restricted, ECDSA-SHA256), and persists the AK at `handle`.
   * Returns the AK's TPMT_PUBLIC.
   */
  async createAk(handle: number): Promise<Buffer> {
    const ek = this.#file('ek.ctx');
    const ak = this.#file('ak.ctx');
    await this.#run('tpm2_createek', ['-c', ek, '-G', 'ecc', '-u', this.#file('ek.pub')]);
    await this.#flush('-t');
    await this.#run('tpm2_createak', ['-C', ek, '-c', ak, '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', this.#file('ak.pub'), '-n', this.#file('ak.name'), '-p', '']);
    await this.#flush('-t');
    await this.#flush('-s');
    await this.#run('tpm2_evictcontrol', ['-C', 'o', '-c', ak, hex(handle)]);
    await this.#flush('-t');
    const area = await this.readPublic(handle);
    if (area === null) throw new ThemisError('ERR_ATTEST_TPM', `the attestation key persisted at ${hex(handle)} cannot be read back`);
    return area;
  }

  /** TPM2_PCR_Reset (Part 3 §22.8). */
  async pcrReset(pcr: number): Promise<void> {
    await this.#run('tpm2_pcrreset', [String(pcr)]);
  }

  /** TPM2_PCR_Extend of the SHA-256 bank (Part 3 §22.2), once per digest in order: PCR := SHA-256(PCR ‖ digest). One process for all. */
  async pcrExtend(pcr: number, digests: readonly Buffer[]): Promise<void> {
    await this.#run('tpm2_pcrextend', digests.map((digest) => `${pcr}:sha256=${toHex(digest)}`));
  }

  /** TPM2_Quote (Part 3 §18.4) of the SHA-256 bank's `pcr` by the key at `handle`: the TPMS_ATTEST and its TPMT_SIGNATURE. */
  async quote(handle: number, pcr: number, qualifyingData: Buffer): Promise<{ attest: Buffer; signature: Buffer }> {
    const message = this.#file('quote.msg');
    const signature = this.#file('quote.sig');
    // A quote by a persistent key with password auth leaves no transient object or session to flush (checked with tpm2_getcap).
    await this.#run('tpm2_quote', ['-c', hex(handle), '-l', `sha256:${pcr}`, '-q', toHex(qualifyingData), '-m', message, '-s', signature, '-g', 'sha256']);
    return { attest: await readFile(message), signature: await readFile(signature) };
  }

  async close(): Promise<void> {
    await this.exclusive(() => rm(this.#dir, { recursive: true, force: true }));
  }

  #file(name: string): string {
    return join(this.#dir, name);
  }

  #flush(kind: '-t' | '-s'): Promise<void> {
    return this.#run('tpm2_flushcontext', [kind]);
  }

  #run(tool: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      execFile(tool, args, { env: { ...process.env, TPM2TOOLS_TCTI: this.tcti }, timeout: COMMAND_TIMEOUT_MS }, (err, _stdout, stderr) => {
        if (err === null) return resolve();
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          return reject(new ThemisError('ERR_ATTEST_TPM', `${tool} is not installed; install tpm2-tools (apt-get install tpm2-tools)`, { cause: err }));
        }
        const detail = String(stderr).trim().split('\n').slice(-2).join(' ') || err.message;
        reject(new ThemisError('ERR_ATTEST_TPM', `${tool} failed against ${this.tcti}: ${detail}`, { cause: err }));
      });
    });
  }
}

function hex(handle: number): string {
  return `0x${handle.toString(16)}`;
}
