import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { toBase32 } from '../core/bytes.js';
import { ThemisError, isThemisError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { TpmAttestor, createHostAttestor, createVerifier, type AttestationVerifier, type HostAttestor } from '../attest/index.js';
import { createDhtNode, type DhtNode } from '../dht/index.js';
import { Identity, networkConfig, readKeyFile, writeKeyFile, type NetworkConfig } from '../identity/index.js';
import { createMesh, endorse, endorsementCredential, parsePolicyYaml, signPolicy, type Mesh, type MeshInit, type Policy } from '../mesh/index.js';
import { createBearerTokens } from './bearer.js';
import { createGateway, type Gateway, type Invoke } from './gateway.js';
import { Host } from './host.js';
import { RUNTIME_DISCOVERY_CACHE_MS, callService } from './mesh-call.js';
import { openKv, type AppKv } from './kv.js';
import { RuntimeMetrics } from './metrics.js';
import { GATEWAY_SERVICE, loadManifest, type AppManifest } from './manifest.js';

/**
 * `startApp` (RUNTIME-CONTRACT.md "Runtime API"): everything `themis up` runs on one machine —
 * a DHT anchor, the trust domain (owner key, host key, a policy derived from the manifest and
 * the digests of the actual modules, signed into the DHT), the host with its function
 * instances, and the HTTP gateway, itself an endorsed mesh peer of service `gateway`, the only
 * principal-token issuer of the policy.
 *
 * Attestation (docs/attestation.md, docs/runtime.md §6): one host attestor per app measures every
 * instance's code (and the gateway's configuration) through Host.provisionIdentity; one verifier
 * per host process checks every peer of every instance and of the gateway, so they share its
 * verified-quote cache. In TPM mode the derived policy requires TPM attestation and trusts the
 * host's AK.
 */
/** Code digest (default, no TPM), or TPM 2.0 at `tpm`: `socket:PATH` (swtpm) or a device such as /dev/tpmrm0. */
export type AttestationConfig = { readonly mode: 'code-digest' } | { readonly mode: 'tpm'; readonly tpm: string };

/** The attestation an app runs with. */
export interface AppAttestation {
  readonly mode: AttestationConfig['mode'];
  /** TPM mode: SHA-256 of the host's AK public area, the key the derived policy trusts (hex). */
  readonly akHash?: string;
  /** The one verifier of this host process (its `tpm.quotesVerified` counts fresh quotes verified). */
  readonly verifier: AttestationVerifier;
}

export interface StartAppInit {
  readonly dir: string;
  /** Gateway port; default 0 (any free port). */
  readonly port?: number;
  /** Listen host of the gateway, the anchor and the instances. Default 127.0.0.1. */
  readonly host?: string;
  /** Keys and the key-value store; default `<dir>/.themis`. */
  readonly dataDir?: string;
  /** Join this DHT anchor (`tcp://…` or `ID@tcp://…`) instead of starting one. */
  readonly anchor?: string;
  readonly logger?: Logger;
  /** Default code-digest: the endorsement's digest and the policy's digests are the proof. */
  readonly attestation?: AttestationConfig;
  /** A request at zero instances waits at most this for a cold start. Default 10 s. */
  readonly coldStartTimeoutMs?: number;
}

export interface RunningApp {
  readonly gateway: string;
  /** The DHT anchor's address, tcp://host:port. */
  readonly anchor: string;
  /** The anchor with its NodeId (`ID@tcp://…`), for peers that join this app's DHT. */
  readonly bootstrap: string;
  readonly host: Host;
  readonly manifest: AppManifest;
  readonly policy: Policy;
  /** The trust-domain owner's public key, base32. */
  readonly owner: string;
  readonly dataDir: string;
  readonly network: NetworkConfig;
  /** The open key-value store (tests and audits read it with kvContext(app.kv, service)). */
  readonly kv: AppKv;
  /**
   * The gateway's own invoke: a call over the gateway's mesh peer, so the policy applies — only the
   * routed (and register) methods are allowed; anything else answers 403 FORBIDDEN.
   */
  readonly invoke: Invoke;
  readonly attestation: AppAttestation;
  /** Prometheus text of the runtime's metrics (cold starts, instances, gateway requests). */
  metrics(): Promise<string>;
  /** Graceful: stop accepting, finish in-flight requests, stop instances, close the anchor. */
  close(): Promise<void>;
}

/** The code digest the gateway is endorsed for: its configuration, since its code is the runtime's. */
export function gatewayDigest(manifest: AppManifest): Buffer {
  return createHash('sha256').update('themis/gateway/v1\0').update(JSON.stringify(manifest.gateway)).digest();
}

/** The policy of an app: its services with the digests of their modules, `calls:` as rules, the gateway (and re-issuers) as token issuers. */
export async function appPolicy(manifest: AppManifest, hostKey: Uint8Array, seq: number, trustedAk?: Buffer): Promise<Policy> {
  const services: Record<string, { digests: string[] }> = { [GATEWAY_SERVICE]: { digests: [gatewayDigest(manifest).toString('hex')] } };
  for (const service of manifest.services.values()) {
    const digest = createHash('sha256').update(await readFile(service.entry)).digest('hex');
    services[service.name] = { digests: [digest] };
  }
  const fromGateway = new Map<string, Set<string>>();
  const reach = (service: string, method: string): void => void fromGateway.set(service, (fromGateway.get(service) ?? new Set()).add(method));
  for (const route of manifest.gateway.routes) reach(route.service, route.handler);
  const register = manifest.gateway.auth?.register;
  if (register !== undefined) reach(register.service, register.handler);
  const rules = [
    ...[...fromGateway].map(([to, methods]) => ({ from: GATEWAY_SERVICE, to, methods: [...methods].sort() })),
    ...[...manifest.services.values()].flatMap((service) => service.calls.map((to) => ({ from: service.name, to, methods: ['*'] }))),
  ];
  const plain = {
    trustDomain: manifest.trustDomain,
    seq,
    hosts: [{ name: 'host-1', key: toBase32(hostKey) }],
    services,
    rules,
    revoked: [],
    // Only the gateway mints principal tokens (at login); a service that calls on re-issues the
    // caller's principal for its callee (mesh CallContext.call), and the callee accepts that only
    // from a token issuer of the policy, so every service with `calls:` is listed too.
    tokenIssuers: [GATEWAY_SERVICE, ...[...manifest.services.values()].filter((service) => service.calls.length > 0).map((service) => service.name)],
    refreshSeconds: 30,
    // TPM mode: every peer must prove its code with a quote of this host's AK (docs/attestation.md §5).
    ...(trustedAk === undefined ? {} : { attestation: { require: 'tpm', tpmKeys: [trustedAk.toString('hex')] } }),
  };
  return parsePolicyYaml(stringify(plain), `${manifest.file} (derived policy)`);
}

export async function startApp(init: StartAppInit): Promise<RunningApp> {
  const logger = init.logger ?? createLogger();
  const log = logger.child({ component: 'app' });
  const mode = init.attestation ?? { mode: 'code-digest' };
  const manifest = await loadManifest(init.dir);
  const dataDir = resolve(init.dataDir ?? join(manifest.dir, '.themis'));
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const network = networkConfig();
  const listenHost = init.host ?? '127.0.0.1';
  const [owner, hostIdentity, seed] = await Promise.all([devKey(join(dataDir, 'owner.key'), network), devKey(join(dataDir, 'host.key'), network), devSeed(join(dataDir, 'gateway-token.seed'))]);

  const cleanups: (() => Promise<void>)[] = [];
  const unwind = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => log.error({ err: (err as Error).message }, 'shutdown step failed'));
  };
  try {
    const kv: AppKv = await openKv(join(dataDir, 'kv'));
    cleanups.push(() => kv.close());

    let anchorNode: DhtNode | null = null;
    let bootstrap: string;
    if (init.anchor === undefined) {
      anchorNode = await createDhtNode({
        network,
        listen: `tcp://${listenHost}:0`,
        logger,
        // Every instance of this host dials the anchor from the same address.
        limits: { maxConnectionsPerIp: 4096, maxConnections: 8192, maxPendingHandshakes: 1024 },
      });
      const node = anchorNode;
      cleanups.push(() => node.leave());
      bootstrap = `${anchorNode.id}@${anchorNode.peer.addresses[0]!}`;
    } else {
      bootstrap = init.anchor;
    }
    const anchor = bootstrap.slice(bootstrap.indexOf('@') + 1);

    const attestor = await openAttestor(mode, hostIdentity, logger);
    cleanups.push(() => attestor.close());
    const akHash = attestor instanceof TpmAttestor ? attestor.ak.digest : undefined;
    const verifier = createVerifier({ logger });
    const meshAttestation: MeshInit['attestation'] = { verifier, evidence: (nonce) => attestor.evidence(nonce) };

    const policy = await appPolicy(manifest, hostIdentity.publicKey, Date.now(), akHash);
    const record = signPolicy(owner, policy);
    if (anchorNode !== null) await anchorNode.store(record);
    else await storeVia(bootstrap, record, network, logger);

    const metrics = new RuntimeMetrics();
    const host = new Host({
      manifest,
      metrics,
      hostIdentity,
      owner: owner.publicKey,
      network,
      bootstrap: [bootstrap],
      kv,
      logger,
      listenHost,
      attestor,
      attestation: meshAttestation,
      ...(init.coldStartTimeoutMs === undefined ? {} : { coldStartTimeoutMs: init.coldStartTimeoutMs }),
    });
    cleanups.push(() => host.close());
    await host.start();

    const gatewayMesh = await startGatewayPeer(manifest, hostIdentity, owner.publicKey, network, bootstrap, logger, attestor, meshAttestation);
    cleanups.push(() => gatewayMesh.close());
    const invoke = meshInvoke(gatewayMesh, host, manifest.gateway.timeoutMs);
    const gateway: Gateway = await createGateway({
      config: manifest.gateway,
      invoke,
      kv,
      tokens: createBearerTokens({ app: manifest.app, ttlSeconds: manifest.gateway.auth?.tokenTtlSeconds ?? 3600, seed }),
      port: init.port ?? 0,
      host: listenHost,
      logger,
      metrics,
    });
    cleanups.push(() => gateway.close());
    log.info({ app: manifest.app, gateway: gateway.url, anchor, services: [...manifest.services.keys()], attestation: mode.mode }, 'app started');

    let closing: Promise<void> | null = null;
    return {
      gateway: gateway.url,
      anchor,
      bootstrap,
      host,
      manifest,
      policy,
      owner: toBase32(owner.publicKey),
      dataDir,
      network,
      kv,
      invoke,
      attestation: { mode: mode.mode, verifier, ...(akHash === undefined ? {} : { akHash: akHash.toString('hex') }) },
      metrics: () => metrics.text(),
      close: () => (closing ??= unwind()),
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/**
 * The host attestor of an app. TPM mode opens the TPM (resetting PCR 16); a TPM that cannot be
 * reached or missing tpm2-tools fails the start with what to do.
 */
async function openAttestor(mode: AttestationConfig, hostIdentity: Identity, logger: Logger): Promise<HostAttestor> {
  if (mode.mode !== 'tpm') return createHostAttestor(mode, hostIdentity);
  try {
    return await createHostAttestor({ mode: 'tpm', tpm: mode.tpm, logger }, hostIdentity);
  } catch (err) {
    if (!isThemisError(err, 'ERR_ATTEST_TPM')) throw err;
    throw new ThemisError(
      'ERR_ATTEST_TPM',
      `TPM attestation cannot open the TPM at ${mode.tpm}: ${err.message}. Start a TPM there (swtpm: see docs/attestation.md, "MicroBank with TPM attestation"), point --tpm (THEMIS_TPM) at a TPM device such as /dev/tpmrm0, or run without --attest tpm (code-digest mode)`,
      { cause: err },
    );
  }
}

/** The gateway's mesh peer: a fresh identity endorsed by the host for service `gateway`, its configuration digest measured by the attestor. */
async function startGatewayPeer(
  manifest: AppManifest,
  hostIdentity: Identity,
  owner: Buffer,
  network: NetworkConfig,
  bootstrap: string,
  logger: Logger,
  attestor: HostAttestor,
  attestation: MeshInit['attestation'],
): Promise<Mesh> {
  const identity = Identity.generate(network);
  const digest = gatewayDigest(manifest);
  const endorsement = endorse(hostIdentity, { instancePub: identity.publicKey, trustDomain: manifest.trustDomain, service: GATEWAY_SERVICE, codeDigest: digest });
  const extra = await attestor.credentials({ nodeId: identity.nodeId, service: GATEWAY_SERVICE, digest });
  return createMesh({
    identity,
    credentials: [endorsementCredential(endorsement), ...extra],
    network,
    bootstrap: [bootstrap],
    client: true,
    trust: { owner },
    maintenance: false,
    discoveryCacheMs: RUNTIME_DISCOVERY_CACHE_MS,
    logger,
    ...(attestation === undefined ? {} : { attestation }),
  });
}

/** The runtime's `invoke`: the principal token for the callee, then a runtime call over the gateway's mesh peer. */
export function meshInvoke(mesh: Mesh, host: Host, deadlineMs: number): Invoke {
  return (service, method, input, principal) => {
    const token =
      principal === undefined ? undefined : mesh.issueToken({ subject: principal.subject, audience: service, ...(principal.claims === undefined ? {} : { claims: principal.claims }) });
    return callService((...args) => mesh.call(...args), (callee) => host.ensure(callee), service, method, input, { deadlineMs, ...(token === undefined ? {} : { token }) });
  };
}

/** Stores a record through a short-lived DHT client joined at `bootstrap` (a DHT this app did not start). */
async function storeVia(bootstrap: string, record: Uint8Array, network: NetworkConfig, logger: Logger): Promise<void> {
  const node = await createDhtNode({ network, client: true, logger, maintenance: false });
  try {
    await node.join([bootstrap]);
    await node.store(record);
  } finally {
    await node.leave();
  }
}

/** Development keys: made on first start (mode 0600), reused after. */
async function devKey(path: string, network: NetworkConfig): Promise<Identity> {
  try {
    return await readKeyFile(path, network);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const identity = Identity.generate(network);
  await writeKeyFile(path, identity);
  return identity;
}

async function devSeed(path: string): Promise<Buffer> {
  try {
    const seed = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64url');
    if (seed.length === 32) return seed;
    throw new ThemisError('ERR_IDENTITY_KEY_FILE', `${path} does not hold a 32-byte seed; delete it to make a new one`);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const seed = randomBytes(32);
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(`${seed.toString('base64url')}\n`);
  } finally {
    await handle.close();
  }
  return seed;
}

function isMissing(err: unknown): boolean {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
  return isThemisError(err, 'ERR_IDENTITY_KEY_FILE') && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
