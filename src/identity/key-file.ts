import { open, readFile, stat } from 'node:fs/promises';
import { ThemisError } from '../core/errors.js';
import { Identity } from './identity.js';
import type { NetworkConfig } from './network.js';

const KEY_FILE_TYPE = 'themis-identity-v1';

interface KeyFileJson {
  type: typeof KEY_FILE_TYPE;
  id: string;
  identity: string;
  noiseStatic: string;
  puzzleNonce: string;
}

/**
 * Writes an identity's secrets as JSON with mode 0600. Refuses to overwrite an existing file
 * unless `overwrite` is set.
 */
export async function writeKeyFile(path: string, identity: Identity, options: { overwrite?: boolean } = {}): Promise<void> {
  const secrets = identity.exportSecrets();
  const json: KeyFileJson = {
    type: KEY_FILE_TYPE,
    id: identity.id,
    identity: Buffer.from(secrets.identity).toString('base64url'),
    noiseStatic: Buffer.from(secrets.noiseStatic).toString('base64url'),
    puzzleNonce: Buffer.from(secrets.puzzleNonce).toString('base64url'),
  };
  let handle;
  try {
    handle = await open(path, options.overwrite === true ? 'w' : 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'EEXIST' ? 'it already exists; choose another path or pass --force to replace it' : (err as Error).message;
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `cannot write key file ${path}: ${hint}`, { cause: err });
  }
  try {
    await handle.chmod(0o600); // an existing file keeps its mode on open(); make it private.
    await handle.writeFile(`${JSON.stringify(json, null, 2)}\n`);
  } finally {
    await handle.close();
  }
}

/**
 * Reads a key file. Refuses a file that group or others can read or write (like ssh does):
 * the message says how to fix it.
 */
export async function readKeyFile(path: string, network?: NetworkConfig): Promise<Identity> {
  let mode: number;
  let text: string;
  try {
    mode = (await stat(path)).mode;
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `cannot read key file ${path}: ${(err as Error).message}; create one with \`themis keygen --out ${path}\``, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    throw new ThemisError(
      'ERR_IDENTITY_KEY_PERMISSIONS',
      `key file ${path} is accessible by other users (mode ${(mode & 0o777).toString(8)}); run \`chmod 600 ${path}\``,
    );
  }
  let json: Partial<KeyFileJson>;
  try {
    json = JSON.parse(text) as Partial<KeyFileJson>;
  } catch (err) {
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `key file ${path} is not valid JSON`, { cause: err });
  }
  if (json.type !== KEY_FILE_TYPE || typeof json.identity !== 'string' || typeof json.noiseStatic !== 'string') {
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `key file ${path} is not a Themis identity (expected "type": "${KEY_FILE_TYPE}")`);
  }
  const secrets = {
    identity: decodeSecret(json.identity, path, 'identity'),
    noiseStatic: decodeSecret(json.noiseStatic, path, 'noiseStatic'),
    ...(typeof json.puzzleNonce === 'string' ? { puzzleNonce: decodeSecret(json.puzzleNonce, path, 'puzzleNonce') } : {}),
  };
  return Identity.fromSecrets(secrets, network);
}

function decodeSecret(text: string, path: string, field: string): Buffer {
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.length !== 32 || bytes.toString('base64url') !== text) {
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `key file ${path} has a malformed "${field}" (expected 32 bytes in base64url)`);
  }
  return bytes;
}
