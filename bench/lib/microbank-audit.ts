/**
 * The microbank bench's check after each mode: MicroBank's own audit (examples/microbank/audit.mjs,
 * shared with the MicroBank tests) over the mode's own stores, reading them with the app's own unrouted
 * `accounts.audit` / `transactions.audit` handlers run in this process by the plain-Node function
 * host (./microbank-ctx.ts) on the runtime's `kvContext` — the same handlers and KV semantics whichever
 * mode wrote the data. LMDB allows readers in other processes while the mode's processes run.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLogger } from '../../src/core/log.js';
import { kvContext, loadManifest, openKv, type AppKv } from '../../src/runtime/index.js';
import { functionError, functionHost, loadHandlers, type FunctionHost } from './microbank-ctx.js';
import type { AckedPayment } from './microbank-load.js';

/** What examples/microbank/audit.mjs answers. */
export interface Audit {
  readonly accounts: number;
  readonly total: number;
  readonly opening: number;
  readonly inFlight: number;
  readonly conserved: boolean;
  readonly ledgerConsistent: boolean;
  readonly exactlyOnce: boolean;
  readonly payments: { readonly completed: number; readonly failed: number; readonly pending: number };
  readonly problems: readonly string[];
}

type Invoke = (service: string, method: string, input: unknown) => Promise<unknown>;
type AuditMicrobank = (invoke: Invoke, options: { acked: readonly AckedPayment[] }) => Promise<Audit>;

/** Audits the app in `appDir` whose services keep their ctx.kv at `kvPath(service)`. */
export async function auditStores(appDir: string, kvPath: (service: string) => string, acked: readonly AckedPayment[]): Promise<Audit> {
  const { auditMicrobank } = (await import(pathToFileURL(join(appDir, 'audit.mjs')).href)) as { auditMicrobank: AuditMicrobank };
  const manifest = await loadManifest(appDir);
  const stores = new Map<string, AppKv>();
  const hosts = new Map<string, FunctionHost>();
  const log = createLogger({ name: 'microbank-audit', level: 'warn' });
  const hostOf = async (service: string): Promise<FunctionHost> => {
    let host = hosts.get(service);
    if (host === undefined) {
      const spec = manifest.services.get(service);
      if (spec === undefined) throw new Error(`the manifest has no service "${service}"`);
      const path = kvPath(service);
      let kv = stores.get(path);
      if (kv === undefined) stores.set(path, (kv = await openKv(path)));
      host = functionHost({
        service,
        handlers: await loadHandlers(spec.entry, spec.handlers),
        kv: kvContext(kv, service),
        call: async () => {
          throw functionError(500, 'INTERNAL', 'the audit runs handlers that make no calls');
        },
        log,
      });
      hosts.set(service, host);
    }
    return host;
  };
  try {
    return await auditMicrobank(async (service, method, input) => (await hostOf(service)).invoke(method, input, undefined), { acked });
  } finally {
    await Promise.all([...stores.values()].map((kv) => kv.close()));
  }
}
