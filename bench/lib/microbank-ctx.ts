/**
 * The function host of the microbank bench's baselines (plain HTTP and mTLS + JWT): it runs the
 * SAME function modules Themis runs (examples/microbank/services/*.js) in plain Node — the
 * module file imported as is, each exported handler called as `handler(input, ctx)` — with the
 * handler context of RUNTIME-CONTRACT.md built here, in one place, for both baseline modes:
 *   ctx.principal  `{ subject, claims }` or undefined, as the transport established it
 *   ctx.call       the transport's service-to-service call (plain HTTP or mTLS + JWT)
 *   ctx.error      an Error with `status` and `code`
 *   ctx.log        the process's pino logger with the service name
 *   ctx.kv         the runtime's host-side `kvContext` over the real LMDB store (no twin implementation)
 *   ctx.dht        absent: the baselines have no DHT, and MicroBank does not use it
 * This is the baseline MiSSFIRE measured (services as plain processes), not a mock.
 */
import { pathToFileURL } from 'node:url';
import type { Logger } from '../../src/core/log.js';
import { FunctionError } from '../../src/runtime/function-error.js';
import type { KvApi } from '../../src/runtime/kv.js';

/** The end-user principal a handler reads. */
export interface FunctionPrincipal {
  readonly subject: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Calls `service.method(payload)` on behalf of `principal`; rejects with the callee's FunctionError (status, code, message). */
export type ServiceCall = (service: string, method: string, payload: unknown, principal: FunctionPrincipal | undefined) => Promise<unknown>;

export type Handler = (input: unknown, ctx: unknown) => Promise<unknown>;

/** `ctx.error(status, code, message)` of the function API: the runtime's FunctionError, as in the isolates. */
export function functionError(status: number, code: string, message: string): FunctionError {
  return new FunctionError(status, code, message);
}

/** Imports a function module and picks the handlers the manifest names; each must be an exported function. */
export async function loadHandlers(file: string, names: readonly string[]): Promise<Map<string, Handler>> {
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const handlers = new Map<string, Handler>();
  for (const name of names) {
    const fn = mod[name];
    if (typeof fn !== 'function') throw new Error(`${file} does not export a function "${name}" (named in the manifest's handlers)`);
    handlers.set(name, fn as Handler);
  }
  return handlers;
}

export interface FunctionHost {
  /** Runs `method` with `input` for `principal`; rejects with a FunctionError or whatever the handler threw. */
  invoke(method: string, input: unknown, principal: FunctionPrincipal | undefined): Promise<unknown>;
}

/** One service's handlers with the context every call gets. */
export function functionHost(init: { service: string; handlers: Map<string, Handler>; kv: KvApi; call: ServiceCall; log: Logger }): FunctionHost {
  const log = init.log.child({ service: init.service });
  const ctxLog = {
    info: (msg: string, fields?: object) => log.info(fields ?? {}, msg),
    warn: (msg: string, fields?: object) => log.warn(fields ?? {}, msg),
    error: (msg: string, fields?: object) => log.error(fields ?? {}, msg),
  };
  return {
    async invoke(method, input, principal) {
      const handler = init.handlers.get(method);
      if (handler === undefined) throw functionError(404, 'NOT_FOUND', `service "${init.service}" has no handler "${method}"`);
      const ctx = Object.freeze({
        principal,
        call: (service: string, m: string, payload: unknown) => init.call(service, m, payload, principal),
        error: functionError,
        log: ctxLog,
        kv: init.kv,
      });
      return handler(input, ctx);
    },
  };
}
