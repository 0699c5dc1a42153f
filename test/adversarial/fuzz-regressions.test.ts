// Regressions for what the fuzzer (test/fuzz) found; each test fails on the code before its fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
