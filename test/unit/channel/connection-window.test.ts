import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isThemisError } from '../../../src/core/errors.js';
import { ConnectionWindow } from '../../../src/channel/connection-window.js';
import { CONNECTION_WINDOW, MAX_WINDOW } from '../../../src/channel/limits.js';

const MiB = 1024 * 1024;

test('window goes back once half of it is consumed (§4.4)', () => {
  const window = new ConnectionWindow(16 * MiB);
  window.receive(CONNECTION_WINDOW / 2 - 1);
  window.consume(CONNECTION_WINDOW / 2 - 1);
  assert.equal(window.grant(), 0);
  window.receive(1);
  window.consume(1);
  assert.equal(window.grant(), CONNECTION_WINDOW / 2);
  assert.equal(window.grant(), 0);
});

test('data beyond the window is a flow-control violation', () => {
  const window = new ConnectionWindow(16 * MiB);
  window.receive(CONNECTION_WINDOW);
  assert.throws(() => window.receive(1), (err) => isThemisError(err, 'ERR_CHANNEL_FLOW_CONTROL'));
});

test('no window goes back while held bytes plus outstanding credit would pass maxPendingBytes', () => {
  const window = new ConnectionWindow(2 * MiB);
  // A body being collected: received, counted as consumed (its window may go back) but still held.
  const take = (n: number): void => {
    window.receive(n);
    window.pending += n;
    window.consume(n);
  };
  take(CONNECTION_WINDOW);
  assert.equal(window.grant(), CONNECTION_WINDOW); // held 1 MiB + credit 1 MiB = 2 MiB
  take(CONNECTION_WINDOW / 2);
  assert.equal(window.grant(), 0); // held 1.5 MiB + credit 0.5 MiB + 0.5 MiB would pass 2 MiB
  window.pending -= CONNECTION_WINDOW; // the first body reached its handler
  assert.equal(window.grant(), CONNECTION_WINDOW / 2);
});

test('the send window never exceeds 2^31-1', () => {
  const window = new ConnectionWindow(16 * MiB);
  window.grow(MAX_WINDOW - CONNECTION_WINDOW);
  assert.equal(window.send, MAX_WINDOW);
  assert.throws(() => window.grow(1), (err) => isThemisError(err, 'ERR_CHANNEL_FLOW_CONTROL'));
});
