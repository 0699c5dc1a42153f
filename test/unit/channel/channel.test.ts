import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { ThemisError, isThemisError, type ErrorCode } from '../../../src/core/errors.js';
import { Channel, ChannelError, MuxStream, WireCode } from '../../../src/channel/index.js';
import { memoryDuplexPair } from '../../../src/transport/memory.js';
import { TRANSPORTS, body, channelPair, cipherPair, closeEvent, delay, handlers, holdLoop, type ChannelPair, type PairOptions, type Transport } from './helpers.js';

function isChannelError(code: ErrorCode, check: (err: ChannelError) => boolean = () => true): (err: unknown) => boolean {
  return (err) => err instanceof ChannelError && err.code === code && check(err);
}

/** Runs `fn` on a fresh channel pair of each transport, and disposes of it afterwards. */
function both(name: string, options: PairOptions, fn: (pair: ChannelPair, transport: Transport) => Promise<void>): void {
  for (const transport of TRANSPORTS) {
    test(`${name} [${transport}]`, async (t) => {
      holdLoop(t);
      const pair = await channelPair(transport, options);
      t.after(() => pair.dispose());
      await fn(pair, transport);
    });
  }
}

const echo = { requests: { echo: (b: Buffer) => b } };

/** Collects everything a readable stream yields. */
async function drain(stream: MuxStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

// --- request / response (§4.5) ---------------------------------------------------------------

both('request/response in both directions, empty and 4 MiB bodies', { client: echo, server: echo }, async ({ client, server }) => {
  assert.deepEqual(await client.request('echo', Buffer.from('to server')), Buffer.from('to server'));
  assert.deepEqual(await server.request('echo', Buffer.from('to client')), Buffer.from('to client'));
  assert.equal((await client.request('echo', new Uint8Array(0))).length, 0);
  const big = body(4 * 1024 * 1024, 7);
  assert.ok((await client.request('echo', big)).equals(big));
  assert.ok((await server.request('echo', big)).equals(big));
  assert.equal(client.stats.openStreams, 0);
  assert.equal(server.stats.pendingBytes, 0);
});

both('64 concurrent requests are answered, each with its own body', { server: echo }, async ({ client }) => {
  const bodies = Array.from({ length: 64 }, (_, i) => body(1 + i * 97, i + 1));
  const replies = await Promise.all(bodies.map((b) => client.request('echo', b)));
  replies.forEach((reply, i) => assert.ok(reply.equals(bodies[i]!), `reply ${i}`));
  // Batching (§4.1): far fewer transport messages than frames.
  assert.ok(client.stats.messagesOut < 32, `${client.stats.messagesOut} messages for 64 requests`);
});

both('an unknown handler is answered with RESET NO_HANDLER', {}, async ({ client }) => {
  await assert.rejects(client.request('missing', Buffer.from('x')), isChannelError('ERR_CHANNEL_NO_HANDLER', (e) => e.wireCode === WireCode.NO_HANDLER));
  await assert.rejects(drain(client.openStream('missing')), isChannelError('ERR_CHANNEL_NO_HANDLER'));
});

both(
  'a handler error reaches the requester with its message only when exposed',
  {
    server: {
      requests: {
        exposed: () => {
          throw new ThemisError('ERR_CHANNEL_HANDLER', 'quota exceeded for this caller', { expose: true });
        },
        hidden: async () => {
          throw new Error('database password is hunter2');
        },
        wrongType: () => 'not bytes' as unknown as Uint8Array,
      },
    },
  },
  async ({ client }) => {
    await assert.rejects(client.request('exposed', Buffer.alloc(0)), isChannelError('ERR_CHANNEL_HANDLER', (e) => e.message === 'quota exceeded for this caller'));
    await assert.rejects(client.request('hidden', Buffer.alloc(0)), isChannelError('ERR_CHANNEL_HANDLER', (e) => !e.message.includes('hunter2')));
    await assert.rejects(client.request('wrongType', Buffer.alloc(0)), isChannelError('ERR_CHANNEL_HANDLER'));
    assert.deepEqual(await client.request('exposed', Buffer.alloc(0)).catch((e: ChannelError) => e.wireCode), WireCode.HANDLER_ERROR);
  },
);

for (const transport of TRANSPORTS) {
  test(`cancelling with an AbortSignal aborts the handler's signal [${transport}]`, async (t) => {
    const started: AbortSignal[] = [];
    const pair = await channelPair(transport, {
      server: {
        requests: {
          ...echo.requests,
          slow: (_b, ctx) => {
            started.push(ctx.signal);
            return new Promise(() => {});
          },
        },
      },
    });
    t.after(() => pair.dispose());
    const controller = new AbortController();
    const pending = pair.client.request('slow', Buffer.from('x'), { signal: controller.signal });
    while (started.length === 0) await delay(1);
    const handlerSignal = started[0]!;
    const aborted = once(handlerSignal, 'abort');
    controller.abort();
    await assert.rejects(pending, isChannelError('ERR_CHANNEL_CANCELLED'));
    await aborted;
    assert.ok(isThemisError(handlerSignal.reason, 'ERR_CHANNEL_CANCELLED'));
    // The channel stays usable, and the stream is gone on both sides.
    assert.deepEqual(await pair.client.request('echo', Buffer.from('after')), Buffer.from('after'));
    assert.equal(pair.server.stats.openStreams, 0);
    // An already aborted signal never sends anything.
    await assert.rejects(pair.client.request('echo', Buffer.from('x'), { signal: AbortSignal.abort() }), isChannelError('ERR_CHANNEL_CANCELLED'));
  });
}

const reasons: unknown[] = [];
both(
  'timeoutMs: the responder aborts its handler and the requester rejects with ERR_CHANNEL_TIMEOUT',
  {
    server: {
      requests: {
        slow: (_b, ctx) =>
          new Promise<Uint8Array>((resolve) => {
            ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason));
            setTimeout(() => resolve(Buffer.from('too late')), 300);
          }),
      },
    },
  },
  async ({ client }) => {
    reasons.length = 0;
    // The handler would answer after 300 ms; the 50 ms timeout wins.
    await assert.rejects(client.request('slow', Buffer.alloc(0), { timeoutMs: 50 }), isChannelError('ERR_CHANNEL_TIMEOUT'));
    await delay(30);
    assert.equal(reasons.length, 1);
    // The requester's RESET CANCELLED or the responder's own timer: either way the handler learns.
    assert.ok(isThemisError(reasons[0]) && ['ERR_CHANNEL_TIMEOUT', 'ERR_CHANNEL_CANCELLED'].includes(reasons[0].code));
    // A fast answer within the timeout is unaffected.
    assert.equal(await client.request('missing', Buffer.alloc(0), { timeoutMs: 1000 }).catch((e: ThemisError) => e.code), 'ERR_CHANNEL_NO_HANDLER');
  },
);

