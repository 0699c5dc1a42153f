import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import ivm from 'isolated-vm';
import { ThemisError } from '../core/errors.js';
import { errorOutcome, isOutcome, type Outcome } from './function-error.js';
import { MAX_TRANSACT_ATTEMPTS, transactLoop } from './transact.js';

/**
 * One function instance's V8 isolate (isolated-vm): its own heap with a hard memory limit, no
 * Node API at all (no require, process, fs, net, timers, fetch), and a context that sees only
 * the handler ctx built by PRELUDE. Every ctx operation crosses to the host through a single
 * bridge function, `host(callToken, op, argsJson) → outcomeJson`, so the host decides everything
 * (kv namespace, mesh calls, logging) for the call the token names. Call tokens are random, so
 * code cannot act for a call it was not given.
 *
 * Why isolated-vm and not worker threads or node:vm: docs/runtime.md "Isolation".
 */

/** What the host does for a ctx operation of one call; returns the op's JSON-able result. */
export type HostOp = (call: string, op: string, args: unknown[]) => Promise<unknown>;

export interface SandboxInit {
  /** The module's source text (an ES module without imports). */
  readonly source: string;
  /** Shown in stack traces, e.g. `services/users.js`. */
  readonly filename: string;
  readonly handlers: readonly string[];
  readonly memoryMb: number;
  /** Bounds the module's top-level evaluation too. */
  readonly timeoutMs: number;
  readonly host: HostOp;
}

/** Why a sandbox stopped. */
export type DisposeReason = 'closed' | 'memory' | 'timeout' | 'killed';

/**
 * The isolate side: runs once per isolate before the module. It keeps the bridge in a closure and
 * removes it from the global object, so the module cannot reach it; `$dispatch` and `$bind` are
 * taken by the host and removed the same way before the module runs.
 */
const PRELUDE = `'use strict';
(() => {
  const __name = (target) => target; // esbuild (tsx) adds __name() calls to the source of transactLoop
  const bridge = globalThis.$bridge;
  delete globalThis.$bridge;
  const transactLoop = (${transactLoop.toString()});
  const fnErrors = new WeakSet();
  const fnError = (status, code, message) => {
    const err = new Error(String(message));
    err.status = status;
    err.code = String(code);
    fnErrors.add(err);
    return err;
  };
  let handlers = null;
  const makeCtx = (token, principal) => {
    const op = async (name, ...args) => {
      const text = await bridge.apply(undefined, [token, name, JSON.stringify(args)], { arguments: { copy: true }, result: { promise: true, copy: true } });
      const out = JSON.parse(text);
      if (out.error !== undefined) throw fnError(out.error.status, out.error.code, out.error.message);
      return out.ok;
    };
    const kvOps = {
      read: (key) => op('kv.read', key),
      encode: (value) => {
        const text = JSON.stringify(value);
        if (text === undefined) throw fnError(400, 'BAD_REQUEST', 'a kv value must be JSON-serializable (not undefined or a function)');
        return text;
      },
      commit: (reads, writes) => op('kv.commit', reads, writes),
      conflict: (attempts) => fnError(409, 'CONFLICT', 'the transaction conflicted with concurrent writes ' + attempts + ' times; retry the request'),
    };
    const parse = (text) => (text === null ? undefined : JSON.parse(text));
    const log = (level) => (msg, fields) => void op('log', level, String(msg), fields === undefined ? {} : fields).catch(() => undefined);
    return Object.freeze({
      principal,
      call: (service, method, payload) => op('call', service, method, payload),
      error: fnError,
      log: Object.freeze({ info: log('info'), warn: log('warn'), error: log('error') }),
      kv: Object.freeze({
        get: async (key) => parse(await op('kv.read', key)),
        list: async (prefix = '', options = {}) =>
          (await op('kv.list', prefix, options.limit === undefined ? 100 : options.limit, options.after === undefined ? null : options.after)).map((row) => ({ key: row.key, value: JSON.parse(row.value) })),
        transact: (fn) => transactLoop(kvOps, fn, ${MAX_TRANSACT_ATTEMPTS}),
      }),
      dht: Object.freeze({
        putImmutable: (value) => op('dht.putImmutable', value),
        getImmutable: (hash) => op('dht.getImmutable', hash),
        putMutable: (value, options = {}) => op('dht.putMutable', value, options),
        getMutable: (publisher, salt) => op('dht.getMutable', publisher, salt),
      }),
    });
  };
  globalThis.$bind = (namespace, names) => {
    handlers = namespace;
    return JSON.stringify(names.filter((name) => typeof namespace[name] !== 'function'));
  };
  globalThis.$dispatch = async (method, inputJson, principalJson, token) => {
    let outcome;
    try {
      const input = inputJson === '' ? undefined : JSON.parse(inputJson);
      const principal = principalJson === '' ? undefined : Object.freeze(JSON.parse(principalJson));
      const result = await handlers[method](input, makeCtx(token, principal));
      outcome = { ok: result === undefined ? null : result };
    } catch (err) {
      outcome = fnErrors.has(err)
        ? { error: { status: err.status, code: err.code, message: err.message } }
        : { error: { status: 500, code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) } };
    }
    return JSON.stringify(outcome);
  };
})();
`;

