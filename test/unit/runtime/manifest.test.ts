import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isThemisError } from '../../../src/core/errors.js';
import { loadManifest, parseManifest } from '../../../src/runtime/index.js';

const FILE = '/apps/bank/themis.yaml';

const VALID = `app: bank
trustDomain: bank
services:
  users:
    entry: services/users.js
    handlers: [create, get]
    instances: { min: 0, max: 4 }
    concurrency: 16
    memoryMb: 64
    timeoutMs: 5000
    idleSeconds: 30
    calls: [accounts]
  accounts:
    entry: services/accounts.js
    handlers: [open]
gateway:
  maxBodyBytes: 65536
  timeoutMs: 10000
  auth:
    register: { path: /users, to: users.create }
    login: { path: /login }
    tokenTtlSeconds: 3600
  routes:
    - { method: GET, path: /users/:id, to: users.get, auth: true }
    - { method: post, path: /accounts, to: accounts.open }
`;

/** The ERR_MANIFEST_INVALID message of parsing `text`. */
function errorOf(text: string): string {
  try {
    parseManifest(text, FILE);
  } catch (err) {
    assert.ok(isThemisError(err, 'ERR_MANIFEST_INVALID'), `expected ERR_MANIFEST_INVALID, got ${String(err)}`);
    return err.message;
  }
  assert.fail('the manifest was accepted');
}

/** VALID with line `line` (1-based) replaced. */
function withLine(line: number, text: string): string {
  const lines = VALID.split('\n');
  lines[line - 1] = text;
  return lines.join('\n');
}

test('a valid manifest parses with defaults filled in and entry paths resolved', () => {
  const m = parseManifest(VALID, FILE);
  assert.equal(m.app, 'bank');
  assert.deepEqual([...m.services.keys()], ['users', 'accounts']);
  const users = m.services.get('users')!;
  assert.equal(users.entry, '/apps/bank/services/users.js');
  assert.deepEqual(users.calls, ['accounts']);
  const accounts = m.services.get('accounts')!;
  assert.deepEqual(
    { instances: accounts.instances, concurrency: accounts.concurrency, memoryMb: accounts.memoryMb, timeoutMs: accounts.timeoutMs, idleSeconds: accounts.idleSeconds },
    { instances: { min: 0, max: 4 }, concurrency: 16, memoryMb: 64, timeoutMs: 5000, idleSeconds: 30 },
  );
  assert.deepEqual(m.gateway.routes[1], { method: 'POST', path: '/accounts', service: 'accounts', handler: 'open', auth: false });
  assert.deepEqual(m.gateway.auth?.register, { path: '/users', service: 'users', handler: 'create' });
});