test('the responder enforces the timeoutMs carried in OPEN (RESET TIMEOUT, §4.5 step 3)', async (t) => {
  let seen: unknown;
  const pair = await channelPair('tcp', {
    server: {
      requests: {
        slow: (_b, ctx) =>
          new Promise<Uint8Array>(() => {
            ctx.signal.addEventListener('abort', () => (seen = ctx.signal.reason));
          }),
      },
    },
  });
  t.after(() => pair.dispose());
  // Both timers are set to the same time; the responder's RESET TIMEOUT or the requester's own
  // timer ends it, and both mean ERR_CHANNEL_TIMEOUT to the caller.
  await assert.rejects(pair.client.request('slow', Buffer.alloc(0), { timeoutMs: 60 }), isChannelError('ERR_CHANNEL_TIMEOUT'));
  await delay(20);
  assert.ok(isThemisError(seen, 'ERR_CHANNEL_TIMEOUT') || isThemisError(seen, 'ERR_CHANNEL_CANCELLED'));
});

both(
  'bodies above maxMessageBytes: refused locally before sending, RESET MESSAGE_TOO_LARGE for responses',
  { clientLimits: { maxMessageBytes: 1000 }, serverLimits: { maxMessageBytes: 2000 }, server: { requests: { big: () => Buffer.alloc(1001), ...echo.requests } } },
  async ({ client }) => {
    await client.ping(); // the SETTINGS of both sides have arrived
    await assert.rejects(client.request('echo', Buffer.alloc(2001)), isChannelError('ERR_CHANNEL_MESSAGE_TOO_LARGE'));
    assert.equal((await client.request('echo', Buffer.alloc(1000))).length, 1000);
    await assert.rejects(client.request('big', Buffer.alloc(0)), isChannelError('ERR_CHANNEL_MESSAGE_TOO_LARGE', (e) => e.wireCode === WireCode.MESSAGE_TOO_LARGE));
    assert.equal(client.closed, false);
  },
);

