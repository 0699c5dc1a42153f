/**
 * The README's main command (`npm run demo` = scripts/demo.mjs) end to end: `themis up` as a child
 * process (dist/cli/main.js, so `npm run build` first), the scripted MicroBank session over HTTP,
 * and a clean SIGINT shutdown. The script checks every status itself and exits 1 on a surprise.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('../../scripts/demo.mjs', import.meta.url));

test('npm run demo serves MicroBank under themis up, plays the session and stops cleanly', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [DEMO], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 99, stdout, stderr });
    });
  });
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  const statuses = [...stdout.matchAll(/^ {2}→ (\d{3}) /gm)].map((match) => Number(match[1]));
  assert.deepEqual(statuses, [201, 200, 200, 201, 200, 200, 200, 200, 422, 403, 403, 200, 200]);
  assert.match(stdout, /"gateway":"http:\/\/127\.0\.0\.1:\d+"/);
  assert.match(stdout, /alice:demo-001 +completed alice\.1 → bob\.1 +2500/);
  assert.match(stdout, /themis up stopped \(exit 0\)$/m);
});
