/** Figures the benchmarks print. */

/** The median (mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Nearest-rank percentile of the finite values; NaN when there are none. */
export function percentile(xs: readonly number[], p: number): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

/** One of an issue's targets beside what a benchmark measured (printed, never asserted). */
export interface Check {
  what: string
  target: string
  measured: string
  ok: boolean
}

/** Prints the checks as a summary table and whether every target was met. */
export function printChecks(checks: readonly Check[]): void {
  const width = Math.max(...checks.map((c) => c.what.length))
  console.log(`\nsummary${' '.repeat(width - 5)}target      measured   result`)
  for (const c of checks) console.log(`  ${c.what.padEnd(width)}  ${c.target.padEnd(10)}  ${c.measured.padStart(9)}   ${c.ok ? 'pass' : 'MISSED'}`)
  const missed = checks.filter((c) => !c.ok).length
  console.log(missed === 0 ? '\nevery target met' : `\nMISSED: ${missed} of ${checks.length} targets (figures only; not asserted)`)
}
