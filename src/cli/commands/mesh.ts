import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import { fromHex, toBase32, toHex } from '../../core/bytes.js';
import { ThemisError } from '../../core/errors.js';
import { RecordType, createDhtNode, policyKey, type DhtNode } from '../../dht/index.js';
import { Identity, readKeyFile, type NetworkConfig } from '../../identity/index.js';
import {
  createMesh,
  endorse,
  endorsementCredential,
  openEndorsement,
  openPolicyRecord,
  parsePolicyYaml,
  policyToPlain,
  policyToYaml,
  signPolicy,
  type Mesh,
  type MeshInit,
  type OpenedPolicy,
} from '../../mesh/index.js';
import { jsonOption, networkFrom, networkOptions, parseKey32, parsePositiveInt, UsageError } from '../options.js';
import { printJson, printLine } from '../output.js';
import { waitForSignal } from '../signals.js';

/**
 * Mesh commands (issue 4): `policy init|sign|show`, `endorse`, `provide`, `call`, `discover`.
 *
 * The commands that talk to the network take the network's puzzle difficulties (--c1, --c2) but
 * not the network `--trust-domain` option of the DHT commands: a mesh trust domain is named in
 * the owner's policy and selected with `--owner`, on top of an open DHT (as in the tests).
 *
 * Exit codes: 0 success; 1 the operation failed, including a policy file that does not parse
 * (ERR_MESH_POLICY_INVALID, the message names file:line:col) and a call the callee refused
 * (ERR_MESH_FORBIDDEN, ERR_MESH_UNENDORSED…); 2 the command line was wrong (including a file named
 * on it that cannot be read).
 */

interface NetOpts {
  c1?: number;
  c2?: number;
  json?: boolean;
}

/** --c1 and --c2 of the shared network options (the mesh trust domain comes from the policy, see above). */
function withPuzzles(command: Command): Command {
  for (const option of networkOptions()) if (option.long !== '--trust-domain') command.addOption(option);
  return command;
}

function meshNetwork(opts: NetOpts): NetworkConfig {
  return networkFrom({ ...(opts.c1 === undefined ? {} : { c1: opts.c1 }), ...(opts.c2 === undefined ? {} : { c2: opts.c2 }) });
}

const viaOption = (): Option => new Option('--via <addr>', 'a running DHT node, tcp://HOST:PORT or ID@tcp://HOST:PORT').env('THEMIS_VIA').makeOptionMandatory();
const ownerOption = (): Option => new Option('--owner <pub>', "trust-domain owner's public key (base32): enforce its policy").env('THEMIS_OWNER');

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

