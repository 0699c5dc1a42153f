import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import { keyPairFromRaw } from '../identity/index.js';
import { FunctionError } from './function-error.js';

/**
 * The bearer tokens the gateway issues at its login route: compact JWS, EdDSA (Ed25519, RFC 8037),
 * with `sub` (the user id), `iat`, `exp` and the app as issuer and audience. They authenticate an
 * end user to the gateway only; downstream calls carry principal tokens the gateway's own mesh
 * identity issues per call (mesh/tokens.ts).
 */
export interface BearerTokens {
  issue(subject: string): Promise<{ token: string; expiresIn: number }>;
  /** The subject of a valid token; a FunctionError 401 otherwise. */
  verify(token: string): Promise<{ subject: string }>;
}

export interface BearerTokenInit {
  /** The app name: issuer and audience of every token. */
  readonly app: string;
  readonly ttlSeconds: number;
  /** 32-byte Ed25519 seed; default a random one (tokens then die with the process). */
  readonly seed?: Uint8Array;
}

export function createBearerTokens(init: BearerTokenInit): BearerTokens {
  const pair = keyPairFromRaw('Ed25519', init.seed ?? randomBytes(32));
  const privateKey: KeyObject = pair.privateKey;
  const publicKey = createPublicKey(privateKey);
  const issuer = `themis-gateway:${init.app}`;
  return {
    async issue(subject) {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
        .setSubject(subject)
        .setIssuer(issuer)
        .setAudience(issuer)
        .setIssuedAt()
        .setExpirationTime(`${init.ttlSeconds}s`)
        .sign(privateKey);
      return { token, expiresIn: init.ttlSeconds };
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, publicKey, { algorithms: ['EdDSA'], issuer, audience: issuer });
        if (typeof payload.sub !== 'string' || payload.sub === '') throw new FunctionError(401, 'UNAUTHORIZED', 'the bearer token names no user; log in again');
        return { subject: payload.sub };
      } catch (err) {
        if (err instanceof FunctionError) throw err;
        const expired = err instanceof errors.JWTExpired;
        throw new FunctionError(401, 'UNAUTHORIZED', expired ? 'the bearer token has expired; log in again' : 'the bearer token is not valid; log in again');
      }
    },
  };
}
