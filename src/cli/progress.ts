import cliProgress from 'cli-progress';

export interface Progress {
  update(phase: string, done: number, total: number): void;
  stop(): void;
}

/** Without a terminal, a phase line at most this often (and at each phase's start and end). */
const LINE_INTERVAL_MS = 10_000;

/**
 * Progress of long work on stderr, so `--json` output on stdout stays clean either way: a bar
 * on a terminal; elsewhere (CI, pipes, logs) one line per phase start and end and at most one
 * every 10 s in between, so a long run still shows where it is.
 */
export function progressBar(label: string): Progress {
  return process.stderr.isTTY ? terminalBar(label) : phaseLines(label);
}

function terminalBar(label: string): Progress {
  const bar = new cliProgress.SingleBar(
    { format: `${label} {phase} [{bar}] {value}/{total} {percentage}% | {duration_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let phase: string | null = null;
  return {
    update(next, done, total) {
      if (phase !== next) {
        if (phase !== null) bar.stop();
        phase = next;
        bar.start(total, done, { phase: next });
      } else bar.update(done, { phase: next });
    },
    stop() {
      if (phase !== null) bar.stop();
    },
  };
}

function phaseLines(label: string): Progress {
  const started = Date.now();
  let phase: string | null = null;
  let lastDone = -1;
  let lastAt = 0;
  return {
    update(next, done, total) {
      const changed = phase !== next;
      const finished = done >= total && done !== lastDone;
      if (!changed && !finished && Date.now() - lastAt < LINE_INTERVAL_MS) return;
      phase = next;
      lastDone = done;
      lastAt = Date.now();
      const percent = total > 0 ? Math.floor((done / total) * 100) : 100;
      process.stderr.write(`${label} ${next} ${done}/${total} (${percent}%) ${((lastAt - started) / 1000).toFixed(1)} s\n`);
    },
    stop() {
      phase = null;
    },
  };
}
