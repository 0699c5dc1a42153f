import cliProgress from 'cli-progress';

/**
 * A progress bar on stderr for long work; silent when stderr is not a terminal (CI, pipes), so
 * `--json` output on stdout stays clean either way.
 */
export function progressBar(label: string): { update: (phase: string, done: number, total: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
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
