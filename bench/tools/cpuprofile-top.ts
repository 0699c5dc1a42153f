/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`): where the busy time goes.
 *
 *   node --import tsx bench/tools/cpuprofile-top.ts FILE... [--top 25] [--by-file]
 *
 * Prints, per file: busy time (not idle) and its share of the profile, GC and "(program)" (native
 * code V8 cannot attribute, e.g. syscalls and libuv), then the functions with the most self time
 * and the most inclusive time (a function counted once per sample even when recursive), in percent
 * of busy time. With --by-file, self time summed per script.
 *
 * "Busy" is what V8 saw: native work done in a libuv callback before JavaScript runs (TLS record
 * decryption in node:tls, for one) is sampled as (idle). process.cpuUsage() over the same window
 * (the channel bench reports it per figure) is the true CPU time.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function shortUrl(url: string): string {
  if (url === '') return '';
  const repo = url.indexOf('/work/main/');
  if (repo >= 0) return url.slice(repo + '/work/main/'.length);
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) return url.slice(modules);
  return url.replace(/^node:internal\//, 'node:');
}

function frameKey(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  const where = shortUrl(frame.url);
  return where === '' ? name : `${name} ${where}:${frame.lineNumber + 1}`;
}

function summarise(path: string, top: number, byFile: boolean): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Sample i lasts until sample i+1 (the last one gets the mean interval).
  const n = profile.samples.length;
  const total = (profile.endTime - profile.startTime) / 1000;
  const mean = n > 0 ? total / n : 0;
  const duration = (i: number): number => (i + 1 < n ? (profile.timeDeltas[i + 1] ?? 0) / 1000 : mean);

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const files = new Map<string, number>();
  let idle = 0;
  let program = 0;
  let gc = 0;
  for (let i = 0; i < n; i++) {
    const node = byId.get(profile.samples[i] as number);
    if (node === undefined) continue;
    const ms = duration(i);
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += ms;
      continue;
    }
    if (name === '(program)') program += ms;
    if (name === '(garbage collector)') gc += ms;
    const key = frameKey(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + ms);
    const file = SPECIAL.has(name) ? name : shortUrl(node.callFrame.url) || '(native)';
    files.set(file, (files.get(file) ?? 0) + ms);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)?.callFrame;
      if (frame === undefined || frame.functionName === '(root)') continue;
      const k = frameKey(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + ms);
    }
  }
  const busy = total - idle;
  const pct = (ms: number): string => `${((100 * ms) / busy).toFixed(1).padStart(5)}%`;
  const list = (title: string, map: Map<string, number>): string[] => [
    title,
    ...[...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, ms]) => `  ${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${k}`),
  ];
  const lines = [
    `== ${basename(path)}: ${total.toFixed(0)} ms profiled, busy ${busy.toFixed(0)} ms (${((100 * busy) / total).toFixed(0)}%); of busy: GC ${pct(gc).trim()}, (program) ${pct(program).trim()}`,
    ...list(`-- top ${top} by self time (% of busy)`, self),
    ...list(`-- top ${top} by inclusive time (% of busy)`, inclusive),
  ];
  if (byFile) lines.push(...list('-- self time by script', files));
  return lines.join('\n');
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' }, 'by-file': { type: 'boolean', default: false } },
});
if (positionals.length === 0) {
  process.stderr.write('usage: node --import tsx bench/tools/cpuprofile-top.ts FILE.cpuprofile... [--top N] [--by-file]\n');
  process.exit(2);
}
const top = Number(values.top);
for (const file of positionals) process.stdout.write(`${summarise(file, Number.isInteger(top) && top > 0 ? top : 25, values['by-file'])}\n\n`);
