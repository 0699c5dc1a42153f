import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { ThemisError } from '../core/errors.js';
import { isName } from '../mesh/index.js';

/**
 * The application manifest `themis.yaml` (RUNTIME-CONTRACT.md "Manifest"): services with their
 * entry module, handlers and limits, and the gateway's routes. Every error names the file, line
 * and column of the offending node and says what to write instead.
 */
export interface ServiceManifest {
  readonly name: string;
  /** Absolute path of the entry module. */
  readonly entry: string;
  readonly handlers: readonly string[];
  readonly instances: { readonly min: number; readonly max: number };
  readonly concurrency: number;
  readonly memoryMb: number;
  readonly timeoutMs: number;
  readonly idleSeconds: number;
  readonly calls: readonly string[];
}

export interface RouteManifest {
  readonly method: HttpMethod;
  /** e.g. `/users/:id`. */
  readonly path: string;
  readonly service: string;
  readonly handler: string;
  readonly auth: boolean;
}

export interface GatewayManifest {
  readonly maxBodyBytes: number;
  readonly timeoutMs: number;
  readonly auth?: {
    readonly register?: { readonly path: string; readonly service: string; readonly handler: string };
    readonly login?: { readonly path: string };
    readonly tokenTtlSeconds: number;
  };
  readonly routes: readonly RouteManifest[];
}

export interface AppManifest {
  readonly app: string;
  readonly trustDomain: string;
  /** The directory holding themis.yaml. */
  readonly dir: string;
  readonly file: string;
  readonly services: ReadonlyMap<string, ServiceManifest>;
  readonly gateway: GatewayManifest;
}

export const MANIFEST_FILE = 'themis.yaml';
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type HttpMethod = (typeof METHODS)[number];
const HANDLER = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;
const PATH = /^(\/(:?[A-Za-z0-9_.~-]+))+$|^\/$/;
/** The service name the gateway has in the trust-domain policy. */
export const GATEWAY_SERVICE = 'gateway';

/** Bounds of the numeric settings: [min, max, default]. */
const LIMITS = {
  min: [0, 1000, 0],
  max: [1, 1000, 4],
  concurrency: [1, 10_000, 16],
  memoryMb: [8, 4096, 64],
  timeoutMs: [1, 600_000, 5000],
  idleSeconds: [1, 86_400, 30],
  maxBodyBytes: [1, 64 * 1024 * 1024, 65_536],
  gatewayTimeoutMs: [1, 600_000, 10_000],
  tokenTtlSeconds: [60, 7 * 86_400, 3600],
} as const;

/** Reads `dir/themis.yaml` and checks that every entry module exists. */
export async function loadManifest(dir: string): Promise<AppManifest> {
  const root = resolve(dir);
  const file = join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ThemisError('ERR_MANIFEST_INVALID', `${file}: cannot read the manifest (${(err as NodeJS.ErrnoException).code ?? 'error'}); run \`themis init ${dir}\` to create one`, { cause: err });
  }
  const reader = new ManifestReader(text, file);
  const manifest = reader.manifest(root);
  for (const service of manifest.services.values()) {
    const ok = await stat(service.entry).then((s) => s.isFile(), () => false);
    if (!ok) reader.failAt(['services', service.name, 'entry'], `entry module ${service.entry} does not exist; write the service's module there or fix the path`);
  }
  return manifest;
}

/** Parses manifest text; `file` names it in errors, its directory resolves entry paths. */
export function parseManifest(text: string, file: string): AppManifest {
  return new ManifestReader(text, file).manifest(resolve(file, '..'));
}

type Path = readonly (string | number)[];

/** A YAML document read field by field; each node read is remembered by its path for later errors. */
class ManifestReader {
  readonly #lines = new LineCounter();
  readonly #root: unknown;
  readonly #nodes = new Map<string, unknown>();

