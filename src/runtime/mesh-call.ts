import { isThemisError, type ErrorCode } from '../core/errors.js';
import type { CallOptions } from '../mesh/index.js';
import { FunctionError, isOutcome, unwrapOutcome } from './function-error.js';

/**
 * A runtime call over the mesh (the gateway's invoke and a function's ctx.call): make sure the
 * callee has an instance (it may be at zero), call, and unwrap the callee's Outcome. A call that
 * never reached an instance — the one picked was just stopped, or none was listed yet — is tried
 * again after the next ensure(); nothing ran, so this is safe for any method.
 */
export type MeshCall = (service: string, method: string, payload: unknown, options: CallOptions) => Promise<unknown>;

/**
 * How long a runtime caller (gateway, instance) reuses a discovered instance list. Short, because
 * the host starts and stops instances all the time: after a cold start the new instance is found
 * at once instead of a stopped one being dialled; at load, one DHT lookup per service this often.
 */
export const RUNTIME_DISCOVERY_CACHE_MS = 250;

/** Attempts of one runtime call whose request was never delivered. */
const UNDELIVERED_ATTEMPTS = 4;
/** Refusals that mean no instance received the request. */
const UNDELIVERED: readonly ErrorCode[] = ['ERR_TRANSPORT_CONNECT', 'ERR_MESH_NO_INSTANCES', 'ERR_CHANNEL_GOAWAY'];

export async function callService(
  call: MeshCall,
  ensure: (service: string) => Promise<void>,
  service: string,
  method: string,
  payload: unknown,
  options: CallOptions,
): Promise<unknown> {
  const what = `${service}.${method}`;
  for (let attempt = 1; ; attempt++) {
    try {
      await ensure(service);
    } catch (err) {
      throw new FunctionError(503, 'UNAVAILABLE', `${what} has no instance that could start (${(err as Error).message}); retry later`);
    }
    let outcome: unknown;
    try {
      outcome = await call(service, method, payload, { retries: 3, ...options });
    } catch (err) {
      if (attempt < UNDELIVERED_ATTEMPTS && undelivered(err)) continue;
      throw meshFailure(err, what);
    }
    if (!isOutcome(outcome)) throw new FunctionError(502, 'BAD_GATEWAY', `${what} answered without an outcome`);
    return unwrapOutcome(outcome);
  }
}

/** Whether the error, or one it wraps, has one of `codes`. */
function hasCode(err: unknown, codes: readonly ErrorCode[]): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (codes.some((code) => isThemisError(e, code))) return true;
  }
  return false;
}

/** Whether the error says the request never reached an instance. */
function undelivered(err: unknown): boolean {
  return hasCode(err, UNDELIVERED);
}

/** A mesh failure as the status an end user sees. */
export function meshFailure(err: unknown, what: string): FunctionError {
  if (err instanceof FunctionError) return err;
  // The mesh's own message (addresses, keys) stays in `cause`, for the log, not for the end user.
  const cause = { cause: err };
  if (isThemisError(err, 'ERR_MESH_DEADLINE') || isThemisError(err, 'ERR_CHANNEL_TIMEOUT')) return new FunctionError(504, 'TIMEOUT', `${what} did not answer in time`, cause);
  if (undelivered(err)) return new FunctionError(503, 'UNAVAILABLE', `${what} has no instance that could serve; retry`, cause);
  if (isThemisError(err, 'ERR_MESH_FORBIDDEN')) return new FunctionError(403, 'FORBIDDEN', `the trust-domain policy does not allow ${what}`, cause);
  if (hasCode(err, ['ERR_CHANNEL_NO_HANDLER'])) return new FunctionError(404, 'NOT_FOUND', `${what} is not a handler of the service`, cause);
  return new FunctionError(502, 'BAD_GATEWAY', `${what} failed; retry`, cause);
}
