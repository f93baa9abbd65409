/** Milliseconds from a monotonic origin (performance.now by default; a fake clock in tests). */
export type MonotonicClock = () => number

/** A prom-client counter child bound once per service, or a fake in tests. */
export interface Counter {
  inc(): void
}

export const monotonicNow: MonotonicClock = () => performance.now()
