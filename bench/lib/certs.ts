/**
 * Throwaway PKI for the TLS baseline, made at run time with the `openssl` CLI: a CA, a server
 * certificate (SAN 127.0.0.1 and localhost, serverAuth) and a client certificate (clientAuth),
 * all valid for one day, in a fresh temp directory the caller removes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TlsKeyType = 'ed25519' | 'p256';
export const TLS_KEY_TYPES: readonly TlsKeyType[] = ['ed25519', 'p256'];

export interface TlsMaterial {
  readonly dir: string;
  readonly keyType: TlsKeyType;
  readonly ca: Buffer;
  readonly serverCert: Buffer;
  readonly serverKey: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
}

/** File names inside the directory, shared with the server process. */
export const CERT_FILES = {
  ca: 'ca.crt',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'client.crt',
  clientKey: 'client.key',
} as const;

function openssl(dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(`openssl ${args[0]} failed${stderr ? `: ${stderr}` : ''} (is the openssl CLI installed?)`, { cause: err });
  }
}

function genKey(dir: string, type: TlsKeyType, out: string): void {
  if (type === 'ed25519') openssl(dir, ['genpkey', '-algorithm', 'ed25519', '-out', out]);
  else openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-pkeyopt', 'ec_param_enc:named_curve', '-out', out]);
}

/** Ed25519 signs the message itself; ECDSA needs a digest. */
function digestArgs(type: TlsKeyType): string[] {
  return type === 'ed25519' ? [] : ['-sha256'];
}

/** Leaf extensions: not a CA, signing only; the caller adds extendedKeyUsage and subjectAltName. */
export const LEAF_EXTENSIONS = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n';

/**
 * Issues `name.key` + `name.crt` (CN=`themis-bench-<name>`) in `dir`, signed by the CA there
 * (`ca.crt`, `ca.key`, made by generateCa), valid for one day.
 */
export function issue(dir: string, type: TlsKeyType, name: string, extensions: string): void {
  genKey(dir, type, `${name}.key`);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=themis-bench-${name}`, ...digestArgs(type), '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', CERT_FILES.ca, '-CAkey', 'ca.key',
    '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-days', '1', ...digestArgs(type),
    '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ]);
}

/** Makes a self-signed CA (`ca.key`, `ca.crt`) valid for one day in a new temp directory; returns it. */
export function generateCa(keyType: TlsKeyType): string {
  const dir = mkdtempSync(join(tmpdir(), 'themis-bench-tls-'));
  try {
    genKey(dir, keyType, 'ca.key');
    openssl(dir, [
      'req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=themis-bench-ca', '-days', '1', ...digestArgs(keyType),
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-out', CERT_FILES.ca,
    ]);
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Generates the CA and both leaf certificates into a new temp directory. */
export function generateTlsMaterial(keyType: TlsKeyType): TlsMaterial {
  const dir = generateCa(keyType);
  try {
    issue(dir, keyType, 'server', `${LEAF_EXTENSIONS}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`);
    issue(dir, keyType, 'client', `${LEAF_EXTENSIONS}extendedKeyUsage=clientAuth\n`);
    return { ...readTlsMaterial(dir), keyType };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Reads the files written by generateTlsMaterial (the server process does this). */
export function readTlsMaterial(dir: string): Omit<TlsMaterial, 'keyType'> {
  const read = (file: string): Buffer => readFileSync(join(dir, file));
  return {
    dir,
    ca: read(CERT_FILES.ca),
    serverCert: read(CERT_FILES.serverCert),
    serverKey: read(CERT_FILES.serverKey),
    clientCert: read(CERT_FILES.clientCert),
    clientKey: read(CERT_FILES.clientKey),
  };
}
