/**
 * MiSSFIRE's MicroBank load test against a gateway URL: every client creates two users, each with
 * an account, logs both in, and then makes alternating payments between them (A→B, B→A, …), one
 * at a time, each with its own Idempotency-Key, until the deadline. Everything goes through the
 * gateway's public HTTP API (examples/microbank/README.md) on keep-alive connections, so the three
 * modes of the bench see exactly the same requests.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { LatencyRecorder } from './stats.js';

/** Every payment moves 1 cent back and forth from an opening balance of 10000, so none is declined. */
const PAYMENT_AMOUNT = 1;
const REQUEST_TIMEOUT_MS = 30_000;

export interface HttpReply {
  readonly status: number;
  readonly body: unknown;
}

/** A JSON-over-HTTP client of one gateway, on keep-alive connections. */
export class GatewayClient {
  private readonly agent: Agent;

  constructor(
    readonly base: string,
    maxSockets: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  send(method: string, path: string, init: { body?: unknown; token?: string; idempotencyKey?: string } = {}): Promise<HttpReply> {
    const payload = init.body === undefined ? null : Buffer.from(JSON.stringify(init.body));
    const headers: Record<string, string> = {};
    if (payload !== null) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (init.token !== undefined) headers['authorization'] = `Bearer ${init.token}`;
    if (init.idempotencyKey !== undefined) headers['idempotency-key'] = init.idempotencyKey;
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, { method, agent: this.agent, headers, timeout: REQUEST_TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let body: unknown = text;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            // Not JSON: kept as text for the error message.
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload ?? undefined);
    });
  }

  /** Like send, but a non-2xx answer is an error naming the request. */
  async expect(method: string, path: string, init: { body?: unknown; token?: string; idempotencyKey?: string } = {}): Promise<unknown> {
    const reply = await this.send(method, path, init);
    if (reply.status < 200 || reply.status > 299) throw new Error(`${method} ${path} answered ${reply.status}: ${JSON.stringify(reply.body).slice(0, 300)}`);
    return reply.body;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** One bench user: id, bearer token, its one account. */
export interface BenchUser {
  readonly id: string;
  readonly token: string;
  readonly account: string;
}

/** The 2xx body of a payment the gateway acknowledged (what examples/microbank/audit.mjs checks). */
export interface AckedPayment {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly amount: number;
}

export interface ClientState {
  readonly index: number;
  readonly users: readonly [BenchUser, BenchUser];
  readonly acked: AckedPayment[];
  /** Idempotency keys of payments that got no 2xx (error status or no answer). */
  readonly failedKeys: string[];
  readonly failures: Map<string, number>;
  /** Payments sent so far; even ones go A→B, odd ones B→A. */
  sent: number;
}

function field(value: unknown, name: string, what: string): string {
  const v = (value as Record<string, unknown> | null)?.[name];
  if (typeof v !== 'string' && typeof v !== 'number') throw new Error(`${what}: the answer has no "${name}": ${JSON.stringify(value).slice(0, 300)}`);
  return String(v);
}

/** Registers user `id` with a password, logs in, opens an account (the app grants its opening balance). */
async function makeUser(gw: GatewayClient, id: string): Promise<BenchUser> {
  const password = `pw-${id}-${randomBytes(8).toString('hex')}`;
  field(await gw.expect('POST', '/users', { body: { id, name: `bench ${id}`, password } }), 'id', 'POST /users');
  const token = field(await gw.expect('POST', '/login', { body: { id, password } }), 'token', 'POST /login');
  const account = field(await gw.expect('POST', `/users/${encodeURIComponent(id)}/accounts`, { token, body: { name: 'checking' } }), 'id', 'POST /users/:id/accounts');
  return { id, token, account };
}

/** Clients signing up at once: register and login hash passwords (scrypt), and the gateway's timeout must not cut a queue of them. */
const SIGN_UP_CONCURRENCY = 4;

/** Sets up `count` clients, a few at a time (sign-up is not measured). */
export async function setUpClients(gw: GatewayClient, run: string, count: number): Promise<ClientState[]> {
  const clients: ClientState[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(SIGN_UP_CONCURRENCY, count) }, async () => {
      while (next < count) {
        const index = next++;
        clients[index] = await setUpClient(gw, run, index);
      }
    }),
  );
  return clients;
}

/** Client `index`'s two users; `run` (a few of a-z0-9) keeps ids unique across runs on one store. */
async function setUpClient(gw: GatewayClient, run: string, index: number): Promise<ClientState> {
  const a = await makeUser(gw, `${run}-c${index}-a`);
  const b = await makeUser(gw, `${run}-c${index}-b`);
  return { index, users: [a, b], acked: [], failedKeys: [], failures: new Map(), sent: 0 };
}

/** One payment from `from` to `to`; resolves with whether it was acknowledged. */
async function pay(gw: GatewayClient, client: ClientState, key: string, from: BenchUser, to: BenchUser): Promise<boolean> {
  let failure: string;
  try {
    const reply = await gw.send('POST', `/users/${encodeURIComponent(from.id)}/pay`, {
      token: from.token,
      idempotencyKey: key,
      body: { from: from.account, to: to.account, amount: PAYMENT_AMOUNT },
    });
    if (reply.status >= 200 && reply.status <= 299) {
      field(reply.body, 'id', 'POST /users/:id/pay');
      client.acked.push(reply.body as AckedPayment);
      return true;
    }
    const code = (reply.body as { error?: { code?: string } } | undefined)?.error?.code;
    failure = `${reply.status} ${code ?? ''}`.trim();
  } catch (err) {
    failure = (err as Error).message.replace(/^.*: /, '');
  }
  client.failedKeys.push(key);
  client.failures.set(failure, (client.failures.get(failure) ?? 0) + 1);
  return false;
}

export interface LoadWindow {
  payments: number;
  failed: number;
  elapsedMs: number;
  readonly latency: LatencyRecorder;
}

/**
 * Every client pays alternately until `ms` have passed; latencies (acknowledged payments only)
 * and counts go to the returned window.
 */
export async function drive(gw: GatewayClient, clients: readonly ClientState[], run: string, ms: number): Promise<LoadWindow> {
  const window: LoadWindow = { payments: 0, failed: 0, elapsedMs: 0, latency: new LatencyRecorder() };
  const start = performance.now();
  const deadline = start + ms;
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < deadline) {
        const n = client.sent++;
        const [from, to] = n % 2 === 0 ? client.users : [client.users[1], client.users[0]];
        const t0 = performance.now();
        if (await pay(gw, client, `${run}-c${client.index}-p${n}`, from, to)) {
          window.latency.add(performance.now() - t0);
          window.payments++;
        } else {
          window.failed++;
        }
      }
    }),
  );
  window.elapsedMs = performance.now() - start;
  return window;
}
