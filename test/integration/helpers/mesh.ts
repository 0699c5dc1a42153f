import { createHash } from 'node:crypto';
import { toBase32 } from '../../../src/core/bytes.js';
import { createDhtNode, type DhtNode } from '../../../src/dht/index.js';
import { Identity } from '../../../src/identity/index.js';
import { createMesh, endorse, endorsementCredential, parsePolicyYaml, signPolicy, type Mesh, type MeshInit } from '../../../src/mesh/index.js';
import { testNetwork } from '../../../src/testing/index.js';

/** Shared fixtures of the in-process mesh tests. */
export const network = testNetwork();
export const LISTEN = 'tcp://127.0.0.1:0';
export const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

export interface Closer {
  after(fn: () => Promise<void>): void;
}

/** Three DHT server nodes on loopback; returns the bootstrap list. */
export async function startDht(t: Closer): Promise<{ servers: DhtNode[]; bootstrap: string[] }> {
  const servers: DhtNode[] = [];
  t.after(async () => {
    await Promise.all(servers.map((node) => node.leave()));
  });
  for (let i = 0; i < 3; i++) servers.push(await createDhtNode({ network, listen: LISTEN, maintenance: false }));
  const bootstrap = [`${servers[0]!.id}@${servers[0]!.peer.addresses[0]!}`];
  for (const node of servers.slice(1)) await node.join(bootstrap);
  return { servers, bootstrap };
}

/** Starts meshes that are closed after the test. */
export function meshes(t: Closer): (init: MeshInit) => Promise<Mesh> {
  const started: Mesh[] = [];
  t.after(async () => {
    await Promise.all(started.map((mesh) => mesh.close()));
  });
  return async (init) => {
    const mesh = await createMesh({ network, maintenance: false, ...init });
    started.push(mesh);
    return mesh;
  };
}

/**
 * The `microbank` trust domain: one trusted host, services users and gateway with one allowed
 * digest each, and one rule gateway → users for `methods`; the signed policy is stored in the DHT.
 */
export async function microbank(server: DhtNode, methods: readonly string[]) {
  const owner = Identity.generate(network);
  const host = Identity.generate(network);
  const code = { users: sha256('users v1'), gateway: sha256('gateway v1') };
  const policy = parsePolicyYaml(`trustDomain: microbank
seq: 1
hosts:
  - name: host-1
    key: ${toBase32(host.publicKey)}
services:
  users: { digests: ["${code.users.toString('hex')}"] }
  gateway: { digests: ["${code.gateway.toString('hex')}"] }
rules:
  - { from: gateway, to: users, methods: [${methods.join(', ')}] }
revoked: []
tokenIssuers: [gateway]
refreshSeconds: 30
`);
  await server.store(signPolicy(owner, policy));
  const endorsed = (service: 'users' | 'gateway'): Pick<MeshInit, 'identity' | 'credentials'> => {
    const identity = Identity.generate(network);
    const bytes = endorse(host, { instancePub: identity.publicKey, trustDomain: 'microbank', service, codeDigest: code[service] });
    return { identity, credentials: [endorsementCredential(bytes)] };
  };
  return { owner, host, code, trust: { owner: owner.publicKey }, endorsed };
}
