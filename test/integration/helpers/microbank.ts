/**
 * MicroBank's function modules (examples/microbank) run in plain Node, for the tests that read
 * or drive the bank without the runtime: the bench's function host (bench/lib/microbank-ctx.ts)
 * with the runtime's `kvContext` over a real LMDB store, one host per service of the manifest.
 */
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../../src/core/log.js';
import { kvContext, loadManifest, type AppKv } from '../../../src/runtime/index.js';
import { functionHost, loadHandlers, type FunctionPrincipal, type ServiceCall } from '../../../bench/lib/microbank-ctx.js';
// @ts-expect-error a plain ES module of the example, shared with the bench (no type declarations)
import { auditMicrobank } from '../../../examples/microbank/audit.mjs';

export const MICROBANK = fileURLToPath(new URL('../../../examples/microbank', import.meta.url));

export type Invoke = (service: string, method: string, input: unknown, principal?: FunctionPrincipal) => Promise<unknown>;

/** The report of examples/microbank/audit.mjs. */
export interface AuditReport {
  accounts: number;
  total: number;
  opening: number;
  inFlight: number;
  conserved: boolean;
  ledgerConsistent: boolean;
  exactlyOnce: boolean;
  payments: { completed: number; failed: number; pending: number };
  problems: string[];
}

/**
 * The bank's services over `kv`, service `s` in KV namespace `namespace(s)` (the runtime uses the
 * service name); `call` carries ctx.call between them (none: calls are refused).
 */
export async function plainMicrobank(kv: AppKv, init: { namespace?: (service: string) => string; call?: ServiceCall } = {}): Promise<Invoke> {
  const manifest = await loadManifest(MICROBANK);
  const log = createLogger({ level: 'silent' });
  const call: ServiceCall = init.call ?? (async (service, method) => Promise.reject(new Error(`no calls here (${service}.${method})`)));
  const hosts = new Map<string, ReturnType<typeof functionHost>>();
  for (const service of manifest.services.values()) {
    const handlers = await loadHandlers(service.entry, service.handlers);
    hosts.set(service.name, functionHost({ service: service.name, handlers, kv: kvContext(kv, init.namespace?.(service.name) ?? service.name), call, log }));
  }
  return (service, method, input, principal) => hosts.get(service)!.invoke(method, input, principal);
}

/** audit.mjs over the bank that `invoke` reaches; `acked` are the 200 bodies of payments. */
export function audit(invoke: Invoke, acked: readonly unknown[]): Promise<AuditReport> {
  return auditMicrobank((service: string, method: string, input: unknown) => invoke(service, method, input), { acked }) as Promise<AuditReport>;
}
