// Regressions for what the fuzzer (test/fuzz) found; each test fails on the code before its fix.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { isThemisError } from '../../src/core/errors.js';
import { readExactly } from '../../src/mesh/stream-header.js';
import { channelPair, delay, holdLoop } from '../unit/channel/helpers.js';

// channel-memory / channel-tcp: an OPEN whose u32 timeoutMs is above 2^31 − 1 made setTimeout
// fire after 1 ms (TimeoutOverflowWarning): the responder reset the request with TIMEOUT at once.
test('a request timeout above 2^31-1 ms does not fire at once on either side', async (t) => {
  holdLoop(t);
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning.name);
  process.on('warning', onWarning);
  t.after(() => void process.off('warning', onWarning));
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  const pair = await channelPair('memory', {
    server: {
      requests: {
        wait: async (body, ctx) => {
          await released;
          assert.equal(ctx.signal.aborted, false, 'the responder did not time the request out');
          return body;
        },
      },
    },
  });
  t.after(() => pair.dispose());
  const reply = pair.client.request('wait', Buffer.from('still here'), { timeoutMs: 0xffff_ffff });
  await delay(30); // far beyond the 1 ms the overflowing timers fired after
  release();
  assert.equal((await reply).toString(), 'still here');
  assert.deepEqual(warnings, []);
});

// mesh-call: a mesh stream whose header was cut short by FIN. readExactly resolved with the short
// remainder (a 1-byte "length" then threw RangeError, an untyped handler failure), or, once 'end'
// had been emitted, waited for the 10 s header deadline instead of refusing the stream.
test('a stream that ends inside or before its header is refused at once with a typed error', async () => {
  const short = new PassThrough();
  short.end(Buffer.of(0x01));
  await assert.rejects(readExactly(short, 2, AbortSignal.timeout(5000)), (err) => isThemisError(err, 'ERR_MESH_CALL_INVALID'));

  const ended = new PassThrough();
  ended.end(Buffer.of(0x16, 0xe5));
  assert.equal((await readExactly(ended, 2)).readUInt16BE(0), 0x16e5);
  await new Promise((resolve) => setImmediate(resolve)); // 'end' has been emitted by now
  await assert.rejects(readExactly(ended, 0x16e5, AbortSignal.timeout(5000)), (err) => isThemisError(err, 'ERR_MESH_CALL_INVALID'));
});
