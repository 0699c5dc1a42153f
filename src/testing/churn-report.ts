/** What a churn run reports (src/testing/churn.ts), and how its figures are computed from the operations it observed. */

export type ChurnPhase = 'before' | 'during' | 'after';

export interface OperationFigures {
  readonly attempts: number;
  readonly ok: number;
  /** ok ÷ attempts (1 when there were none). */
  readonly successRate: number;
  /** Failures by error code. */
  readonly errors: Readonly<Record<string, number>>;
  readonly latencyMs: { readonly p50: number; readonly p99: number };
}

export interface PhaseFigures {
  readonly seconds: number;
  /** CPU time of this process (every node, instance and client runs in it) ÷ wall time: near 1 or above, the figures measure a saturated process. */
  readonly cpuShare: number;
  /** find() of a record stored before the churn: ok when its value comes back verified. */
  readonly recordLookups: OperationFigures;
  /** findNode() of a server alive when the lookup started and when it ended: ok when its signed contact is found. */
  readonly nodeLookups: OperationFigures;
  /** mesh call `users.get` (retries on other instances included): ok when the right answer comes back. */
  readonly calls: OperationFigures;
}

export interface ChurnReport {
  readonly options: {
    readonly nodes: number;
    readonly instances: number;
    readonly callers: number;
    readonly records: number;
    readonly seconds: number;
    readonly rate: number;
    readonly mode: 'trust-domain' | 'open';
    readonly restartShare: number;
    readonly crashShare: number;
    readonly instanceShare: number;
    readonly concurrency: number;
    readonly lookupsPerSecond: number;
    readonly callsPerSecond: number;
  };
  readonly phases: Readonly<Record<ChurnPhase, PhaseFigures>>;
  readonly events: {
    readonly serverKills: number;
    readonly instanceKills: number;
    readonly crashes: number;
    readonly leaves: number;
    readonly freshStarts: number;
    readonly restarts: number;
    /** Starts that failed three attempts. */
    readonly failedStarts: number;
    /** Errors of start attempts, by code (a start that failed once and then succeeded counts here only). */
    readonly startErrors: Readonly<Record<string, number>>;
    /** Events that found no victim: every instance, or all but 3 servers, were dead and their replacements still starting. */
    readonly skipped: number;
  };
  /** The fewest servers and instances alive at once during the churn (starts lag behind kills when joins are slow). */
  readonly minLive: { readonly servers: number; readonly instances: number };
  /** Kills during the churn ÷ (nodes + instances): the share of the population replaced. */
  readonly killedShare: number;
  /** Distinct servers of the initial population killed and never restarted ÷ nodes. */
  readonly originalServersLostShare: number;
  /**
   * Time from the end of the churn to the end of the last failed operation of each kind that
   * started after it (0: none failed); null when the last one failed within 1 s of the end of the
   * after-phase (not recovered yet).
   */
  readonly recoveryMs: { readonly recordLookups: number | null; readonly nodeLookups: number | null; readonly calls: number | null };
  /** After the load stopped: each record looked up once, then calls one at a time. */
  readonly final: {
    readonly records: { readonly stored: number; readonly found: number; readonly lost: readonly string[] };
    readonly calls: { readonly attempts: number; readonly ok: number; readonly errors: Readonly<Record<string, number>> };
  };
  readonly durationMs: number;
}

/** One lookup or call as the load loops saw it. */
export interface Operation {
  readonly kind: 'recordLookups' | 'nodeLookups' | 'calls';
  readonly phase: ChurnPhase;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly ok: boolean;
  readonly code?: string;
}

/** The figures of one phase: each kind of operation, wall time and the process's CPU share. */
export function phaseFigures(operations: readonly Operation[], phase: ChurnPhase, wallMs: number, cpuMs: number): PhaseFigures {
  const of = (kind: Operation['kind']): OperationFigures => figures(operations.filter((op) => op.kind === kind && op.phase === phase));
  return { seconds: round(wallMs / 1000), cpuShare: round(cpuMs / wallMs, 2), recordLookups: of('recordLookups'), nodeLookups: of('nodeLookups'), calls: of('calls') };
}

/** ChurnReport.recoveryMs of one kind of operation. */
export function recoveryMs(operations: readonly Operation[], kind: Operation['kind'], churnEnded: number, afterEnded: number): number | null {
  const failures = operations.filter((op) => op.kind === kind && op.phase === 'after' && !op.ok);
  if (failures.length === 0) return 0;
  const last = Math.max(...failures.map((op) => op.endedAt));
  return afterEnded - last < 1000 ? null : last - churnEnded;
}

function figures(operations: readonly Operation[]): OperationFigures {
  const ok = operations.filter((op) => op.ok).length;
  const errors: Record<string, number> = {};
  for (const op of operations) if (!op.ok) errors[op.code ?? 'error'] = (errors[op.code ?? 'error'] ?? 0) + 1;
  const latencies = operations.map((op) => op.endedAt - op.startedAt).sort((a, b) => a - b);
  return {
    attempts: operations.length,
    ok,
    successRate: operations.length === 0 ? 1 : round(ok / operations.length, 4),
    errors,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) },
  };
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
