// Multi-host: anchors, function hosts and a caller on different hosts (network namespaces on a
// bridge), with packet loss, a delayed path, a partition and its healing. Needs root; skips
// otherwise. `npm test` runs the short form (CI); `npm run test:multihost` the full one
// (MULTIHOST_BUDGET=full: three anchors, three providers, a blackholed path, more records).
// Every wait is bounded by a protocol deadline or a generous bound; nothing asserts a duration.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Identity, networkConfig, writeKeyFile } from '../../src/identity/index.js';
import { CLI, cliJsonRunner } from '../integration/helpers/cli.js';
import { labUnavailable, NetLab, type Daemon } from './helpers/netns.js';
import { anchorEnv, callerEnv, functionHostEnv, NETWORK_ENV } from './helpers/roles.js';

const full = process.env['MULTIHOST_BUDGET'] === 'full';
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const ok = cliJsonRunner(60_000);
const PORT = 7000;
/** Calls fail over or recover within this; a bound for a stuck test, not a measurement. */
const WITHIN = 90_000;

const plan = full
  ? { hosts: ['h1', 'h2', 'h3', 'h4', 'h5'], anchors: ['h1', 'h2', 'h3'], providers: ['h2', 'h3', 'h4'], caller: 'h5', delayed: 'h4', lossy: ['h5', 'h4'], loss: 3, delayMs: 30, records: 12, blackhole: true, partition: 'drop' as const }
  : { hosts: ['h1', 'h2', 'h3', 'h4'], anchors: ['h1', 'h2'], providers: ['h2', 'h3'], caller: 'h4', delayed: 'h3', lossy: ['h4'], loss: 2, delayMs: 20, records: 2, blackhole: false, partition: 'reject' as const };
/** The host cut off: it runs an anchor and a provider. */
const victim = 'h2';

const unavailable = labUnavailable();

