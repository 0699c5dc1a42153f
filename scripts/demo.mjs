// `npm run demo` (the README's main command): MicroBank (examples/microbank) served by `themis up`
// in a child process, a short scripted session against its gateway over HTTP — two users, their
// accounts, a payment, its replay, a refused overdraft and a refused foreign account, the
// history — each request printed with its answer, then a clean shutdown (SIGINT).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const app = fileURLToPath(new URL('../examples/microbank', import.meta.url));
if (!existsSync(cli)) {
  console.error('dist/cli/main.js is missing: run `npm install` (or `npm run build`) first');
  process.exit(1);
}
const data = mkdtempSync(join(tmpdir(), 'themis-demo-'));
const STOP_MS = 15_000;
const hideToken = (key, value) => (key === 'token' ? `${value.slice(0, 12)}…` : value);

console.log(`$ themis up examples/microbank --port 0 --data ${data} --json`);
const child = spawn(process.execPath, ['--no-node-snapshot', cli, 'up', app, '--port', '0', '--data', data, '--json'], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
const logs = []; // the app's log lines (stderr), shown only when something goes wrong
createInterface({ input: child.stderr }).on('line', (line) => logs.push(line));
const lines = createInterface({ input: child.stdout });
const exited = once(child, 'exit');

try {
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    exited.then(([code]) => reject(new Error(`themis up exited with ${code} before it was ready`)));
  });
  console.log(first);
  await session(JSON.parse(first).gateway);
  instances();
  console.log(`\n$ kill -INT ${child.pid}   # themis up lets in-flight requests finish, stops the instances and the anchor`);
  child.kill('SIGINT');
  const [code] = await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`themis up did not stop within ${STOP_MS} ms`)), STOP_MS).unref())]);
  console.log(`themis up stopped (exit ${code})`);
  if (code !== 0) process.exitCode = 1;
} catch (err) {
  console.error(`\ndemo failed: ${err.message}\n--- themis up log (last 40 lines) ---\n${logs.slice(-40).join('\n')}`);
  process.exitCode = 1;
  child.kill('SIGKILL');
} finally {
  rmSync(data, { recursive: true, force: true });
}

/** The scripted session; each step must get the status it expects. */
async function session(gateway) {
  const request = async (title, method, path, { body, token, key, expect = 200, show = (answer) => JSON.stringify(answer, hideToken) } = {}) => {
    console.log(`\n# ${title}`);
    const headers = { ...(body !== undefined && { 'content-type': 'application/json' }), ...(token && { authorization: `Bearer ${token}` }), ...(key && { 'idempotency-key': key }) };
    console.log(`${method} ${path}${token ? '  Authorization: Bearer …' : ''}${key ? `  Idempotency-Key: ${key}` : ''}${body !== undefined ? `  ${JSON.stringify(body)}` : ''}`);
    const res = await fetch(gateway + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const answer = await res.json();
    console.log(`  → ${res.status} ${show(answer)}`);
    if (res.status !== expect) throw new Error(`${method} ${path} answered ${res.status}, expected ${expect}`);
    return answer;
  };
  const users = {};
  for (const [id, name] of [['alice', 'Alice'], ['bob', 'Bob']]) {
    const password = `${id} demo password`;
    await request(`${name} registers (the gateway keeps only the scrypt hash of the password)`, 'POST', '/users', { body: { id, name, password }, expect: 201 });
    const { token } = await request(`${name} logs in and gets a bearer token`, 'POST', '/login', { body: { id, password } });
    const account = await request(`${name} opens an account (opening balance 10000 cents)`, 'POST', `/users/${id}/accounts`, { token, body: { name: 'checking' } });
    users[id] = { token, account: account.id };
  }
  const { alice, bob } = users;
  const payment = { from: alice.account, to: bob.account, amount: 2500 };
  const paid = await request('Alice pays Bob 25.00 (record → debit → credit → complete, over Themis calls)', 'POST', '/users/alice/pay', { token: alice.token, key: 'demo-001', body: payment });
  const replay = await request('The same request again, same Idempotency-Key: the first answer, nothing paid twice', 'POST', '/users/alice/pay', { token: alice.token, key: 'demo-001', body: payment });
  if (JSON.stringify(replay) !== JSON.stringify(paid)) throw new Error('the replay answered differently from the first request');
  await request('Alice tries to pay 9000.00: refused, balances never go negative', 'POST', '/users/alice/pay', { token: alice.token, key: 'demo-002', body: { ...payment, amount: 900000 }, expect: 422 });
  await request("Alice tries to pay from Bob's account: refused", 'POST', '/users/alice/pay', { token: alice.token, key: 'demo-003', body: { from: bob.account, to: alice.account, amount: 100 }, expect: 403 });
  await request("Alice tries to read Bob's accounts: refused", 'GET', '/users/bob/accounts', { token: alice.token, expect: 403 });
  const { accounts } = await request('Bob lists his accounts', 'GET', '/users/bob/accounts', { token: bob.token });
  if (accounts[0]?.balance !== 12500) throw new Error(`Bob's balance is ${accounts[0]?.balance}, expected 12500`);
  const line = (t) => `\n      ${t.id.padEnd(16)} ${t.status.padEnd(9)} ${t.from} → ${t.to} ${String(t.amount).padStart(6)}${t.error ? `  ${t.error.code}` : ''}`;
  await request('Alice lists her transactions (newest first; declined payments are recorded as failed)', 'GET', '/users/alice/transactions', {
    token: alice.token,
    show: (answer) => `{"transactions": [${answer.transactions.map(line).join('')}\n    ], "next": ${answer.next}}`,
  });
}

/** The function instances that served the session, from themis up's log: each a V8 isolate with its own endorsed identity. */
function instances() {
  const started = logs.flatMap((line) => {
    try {
      const entry = JSON.parse(line);
      return entry.msg === 'instance started' ? [`${entry.service} ${entry.instance}… (cold start ${Math.round(entry.coldStartMs)} ms)`] : [];
    } catch {
      return [];
    }
  });
  if (started.length > 0) console.log(`\n# The instances that served it (isolate + fresh identity + host endorsement each):\n  ${started.join('\n  ')}`);
}