both('at the peer maxStreams, further requests reject with ERR_CHANNEL_STREAM_LIMIT', { serverLimits: { maxStreams: 2 }, server: { requests: { hold: () => new Promise(() => {}), ...echo.requests } } }, async ({ client }) => {
  await client.ping();
  const held = [client.request('hold', Buffer.alloc(0)), client.request('hold', Buffer.alloc(0))];
  held.forEach((p) => p.catch(() => {}));
  await assert.rejects(client.request('echo', Buffer.alloc(0)), isChannelError('ERR_CHANNEL_STREAM_LIMIT'));
});

test('streams opened before the peer SETTINGS arrived are accepted up to the defaults (§4.3)', async (t) => {
  const pair = await channelPair('memory', { serverLimits: { maxStreams: 1 }, server: echo });
  t.after(() => pair.dispose());
  // Sent in the client's first message, before the server's SETTINGS could arrive.
  const replies = await Promise.all([1, 2, 3].map((i) => pair.client.request('echo', Buffer.from([i]))));
  assert.deepEqual(replies.map((r) => r[0]), [1, 2, 3]);
  assert.equal(pair.server.closed, false);
});

// --- streams (§4.6) and flow control (§4.4) --------------------------------------------------

const echoStream = { streams: { echo: (stream: MuxStream) => void stream.pipe(stream) } };

both('byte streams carry data both ways; FIN is answered with FIN', { client: echoStream, server: echoStream }, async ({ client, server }) => {
  for (const [from, label] of [[client, 'client'], [server, 'server']] as const) {
    const stream = from.openStream('echo');
    const payload = body(1024 * 1024 + 17, label.length);
    const received = drain(stream);
    stream.end(payload);
    assert.ok((await received).equals(payload), `echo opened by the ${label}`);
  }
  await delay(10);
  assert.equal(client.stats.openStreams, 0);
  assert.equal(server.stats.openStreams, 0);
});

for (const transport of TRANSPORTS) {
  test(`a slow reader holds the writer back: memory stays bounded by the windows [${transport}]`, async (t) => {
    let serverStream: MuxStream | undefined;
    const pair = await channelPair(transport, {
      server: {
        streams: {
          sink: (stream) => {
            serverStream = stream;
            stream.pause();
          },
        },
      },
    });
    t.after(() => pair.dispose());
    const writer = pair.client.openStream('sink');
    const chunk = Buffer.alloc(64 * 1024, 1);
    let written = 0;
    let maxBuffered = 0;
    let blocked = false;
    // Write until backpressure holds the writer (the reader reads nothing yet).
    for (let i = 0; i < 200 && !blocked; i++) {
      blocked = !writer.write(chunk);
      written += chunk.length;
      await delay(1);
    }
    assert.ok(blocked, 'write() signalled backpressure');
    await delay(50);
    // The server holds at most its stream window (256 KiB) plus what node:stream buffers.
    assert.ok(pair.server.stats.pendingBytes <= 256 * 1024, `server pending ${pair.server.stats.pendingBytes}`);
    assert.ok(written <= 2 * 1024 * 1024, `wrote ${written} bytes before backpressure`);
    // Now read slowly: everything arrives, in order, while the writer's buffer stays bounded.
    const total = 4 * 1024 * 1024;
    const producer = (async () => {
      let sent = written;
      while (sent < total) {
        maxBuffered = Math.max(maxBuffered, writer.writableLength);
        if (!writer.write(chunk)) await once(writer, 'drain');
        sent += chunk.length;
      }
      writer.end();
    })();
    let received = 0;
    const stream = serverStream!;
    stream.on('data', (data: Buffer) => {
      received += data.length;
      stream.pause();
      setTimeout(() => stream.resume(), 1);
    });
    stream.resume();
    await Promise.all([producer, once(stream, 'end')]);
    assert.equal(received, total);
    assert.ok(maxBuffered <= 2 * chunk.length, `writer buffered ${maxBuffered}`);
  });
}