test(
  `multi-host (${full ? 'full' : 'short'}): join, store/find and mesh calls across hosts; a partitioned host fails over, heals, and no record is lost`,
  { skip: unavailable === null ? false : `${unavailable}. Run it as root on Linux with iproute2 and nftables: sudo npm run test:multihost` },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'themis-multihost-'));
    let created: NetLab | undefined;
    t.after(async () => {
      await created?.destroy(); // the processes first: they write into dir until they stop
      await rm(dir, { recursive: true, force: true });
    });
    const file = (name: string): string => join(dir, name);
    const node = (...args: string[]): string[] => [process.execPath, CLI, ...args];

    // Keys and endorsements, made on the test machine and handed to the hosts as files.
    const setup = Date.now();
    const hosts = [...plan.providers, plan.caller];
    const keys = ['owner', 'publisher', 'caller', ...plan.anchors.map((h) => `anchor-${h}`), ...hosts.map((h) => `host-${h}`), ...plan.providers.map((h) => `ledger-${h}`)];
    const network = networkConfig({ c1: Number(NETWORK_ENV.THEMIS_C1), c2: Number(NETWORK_ENV.THEMIS_C2) });
    await Promise.all(keys.map((name) => writeKeyFile(file(`${name}.key`), Identity.generate(network))));
    const hostKeys: Record<string, string> = {};
    const endorse = async (instance: string, host: string, service: string): Promise<void> => {
      const out = await ok('endorse', '--host-key', file(`host-${host}.key`), '--instance-key', file(`${instance}.key`), '--service', service, '--trust-domain', 'multihost', '--out', file(`${instance}.endorsement`), '--json');
      hostKeys[host] = String(out['host']);
    };
    await Promise.all([...plan.providers.map((h) => endorse(`ledger-${h}`, h, 'ledger')), endorse('caller', plan.caller, 'gateway')]);
    await writeFile(
      file('policy.yaml'),
      `trustDomain: multihost\nseq: 1\nhosts:\n${hosts.map((h) => `  - { name: ${h}, key: ${hostKeys[h]} }`).join('\n')}\nservices:\n  gateway: { digests: [] }\n  ledger: { digests: [] }\nrules:\n  - { from: gateway, to: ledger, methods: ["*"] }\nrefreshSeconds: 30\n`,
    );

    const lab = (created = await NetLab.create(plan.hosts));
    t.diagnostic(`keys, endorsements and the lab in ${((Date.now() - setup) / 1000).toFixed(1)} s`);
    const addr = (host: string): string => `tcp://${lab.host(host).ip}:${PORT}`;
    const started = Date.now();
    const phase = (what: string): void => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
    let cliTimeoutMs = 60_000;
    const run = async (host: string, env: Record<string, string>, ...args: string[]): Promise<Record<string, unknown>> => {
      const result = await lab.run(host, node(...args, '--json'), env, cliTimeoutMs);
      assert.equal(result.code, 0, `themis ${args[0]} in ${host}: ${result.stderr}`);
      return JSON.parse(result.stdout) as Record<string, unknown>;
    };

    phase('lab built');
    // 1. Anchors, one per host, each told about all of them (as the StatefulSet's pods are), started in order.
    const anchorAddrs = plan.anchors.map(addr);
    const anchors: Daemon[] = [];
    for (const host of plan.anchors) {
      const env = anchorEnv({ listen: addr(host), bootstrap: anchorAddrs, data: file(`data-${host}`), key: file(`anchor-${host}.key`) });
      anchors.push(await lab.start(host, node('node', '--json'), env));
    }
    assert.deepEqual(anchors.map((a) => a.hello['addr']), anchorAddrs);
    const [firstAnchor, secondAnchor] = anchorAddrs as [string, string];

    phase('anchors up');
    // 2. The owner publishes the policy from the caller's host; providers join through different anchors.
    const policy = await run(plan.caller, { ...NETWORK_ENV, THEMIS_VIA: firstAnchor }, 'policy', 'sign', file('policy.yaml'), '--key', file('owner.key'));
    const owner = String(policy['owner']);
    assert.ok(Number(policy['stored']) >= 1);
    const providers = new Map<string, string>(); // instance id → host
    const providerDaemons: Daemon[] = [];
    const providerAddrs = new Map<string, string>(); // host → address
    for (const [i, host] of plan.providers.entries()) {
      const listen = `tcp://${lab.host(host).ip}:${PORT + 1}`;
      const env = functionHostEnv({ listen, via: anchorAddrs[i % anchorAddrs.length]!, key: file(`ledger-${host}.key`), endorsement: file(`ledger-${host}.endorsement`), owner });
      const daemon = await lab.start(host, node('provide', 'ledger', '--json'), env);
      providers.set(String(daemon.hello['id']), host);
      providerDaemons.push(daemon);
      providerAddrs.set(host, listen);
    }

    phase('policy published, providers up');
    // 3. Faults on the way: loss on some hosts, and the caller reaches one provider through a delaying proxy.
    for (const host of plan.lossy) await lab.loss(host, plan.loss);
    const proxy = await lab.start('switch', ['node', fixture('delay-proxy.mjs'), `tcp://${lab.switchIp}:0`, providerAddrs.get(plan.delayed)!, String(plan.delayMs), String(plan.delayMs)]);
    await lab.redirect(plan.caller, providerAddrs.get(plan.delayed)!, String(proxy.hello['addr']));
    const acks: ((line: Record<string, unknown>) => void)[] = [];
    proxy.onLine((line) => acks.shift()?.(line));
    /** Sends the proxy a command; resolves with its acknowledgement (with its connection counts). */
    const toProxy = (command: object): Promise<Record<string, unknown>> =>
      new Promise((resolve) => {
        acks.push(resolve);
        proxy.send(JSON.stringify(command));
      });

    // 4. Store: mutable records under one publisher, from the caller's host, through the first anchor.
    const publisher = { ...NETWORK_ENV, THEMIS_KEY: file('publisher.key') };
    const records = new Map<string, string>(); // salt → value
    let publisherKey = '';
    const put = async (host: string, via: string, salt: string): Promise<void> => {
      const value = `value of ${salt} stored from ${host}`;
      const out = await run(host, publisher, 'put', value, '--salt', salt, '--via', via);
      assert.ok(Number(out['stored']) >= 1, `${salt} stored on at least one node`);
      publisherKey = String(out['publisher']);
      records.set(salt, value);
    };
    await inBatches(range(plan.records).map((i) => () => put(plan.caller, firstAnchor, `before-${i}`)));

    phase(`${records.size} records stored`);
    // 5. Calls from the caller's host, under load, through the CLI and through a long-running caller.
    const once = await run(plan.caller, callerEnv({ via: secondAnchor, key: file('caller.key'), endorsement: file('caller.endorsement'), owner }), 'call', 'ledger', 'whoami');
    assert.ok(providers.has(String((once['servedBy'] as { id: string }).id)), 'themis call across hosts reaches a provider');
    const caller = await lab.start(plan.caller, ['node', fixture('caller.mjs'), 'ledger', 'whoami', '3000'], callerEnv({ via: firstAnchor, key: file('caller.key'), endorsement: file('caller.endorsement'), owner }));
    const calls = new CallLog(caller);
    await calls.until((c) => c.streak >= 5, 'five calls in a row succeed');
    phase(`calls flow; resident memory: anchors ${anchors.map(rssMiB).join(', ')} MiB, providers ${providerDaemons.map(rssMiB).join(', ')} MiB, caller ${rssMiB(caller)} MiB`);

    if (plan.blackhole) {
      // 6. An asymmetric partition: only the caller's path to one provider goes silent.
      await toProxy({ cut: 'blackhole' });
      const mark = calls.mark();
      await calls.until((c) => c.streakSince(mark) >= 5, 'calls fail over while one path is blackholed');
      await toProxy({ restore: true });
      phase(`path to ${plan.delayed} blackholed: ${calls.failuresSince(mark)} of ${calls.since(mark)} calls failed before failover`);
    }

    // 7. Partition the victim (an anchor and a provider): calls fail over; records stay readable; new ones are stored.
    const victimId = [...providers].find(([, host]) => host === victim)![0];
    await lab.partition(victim, plan.partition);
    const cut = calls.mark();
    await calls.until((c) => c.streakSince(cut, (servedBy) => servedBy !== victimId) >= 5, `calls fail over from ${victim}`);
    phase(`${victim} partitioned (${plan.partition}): ${calls.failuresSince(cut)} of ${calls.since(cut)} calls failed before failover`);
    // A silent partition costs a one-shot client each dial of the lost anchor (the connect timeout): give it time.
    cliTimeoutMs = 240_000;
    await inBatches(range(Math.max(1, plan.records / 3)).map((i) => () => put(plan.caller, firstAnchor, `during-${i}`)));
    cliTimeoutMs = 60_000;
    phase('records stored during the partition');

    // 8. Heal: calls reach the victim's provider again; nothing stored before or during is lost.
    await lab.heal(victim);
    const healed = calls.mark();
    await calls.until((c) => c.servedSince(healed).has(victimId), `calls reach the provider on ${victim} again`);
    await calls.until((c) => c.streak >= 5, 'calls succeed after healing');
    phase(`healed: ${calls.failuresSince(healed)} of ${calls.since(healed)} calls failed; ${calls.total} calls in all, served by ${[...calls.servedSince(0)].map((id) => providers.get(id)).join(', ')}`);

    const delayedId = [...providers].find(([, host]) => host === plan.delayed)![0];
    const accepted = Number((await toProxy({ stats: true }))['accepted']);
    phase(`the delaying proxy in front of ${plan.delayed} accepted ${accepted} connections`);
    if (calls.servedSince(0).has(delayedId)) assert.ok(accepted >= 1, `the caller reached ${plan.delayed} only through the delaying proxy`);

    const reader = plan.hosts.find((h) => h !== victim && h !== plan.caller)!;
    for (const via of anchorAddrs) {
      const got = await inBatches(
        [...records.keys()].map((salt) => async () => {
          const out = await run(reader, NETWORK_ENV, 'get', '--publisher', publisherKey, '--salt', salt, '--via', via);
          return [salt, out['value']] as const;
        }),
      );
      assert.deepEqual(new Map(got), records, `every record read back through ${via}`);
    }

    phase('every record read back through every anchor');
    // 9. Everything shuts down cleanly on SIGTERM: the caller first (its connections drain), then the rest together.
    assert.equal(await caller.stop(), 0, 'the caller exits 0 on SIGTERM');
    const daemons = [proxy, ...providerDaemons, ...anchors];
    const codes = await Promise.all(daemons.map((daemon) => daemon.stop()));
    assert.deepEqual(codes, daemons.map(() => 0), 'every process exits 0 on SIGTERM');
  },
);

