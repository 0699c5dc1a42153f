/**
 * One process of the microbank bench's baselines (started by bench/microbank.ts):
 *   node --import tsx bench/lib/microbank-baseline-main.ts --mode plain|mtls-jwt --app DIR --data DIR
 *        (--service NAME | --gateway) [--tls-dir DIR --tls-key ed25519|p256]
 * A service process runs that service's function module (bench/lib/microbank-ctx.ts) behind the
 * mode's HTTP server (bench/lib/microbank-wire.ts), with its own LMDB store under --data. The
 * gateway process runs the runtime's gateway (`createGateway`) with an `invoke` that calls the services
 * over the mode's transport. Prints `{"pid", "url"}` when listening; then answers control lines:
 *   {"cmd":"peers","peers":{service: url}}   where the other services listen (sent once all are up)
 *   {"cmd":"cpu"}                             this process's CPU time so far
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../../src/core/log.js';
import { GATEWAY_SERVICE as GATEWAY, createBearerTokens, createGateway, kvContext, loadManifest, openKv, type AppManifest } from '../../src/runtime/index.js';
import type { TlsKeyType } from './certs.js';
import { functionHost, loadHandlers } from './microbank-ctx.js';
import { readServiceTls } from './microbank-pki.js';
import { BASELINE_MODES, serveFunctions, serviceCaller, type BaselineMode, type WireInit } from './microbank-wire.js';
import { runServerMain } from './server-main.js';

export interface BaselineProcessInfo {
  readonly pid: number;
  readonly url: string;
}

const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    app: { type: 'string' },
    data: { type: 'string' },
    service: { type: 'string' },
    gateway: { type: 'boolean', default: false },
    'tls-dir': { type: 'string' },
    'tls-key': { type: 'string', default: 'ed25519' },
  },
});

const peers = new Map<string, string>();

/** Who may call `service` (mtls-jwt authorization): the services whose `calls` name it, and the gateway if a route leads to it. */
function allowedCallers(manifest: AppManifest, service: string): Set<string> {
  const allowed = new Set<string>();
  for (const [name, spec] of manifest.services) if (spec.calls.includes(service)) allowed.add(name);
  const targets = [...manifest.gateway.routes.map((route) => route.service), manifest.gateway.auth?.register?.service];
  if (targets.includes(service)) allowed.add(GATEWAY);
  return allowed;
}

async function main(): Promise<void> {
  const mode = values.mode as BaselineMode;
  if (!BASELINE_MODES.includes(mode)) throw new Error(`--mode must be one of ${BASELINE_MODES.join(', ')}`);
  if (values.app === undefined || values.data === undefined) throw new Error('--app and --data are required');
  const self = values.gateway ? GATEWAY : values.service;
  if (self === undefined) throw new Error('--service NAME or --gateway is required');
  const manifest = await loadManifest(values.app);
  const wire: WireInit = {
    mode,
    self,
    ...(mode === 'mtls-jwt' ? { tls: readServiceTls(values['tls-dir'] ?? '', self, values['tls-key'] as TlsKeyType) } : {}),
  };
  const caller = serviceCaller(wire, peers);
  const kv = await openKv(join(values.data, self));
  let url: string;
  if (values.gateway) {
    const gateway = await createGateway({
      config: manifest.gateway,
      invoke: (service, method, input, principal) =>
        caller.call(service, method, input, principal === undefined ? undefined : { subject: principal.subject, claims: principal.claims ?? {} }),
      kv,
      tokens: createBearerTokens({ app: manifest.app, ttlSeconds: manifest.gateway.auth?.tokenTtlSeconds ?? 3600 }),
      port: 0,
      host: '127.0.0.1',
    });
    url = gateway.url;
  } else {
    const spec = manifest.services.get(self);
    if (spec === undefined) throw new Error(`the manifest has no service "${self}"`);
    const handlers = await loadHandlers(spec.entry, spec.handlers);
    const host = functionHost({ service: self, handlers, kv: kvContext(kv, self), call: caller.call, log: createLogger({ name: 'microbank-bench', level: 'warn' }) });
    url = (await serveFunctions(wire, host, allowedCallers(manifest, self))).url;
  }
  const info: BaselineProcessInfo = { pid: process.pid, url };
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

function command(line: string): object {
  const message = JSON.parse(line) as { cmd?: string; peers?: Record<string, string> };
  if (message.cmd === 'cpu') return { cpu: process.cpuUsage() };
  if (message.cmd === 'peers' && message.peers !== undefined) {
    for (const [service, url] of Object.entries(message.peers)) peers.set(service, url);
    return {};
  }
  throw new Error(`unknown command ${line}`);
}

runServerMain('microbank-baseline', main, command);