both('resetting a stream: CANCELLED closes the other side quietly, other codes raise ERR_CHANNEL_RESET', { server: echoStream }, async ({ client, server }) => {
  void server;
  const cancelled = client.openStream('echo');
  cancelled.write('x');
  await once(cancelled, 'data');
  cancelled.reset();
  assert.equal(cancelled.destroyed, true);
  const app = client.openStream('echo');
  app.write('y');
  await once(app, 'data');
  const serverSide = await new Promise<MuxStream>((resolve) => {
    const check = (): void => void (client.stats.openStreams === 1 ? resolve(app) : setTimeout(check, 1));
    check();
  });
  void serverSide;
  app.reset(70_000);
  await delay(20);
  assert.equal(client.stats.openStreams, 0);
  // The server side saw a reset with the application code.
  const errors: unknown[] = [];
  const pair2 = await channelPair('memory', { server: { streams: { watch: (s) => void s.on('error', (e) => errors.push(e)).resume() } } });
  try {
    const s = pair2.client.openStream('watch');
    s.write('hello');
    await delay(20);
    s.reset(70_000);
    await delay(20);
    assert.ok(isChannelError('ERR_CHANNEL_RESET', (e) => e.wireCode === 70_000)(errors[0]), String(errors[0]));
  } finally {
    await pair2.dispose();
  }
});

both('openStream with an AbortSignal resets the stream when aborted', { server: echoStream }, async ({ client }) => {
  const controller = new AbortController();
  const stream = client.openStream('echo', { signal: controller.signal });
  stream.write('x');
  await once(stream, 'data');
  const failed = once(stream, 'error');
  controller.abort();
  const [err] = await failed;
  assert.ok(isThemisError(err, 'ERR_CHANNEL_CANCELLED'));
  await delay(20);
  assert.equal(client.stats.openStreams, 0);
});

both('a stream handler that throws resets the stream with HANDLER_ERROR', { server: { streams: { bad: () => { throw new ThemisError('ERR_CHANNEL_HANDLER', 'no streams today', { expose: true }); } } } }, async ({ client }) => {
  await assert.rejects(drain(client.openStream('bad')), isChannelError('ERR_CHANNEL_HANDLER', (e) => e.message === 'no streams today'));
});

// --- GOAWAY and closing (§4.7) -----------------------------------------------------------------

/** Settled by the server's handler in the GOAWAY tests once it holds the request. */
let slowStarted = deferred();
let held = deferred();
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

both(
  'close(): GOAWAY lets in-flight requests finish, refuses new ones, and ends cleanly on both sides',
  { server: { requests: { slow: (b: Buffer) => (slowStarted.resolve(), new Promise<Uint8Array>((resolve) => setTimeout(() => resolve(b), 80))) } } },
  async ({ client, server }) => {
    slowStarted = deferred();
    const inflight = client.request('slow', Buffer.from('done'));
    // The server must hold the request before it closes (a delay alone races a loaded machine).
    await slowStarted.promise;
    const serverClosed = closeEvent(server);
    const clientClosed = closeEvent(client);
    const closing = server.close();
    await delay(10);
    // The client got the GOAWAY: new requests are refused and may be retried elsewhere.
    await assert.rejects(client.request('slow', Buffer.from('late')), isChannelError('ERR_CHANNEL_GOAWAY', (e) => e.retryable));
    await assert.rejects(server.request('slow', Buffer.from('x')), isChannelError('ERR_CHANNEL_CLOSED'));
    assert.deepEqual(await inflight, Buffer.from('done'));
    await closing;
    assert.equal(await serverClosed, undefined);
    assert.equal(await clientClosed, undefined);
    assert.equal(client.closed && server.closed, true);
  },
);

