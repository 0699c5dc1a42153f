// `npm run demo:ping`: two processes, a verified Noise handshake (XX, then IK), an encrypted echo,
// and a peer that is not who the dialler expected being refused.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const themis = (...args) => execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

console.log('$ themis serve --listen tcp://127.0.0.1:0 --json');
const server = spawn(process.execPath, [cli, 'serve', '--listen', 'tcp://127.0.0.1:0', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
const line = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).once('line', resolve);
  server.once('exit', (code) => reject(new Error(`themis serve exited with ${code}`)));
});
const served = JSON.parse(line);
console.log(line);
try {
  console.log(`\n$ themis ping ${served.addr} --expect ${served.id} --count 20 --json`);
  console.log(themis('ping', served.addr, '--expect', served.id, '--count', '20', '--json'));
  console.log(`\n$ themis ping ${served.addr} --expect ${served.id} --static ${served.noiseStatic} --json   # IK: one round trip`);
  console.log(themis('ping', served.addr, '--expect', served.id, '--static', served.noiseStatic, '--json'));
  const dir = mkdtempSync(join(tmpdir(), 'themis-demo-'));
  const impostor = JSON.parse(themis('keygen', '--out', join(dir, 'impostor.key'), '--json')).id;
  rmSync(dir, { recursive: true, force: true });
  console.log(`\n$ themis ping ${served.addr} --expect ${impostor}   # someone else's NodeId`);
  try {
    themis('ping', served.addr, '--expect', impostor);
    console.log('unexpected: the ping succeeded');
    process.exitCode = 1;
  } catch (err) {
    console.log(`refused as it should be (exit ${err.status}): ${String(err.stderr).trim()}`);
  }
} finally {
  server.kill('SIGTERM');
}
