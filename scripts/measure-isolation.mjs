// How long each way of running a function in its own context takes to start, on this machine:
// a worker thread, an isolated-vm isolate (with a context and a small module), a node:vm context.
// docs/runtime.md "Isolation" quotes its output. Run: node --no-node-snapshot scripts/measure-isolation.mjs [N]
import { createRequire } from 'node:module';
import vm from 'node:vm';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const ivm = require('isolated-vm');
const n = Number(process.argv[2] ?? 50);
const MODULE = 'export async function hello(input) { return { hello: input }; }';

async function sample(name, once) {
  for (let i = 0; i < 3; i++) await once(); // warm-up
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await once();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  const at = (p) => ms[Math.min(ms.length - 1, Math.ceil(p * ms.length) - 1)].toFixed(2);
  console.log(`${name.padEnd(48)} p50 ${at(0.5).padStart(7)} ms   p95 ${at(0.95).padStart(7)} ms`);
}

console.log(`start-up to first answer, ${n} samples each (node ${process.version}, ${process.execArgv.join(' ')})`);
await sample('worker thread (new Worker → first message)', async () => {
  const worker = new Worker('require("node:worker_threads").parentPort.postMessage(1)', { eval: true });
  await new Promise((resolve) => worker.once('message', resolve));
  await worker.terminate();
});
await sample('isolated-vm isolate + context + module + call', async () => {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = await isolate.createContext();
  const module = await isolate.compileModule(MODULE);
  await module.instantiate(context, () => {
    throw new Error('no imports');
  });
  await module.evaluate();
  const hello = await module.namespace.get('hello', { reference: true });
  await hello.apply(undefined, ['x'], { arguments: { copy: true }, result: { promise: true, copy: true } });
  isolate.dispose();
});
await sample('node:vm context + script + call (no security boundary)', async () => {
  const context = vm.createContext({});
  const hello = vm.runInContext('(async (input) => ({ hello: input }))', context);
  await hello('x');
});