async function readKey(path: string, what: string, network: NetworkConfig): Promise<Identity> {
  try {
    return await readKeyFile(path, network);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${what} ${path} does not exist (create it with: themis keygen --out ${path})`);
    throw err;
  }
}

/** A client-mode DHT node that joins through `via` for one operation, then leaves. */
async function withClient<T>(via: string, network: NetworkConfig, work: (node: DhtNode) => Promise<T>): Promise<T> {
  const node = await createDhtNode({ identity: Identity.generate(network), network, client: true, maintenance: false });
  try {
    await node.join([via]);
    return await work(node);
  } finally {
    await node.leave();
  }
}

/** The newest policy record under the owner's key that verifies; null when there is none. */
async function fetchPolicy(node: DhtNode, owner: Buffer, network: NetworkConfig): Promise<OpenedPolicy | null> {
  const records = (await node.find(policyKey(owner))).filter((r) => r.type === RecordType.Policy).sort((a, b) => b.seq - a.seq);
  for (const record of records) {
    try {
      return openPolicyRecord(record.bytes, owner, network);
    } catch {
      continue; // forged or malformed: try the next
    }
  }
  return null;
}

function template(trustDomain: string, hosts: readonly { name: string; key: string }[] = []): string {
  const hostLines = hosts.length === 0 ? 'hosts: []\n#  - name: host-1\n#    key: <52 base32 characters>' : `hosts:\n${hosts.map((h) => `  - name: ${h.name}\n    key: ${h.key}`).join('\n')}`;
  return `# Themis trust-domain policy. Sign and publish it with:
#   themis policy sign policy.yaml --key owner.key --via tcp://HOST:PORT
# Peers started with --owner <owner public key> fetch it from the DHT and enforce it.

# 1..64 characters a-z, 0-9 and -.
trustDomain: ${trustDomain}

# Version: raise it on every change; peers refuse to go back to a lower seq.
seq: 1

# Hosts trusted to endorse instances (themis endorse --host-key ...): their public keys in
# base32, as \`themis endorse --json\` prints them ("host"), or add them with
# \`themis policy init --host NAME=HOST.key\`.
${hostLines}

# Every service of the domain, with the SHA-256 digests of the code its instances may run
# (64 hex digits each). An empty list accepts any code: development only.
services:
  gateway: { digests: [] }
  users: { digests: [] }

# Who may call which methods; anything no rule allows is refused (ERR_MESH_FORBIDDEN).
# from: a service or "*"; methods: names or ["*"].
rules:
  - { from: gateway, to: users, methods: ["*"] }

# Host or instance public keys the owner revokes.
revoked: []

# Services allowed to mint end-user principal tokens.
tokenIssuers: []

# Peers re-fetch the policy at least this often (seconds).
refreshSeconds: 30
`;
}

interface Credentials {
  identity?: Identity;
  credentials?: MeshInit['credentials'];
}

/** The instance identity (--key) and its host endorsement (--endorsement), checked to belong together. */
async function instanceCredentials(opts: { key?: string; endorsement?: string }, network: NetworkConfig): Promise<Credentials> {
  if (opts.endorsement !== undefined && opts.key === undefined) throw new UsageError('--endorsement needs --key, the instance key it endorses');
  const identity = opts.key === undefined ? undefined : await readKey(opts.key, '--key', network);
  if (opts.endorsement === undefined) return identity === undefined ? {} : { identity };
  const file = await readText(opts.endorsement, 'endorsement file');
  let bytes: Buffer;
  try {
    const parsed = JSON.parse(file) as { endorsement?: unknown };
    if (typeof parsed.endorsement !== 'string') throw new Error('no "endorsement" field');
    bytes = Buffer.from(parsed.endorsement, 'base64');
  } catch (err) {
    throw new UsageError(`${opts.endorsement} is not an endorsement file written by themis endorse: ${(err as Error).message}`);
  }
  const endorsement = openEndorsement(bytes);
  if (!endorsement.instancePub.equals(identity!.publicKey)) {
    throw new UsageError(`${opts.endorsement} endorses instance ${toBase32(endorsement.instancePub)}, not the key in ${opts.key} (${toBase32(identity!.publicKey)})`);
  }
  return { identity: identity!, credentials: [endorsementCredential(bytes)] };
}

function parseJsonArg(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`the payload must be JSON: ${(err as Error).message} (quote it for the shell, e.g. '{"id":1}')`);
  }
}

function resultJson(value: unknown): unknown {
  return Buffer.isBuffer(value) ? { base64: value.toString('base64') } : value;
}

export function registerMesh(program: Command): void {
  const policy = program.command('policy').description("a trust domain's owner-signed policy: init, sign (and publish), show");

  policy
    .command('init')
    .description('write a commented template policy')
    .option('--out <file>', 'where to write it', 'policy.yaml')
    .option('--trust-domain <name>', 'name of the trust domain', 'my-domain')
    .option('--host <name=keyfile>', 'a trusted host: its name and key file (repeatable)', (value: string, previous: string[] = []) => [...previous, value])
    .option('--force', 'replace an existing file')
    .addOption(jsonOption())
    .action(async (opts: { out: string; trustDomain: string; host?: string[]; force?: boolean; json?: boolean }) => {
      const hosts: { name: string; key: string }[] = [];
      for (const entry of opts.host ?? []) {
        const at = entry.indexOf('=');
        if (at < 1) throw new UsageError(`--host expects NAME=KEYFILE, got "${entry}"`);
        const identity = await readKey(entry.slice(at + 1), '--host key file', networkFrom({}));
        hosts.push({ name: entry.slice(0, at), key: toBase32(identity.publicKey) });
      }
      const text = template(opts.trustDomain, hosts);
      parsePolicyYaml(text, opts.out); // a bad --trust-domain is caught here, with the rule
      try {
        await writeFile(opts.out, text, { flag: opts.force === true ? 'w' : 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${opts.out} exists; give --force to replace it`);
        throw err;
      }
      if (opts.json === true) printJson({ path: opts.out, trustDomain: opts.trustDomain });
      else printLine(`wrote ${opts.out}; edit it, then: themis policy sign ${opts.out} --key owner.key --via tcp://HOST:PORT`);
    });

  withPuzzles(
    policy
      .command('sign')
      .description('parse a policy file, sign it with the owner key and publish it in the DHT; prints {"owner","trustDomain","seq","stored"}')
      .argument('<policy>', 'the policy, YAML')
      .requiredOption('--key <file>', "the trust-domain owner's key file")
      .addOption(viaOption())
      .addOption(jsonOption()),
  ).action(async (file: string, opts: NetOpts & { key: string; via: string }) => {
    const network = meshNetwork(opts);
    const parsed = parsePolicyYaml(await readText(file, 'policy file'), file);
    const owner = await readKey(opts.key, '--key', network);
    const record = signPolicy(owner, parsed);
    const stored = await withClient(opts.via, network, async (node) => {
      const current = await fetchPolicy(node, owner.publicKey, network);
      if (current !== null && current.seq >= parsed.seq) {
        throw new ThemisError('ERR_MESH_POLICY_ROLLBACK', `the DHT already holds seq ${current.seq} of this owner's policy; raise seq in ${file} above ${current.seq}`);
      }
      return (await node.store(record)).stored;
    });
    const out = { owner: toBase32(owner.publicKey), trustDomain: parsed.trustDomain, seq: parsed.seq, stored };
    if (opts.json === true) printJson(out);
    else printLine(`published ${out.trustDomain} policy seq ${out.seq} on ${stored} nodes; owner ${out.owner}`);
  });

  withPuzzles(
    policy
      .command('show')
      .description("fetch the owner's newest policy from the DHT, verify it and print it (YAML, or JSON with --json)")
      .addOption(ownerOption().makeOptionMandatory())
      .addOption(viaOption())
      .addOption(jsonOption()),
  ).action(async (opts: NetOpts & { owner: string; via: string }) => {
    const network = meshNetwork(opts);
    const owner = parseKey32(opts.owner, '--owner');
    const found = await withClient(opts.via, network, (node) => fetchPolicy(node, owner, network));
    if (found === null) throw new ThemisError('ERR_MESH_NO_POLICY', `no valid policy of owner ${opts.owner} in the DHT`);
    if (opts.json === true) printJson({ owner: toBase32(found.owner), seq: found.seq, policy: policyToPlain(found.policy) });
    else process.stdout.write(policyToYaml(found.policy));
  });

  withPuzzles(
    program
      .command('endorse')
      .description('as a host, endorse an instance key for a service of a trust domain; writes an endorsement file')
      .requiredOption('--host-key <file>', "the host's key file (listed under hosts in the policy)")
      .requiredOption('--instance-key <file>', "the instance's key file (its --key when it runs)")
      .requiredOption('--service <name>', 'the service the instance provides')
      .requiredOption('--trust-domain <name>', 'the trust domain (as in the policy)')
      .option('--digest <hex>', 'SHA-256 of the code the instance runs (64 hex digits); policies with digests: [] accept any', '0'.repeat(64))
      .addOption(new Option('--ttl <seconds>', 'lifetime (at most 7 days)').default(86_400).argParser(parsePositiveInt))
      .requiredOption('--out <file>', 'where to write the endorsement (JSON)')
      .addOption(jsonOption()),
  ).action(async (opts: NetOpts & { hostKey: string; instanceKey: string; service: string; trustDomain: string; digest: string; ttl: number; out: string }) => {
    const network = meshNetwork(opts);
    let digest: Buffer;
    try {
      digest = fromHex(opts.digest);
    } catch {
      digest = Buffer.alloc(0);
    }
    if (digest.length !== 32) throw new UsageError(`--digest expects 64 hex digits (a SHA-256), got "${opts.digest}"`);
    const host = await readKey(opts.hostKey, '--host-key', network);
    const instance = await readKey(opts.instanceKey, '--instance-key', network);
    let bytes: Buffer;
    try {
      bytes = endorse(host, { instancePub: instance.publicKey, trustDomain: opts.trustDomain, service: opts.service, codeDigest: digest, ttlMs: opts.ttl * 1000 });
    } catch (err) {
      throw err instanceof RangeError ? new UsageError(err.message) : err;
    }
    const e = openEndorsement(bytes);
    const out = {
      instance: toBase32(e.instancePub),
      host: toBase32(e.hostPub),
      trustDomain: e.trustDomain,
      service: e.service,
      codeDigest: toHex(e.codeDigest),
      expiresAt: new Date(e.expiresAt).toISOString(),
      endorsement: bytes.toString('base64'),
    };
    await writeFile(opts.out, `${JSON.stringify(out, null, 2)}\n`);
    if (opts.json === true) printJson({ path: opts.out, ...out });
    else printLine(`wrote ${opts.out}: host ${out.host} endorses ${out.instance} for ${out.service} in ${out.trustDomain} until ${out.expiresAt}`);
  });

  withPuzzles(
    program
      .command('provide')
      .description('run a demo instance of SERVICE (methods echo and whoami) until SIGINT/SIGTERM; prints {"id","addr","service"}')
      .argument('<service>', 'the service name')
      .addOption(viaOption())
      .addOption(new Option('--listen <addr>', 'address to listen on').env('THEMIS_LISTEN').default('tcp://127.0.0.1:0'))
      .addOption(new Option('--key <file>', 'instance key file (default: a fresh identity)').env('THEMIS_KEY'))
      .addOption(new Option('--endorsement <file>', 'host endorsement of this instance (themis endorse)').env('THEMIS_ENDORSEMENT'))
      .addOption(ownerOption())
      .addOption(jsonOption()),
  ).action(async (service: string, opts: NetOpts & { via: string; listen: string; key?: string; endorsement?: string; owner?: string }) => {
    const network = meshNetwork(opts);
    const trust = opts.owner === undefined ? undefined : { owner: parseKey32(opts.owner, '--owner') };
    const creds = await instanceCredentials(opts, network);
    const mesh = await createMesh({ network, listen: opts.listen, bootstrap: [opts.via], ...creds, ...(trust === undefined ? {} : { trust }) });
    try {
      try {
        await mesh.provide(service, {
          echo: (payload) => payload,
          whoami: (_payload, ctx) => ({ caller: ctx.caller, servedBy: { id: mesh.id, service } }),
        });
      } catch (err) {
        throw err instanceof RangeError ? new UsageError(err.message) : err;
      }
      const stopped = waitForSignal(); // listen before announcing, so a prompt SIGTERM is not missed
      const addr = mesh.addresses[0];
      if (opts.json === true) printJson({ id: mesh.id, addr, service });
      else printLine(`providing ${service} as ${mesh.id} on ${addr}${trust === undefined ? ' (open mode)' : ''} (Ctrl-C to stop)`);
      await stopped;
    } finally {
      await mesh.close();
    }
  });

  withPuzzles(
    program
      .command('call')
      .description('call SERVICE.METHOD with a JSON payload and print the JSON result')
      .argument('<service>', 'the service')
      .argument('<method>', 'the method')
      .argument('[json]', 'the payload, JSON (default null)')
      .addOption(viaOption())
      .addOption(new Option('--key <file>', 'caller key file (default: a fresh identity)').env('THEMIS_KEY'))
      .addOption(new Option('--endorsement <file>', "host endorsement of the caller's key (themis endorse)").env('THEMIS_ENDORSEMENT'))
      .addOption(ownerOption())
      .addOption(new Option('--deadline <ms>', 'the whole call, retries included, must end within this').default(10_000).argParser(parsePositiveInt))
      .addOption(jsonOption()),
  ).action(async (service: string, method: string, json: string | undefined, opts: NetOpts & { via: string; key?: string; endorsement?: string; owner?: string; deadline: number }) => {
    const payload = parseJsonArg(json);
    const network = meshNetwork(opts);
    const trust = opts.owner === undefined ? undefined : { owner: parseKey32(opts.owner, '--owner') };
    const creds = await instanceCredentials(opts, network);
    const mesh = await createMesh({ network, client: true, maintenance: false, bootstrap: [opts.via], ...creds, ...(trust === undefined ? {} : { trust }) });
    let result: unknown;
    try {
      result = resultJson(await mesh.call(service, method, payload, { deadlineMs: opts.deadline }));
    } finally {
      await mesh.close();
    }
    if (opts.json === true) printJson(result);
    else printLine(JSON.stringify(result, null, 2));
  });

  withPuzzles(
    program
      .command('discover')
      .description('list the live instances of SERVICE listed in the DHT')
      .argument('<service>', 'the service')
      .addOption(viaOption())
      .addOption(jsonOption()),
  ).action(async (service: string, opts: NetOpts & { via: string }) => {
    const network = meshNetwork(opts);
    const mesh: Mesh = await createMesh({ network, client: true, maintenance: false, bootstrap: [opts.via] });
    let instances;
    try {
      instances = await mesh.discover(service);
    } finally {
      await mesh.close();
    }
    const list = instances.map((instance) => ({ id: instance.id, addrs: [...instance.addresses] })).sort((a, b) => a.id.localeCompare(b.id));
    if (opts.json === true) printJson({ service, instances: list });
    else if (list.length === 0) printLine(`no live instance of ${service}`);
    else for (const instance of list) printLine(`${instance.id} ${instance.addrs.join(' ')}`);
  });
}