  constructor(
    text: string,
    readonly file: string,
  ) {
    const doc = parseDocument(text, { lineCounter: this.#lines, uniqueKeys: false, prettyErrors: false });
    const [error] = doc.errors;
    if (error !== undefined) throw this.#error(error.pos[0], `not valid YAML: ${error.message.split('\n')[0]}; fix the syntax`);
    this.#root = doc.contents;
  }

  manifest(dir: string): AppManifest {
    const top = this.#map(this.#root, [], 'the manifest', { app: true, trustDomain: false, services: true, gateway: true });
    const app = this.#name(top.get('app'), ['app'], 'app name');
    const trustDomain = top.has('trustDomain') ? this.#name(top.get('trustDomain'), ['trustDomain'], 'trust domain') : app;
    const services = new Map<string, ServiceManifest>();
    const servicesNode = top.get('services');
    if (!isMap(servicesNode) || servicesNode.items.length === 0) this.#fail(servicesNode ?? this.#root, 'expected `services:` to map service names to their settings, e.g. `users: { entry: services/users.js, handlers: [get] }`');
    for (const pair of servicesNode.items) {
      const name = this.#name(pair.key, ['services'], 'service name');
      if (name === GATEWAY_SERVICE) this.#fail(pair.key, `"${GATEWAY_SERVICE}" is the gateway's own service name; call the service something else`);
      if (services.has(name)) this.#fail(pair.key, `service "${name}" is declared twice; keep one`);
      services.set(name, this.#service(name, pair.value, ['services', name], dir));
    }
    for (const service of services.values()) {
      service.calls.forEach((callee, i) => {
        if (!services.has(callee)) this.failAt(['services', service.name, 'calls', i], `service "${service.name}" calls "${callee}", which is not declared under \`services:\`; declare it or remove it`);
      });
    }
    const gateway = this.#gateway(top.get('gateway'), services);
    return { app, trustDomain, dir, file: this.file, services, gateway };
  }

  #service(name: string, node: unknown, path: Path, dir: string): ServiceManifest {
    const fields = this.#map(node, path, `service "${name}"`, {
      entry: true,
      handlers: true,
      instances: false,
      concurrency: false,
      memoryMb: false,
      timeoutMs: false,
      idleSeconds: false,
      calls: false,
    });
    const entry = this.#string(fields.get('entry'), [...path, 'entry'], 'the path of the service module, e.g. services/users.js');
    const handlers = this.#list(fields.get('handlers'), [...path, 'handlers'], 'a list of exported function names, e.g. [create, get]', (item, at) => {
      const handler = this.#string(item, at, 'a function name');
      if (!HANDLER.test(handler)) this.#fail(item, `"${handler}" is not a JavaScript function name; use letters, digits, _ and $`);
      return handler;
    });
    if (handlers.length === 0) this.#fail(fields.get('handlers'), `service "${name}" has no handlers; list the exported functions it serves`);
    const instancesNode = fields.get('instances');
    let instances = { min: LIMITS.min[2] as number, max: LIMITS.max[2] as number };
    if (instancesNode !== undefined) {
      const bounds = this.#map(instancesNode, [...path, 'instances'], 'instances', { min: false, max: false });
      instances = {
        min: this.#int(bounds.get('min'), [...path, 'instances', 'min'], LIMITS.min),
        max: this.#int(bounds.get('max'), [...path, 'instances', 'max'], LIMITS.max),
      };
      if (instances.min > instances.max) this.#fail(instancesNode, `instances.min (${instances.min}) is above instances.max (${instances.max}); lower min or raise max`);
    }
    const calls = fields.has('calls')
      ? this.#list(fields.get('calls'), [...path, 'calls'], 'a list of service names', (item, at) => this.#name(item, at, 'service name'))
      : [];
    return {
      name,
      entry: resolve(dir, entry),
      handlers,
      instances,
      concurrency: this.#int(fields.get('concurrency'), [...path, 'concurrency'], LIMITS.concurrency),
      memoryMb: this.#int(fields.get('memoryMb'), [...path, 'memoryMb'], LIMITS.memoryMb),
      timeoutMs: this.#int(fields.get('timeoutMs'), [...path, 'timeoutMs'], LIMITS.timeoutMs),
      idleSeconds: this.#int(fields.get('idleSeconds'), [...path, 'idleSeconds'], LIMITS.idleSeconds),
      calls,
    };
  }

  #gateway(node: unknown, services: ReadonlyMap<string, ServiceManifest>): GatewayManifest {
    const path = ['gateway'];
    const fields = this.#map(node, path, 'the gateway', { maxBodyBytes: false, timeoutMs: false, auth: false, routes: true });
    const target = (item: unknown, at: Path): { service: string; handler: string } => {
      const to = this.#string(item, at, 'a target service.handler, e.g. users.get');
      const [service = '', handler = '', ...rest] = to.split('.');
      const declared = services.get(service);
      if (rest.length > 0 || declared === undefined) this.#fail(item, `"${to}" does not name a declared service and handler; write service.handler with a service under \`services:\``);
      if (!declared.handlers.includes(handler)) this.#fail(item, `service "${service}" has no handler "${handler}"; add it to its \`handlers:\` or fix the name`);
      return { service, handler };
    };
    const routePath = (item: unknown, at: Path): string => {
      const text = this.#string(item, at, 'a path such as /users/:id');
      if (!PATH.test(text)) this.#fail(item, `"${text}" is not a route path; write segments like /users/:id (letters, digits, _.~- and :params)`);
      return text;
    };
    const seen = new Set<string>();
    const claim = (method: string, text: string, item: unknown): void => {
      const key = `${method} ${text}`;
      if (seen.has(key)) this.#fail(item, `route ${key} is declared twice; keep one`);
      seen.add(key);
    };
    let auth: GatewayManifest['auth'];
    if (fields.has('auth')) {
      const authPath = [...path, 'auth'];
      const a = this.#map(fields.get('auth'), authPath, 'gateway auth', { register: false, login: false, tokenTtlSeconds: false });
      let register: NonNullable<GatewayManifest['auth']>['register'];
      if (a.has('register')) {
        const r = this.#map(a.get('register'), [...authPath, 'register'], 'the register route', { path: true, to: true });
        register = { path: routePath(r.get('path'), [...authPath, 'register', 'path']), ...target(r.get('to'), [...authPath, 'register', 'to']) };
        claim('POST', register.path, r.get('path'));
      }
      let login: { path: string } | undefined;
      if (a.has('login')) {
        const l = this.#map(a.get('login'), [...authPath, 'login'], 'the login route', { path: true });
        login = { path: routePath(l.get('path'), [...authPath, 'login', 'path']) };
        claim('POST', login.path, l.get('path'));
      }
      auth = {
        ...(register === undefined ? {} : { register }),
        ...(login === undefined ? {} : { login }),
        tokenTtlSeconds: this.#int(a.get('tokenTtlSeconds'), [...authPath, 'tokenTtlSeconds'], LIMITS.tokenTtlSeconds),
      };
    }
    const routes = this.#list(fields.get('routes'), [...path, 'routes'], 'a list of routes ({ method, path, to, auth })', (item, at) => {
      const r = this.#map(item, at, 'a route', { method: true, path: true, to: true, auth: false });
      const method = this.#string(r.get('method'), [...at, 'method'], 'an HTTP method').toUpperCase();
      if (!(METHODS as readonly string[]).includes(method)) this.#fail(r.get('method'), `HTTP method "${method}" is not supported; use one of ${METHODS.join(', ')}`);
      const routeAt = routePath(r.get('path'), [...at, 'path']);
      claim(method, routeAt, r.get('path'));
      const authNode = r.get('auth');
      if (authNode !== undefined && !(isScalar(authNode) && typeof authNode.value === 'boolean')) this.#fail(authNode, 'expected auth: true or auth: false');
      const needsAuth = authNode !== undefined && (authNode as { value: boolean }).value;
      if (needsAuth && auth?.login === undefined) this.#fail(authNode, 'this route requires a bearer token, but the gateway has no login route; add `auth: { login: { path: /login } }` under `gateway:`');
      return { method: method as HttpMethod, path: routeAt, ...target(r.get('to'), [...at, 'to']), auth: needsAuth };
    });
    return {
      maxBodyBytes: this.#int(fields.get('maxBodyBytes'), [...path, 'maxBodyBytes'], LIMITS.maxBodyBytes),
      timeoutMs: this.#int(fields.get('timeoutMs'), [...path, 'timeoutMs'], LIMITS.gatewayTimeoutMs),
      ...(auth === undefined ? {} : { auth }),
      routes,
    };
  }

  /** A mapping whose keys are `keys` (true = required); unknown and duplicate keys are refused. */
  #map(node: unknown, path: Path, what: string, keys: Record<string, boolean>): Map<string, unknown> {
    this.#nodes.set(path.join('.'), node);
    const known = Object.keys(keys).join(', ');
    if (!isMap(node)) this.#fail(node ?? this.#root, `expected ${what} to be a mapping with keys ${known}, got ${describe(node)}`);
    const out = new Map<string, unknown>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!(key in keys)) this.#fail(pair.key, `unknown key "${key}" in ${what}; expected one of ${known}`);
      if (out.has(key)) this.#fail(pair.key, `key "${key}" appears twice in ${what}; keep one`);
      out.set(key, pair.value);
      this.#nodes.set([...path, key].join('.'), pair.value ?? pair.key);
    }
    for (const [key, required] of Object.entries(keys)) if (required && !out.has(key)) this.#fail(node, `${what} is missing "${key}"; add it`);
    return out;
  }

  #list<T>(node: unknown, path: Path, expected: string, read: (item: unknown, path: Path) => T): T[] {
    if (!isSeq(node)) this.#fail(node, `expected ${expected}, got ${describe(node)}`);
    return node.items.map((item, i) => {
      this.#nodes.set([...path, i].join('.'), item);
      return read(item, [...path, i]);
    });
  }

  #string(node: unknown, _path: Path, expected: string): string {
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value !== 'string' || value === '') this.#fail(node, `expected ${expected}, got ${describe(node)}`);
    return value;
  }

  #name(node: unknown, path: Path, what: string): string {
    const text = this.#string(node, path, `a ${what}`);
    if (!isName(text)) this.#fail(node, `${what} "${text}" must be 1 to 64 characters a-z, 0-9 and -`);
    return text;
  }

  /** An integer within [min, max]; absent: the default. */
  #int(node: unknown, path: Path, [min, max, fallback]: readonly [number, number, number]): number {
    if (node === undefined) return fallback;
    const value = isScalar(node) ? node.value : undefined;
    const field = String(path[path.length - 1]);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.#fail(node, `${field} must be an integer from ${min} to ${max}, got ${describe(node)}`);
    }
    return value;
  }

  /** Fails at the node read under `path` (or its nearest parent read). */
  failAt(path: Path, message: string): never {
    for (let n = path.length; n >= 0; n--) {
      const node = this.#nodes.get(path.slice(0, n).join('.'));
      if (node !== undefined) this.#fail(node, message);
    }
    this.#fail(this.#root, message);
  }

  #fail(node: unknown, message: string): never {
    const range = (node as Node | undefined)?.range;
    throw this.#error(range ? range[0] : 0, message);
  }

  #error(offset: number, message: string): ThemisError {
    const { line, col } = this.#lines.linePos(offset);
    return new ThemisError('ERR_MANIFEST_INVALID', `${this.file}:${line}:${col}: ${message}`);
  }
}

function describe(node: unknown): string {
  if (node === undefined || node === null) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (!isScalar(node)) return 'an alias';
  const value = node.value;
  if (value === null) return 'nothing';
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${String(value)}`;
}