/** How long a timed-out isolate is watched for CPU use before it is judged stuck. */
const STUCK_PROBE_MS = 25;
/** The host's own timer fires this much after the call's timeout, so isolated-vm's timeout stops a synchronous loop first (the isolate lives on). */
const HOST_TIMER_GRACE_MS = 100;

export class Sandbox {
  readonly #isolate: ivm.Isolate;
  readonly #dispatch: ivm.Reference;
  readonly #timeoutMs: number;
  #disposed: DisposeReason | null = null;
  readonly #onDispose: ((reason: DisposeReason) => void)[] = [];

  private constructor(isolate: ivm.Isolate, dispatch: ivm.Reference, timeoutMs: number) {
    this.#isolate = isolate;
    this.#dispatch = dispatch;
    this.#timeoutMs = timeoutMs;
  }

  /** Creates the isolate, runs the prelude, evaluates the module and checks its handlers. */
  static async create(init: SandboxInit): Promise<Sandbox> {
    const isolate = new ivm.Isolate({ memoryLimit: init.memoryMb });
    try {
      const context = await isolate.createContext();
      const global = context.global;
      await global.set('$bridge', new ivm.Reference(bridgeOf(init.host)));
      await context.eval(PRELUDE, { timeout: init.timeoutMs });
      const dispatch = (await global.get('$dispatch', { reference: true })) as ivm.Reference;
      const bind = (await global.get('$bind', { reference: true })) as ivm.Reference;
      await global.delete('$dispatch');
      await global.delete('$bind');
      const module = await isolate.compileModule(init.source, { filename: init.filename });
      await module.instantiate(context, (specifier) => {
        throw new Error(`a function module cannot import "${specifier}": bundle it into ${init.filename} or use ctx`);
      });
      await module.evaluate({ timeout: init.timeoutMs });
      const missing = JSON.parse(
        (await bind.apply(undefined, [module.namespace.derefInto(), new ivm.ExternalCopy([...init.handlers]).copyInto()], { result: { copy: true } })) as string,
      ) as string[];
      if (missing.length > 0) {
        throw new ThemisError('ERR_RUNTIME_MODULE', `${init.filename} does not export async function(s) ${missing.join(', ')} named in its handlers; export them or remove them from themis.yaml`);
      }
      const sandbox = new Sandbox(isolate, dispatch, init.timeoutMs);
      return sandbox;
    } catch (err) {
      if (!isolate.isDisposed) isolate.dispose();
      if (err instanceof ThemisError) throw err;
      throw new ThemisError('ERR_RUNTIME_MODULE', `${init.filename} failed to load: ${(err as Error).message}; fix the module`, { cause: err });
    }
  }

