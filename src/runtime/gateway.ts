import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../core/log.js';
import { createLogger } from '../core/log.js';
import { FunctionError, validStatus } from './function-error.js';
import { kvContext, type AppKv, type KvApi } from './kv.js';
import type { GatewayManifest, HttpMethod } from './manifest.js';
import { PASSWORD_LIMITS, hashPassword, verifyPassword, type PasswordHash } from './passwords.js';
import type { BearerTokens } from './bearer.js';
import type { RuntimeMetrics } from './metrics.js';

/**
 * The HTTP gateway (node:http): maps the manifest's routes to `invoke(service, method, input,
 * principal)`, registers and logs in end users (scrypt hashes kept in the store's `gateway`
 * namespace, which no function can reach: `gateway` is not a service name a manifest may use),
 * turns a bearer token into the call's principal, and answers JSON — errors as
 * `{ "error": { "code", "message" } }` with the status the function chose (RUNTIME-CONTRACT.md
 * "Manifest"). The transport behind `invoke` is the caller's: the runtime passes mesh calls, the
 * benches plain HTTP or mTLS+JWT.
 */
export interface EndUser {
  readonly subject: string;
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** Calls service.method; resolves with the result or rejects with a FunctionError (status, code). */
export type Invoke = (service: string, method: string, input: unknown, principal?: EndUser) => Promise<unknown>;

export interface RouteInput {
  readonly params: Record<string, string>;
  readonly query: Record<string, string>;
  readonly body: unknown;
  readonly idempotencyKey: string | undefined;
}

export interface GatewayInit {
  readonly config: GatewayManifest;
  readonly invoke: Invoke;
  readonly kv: AppKv;
  readonly tokens: BearerTokens;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  readonly logger?: Logger;
  readonly metrics?: RuntimeMetrics;
}

export interface Gateway {
  /** e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly server: Server;
  /** Stops accepting, lets in-flight requests finish, closes the connections. */
  close(): Promise<void>;
}

/** The kv namespace of the gateway's own records (password hashes). */
const GATEWAY_NAMESPACE = 'gateway';

interface CompiledRoute {
  readonly method: HttpMethod;
  readonly pattern: RegExp;
  readonly names: readonly string[];
  /** `METHOD /path/:param` as in the manifest: the metrics label. */
  readonly label: string;
  readonly handle: (req: IncomingMessage, params: Record<string, string>, query: Record<string, string>) => Promise<Answer>;
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

export async function createGateway(init: GatewayInit): Promise<Gateway> {
  const { config, invoke, tokens } = init;
  const log = (init.logger ?? createLogger()).child({ component: 'gateway' });
  const users: KvApi = kvContext(init.kv, GATEWAY_NAMESPACE);
  const routes: CompiledRoute[] = [];
  const route = (method: HttpMethod, path: string, handle: CompiledRoute['handle']): void => {
    const names: string[] = [];
    const source = path
      .split('/')
      .map((segment) => {
        if (!segment.startsWith(':')) return segment.replace(/[.~-]/g, (c) => `\\${c}`);
        names.push(segment.slice(1));
        return '([^/]+)';
      })
      .join('/');
    routes.push({ method, pattern: new RegExp(`^${source}/?$`), names, label: `${method} ${path}`, handle });
  };

  const auth = config.auth;
  if (auth?.register !== undefined) {
    const { service, handler } = auth.register;
    route('POST', auth.register.path, async (req, params, query) => {
      const body = await readJson(req, config.maxBodyBytes);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('expected a JSON object with a "password" field');
      const { password, ...rest } = body as Record<string, unknown>;
      checkPassword(password);
      const created = await invoke(service, handler, { params, query, body: rest, idempotencyKey: idempotencyKey(req) } satisfies RouteInput);
      const id = (created as { id?: unknown } | null)?.id;
      if (typeof id !== 'string' || id === '') throw new FunctionError(500, 'INTERNAL', `${service}.${handler} must return an object with a string "id" for the gateway to register`);
      const hash = await hashPassword(password);
      const fresh = await users.transact(async (tx) => {
        if ((await tx.get(`user/${id}`)) !== undefined) return false;
        tx.put(`user/${id}`, hash);
        return true;
      });
      if (!fresh) throw new FunctionError(409, 'CONFLICT', `user "${id}" already has a password`);
      return { status: 201, body: created };
    });
  }
  if (auth?.login !== undefined) {
    route('POST', auth.login.path, async (req) => {
      const body = (await readJson(req, config.maxBodyBytes)) as { id?: unknown; password?: unknown } | null;
      if (typeof body?.id !== 'string' || typeof body.password !== 'string') throw badRequest('expected {"id": "...", "password": "..."}');
      const stored = (await users.get(`user/${body.id}`)) as PasswordHash | undefined;
      if (!(await verifyPassword(body.password, stored))) throw new FunctionError(401, 'UNAUTHORIZED', 'unknown user or wrong password');
      return { status: 200, body: await tokens.issue(body.id) };
    });
  }
  for (const r of config.routes) {
    route(r.method, r.path, async (req, params, query) => {
      const principal = r.auth ? await tokens.verify(bearer(req)) : undefined;
      const body = r.method === 'GET' || r.method === 'DELETE' ? undefined : await readJson(req, config.maxBodyBytes);
      const input: RouteInput = { params, query, body, idempotencyKey: idempotencyKey(req) };
      return { status: 200, body: await invoke(r.service, r.handler, input, principal) };
    });
  }

  const inFlight = new Set<Promise<void>>();
  const server = createServer((req, res) => {
    const done = serve(req, res).finally(() => inFlight.delete(done));
    inFlight.add(done);
  });
  server.requestTimeout = config.timeoutMs + 5_000;
  server.headersTimeout = Math.min(config.timeoutMs + 5_000, 60_000);

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    let answer: Answer;
    const timer = new AbortController();
    const matched = { label: 'unmatched' };
    try {
      answer = await Promise.race([
        dispatch(req, matched),
        sleep(config.timeoutMs, undefined, { signal: timer.signal, ref: false }).then((): never => {
          throw new FunctionError(504, 'TIMEOUT', `the request did not complete within ${config.timeoutMs} ms`);
        }),
      ]);
    } catch (err) {
      answer = errorAnswer(err, log);
    } finally {
      timer.abort();
    }
    const text = JSON.stringify(answer.body ?? null);
    if (answer.status === 413) res.setHeader('connection', 'close'); // the rest of the body is not read
    res.writeHead(answer.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
    const seconds = (performance.now() - started) / 1000;
    init.metrics?.requests.inc({ route: matched.label, status: String(answer.status) });
    init.metrics?.requestDuration.observe({ route: matched.label }, seconds);
    log.debug({ method: req.method, route: matched.label, status: answer.status, ms: Math.round(seconds * 1000) }, 'request');
  }

  async function dispatch(req: IncomingMessage, matched: { label: string }): Promise<Answer> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const query = Object.fromEntries(url.searchParams);
    let allowed = false;
    for (const r of routes) {
      const match = r.pattern.exec(url.pathname);
      if (match === null) continue;
      if (r.method !== req.method) {
        allowed = true;
        continue;
      }
      matched.label = r.label;
      let params: Record<string, string>;
      try {
        params = Object.fromEntries(r.names.map((name, i) => [name, decodeURIComponent(match[i + 1]!)]));
      } catch {
        throw badRequest(`the path ${url.pathname} has a malformed %-escape`);
      }
      return r.handle(req, params, query);
    }
    if (allowed) throw new FunctionError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`);
    throw new FunctionError(404, 'NOT_FOUND', `no route for ${req.method} ${url.pathname}`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(init.port ?? 0, init.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.allSettled([...inFlight]);
      server.closeAllConnections();
      await closed;
    },
  };
}

function badRequest(message: string): FunctionError {
  return new FunctionError(400, 'BAD_REQUEST', message);
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password.length < PASSWORD_LIMITS.minChars || Buffer.byteLength(password) > PASSWORD_LIMITS.maxBytes) {
    throw badRequest(`"password" must be a string of ${PASSWORD_LIMITS.minChars} characters to ${PASSWORD_LIMITS.maxBytes} bytes`);
  }
}

function bearer(req: IncomingMessage): string {
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+([A-Za-z0-9_.-]+)$/i.exec(header.trim());
  if (match === null) throw new FunctionError(401, 'UNAUTHORIZED', 'this route needs an "Authorization: Bearer <token>" header; get a token at the login route');
  return match[1]!;
}

function idempotencyKey(req: IncomingMessage): string | undefined {
  const value = req.headers['idempotency-key'];
  return typeof value === 'string' && value !== '' ? value.slice(0, 256) : undefined;
}

/** The request body as JSON (undefined when empty); 413 past `limit` bytes, 400 when not JSON. */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw badRequest('the request body is not valid JSON');
  }
}

function tooLarge(limit: number): FunctionError {
  return new FunctionError(413, 'PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes`);
}

/**
 * The HTTP answer of a failure: a function's own error as it chose; an INTERNAL error or anything
 * that is no FunctionError is a 500 with no detail (the detail goes to the log).
 */
function errorAnswer(err: unknown, log: Logger): Answer {
  if (err instanceof FunctionError && err.code !== 'INTERNAL') {
    if (err.status >= 500) log.warn({ status: err.status, code: err.code, err: err.message, cause: (err.cause as Error | undefined)?.message }, 'request failed');
    return { status: validStatus(err.status), body: { error: { code: err.code, message: err.message } } };
  }
  log.error({ err: err instanceof Error ? err.message : String(err) }, 'request failed');
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}
