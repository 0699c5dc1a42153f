// The mesh layer (docs/mesh.md): endorsements, policies (canonical bytes and YAML), principal
// tokens, rotation chains, revocations, the call codec and stream headers, and a live Mesh serving
// calls and streams to a keyed peer over TCP on 127.0.0.1.
import type { Duplex } from 'node:stream';
import { Identity } from '../../../src/identity/index.js';
import {
  createMesh,
  decodeCallRequest,
  decodeCallResponse,
  decodePolicy,
  decodeStreamHeader,
  encodeCallRequest,
  encodeCallResponse,
  encodePolicy,
  encodeStreamHeader,
  issuePrincipalToken,
  newTraceparent,
  openEndorsement,
  openPolicyRecord,
  parsePolicyYaml,
  ReplayCache,
  signPolicy,
  verifyEndorsement,
  verifyPrincipalToken,
  verifyRotationChain,
  type Mesh,
} from '../../../src/mesh/index.js';
import { createRevocation, openRevocation } from '../../../src/mesh/revocation.js';
import { encodeRotationChain, rotationStatement } from '../../../src/mesh/rotation.js';
import { createPeer, type Connection, type Peer } from '../../../src/transport/index.js';
import { ThemisError } from '../../../src/core/errors.js';
import { endorsement, ids, joinProblems, network, policy, policyYaml, rotationChain, selector, tagged, untypedErrorLog } from '../fixtures.js';
import { defineTarget } from '../harness.js';

const NOW = Date.now();

export const endorsements = defineTarget({
  name: 'endorsement',
  description: 'host endorsements (credential type 1): openEndorsement and verifyEndorsement (signature, fields, lifetime)',
  setup: () => null,
  seeds: () => [tagged(0, endorsement), tagged(1, endorsement)],
  run(_, input) {
    if (selector(input) % 2 === 0) openEndorsement(input.subarray(1));
    else verifyEndorsement(input.subarray(1), NOW);
  },
});

export const policies = defineTarget({
  name: 'policy',
  description: 'trust-domain policies: the canonical decoder, the YAML parser and the signed policy record',
  setup: () => signPolicy(ids.owner, policy, { now: NOW }),
  seeds: (record) => [tagged(0, encodePolicy(policy)), tagged(1, Buffer.from(policyYaml)), tagged(2, record)],
  run(_, input) {
    const payload = input.subarray(1);
    switch (selector(input) % 3) {
      case 0:
        decodePolicy(payload);
        return;
      case 1:
        parsePolicyYaml(payload.toString('utf8'), 'fuzz.yaml');
        return;
      default:
        openPolicyRecord(payload, ids.owner.publicKey, network, NOW);
    }
  },
});

// --- principal tokens (docs/mesh.md §6) -------------------------------------------------------

const TOKEN_HEADER = { alg: 'EdDSA', typ: 'themis-principal+jwt' };
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

/** A compact JWS over any header and payload bytes, signed by the issuing instance: the signature is valid, the content is not. */
function signedJws(header: Uint8Array, payload: Uint8Array): string {
  const input = `${b64(header)}.${b64(payload)}`;
  // An empty part is no JWS signing input: such a token goes out unsigned.
  if (header.length === 0 || payload.length === 0) return `${input}.`;
  return `${input}.${ids.instance.signJwsInput(input).toString('base64url')}`;
}

export const tokens = defineTarget({
  name: 'tokens',
  description: 'verifyPrincipalToken: mutated compact JWS, and mutated header or claims re-signed by the issuer key (type, audience, lifetime, issuer, replay)',
  setup: () => {
    const token = issuePrincipalToken(ids.instance, { subject: 'user-42', audience: 'users', issuerService: 'gateway', claims: { scope: 'read' }, now: NOW });
    const [, payload] = token.split('.') as [string, string, string];
    return { token, payload: Buffer.from(payload, 'base64url'), replay: new ReplayCache({ maxEntries: 10_000 }) };
  },
  seeds: ({ token, payload }) => [tagged(0, Buffer.from(token)), tagged(1, payload), tagged(2, Buffer.from(JSON.stringify(TOKEN_HEADER)))],
  async run({ payload, replay }, input) {
    const body = input.subarray(1);
    const mode = selector(input) % 3;
    const token =
      mode === 0 ? body.toString('utf8')
      : mode === 1 ? signedJws(Buffer.from(JSON.stringify(TOKEN_HEADER)), body)
      : signedJws(body, payload);
    await verifyPrincipalToken(token, {
      audience: 'users',
      now: NOW,
      replay: (selector(input) & 0x80) !== 0 ? replay : undefined,
      issuerKey: (pub, service) => {
        if (!pub.equals(ids.instance.publicKey) || service !== 'gateway') throw new ThemisError('ERR_MESH_TOKEN_ISSUER', 'not the issuing instance');
      },
    });
  },
  teardown: ({ replay }) => void replay,
});

export const rotation = defineTarget({
  name: 'rotation',
  description: 'rotation chains (credential type 3): verifyRotationChain (links, signatures, order, repeated keys)',
  setup: () => encodeRotationChain([rotationStatement(ids.third, ids.host.publicKey, 1_700_000_002_000)]),
  seeds: (single) => [tagged(0, rotationChain), tagged(1, single)],
  run(_, input) {
    verifyRotationChain(input.subarray(1), selector(input) % 2 === 0 ? ids.third.publicKey : ids.host.publicKey);
  },
});

