/** Kept apart from outlier.ts so that Host can hold it without an import cycle. */

/** Per-host passive-health state; lives on the Host so recording an attempt is a field update. */
export interface OutlierState {
  consecutiveFailures: number
  /** When the current run of failures began (ms since epoch). */
  failingSinceMs: number
  /** What the last failure was: an HTTP status (`503`) or an outcome (`connect_failed`). */
  lastFailure: string
  /** Ejections so far; each lasts `ejectionTime × ejections`, capped. Decays after a quiet spell. */
  ejections: number
  ejectedUntilMs: number
  /** When the last ejection ended; 0 when never ejected. */
  lastReturnMs: number
}

export function newOutlierState(): OutlierState {
  return { consecutiveFailures: 0, failingSinceMs: 0, lastFailure: '', ejections: 0, ejectedUntilMs: 0, lastReturnMs: 0 }
}
