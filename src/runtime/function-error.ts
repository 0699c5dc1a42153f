/**
 * Errors a function raises on purpose (`ctx.error(status, code, message)`) and the outcome
 * envelope every runtime call returns, so an application error crosses the mesh, the isolate
 * boundary and the gateway with its status, code and message intact (RUNTIME-CONTRACT.md
 * "Function modules"). Anything else a function throws is a 500 INTERNAL whose message the
 * gateway keeps from the end user.
 */
export class FunctionError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FunctionError';
    this.status = status;
    this.code = code;
  }
}

/** What a handler call produced: its JSON result, or an error with an HTTP status. */
export type Outcome = { readonly ok: unknown } | { readonly error: { readonly status: number; readonly code: string; readonly message: string } };

/** The status of an application error: a 4xx/5xx integer, anything else 500. */
export function validStatus(status: unknown): number {
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500;
}

/** The outcome of a thrown value: a FunctionError keeps its fields; anything else is INTERNAL. */
export function errorOutcome(err: unknown): Outcome {
  if (err instanceof FunctionError) return { error: { status: validStatus(err.status), code: err.code, message: err.message } };
  return { error: { status: 500, code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) } };
}

/** The result of an outcome, or its error rethrown as a FunctionError. */
export function unwrapOutcome(outcome: Outcome): unknown {
  if ('ok' in outcome) return outcome.ok;
  throw new FunctionError(validStatus(outcome.error.status), outcome.error.code, outcome.error.message);
}

/** Whether a value received from elsewhere (a callee, an isolate) is a well-formed outcome. */
export function isOutcome(value: unknown): value is Outcome {
  if (typeof value !== 'object' || value === null) return false;
  if ('ok' in value) return true;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return false;
  const { status, code, message } = error as Record<string, unknown>;
  return typeof status === 'number' && typeof code === 'string' && typeof message === 'string';
}