  get disposed(): DisposeReason | null {
    if (this.#disposed === null && this.#isolate.isDisposed) this.#markDisposed('memory');
    return this.#disposed;
  }

  /** Called once when the isolate is gone (memory limit, stuck, killed or closed). */
  onDispose(listener: (reason: DisposeReason) => void): void {
    this.#onDispose.push(listener);
  }

  /** CPU time this isolate used, in ms. */
  get cpuTimeMs(): number {
    return this.#isolate.isDisposed ? 0 : Number(this.#isolate.cpuTime) / 1e6;
  }

  /**
   * Runs `method`. The call ends within timeoutMs: a handler still running then answers 504, and
   * if the isolate is busy on the CPU (a loop that never yields) it is disposed — its instance is
   * replaced; an isolate that is only waiting (e.g. on ctx.call) is left running.
   */
  async run(method: string, input: unknown, principal: unknown, token: string): Promise<Outcome> {
    if (this.disposed !== null) return gone(this.#disposed!);
    const inputJson = input === undefined ? '' : JSON.stringify(input);
    const principalJson = principal === undefined ? '' : JSON.stringify(principal);
    const timer = new AbortController();
    const running = this.#dispatch
      .apply(undefined, [method, inputJson, principalJson, token], { timeout: this.#timeoutMs, result: { promise: true, copy: true } })
      .then((text) => parseOutcome(text))
      .catch((err: unknown) => this.#failure(err));
    const timeout = sleep(this.#timeoutMs + HOST_TIMER_GRACE_MS, undefined, { signal: timer.signal, ref: false }).then(
      () => this.#timedOut(method),
      () => null,
    );
    try {
      return (await Promise.race([running, timeout]))!;
    } finally {
      timer.abort();
    }
  }

  async #timedOut(method: string): Promise<Outcome> {
    const before = this.cpuTimeMs;
    await sleep(STUCK_PROBE_MS, undefined, { ref: false });
    const busy = this.cpuTimeMs - before;
    // An isolate that used most of the probe's wall time on the CPU is in a loop that never yields.
    if (busy >= STUCK_PROBE_MS * 0.6) this.dispose('timeout');
    return { error: { status: 504, code: 'TIMEOUT', message: `${method} did not finish within ${this.#timeoutMs} ms` } };
  }

  #failure(err: unknown): Outcome {
    if (this.#isolate.isDisposed) return gone(this.#markDisposed('memory'));
    const message = err instanceof Error ? err.message : String(err);
    if (/timed out/i.test(message)) return { error: { status: 504, code: 'TIMEOUT', message: `the handler did not finish within ${this.#timeoutMs} ms` } };
    return errorOutcome(err);
  }

  #markDisposed(reason: DisposeReason): DisposeReason {
    if (this.#disposed !== null) return this.#disposed;
    this.#disposed = reason;
    for (const listener of this.#onDispose) listener(reason);
    return reason;
  }

  dispose(reason: DisposeReason = 'closed'): void {
    if (!this.#isolate.isDisposed) this.#isolate.dispose();
    this.#markDisposed(reason);
  }
}

/** A fresh unguessable call token. */
export function callToken(): string {
  return randomBytes(16).toString('hex');
}

function gone(reason: DisposeReason): Outcome {
  const why = reason === 'memory' ? 'exceeded its memory limit' : reason === 'timeout' ? 'was stopped after a call ran past its timeout' : 'was stopped';
  return { error: { status: 503, code: 'INSTANCE_GONE', message: `the function instance ${why}; retry the request` } };
}

function parseOutcome(text: unknown): Outcome {
  const value = typeof text === 'string' ? (JSON.parse(text) as unknown) : undefined;
  if (!isOutcome(value)) return { error: { status: 500, code: 'INTERNAL', message: 'the handler returned a malformed outcome' } };
  return value;
}

/** The host function behind `$bridge`: every answer is an outcome's JSON, errors included. */
function bridgeOf(host: HostOp): (token: string, op: string, argsJson: string) => Promise<string> {
  return async (token, op, argsJson) => {
    let outcome: Outcome;
    try {
      const args = JSON.parse(argsJson) as unknown;
      if (!Array.isArray(args)) throw new TypeError('bridge arguments must be a list');
      outcome = { ok: (await host(String(token), String(op), args)) ?? null };
    } catch (err) {
      outcome = errorOutcome(err);
    }
    return JSON.stringify(outcome);
  };
}
