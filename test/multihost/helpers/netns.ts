// A lab of hosts as Linux network namespaces on one bridge, for the multi-host tests.
//
//   switch namespace:  br0 10.77.0.1/16 ── veth ── host i: eth0 10.77.i.1/16
//
// Every host gets its own /24 (10.77.i.0/24), so the DHT's per-subnet routing-table limit sees them
// as different machines. Faults are kernel rules inside a host: nftables `numgen random` drops for
// loss, a drop-everything table for a partition, and a DNAT rule that sends one path through a
// delaying TCP proxy (src/testing/delay-proxy.ts) in the switch namespace; `tc netem` is refused
// by the kernel these tests were written on. Needs root (CAP_NET_ADMIN) and iproute2 + nftables.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const PREFIX = 'themis-mh-';
const SWITCH_IP = '10.77.0.1';

export interface LabHost {
  /** The name the test gave it (h1, h2…). */
  readonly name: string;
  /** The network namespace. */
  readonly ns: string;
  /** Its address on the bridge. */
  readonly ip: string;
}

/** A long-running process in a namespace that announced itself with one JSON line on stdout. */
export interface Daemon {
  readonly host: string;
  readonly child: ChildProcess;
  /** Its first stdout line, parsed. */
  readonly hello: Record<string, unknown>;
  /** Calls `fn` with every later stdout line, parsed. */
  onLine(fn: (line: Record<string, unknown>) => void): void;
  /** Writes one line to its stdin. */
  send(line: string): void;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Why this process cannot build a lab, or null when it can: it must be root and `ip` and `nft`
 * must work (it creates and deletes a probe namespace).
 */
export function labUnavailable(): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root (CAP_NET_ADMIN)';
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    try {
      execFileSync('ip', ['netns', 'exec', probe, 'nft', 'list', 'ruleset'], { stdio: 'pipe' });
    } finally {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    }
  } catch (err) {
    const text = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    return `cannot create a network namespace with nftables in it (${text.split('\n')[0]}); install iproute2 and nftables`;
  }
  return null;
}

const live = new Set<NetLab>();
let labs = 0;

/** Deletes namespaces left by runs whose process is gone (a SIGKILLed test cannot clean up). */
function sweepStale(): void {
  const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((name) => name.startsWith(PREFIX));
  for (const name of names) {
    const pid = Number(name.slice(PREFIX.length).split('-')[0]);
    if (!Number.isInteger(pid) || pidAlive(pid)) continue;
    killNamespacePids(name);
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILLs what still runs in a namespace of ours (all of it started by this lab). */
function killNamespacePids(ns: string): void {
  let pids: number[] = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Last-resort cleanup: on exit and on SIGINT/SIGTERM, whatever the test was doing. */
function destroyAllSync(): void {
  for (const lab of live) lab.destroySync();
}
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', destroyAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      destroyAllSync();
      process.kill(process.pid, signal); // the default action now that our handler is gone
    });
  }
}

export class NetLab {
  readonly #hosts = new Map<string, LabHost>();
  readonly #namespaces: string[] = [];
  readonly #children = new Set<ChildProcess>();
  readonly switchNs: string;
  readonly switchIp = SWITCH_IP;

  private constructor(readonly tag: string) {
    this.switchNs = `${tag}sw`;
  }