both('GOAWAY: requests above lastStreamId are refused as retryable', { server: { requests: { hold: () => (held.resolve(), new Promise(() => {})) } } }, async ({ client, server }) => {
  // The server holds the first request, then closes before the second arrives.
  held = deferred();
  const first = client.request('hold', Buffer.alloc(0));
  await held.promise;
  void server.close({ graceMs: 50 });
  const second = client.request('hold', Buffer.alloc(0));
  await assert.rejects(second, isChannelError('ERR_CHANNEL_GOAWAY', (e) => e.retryable));
  // The first was accepted, so it is not retryable: it fails when the grace period ends.
  await assert.rejects(first, isChannelError('ERR_CHANNEL_CLOSED', (e) => !e.retryable));
});

both('destroy(err) fails in-flight requests and reports err on close', { server: { requests: { hold: () => new Promise(() => {}) } } }, async ({ client, server }) => {
  const inflight = client.request('hold', Buffer.alloc(0));
  await delay(10);
  const clientClosed = closeEvent(client);
  const serverClosed = closeEvent(server);
  const reason = new ThemisError('ERR_CHANNEL_CLOSED', 'shutting down for a test');
  client.destroy(reason);
  await assert.rejects(inflight, isChannelError('ERR_CHANNEL_CLOSED'));
  assert.equal(await clientClosed, reason);
  assert.ok(isThemisError(await serverClosed, 'ERR_CHANNEL_CLOSED'));
  await assert.rejects(client.ping(), isChannelError('ERR_CHANNEL_CLOSED'));
  assert.throws(() => client.openStream('x'), isChannelError('ERR_CHANNEL_CLOSED'));
});

// --- keep-alive, dead peer, idle (§4.7) ---------------------------------------------------------

both('keep-alive PINGs keep an idle but live connection open', { clientLimits: { keepAliveMs: 40, deadPeerMs: 250 }, serverLimits: { keepAliveMs: 40, deadPeerMs: 250 }, server: echo }, async ({ client, server }) => {
  await delay(800); // more than three dead-peer periods without application traffic
  assert.equal(client.closed, false);
  assert.equal(server.closed, false);
  assert.ok(client.stats.messagesIn > 5, 'pings and their answers flowed');
  assert.deepEqual(await client.request('echo', Buffer.from('alive')), Buffer.from('alive'));
});

test('a silent peer is closed by the dead-peer timer', async (t) => {
  holdLoop(t);
  const [a, b] = memoryDuplexPair();
  b.resume(); // the "peer" reads but never answers
  const keys = cipherPair();
  const channel = new Channel({ socket: a, ...keys.initiator, initiator: true, remote: null, handlers: handlers(), limits: { keepAliveMs: 30, deadPeerMs: 100 } });
  const started = Date.now();
  const err = await closeEvent(channel);
  assert.ok(isThemisError(err, 'ERR_CHANNEL_TIMEOUT'), String(err));
  assert.ok(Date.now() - started >= 90);
  assert.equal(a.destroyed, true);
  b.destroy();
});

both('a connection with no open stream for idleTimeoutMs closes with GOAWAY IDLE_TIMEOUT, cleanly', { serverLimits: { idleTimeoutMs: 80 }, server: echo }, async ({ client, server }) => {
  const clientClosed = closeEvent(client);
  const serverClosed = closeEvent(server);
  await client.request('echo', Buffer.from('one'));
  const started = Date.now();
  assert.equal(await serverClosed, undefined);
  assert.equal(await clientClosed, undefined);
  assert.ok(Date.now() - started >= 60);
});

both('ping() measures a round trip', {}, async ({ client, server }) => {
  const [a, b] = await Promise.all([client.ping(), server.ping()]);
  for (const rtt of [a, b]) assert.ok(rtt >= 0 && rtt < 1000, `rtt ${rtt}`);
});

