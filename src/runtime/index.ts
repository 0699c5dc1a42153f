/** The serverless runtime (issue 5): manifest, isolates, host and autoscaler, key-value store, gateway, app startup. */
export { loadManifest, parseManifest, MANIFEST_FILE, GATEWAY_SERVICE, type AppManifest, type GatewayManifest, type RouteManifest, type ServiceManifest, type HttpMethod } from './manifest.js';
export { openKv, kvContext, KV_LIMITS, type AppKv, type KvApi } from './kv.js';
export { MAX_TRANSACT_ATTEMPTS, type Transaction } from './transact.js';
export { FunctionError, type Outcome } from './function-error.js';
export { Sandbox, type SandboxInit, type DisposeReason } from './sandbox.js';
export { Host, type HostAttestor, type HostInit, type ProvisionedIdentity, type ServiceStats } from './host.js';
export { createGateway, type EndUser, type Gateway, type GatewayInit, type Invoke, type RouteInput } from './gateway.js';
export { createBearerTokens, type BearerTokens, type BearerTokenInit } from './bearer.js';
export { hashPassword, verifyPassword, SCRYPT_PARAMS, type PasswordHash } from './passwords.js';
export { startApp, appPolicy, gatewayDigest, meshInvoke, type AppAttestation, type AttestationConfig, type RunningApp, type StartAppInit } from './app.js';
export { RuntimeMetrics } from './metrics.js';
