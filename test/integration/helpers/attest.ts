import assert from 'node:assert/strict';
import { toBase32 } from '../../../src/core/bytes.js';
import { isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import type { Identity } from '../../../src/identity/index.js';
import { parsePolicyYaml, type Policy } from '../../../src/mesh/index.js';
import { sha256 } from './mesh.js';

/** Shared by the attestation tests: the `bank` trust domain's code and policy. */
export const code = { users: sha256('users v1'), usersModified: sha256('users v1, patched after signing'), gateway: sha256('gateway v1') };

/** Services users and gateway with one allowed digest each, rule gateway → users.get, `host` trusted; `extra` YAML appended. */
export function bankPolicy(host: Identity, extra = ''): Policy {
  return parsePolicyYaml(`trustDomain: bank
seq: 1
hosts:
  - { name: host-1, key: ${toBase32(host.publicKey)} }
services:
  users: { digests: ["${code.users.toString('hex')}"] }
  gateway: { digests: ["${code.gateway.toString('hex')}"] }
rules:
  - { from: gateway, to: users, methods: [get] }
${extra}`);
}

export const refusedWith = (expected: ErrorCode) => (err: unknown) => {
  assert.ok(isThemisError(err, expected), `expected ${expected}, got ${(err as Error).message}`);
  return true;
};