/** Each case replaces one line of VALID; the error must point at `token` on that line. */
const cases: { name: string; line: number; replace: string; token: string; says: RegExp }[] = [
  { name: 'an unknown key', line: 8, replace: '    concurency: 16', token: 'concurency', says: /unknown key "concurency" in service "users"; expected one of .*concurrency/ },
  { name: 'a number out of range', line: 9, replace: '    memoryMb: 2', token: '2', says: /memoryMb must be an integer from 8 to 4096, got number 2/ },
  { name: 'a string where a number belongs', line: 10, replace: '    timeoutMs: soon', token: 'soon', says: /timeoutMs must be an integer .* got "soon"/ },
  { name: 'min above max', line: 7, replace: '    instances: { min: 5, max: 4 }', token: '{', says: /instances.min \(5\) is above instances.max \(4\)/ },
  { name: 'a call to an undeclared service', line: 12, replace: '    calls: [ledger]', token: 'ledger', says: /calls "ledger", which is not declared/ },
  { name: 'a route to a missing handler', line: 24, replace: '    - { method: GET, path: /users/:id, to: users.delete, auth: true }', token: 'users.delete', says: /service "users" has no handler "delete"/ },
  { name: 'a route to an unknown service', line: 25, replace: '    - { method: POST, path: /accounts, to: ledger.open }', token: 'ledger.open', says: /"ledger.open" does not name a declared service/ },
  { name: 'an unsupported method', line: 25, replace: '    - { method: FETCH, path: /accounts, to: accounts.open }', token: 'FETCH', says: /HTTP method "FETCH" is not supported/ },
  { name: 'a bad route path', line: 25, replace: '    - { method: POST, path: accounts, to: accounts.open }', token: 'accounts,', says: /"accounts" is not a route path/ },
  { name: 'a duplicate route', line: 25, replace: '    - { method: GET, path: /users/:id, to: accounts.open }', token: '/users/:id', says: /route GET \/users\/:id is declared twice/ },
  { name: 'a register path that is also a route', line: 25, replace: '    - { method: POST, path: /users, to: accounts.open }', token: '/users', says: /route POST \/users is declared twice/ },
  { name: 'a bad service name', line: 4, replace: '  Users:', token: 'Users', says: /service name "Users" must be 1 to 64 characters/ },
  { name: 'a handler that is no function name', line: 6, replace: '    handlers: [create, get-one]', token: 'get-one', says: /"get-one" is not a JavaScript function name/ },
  { name: 'an empty handler list', line: 6, replace: '    handlers: []', token: '[]', says: /service "users" has no handlers; list the exported functions/ },
  { name: 'a misspelt required key', line: 5, replace: '    entryy: services/users.js', token: 'entryy', says: /unknown key "entryy"/ },
  { name: 'an auth flag that is no boolean', line: 24, replace: '    - { method: GET, path: /users/:id, to: users.get, auth: yes please }', token: 'yes please', says: /expected auth: true or auth: false/ },
  { name: 'the reserved gateway service', line: 13, replace: '  gateway:', token: 'gateway', says: /"gateway" is the gateway's own service name/ },
];

for (const c of cases) {
  test(`manifest error: ${c.name}, at its line and column`, () => {
    const message = errorOf(withLine(c.line, c.replace));
    assert.match(message, c.says);
    const col = c.replace.indexOf(c.token) + 1;
    assert.ok(message.startsWith(`${FILE}:${c.line}:${col}: `), `expected ${FILE}:${c.line}:${col} at the start of: ${message}`);
  });
}

test('manifest error: YAML syntax errors name the line', () => {
  assert.match(errorOf(withLine(6, '    handlers: [create, get')), /^\/apps\/bank\/themis.yaml:\d+:\d+: not valid YAML: .*; fix the syntax$/);
  assert.match(errorOf('app: bank\nservices:\n  users: { entry: a.js\n'), /^\/apps\/bank\/themis.yaml:\d+:\d+: not valid YAML: .*fix the syntax$/);
});

test('manifest error: an auth route without a login route says what to add', () => {
  const text = VALID.replace('    login: { path: /login }\n', '');
  const message = errorOf(text);
  assert.match(message, /no login route; add `auth: \{ login: \{ path: \/login \} \}`/);
  assert.ok(message.startsWith(`${FILE}:23:${text.split('\n')[22]!.indexOf('true') + 1}:`), message);
});

test('manifest error: missing top-level keys and an empty services map', () => {
  assert.match(errorOf('app: bank\n'), /^\/apps\/bank\/themis.yaml:1:1: the manifest is missing "services"; add it/);
  assert.equal(parseManifest(VALID.replace('trustDomain: bank\n', ''), FILE).trustDomain, 'bank', 'the trust domain defaults to the app name');
  assert.match(errorOf('app: bank\nservices: {}\ngateway: { routes: [] }\n'), /:2:11: expected `services:` to map service names/);
});

test('loadManifest points at the entry line when the module file does not exist', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'themis-manifest-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'services'));
  writeFileSync(join(dir, 'themis.yaml'), VALID);
  writeFileSync(join(dir, 'services', 'users.js'), 'export async function create() {}\nexport async function get() {}\n');
  await assert.rejects(loadManifest(dir), (err: unknown) => {
    assert.ok(isThemisError(err, 'ERR_MANIFEST_INVALID'));
    assert.match(err.message, new RegExp(`^${join(dir, 'themis.yaml')}:14:12: entry module .*accounts.js does not exist`));
    return true;
  });
  await assert.rejects(loadManifest(join(dir, 'nowhere')), /cannot read the manifest \(ENOENT\); run `themis init/);
});