/** The caller's per-call lines, with the questions the test asks of them. */
class CallLog {
  readonly #calls: { ok: boolean; servedBy?: string; code?: string }[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(caller: Daemon) {
    caller.onLine((line) => {
      if (typeof line['i'] !== 'number') return;
      this.#calls.push(line['ok'] === true ? { ok: true, servedBy: String(line['servedBy']) } : { ok: false, code: String(line['code']) });
      for (const wake of this.#waiters) wake();
    });
  }

  get total(): number {
    return this.#calls.length;
  }

  /** Successes in a row at the end of the log. */
  get streak(): number {
    return this.streakSince(0);
  }

  mark(): number {
    return this.#calls.length;
  }

  since(mark: number): number {
    return this.#calls.length - mark;
  }

  failedSince(mark: number): number {
    return this.#calls.slice(mark).filter((c) => !c.ok).length;
  }

  /** "N (CODE ×n, …)": the failures after `mark`, by error code. */
  failuresSince(mark: number): string {
    const codes = new Map<string, number>();
    for (const c of this.#calls.slice(mark)) if (!c.ok) codes.set(c.code!, (codes.get(c.code!) ?? 0) + 1);
    return codes.size === 0 ? '0' : `${this.failedSince(mark)} (${[...codes].map(([code, n]) => `${code} ×${n}`).join(', ')})`;
  }

  /** Successes in a row at the end of the log, after `mark`, served by an instance `accept` accepts. */
  streakSince(mark: number, accept: (servedBy: string) => boolean = () => true): number {
    let n = 0;
    for (let i = this.#calls.length - 1; i >= mark && this.#calls[i]!.ok && accept(this.#calls[i]!.servedBy!); i--) n++;
    return n;
  }

  servedSince(mark: number): Set<string> {
    return new Set(this.#calls.slice(mark).flatMap((c) => (c.ok ? [c.servedBy!] : [])));
  }

  /** Resolves once `done(this)` holds after a call; rejects after WITHIN ms. */
  until(done: (log: CallLog) => boolean, what: string): Promise<void> {
    if (done(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`not within ${WITHIN} ms: ${what} (${this.total} calls, ${this.failedSince(0)} failed)`));
      }, WITHIN);
      const check = (): void => {
        if (!done(this)) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }
}

/** A daemon's resident set in MiB (`ip netns exec` execs node, so the child's pid is node's). */
function rssMiB(daemon: Daemon): string {
  const kib = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8'))?.[1];
  return kib === undefined ? '?' : (Number(kib) / 1024).toFixed(0);
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Runs the tasks four at a time (two cores: more would only queue). */
async function inBatches<T>(tasks: readonly (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < tasks.length; i += 4) results.push(...(await Promise.all(tasks.slice(i, i + 4).map((task) => task()))));
  return results;
}
