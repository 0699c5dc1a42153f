/**
 * CPU profiles of exactly the measured slices, from inside the process (node:inspector), so that
 * start-up, certificate generation and warm-up stay out of them. The files are ordinary
 * .cpuprofile files: open them in Chrome DevTools or summarise them with
 * bench/tools/cpuprofile-top.ts.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

/** Sampling interval in microseconds (node --cpu-prof uses 1000). */
const SAMPLING_INTERVAL_US = 250;

export class SliceProfiler {
  private readonly session = new Session();
  private running = false;

  constructor() {
    this.session.connect();
  }

  private post(method: string, params?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result)));
    });
  }

  async start(): Promise<void> {
    if (this.running) throw new Error('the profiler is already running');
    await this.post('Profiler.enable');
    await this.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
    await this.post('Profiler.start');
    this.running = true;
  }

  /** Stops and writes the profile to `path`. */
  async stop(path: string): Promise<void> {
    if (!this.running) throw new Error('the profiler is not running');
    this.running = false;
    const { profile } = (await this.post('Profiler.stop')) as { profile: unknown };
    writeFileSync(path, JSON.stringify(profile));
  }

  close(): void {
    this.session.disconnect();
  }
}
