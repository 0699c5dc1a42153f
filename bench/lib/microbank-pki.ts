/**
 * The mtls-jwt baseline's PKI, as MiSSFIRE runs it: one CA for the application that issues every
 * service (and the gateway) an X.509 certificate when the application starts. Real certificates,
 * made with the `openssl` CLI like the channel bench's (bench/lib/certs.ts): node:crypto cannot
 * sign certificates, and the CLI adds no dependency. Each certificate: CN `themis-bench-<service>`
 * (the service's identity for authorization), SAN 127.0.0.1/localhost, serverAuth + clientAuth
 * (every service both serves and calls), one day.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CERT_FILES, LEAF_EXTENSIONS, generateCa, issue, type TlsKeyType } from './certs.js';
import type { ServiceTls } from './microbank-wire.js';

const SERVICE_EXTENSIONS = `${LEAF_EXTENSIONS}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`;

/** Makes the CA and a certificate for each of `services` in a new temp directory the caller removes. */
export function issueServiceCertificates(keyType: TlsKeyType, services: readonly string[]): string {
  const dir = generateCa(keyType);
  for (const service of services) issue(dir, keyType, service, SERVICE_EXTENSIONS);
  return dir;
}

/** One service's material from the directory issueServiceCertificates wrote. */
export function readServiceTls(dir: string, service: string, keyType: TlsKeyType): ServiceTls {
  return {
    ca: readFileSync(join(dir, CERT_FILES.ca)),
    cert: readFileSync(join(dir, `${service}.crt`)),
    key: readFileSync(join(dir, `${service}.key`)),
    alg: keyType === 'ed25519' ? 'EdDSA' : 'ES256',
  };
}