// --- transport messages (§4.1) -------------------------------------------------------------------

test('rekey across more than 65,536 transport messages in each direction', { timeout: 60_000 }, async (t) => {
  const pair = await channelPair('memory', { server: echoStream });
  t.after(() => pair.dispose());
  const stream = pair.client.openStream('echo');
  let echoed = 0;
  stream.on('data', (chunk: Buffer) => (echoed += chunk.length));
  await pair.client.ping();
  const target = 65_536 + 100;
  const { client, server } = pair;
  // Each write waits for its own transport message, so every message is a separate AEAD
  // operation with the next nonce; the server echoes each one back.
  for (let i = 0; client.stats.messagesOut <= target || server.stats.messagesOut <= target; i++) {
    const before = client.stats.messagesOut;
    stream.write(Buffer.from([i & 0xff]));
    while (client.stats.messagesOut === before) await new Promise((resolve) => setImmediate(resolve));
  }
  while (client.stats.messagesIn <= target) await delay(1);
  assert.ok(server.stats.messagesIn > target);
  assert.ok(echoed > 0);
  stream.end();
  await once(stream, 'end');
});

test('bytes read past the handshake (head) are the first channel bytes', async (t) => {
  const [a, b] = memoryDuplexPair();
  const keys = cipherPair();
  const client = new Channel({ socket: a, ...keys.initiator, initiator: true, remote: null, handlers: handlers() });
  t.after(() => (client.destroy(), a.destroy(), b.destroy()));
  const reply = client.request('echo', Buffer.from('via head'));
  // The server's transport "read" the client's first bytes already, as the handshake reader would.
  const [head] = (await once(b, 'data')) as [Buffer];
  b.pause();
  const server = new Channel({ socket: b, head, ...keys.responder, initiator: false, remote: null, handlers: handlers(echo) });
  t.after(() => server.destroy());
  assert.deepEqual(await reply, Buffer.from('via head'));
});

test('stats count wire bytes and messages in each direction', async (t) => {
  const pair = await channelPair('memory', { server: echo });
  t.after(() => pair.dispose());
  await pair.client.request('echo', Buffer.alloc(1000));
  await delay(10);
  const c = pair.client.stats;
  const s = pair.server.stats;
  assert.equal(c.bytesOut, s.bytesIn);
  assert.equal(s.bytesOut, c.bytesIn);
  assert.equal(c.messagesOut, s.messagesIn);
  assert.ok(c.bytesOut > 1000);
});

// --- options ---------------------------------------------------------------------------------

test('nonsense limits and arguments are RangeError / TypeError', () => {
  const keys = cipherPair();
  const make = (limits: object): Channel => new Channel({ socket: new PassThrough(), ...keys.initiator, initiator: true, remote: null, handlers: handlers(), limits });
  assert.throws(() => make({ maxStreams: -1 }), RangeError);
  assert.throws(() => make({ initialWindow: 0 }), RangeError);
  assert.throws(() => make({ initialWindow: 2 ** 31 }), RangeError);
  assert.throws(() => make({ keepAliveMs: 1000, deadPeerMs: 1000 }), /deadPeerMs/);
  assert.throws(() => make({ maxPendingBytes: 1024 }), RangeError);
  assert.throws(() => make({ maxMessageBytes: 32 * 1024 * 1024 }), /maxPendingBytes/);
  assert.throws(() => make({ keepAlive: 5 }), /unknown channel limit "keepAlive"/);
  assert.throws(() => make({ graceMs: 1.5 }), RangeError);
  const channel = make({});
  assert.throws(() => channel.request('', Buffer.alloc(0)), RangeError);
  assert.throws(() => channel.request('x'.repeat(256), Buffer.alloc(0)), RangeError);
  assert.throws(() => channel.request('x', 'text' as unknown as Uint8Array), TypeError);
  assert.throws(() => channel.request('x', Buffer.alloc(0), { timeoutMs: -1 }), RangeError);
  assert.throws(() => channel.close({ graceMs: -5 }), RangeError);
  channel.destroy();
});
