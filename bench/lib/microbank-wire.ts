/**
 * Service-to-service calls of the microbank bench's two baselines, one small HTTP/1.1 protocol:
 *   POST /<method>, body = JSON input (`null` for none) → 200 `{"result": …}` or the callee's
 *   status with `{"error":{"code","message"}}`; keep-alive connections (one Agent per callee).
 *
 * plain     node:http, no security: the principal travels as JSON in the `x-principal` header.
 * mtls-jwt  MiSSFIRE's design (Yarygina & Bagge, SOSE 2018): every service holds an X.509
 *           certificate from the application's CA (CN = its service name); every hop is TLS 1.3
 *           with mutual authentication (requestCert + rejectUnauthorized against the CA; the client
 *           checks the server is the service it meant); the callee authorizes the caller's CN
 *           against the manifest's `calls` (the analogue of Themis's policy); and the principal
 *           travels as a JWT (RFC 7519, via jose) the caller signs with its certificate key for
 *           that one callee (`aud`) — MiSSFIRE's reverse STS run by each service — which the
 *           callee verifies per request with the public key of the caller's certificate.
 */
import { randomBytes, type KeyObject, createPrivateKey } from 'node:crypto';
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { SignJWT, jwtVerify, type JWTPayload } from 'jose';
import { errorOutcome } from '../../src/runtime/function-error.js';
import { functionError, type FunctionHost, type FunctionPrincipal, type ServiceCall } from './microbank-ctx.js';

export type BaselineMode = 'plain' | 'mtls-jwt';
export const BASELINE_MODES: readonly BaselineMode[] = ['plain', 'mtls-jwt'];

/** Certificates of the CN `themis-bench-<service>` (bench/lib/certs.ts names them so). */
export const CN_PREFIX = 'themis-bench-';
const PRINCIPAL_HEADER = 'x-principal';
const MAX_BODY_BYTES = 1024 * 1024;
const CALL_TIMEOUT_MS = 10_000;
/** Lifetime of a per-hop token; as Themis's principal tokens (60 s). */
const TOKEN_TTL_SECONDS = 60;
const RESERVED_CLAIMS = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'nbf', 'jti']);

/** One service's TLS material (PEM), for mtls-jwt. */
export interface ServiceTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** JWS algorithm of the certificate key: EdDSA (Ed25519) or ES256 (P-256). */
  readonly alg: 'EdDSA' | 'ES256';
}

export interface WireInit {
  readonly mode: BaselineMode;
  /** This process's service name ('gateway' for the gateway). */
  readonly self: string;
  /** Required in mtls-jwt mode. */
  readonly tls?: ServiceTls;
}

function requireTls(init: WireInit): ServiceTls {
  if (init.tls === undefined) throw new Error(`${init.self}: mtls-jwt mode needs the service's TLS material`);
  return init.tls;
}

// ---------------------------------------------------------------------------------------------
// Caller side