export const revocation = defineTarget({
  name: 'revocation',
  description: 'revocation records (type 6): openRevocation (record, key binding, value)',
  setup: () => null,
  seeds: () => [createRevocation(ids.host, ids.instance.publicKey, 1, NOW), createRevocation(ids.instance, ids.instance.publicKey, 0, NOW)],
  run(_, input) {
    openRevocation(input, network, NOW);
  },
});

export const callCodec = defineTarget({
  name: 'call-codec',
  description: 'mesh call bodies: decodeCallRequest (version, codec, token, traceparent, payload) and decodeCallResponse',
  setup: () => issuePrincipalToken(ids.instance, { subject: 'user-1', audience: 'users', issuerService: 'gateway', now: NOW }),
  seeds: (token) => [
    tagged(0, encodeCallRequest({ id: 7, tags: ['a', 'b'] }, { traceparent: newTraceparent() })),
    tagged(0, encodeCallRequest(Buffer.from('raw bytes'), { token, traceparent: newTraceparent() })),
    tagged(1, encodeCallResponse({ ok: true, n: 1.5 })),
    tagged(1, encodeCallResponse(undefined)),
  ],
  run(_, input) {
    if (selector(input) % 2 === 0) decodeCallRequest(input.subarray(1));
    else decodeCallResponse(input.subarray(1));
  },
});

export const streamHeader = defineTarget({
  name: 'stream-header',
  description: 'mesh stream headers: decodeStreamHeader (version, token, traceparent)',
  setup: () => issuePrincipalToken(ids.instance, { subject: 'user-1', audience: 'users', issuerService: 'gateway', now: NOW }),
  seeds: (token) => [encodeStreamHeader({ token, traceparent: newTraceparent() }).subarray(2), encodeStreamHeader({ token: '', traceparent: '' }).subarray(2)],
  run(_, input) {
    decodeStreamHeader(input);
  },
});

// --- a live mesh --------------------------------------------------------------------------------

interface MeshContext {
  readonly mesh: Mesh;
  readonly attacker: Peer;
  readonly conn: Connection;
  readonly problems: string[];
  readonly identity: Identity;
}

/** Reads a stream to its end (or its reset); resolves either way. */
function drain(stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    stream.on('data', () => {});
    stream.once('error', () => resolve());
    stream.once('close', () => resolve());
  });
}

export const meshCall = defineTarget({
  name: 'mesh-call',
  description: 'a live open-mode Mesh: calls (mesh/<service>/<method> bodies) and streams (header, then bytes) from a keyed peer over TCP on 127.0.0.1',
  async setup(): Promise<MeshContext> {
    const { logger, problems } = untypedErrorLog();
    const mesh = await createMesh({ network, listen: 'tcp://127.0.0.1:0', bootstrap: [], maintenance: false, logger });
    await mesh.provide('users', { get: (payload) => payload });
    await mesh.provideStream('users', 'pipe', (stream) => {
      stream.on('data', (chunk: Buffer) => stream.write(chunk));
      stream.on('end', () => stream.end());
    });
    const identity = Identity.generate(network);
    const attacker = await createPeer({ network, identity });
    const conn = await attacker.dial(mesh.addresses[0]!, { expect: mesh.id });
    return { mesh, attacker, conn, problems, identity };
  },
  seeds: ({ identity }) => {
    const token = issuePrincipalToken(identity, { subject: 'user-1', audience: 'users', issuerService: 'gateway' });
    return [
      tagged(0, encodeCallRequest({ id: 7 }, { traceparent: newTraceparent() })),
      tagged(0, encodeCallRequest({ id: 8 }, { token, traceparent: newTraceparent() })),
      tagged(1, Buffer.concat([encodeStreamHeader({ token: '', traceparent: newTraceparent() }), Buffer.from('stream bytes')])),
      tagged(1, Buffer.concat([encodeStreamHeader({ token, traceparent: newTraceparent() }), Buffer.from('more')])),
    ];
  },
  async run({ conn }, input) {
    const body = input.subarray(1);
    if (selector(input) % 2 === 0) {
      await conn.request('mesh/users/get', body, { timeoutMs: 2000 });
      return;
    }
    const stream = conn.openStream('mesh/users/pipe');
    const done = drain(stream);
    stream.end(body);
    await done;
  },
  leaks: ({ conn }) => (conn.closed ? 'the mesh closed the connection' : null),
  async problems({ conn, problems }) {
    const answer = await conn.request('mesh/users/get', encodeCallRequest({ honest: true }, { traceparent: newTraceparent() }), { timeoutMs: 2000 }).catch((err: Error) => err);
    if (answer instanceof Error || !(decodeCallResponse(answer) as { honest?: boolean }).honest) problems.push(`the mesh no longer serves an honest call: ${String(answer)}`);
    return joinProblems(problems);
  },
  async teardown({ mesh, attacker }) {
    await attacker.close();
    await mesh.close();
  },
  caseTimeoutMs: 7000,
});