  /** Builds the switch and one host per name (at most 250). Destroys what it built if a step fails. */
  static async create(names: readonly string[]): Promise<NetLab> {
    if (names.length < 1 || names.length > 250) throw new RangeError('a lab has 1..250 hosts');
    sweepStale();
    hookExit();
    const lab = new NetLab(`${PREFIX}${process.pid}-${++labs}-`);
    live.add(lab);
    try {
      await lab.#ip('netns', 'add', lab.switchNs);
      lab.#namespaces.push(lab.switchNs);
      await lab.#ip('-n', lab.switchNs, 'link', 'add', 'br0', 'type', 'bridge');
      await lab.#ip('-n', lab.switchNs, 'addr', 'add', `${SWITCH_IP}/16`, 'dev', 'br0');
      await lab.#ip('-n', lab.switchNs, 'link', 'set', 'br0', 'up');
      await lab.#ip('-n', lab.switchNs, 'link', 'set', 'lo', 'up');
      for (const [i, name] of names.entries()) {
        const host: LabHost = { name, ns: `${lab.tag}${name}`, ip: `10.77.${i + 1}.1` };
        await lab.#ip('netns', 'add', host.ns);
        lab.#namespaces.push(host.ns);
        // Both ends are created inside their namespaces, so no name ever appears in the root one.
        await lab.#ip('link', 'add', 'eth0', 'netns', host.ns, 'type', 'veth', 'peer', 'name', `p${i + 1}`, 'netns', lab.switchNs);
        await lab.#ip('-n', lab.switchNs, 'link', 'set', `p${i + 1}`, 'master', 'br0', 'up');
        await lab.#ip('-n', host.ns, 'addr', 'add', `${host.ip}/16`, 'dev', 'eth0');
        await lab.#ip('-n', host.ns, 'link', 'set', 'eth0', 'up');
        await lab.#ip('-n', host.ns, 'link', 'set', 'lo', 'up');
        lab.#hosts.set(name, host);
      }
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  host(name: string): LabHost {
    const host = this.#hosts.get(name);
    if (host === undefined) throw new RangeError(`no host ${name} in this lab`);
    return host;
  }

  /** The namespace of a host, or of the switch for 'switch'. */
  #ns(where: string): string {
    return where === 'switch' ? this.switchNs : this.host(where).ns;
  }

  /** Runs `command` in a host (or 'switch') to completion. A non-zero exit is no exception. */
  run(where: string, command: readonly string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
    return new Promise((resolve) => {
      const child = execFile('ip', ['netns', 'exec', this.#ns(where), ...command], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
        this.#children.delete(child);
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 99;
        resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() });
      });
      this.#children.add(child);
    });
  }

  /** Starts `command` in a host (or 'switch') and waits (up to `timeoutMs`) for its first JSON line on stdout. */
  async start(where: string, command: readonly string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Daemon> {
    const child = spawn('ip', ['netns', 'exec', this.#ns(where), ...command], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.#children.add(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    void exited.then(() => this.#children.delete(child));
    const listeners: ((line: Record<string, unknown>) => void)[] = [];
    const lines = createInterface({ input: child.stdout! });
    let first: ((line: Record<string, unknown>) => void) | null = null;
    lines.on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return; // not ours (a stray log line)
      }
      if (first !== null) {
        first(line);
        first = null;
      } else for (const fn of listeners) fn(line);
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      const hello = await Promise.race([
        new Promise<Record<string, unknown>>((resolve) => (first = resolve)),
        exited.then((code) => Promise.reject(new Error(`${command.join(' ')} in ${where} exited with ${code} before announcing itself: ${stderr}`))),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${command.join(' ')} in ${where} did not announce itself within ${timeoutMs} ms: ${stderr}`)), timeoutMs))),
      ]);
      return {
        host: where,
        child,
        hello,
        onLine: (fn) => void listeners.push(fn),
        send: (line) => void child.stdin!.write(`${line}\n`),
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          child.kill('SIGTERM');
          const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      };
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops `percent` % of the packets a host sends and of those it receives (nftables numgen). */
  loss(name: string, percent: number): Promise<void> {
    if (!Number.isInteger(percent) || percent < 0 || percent > 99) throw new RangeError(`loss is 0..99 %, got ${percent}`);
    const rule = percent === 0 ? '' : `numgen random mod 100 < ${percent} drop;`;
    return this.#table(name, 'inet themis_loss', [
      `chain input { type filter hook input priority 0; iif "lo" accept; ${rule} }`,
      `chain output { type filter hook output priority 0; oif "lo" accept; ${rule} }`,
    ]);
  }

  /**
   * Cuts a host off from the others. `drop` (default) discards every packet in or out of eth0:
   * open connections hang and new ones time out, as behind a failed link. `reject` answers each
   * packet with a TCP reset or an ICMP error instead, as a router that knows the host is gone:
   * peers notice at once.
   */
  partition(name: string, mode: 'drop' | 'reject' = 'drop'): Promise<void> {
    const verdict = mode === 'drop' ? 'drop;' : 'meta l4proto tcp reject with tcp reset; reject;';
    // The resets and ICMP errors `reject` sends pass the output hook too: let those out.
    const answers = mode === 'drop' ? '' : 'tcp flags & rst == rst accept; icmp type destination-unreachable accept;';
    return this.#table(name, 'inet themis_partition', [
      `chain input { type filter hook input priority -10; iif "lo" accept; ${verdict} }`,
      `chain output { type filter hook output priority -10; oif "lo" accept; ${answers} ${verdict} }`,
    ]);
  }

  heal(name: string): Promise<void> {
    return this.#table(name, 'inet themis_partition', null);
  }

  /** Sends a host's connections to `to` (tcp://ip:port) through `via` (tcp://ip:port) instead: nftables DNAT. */
  redirect(name: string, to: string, via: string): Promise<void> {
    const [toIp, toPort] = hostPort(to);
    const [viaIp, viaPort] = hostPort(via);
    return this.#table(name, 'ip themis_redirect', [
      `chain output { type nat hook output priority -100; ip daddr ${toIp} tcp dport ${toPort} dnat to ${viaIp}:${viaPort}; }`,
    ]);
  }

  /** Replaces (or with null removes) one nftables table in a host; idempotent. */
  async #table(name: string, table: string, chains: readonly string[] | null): Promise<void> {
    const script = [`table ${table} {}`, `delete table ${table}`, ...(chains === null ? [] : [`table ${table} {`, ...chains.map((c) => `  ${c}`), '}'])].join('\n');
    await new Promise<void>((resolve, reject) => {
      const child = execFile('ip', ['netns', 'exec', this.host(name).ns, 'nft', '-f', '-'], (err, _stdout, stderr) =>
        err === null ? resolve() : reject(new Error(`nft in ${name} failed: ${stderr.trim() || err.message}`)),
      );
      child.stdin!.end(script);
    });
  }

  #ip(...args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      execFile('ip', args, (err, _stdout, stderr) => (err === null ? resolve() : reject(new Error(`ip ${args.join(' ')} failed: ${stderr.trim() || err.message}`))));
    });
  }

  /** Stops every process it started (SIGTERM, then SIGKILL) and deletes its namespaces (the veths go with them). */
  async destroy(): Promise<void> {
    await Promise.all(
      [...this.#children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    this.destroySync();
  }

  /** The synchronous part of destroy(), also run from exit and signal handlers. */
  destroySync(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    this.#children.clear();
    for (const ns of this.#namespaces.splice(0).reverse()) {
      killNamespacePids(ns);
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    live.delete(this);
  }
}

function hostPort(address: string): [string, number] {
  const match = /^tcp:\/\/([\d.]+):(\d+)$/.exec(address);
  if (match === null) throw new RangeError(`expected tcp://IPv4:PORT, got ${address}`);
  return [match[1]!, Number(match[2])];
}
