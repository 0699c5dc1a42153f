/** Small statistics helpers for benchmark samples (times in milliseconds). */

export interface LatencySummary {
  readonly samples: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (p < 0 || p > 100) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export function median(values: readonly number[]): number {
  return percentile(Float64Array.from(values).sort(), 50);
}

/** Collects latencies without per-sample allocation; grows by doubling. */
export class LatencyRecorder {
  private values = new Float64Array(1024);
  private count = 0;

  add(ms: number): void {
    if (this.count === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.count++] = ms;
  }

  addAll(other: LatencyRecorder): void {
    for (let i = 0; i < other.count; i++) this.add(other.values[i] as number);
  }

  get size(): number {
    return this.count;
  }

  summary(): LatencySummary {
    const sorted = this.values.slice(0, this.count).sort();
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      samples: this.count,
      meanMs: this.count === 0 ? Number.NaN : sum / this.count,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: this.count === 0 ? Number.NaN : (sorted[this.count - 1] as number),
    };
  }
}

/** Rounds for JSON output: 4 significant digits, NaN/Infinity become null. */
export function round(value: number, digits = 4): number | null {
  if (!Number.isFinite(value)) return null;
  if (value === 0) return 0;
  return Number(value.toPrecision(digits));
}
