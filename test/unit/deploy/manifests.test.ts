// deploy/kubernetes: every manifest validates against the Kubernetes OpenAPI schemas
// (kubernetes-models), keys are never committed, and the peers are configured with the same
// THEMIS_* keys the multi-host test starts them with (test/multihost/helpers/roles.ts), each one
// a key the command the container runs really reads (its --help lists "env: THEMIS_…").
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { parseAllDocuments } from 'yaml';
import { anchorEnv, functionHostEnv } from '../../multihost/helpers/roles.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const manifestsDir = join(root, 'deploy', 'kubernetes');
const CLI = join(root, 'dist', 'cli', 'main.js');

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; spec?: Record<string, unknown>; data?: Record<string, string> };

/** The models this deployment uses, by apiVersion/kind; validate() throws on a schema violation. */
const MODELS: Record<string, (doc: Manifest) => { validate(): void }> = {
  'v1/ConfigMap': (doc) => new ConfigMap(doc as never),
  'v1/Service': (doc) => new Service(doc as never),
  'apps/v1/Deployment': (doc) => new Deployment(doc as never),
  'apps/v1/StatefulSet': (doc) => new StatefulSet(doc as never),
  'policy/v1/PodDisruptionBudget': (doc) => new PodDisruptionBudget(doc as never),
};

function validate(doc: Manifest): void {
  const model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (model === undefined) throw new Error(`no schema model for ${doc.apiVersion} ${doc.kind}; add it to MODELS`);
  model(doc).validate();
}

function loadManifests(): { file: string; doc: Manifest }[] {
  const out: { file: string; doc: Manifest }[] = [];
  for (const file of readdirSync(manifestsDir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const document of parseAllDocuments(readFileSync(join(manifestsDir, file), 'utf8'))) {
      assert.deepEqual(document.errors, [], `${file} is valid YAML`);
      out.push({ file, doc: document.toJS() as Manifest });
    }
  }
  return out;
}

const manifests = loadManifests();
const find = (kind: string, name: string): Manifest => {
  const found = manifests.find(({ doc }) => doc.kind === kind && doc.metadata.name === name);
  assert.ok(found, `deploy/kubernetes has a ${kind} ${name}`);
  return found.doc;
};

interface Container {
  name: string;
  args?: string[];
  env?: { name: string }[];
}
const podSpec = (workload: Manifest): { containers: Container[]; initContainers?: Container[]; securityContext?: { runAsNonRoot?: boolean } } =>
  (workload.spec as { template: { spec: never } }).template.spec;
const themisKeys = (container: Container): string[] => (container.env ?? []).map((e) => e.name).filter((n) => n.startsWith('THEMIS_')).sort();

test('every manifest validates against the Kubernetes schemas', () => {
  assert.ok(manifests.length >= 5);
  for (const { file, doc } of manifests) assert.doesNotThrow(() => validate(doc), `${file}: ${doc.kind} ${doc.metadata?.name}`);
});

test('the validation really rejects broken manifests', () => {
  const statefulSet = structuredClone(find('StatefulSet', 'themis-anchor'));
  (statefulSet.spec as { replicas: unknown }).replicas = 'three';
  assert.throws(() => validate(statefulSet), /replicas must be integer/);
  const deployment = structuredClone(find('Deployment', 'themis-ledger'));
  delete (podSpec(deployment).containers[0] as Partial<Container>).name;
  assert.throws(() => validate(deployment), /must have required property 'name'|required property name/);
  const service = structuredClone(find('Service', 'themis-anchor'));
  (service.spec as { ports: { port: unknown }[] }).ports[0]!.port = 'seven thousand';
  assert.throws(() => validate(service), /port must be integer/);
  assert.throws(() => validate({ ...service, kind: 'Servise' }), /no schema model/);
});

test('no key or Secret is committed, and every pod runs as non-root', () => {
  for (const { file, doc } of manifests) {
    assert.notEqual(doc.kind, 'Secret', `${file}: Secrets are created in the cluster, never committed`);
    if (doc.kind === 'Deployment' || doc.kind === 'StatefulSet') assert.equal(podSpec(doc).securityContext?.runAsNonRoot, true, `${file}: ${doc.metadata.name}`);
  }
  for (const file of readdirSync(manifestsDir)) assert.doesNotMatch(readFileSync(join(manifestsDir, file), 'utf8'), /"(identity|noiseStatic|secret)"\s*:|BEGIN .*PRIVATE KEY/i);
  const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /^USER 10001/m, 'the image runs as a non-root user');
  assert.match(dockerfile, /^ENTRYPOINT \["themis"\]/m);
  assert.equal(dockerfile.match(/^FROM /gm)?.length, 2, 'a multi-stage build');
});

test('anchors and function hosts get the same THEMIS_* keys in the manifests as in the multi-host test', () => {
  const anchor = podSpec(find('StatefulSet', 'themis-anchor')).containers[0]!;
  const functionHost = podSpec(find('Deployment', 'themis-ledger')).containers[0]!;
  const sample = { listen: 'tcp://10.0.0.1:7000', bootstrap: ['tcp://10.0.0.1:7000'], data: '/d', key: '/k', via: 'tcp://10.0.0.1:7000', endorsement: '/e', owner: 'o' };
  assert.deepEqual(themisKeys(anchor), Object.keys(anchorEnv(sample)).sort());
  assert.deepEqual(themisKeys(functionHost), Object.keys(functionHostEnv(sample)).sort());
  // …and the multi-host test starts its anchors and providers with exactly those (not with ad-hoc variables).
  const multihost = readFileSync(join(root, 'test', 'multihost', 'partition-heal.test.ts'), 'utf8');
  assert.match(multihost, /const env = anchorEnv\(\{[^\n]*\n\s*anchors\.push\(await lab\.start\(host, node\('node'/);
  assert.match(multihost, /const env = functionHostEnv\(\{[^\n]*\n\s*const daemon = await lab\.start\(host, node\('provide'/);
  // The ConfigMap provides what the containers take from it.
  const network = find('ConfigMap', 'themis-network');
  for (const container of [anchor, functionHost]) {
    for (const entry of (container.env ?? []) as { name: string; valueFrom?: { configMapKeyRef?: { key: string } } }[]) {
      const key = entry.valueFrom?.configMapKeyRef?.key;
      if (key !== undefined) assert.ok(key in network.data!, `themis-network has ${key}`);
    }
  }
});

test('each THEMIS_* key a container sets is read by the command it runs (its --help lists the variable)', async () => {
  const workloads = [find('StatefulSet', 'themis-anchor'), find('Deployment', 'themis-ledger')];
  for (const workload of workloads) {
    const container = podSpec(workload).containers[0]!;
    const help = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [CLI, container.args![0]!, '--help'], { env: {} }, (err, stdout) => (err === null ? resolve(stdout.replace(/\s+/g, ' ')) : reject(err))),
    );
    for (const key of themisKeys(container)) assert.ok(help.includes(`env: ${key})`), `themis ${container.args![0]} reads ${key} (${workload.metadata.name})`);
  }
});
