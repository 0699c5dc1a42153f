/**
 * themis-mesh: the application-facing API. Lower layers have their own subpath exports
 * (`themis-mesh/identity`, `/handshake`, `/channel`, `/transport`, `/core`, `/testing`).
 */
export { createPeer, Peer, type Connection, type DialOptions, type PeerInit, type RemotePeer } from './transport/index.js';
export { Identity, readKeyFile, writeKeyFile, networkConfig, formatNodeId, parseNodeId, type NetworkConfig } from './identity/index.js';
export { ThemisError, isThemisError, type ErrorCode } from './core/index.js';
export { startApp, loadManifest, parseManifest, createGateway, openKv, kvContext, FunctionError, type RunningApp, type StartAppInit, type AppManifest } from './runtime/index.js';