/** Calls other services at `peers` (service → base URL); the caller's principal goes along. */
export function serviceCaller(init: WireInit, peers: ReadonlyMap<string, string>): { call: ServiceCall; close(): void } {
  const agents = new Map<string, HttpAgent>();
  const signingKey = init.mode === 'mtls-jwt' ? createPrivateKey(requireTls(init).key) : null;
  const agentFor = (service: string): HttpAgent => {
    let agent = agents.get(service);
    if (agent === undefined) {
      if (init.mode === 'plain') {
        agent = new HttpAgent({ keepAlive: true, maxSockets: 256 });
      } else {
        const tls = requireTls(init);
        agent = new HttpsAgent({
          keepAlive: true,
          maxSockets: 256,
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
          minVersion: 'TLSv1.3',
          rejectUnauthorized: true,
          // The callee must be the service meant, not merely any certificate of the CA.
          checkServerIdentity: (_host: string, cert: PeerCertificate) =>
            cert.subject.CN === `${CN_PREFIX}${service}` ? undefined : new Error(`expected the certificate of "${service}", got CN=${cert.subject.CN}`),
        });
      }
      agents.set(service, agent);
    }
    return agent;
  };

  const headersFor = async (service: string, principal: FunctionPrincipal | undefined): Promise<Record<string, string>> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (principal === undefined) return headers;
    if (signingKey === null) {
      headers[PRINCIPAL_HEADER] = Buffer.from(JSON.stringify(principal)).toString('base64url');
    } else {
      const jwt = await new SignJWT({ ...principal.claims })
        .setProtectedHeader({ alg: requireTls(init).alg, typ: 'JWT' })
        .setIssuer(init.self)
        .setSubject(principal.subject)
        .setAudience(service)
        .setIssuedAt()
        .setExpirationTime(`${TOKEN_TTL_SECONDS}s`)
        .setJti(randomBytes(16).toString('base64url'))
        .sign(signingKey);
      headers['authorization'] = `Bearer ${jwt}`;
    }
    return headers;
  };

  const call: ServiceCall = async (service, method, payload, principal) => {
    const base = peers.get(service);
    if (base === undefined) throw functionError(500, 'INTERNAL', `${init.self}: no address for service "${service}"`);
    const body = Buffer.from(JSON.stringify(payload ?? null));
    const headers = await headersFor(service, principal);
    headers['content-length'] = String(body.length);
    const request = init.mode === 'plain' ? httpRequest : httpsRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(`${base}/${encodeURIComponent(method)}`, { method: 'POST', agent: agentFor(service), headers, timeout: CALL_TIMEOUT_MS }, (res) => {
        readBody(res).then((buf) => resolve({ status: res.statusCode ?? 0, text: buf.toString() }), reject);
      });
      req.on('timeout', () => req.destroy(functionError(504, 'TIMEOUT', `${service}.${method} did not answer within ${CALL_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(body);
    });
    const reply = JSON.parse(text) as { result?: unknown; error?: { code?: string; message?: string } };
    if (status === 200) return reply.result;
    throw functionError(status >= 400 && status <= 599 ? status : 502, reply.error?.code ?? 'INTERNAL', reply.error?.message ?? `${service}.${method} answered ${status}`);
  };
  return { call, close: () => agents.forEach((agent) => agent.destroy()) };
}

// ---------------------------------------------------------------------------------------------
// Callee side

function readBody(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) stream.destroy(new Error(`body larger than ${MAX_BODY_BYTES} bytes`));
      else chunks.push(chunk);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The public key of each client certificate, parsed once per TLS connection. */
const peerKeys = new WeakMap<TLSSocket, { service: string; key: KeyObject }>();

function peerOf(socket: TLSSocket): { service: string; key: KeyObject } {
  let peer = peerKeys.get(socket);
  if (peer === undefined) {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) throw functionError(401, 'UNAUTHENTICATED', 'no client certificate');
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? '';
    if (!cn.startsWith(CN_PREFIX)) throw functionError(403, 'FORBIDDEN', `client certificate CN=${cn} is not a service of this application`);
    peer = { service: cn.slice(CN_PREFIX.length), key: cert.publicKey };
    peerKeys.set(socket, peer);
  }
  return peer;
}

/** mtls-jwt: the caller (certificate) may call this service, and the JWT, if any, is for this service from that caller. */
async function admit(init: WireInit, allowedCallers: ReadonlySet<string>, req: IncomingMessage): Promise<FunctionPrincipal | undefined> {
  const peer = peerOf(req.socket as TLSSocket);
  if (!allowedCallers.has(peer.service)) throw functionError(403, 'FORBIDDEN', `service "${peer.service}" may not call "${init.self}"`);
  const auth = req.headers.authorization;
  if (auth === undefined) return undefined;
  if (!auth.startsWith('Bearer ')) throw functionError(401, 'UNAUTHENTICATED', 'authorization is not a bearer token');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(auth.slice('Bearer '.length), peer.key, {
      algorithms: [requireTls(init).alg],
      audience: init.self,
      issuer: peer.service,
      requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      maxTokenAge: TOKEN_TTL_SECONDS,
    }));
  } catch (err) {
    throw functionError(401, 'UNAUTHENTICATED', `bad principal token: ${(err as Error).message}`);
  }
  const claims = Object.fromEntries(Object.entries(payload).filter(([name]) => !RESERVED_CLAIMS.has(name)));
  return { subject: payload.sub as string, claims };
}

function plainPrincipal(req: IncomingMessage): FunctionPrincipal | undefined {
  const header = req.headers[PRINCIPAL_HEADER];
  return typeof header === 'string' ? (JSON.parse(Buffer.from(header, 'base64url').toString()) as FunctionPrincipal) : undefined;
}

/**
 * Serves `host`'s handlers on 127.0.0.1 (OS-assigned port). In mtls-jwt mode only the services in
 * `allowedCallers` get in. Resolves with the base URL and the server.
 */
export async function serveFunctions(init: WireInit, host: FunctionHost, allowedCallers: ReadonlySet<string>): Promise<{ url: string; server: Server }> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (req.method !== 'POST') throw functionError(405, 'BAD_REQUEST', 'only POST');
      const principal = init.mode === 'plain' ? plainPrincipal(req) : await admit(init, allowedCallers, req);
      const input = JSON.parse((await readBody(req)).toString()) as unknown;
      const method = decodeURIComponent((req.url ?? '/').slice(1));
      const result = await host.invoke(method, input ?? undefined, principal);
      send(res, 200, result === undefined ? {} : { result });
    } catch (err) {
      const outcome = errorOutcome(err);
      if ('error' in outcome) send(res, outcome.error.status, { error: { code: outcome.error.code, message: outcome.error.message } });
    }
  };
  const listener = (req: IncomingMessage, res: ServerResponse): void => void handle(req, res);
  const server: Server =
    init.mode === 'plain'
      ? createHttpServer({ keepAliveTimeout: 60_000 }, listener)
      : createHttpsServer(
          { ca: requireTls(init).ca, cert: requireTls(init).cert, key: requireTls(init).key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', keepAliveTimeout: 60_000 },
          listener,
        );
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  return { url: `${init.mode === 'plain' ? 'http' : 'https'}://127.0.0.1:${port}`, server };
}
