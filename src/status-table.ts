import type { ServiceView } from './admin/services-view.ts'

export interface StatusTableOptions {
  /** ANSI colours for health (green/red) and service notes; only for a terminal. */
  color?: boolean
}

const HEADER = ['SERVICE', 'STRATEGY', 'ENDPOINT', 'WEIGHT', 'HEALTH', 'FLAGS', 'IN-FLIGHT', 'REQUESTS', 'WHY'] as const
const HEALTH_COLUMN = 4
/** Numbers are right-aligned so their digits line up. */
const NUMERIC = new Set([3, 6, 7])

const GREEN = '\u001b[32m'
const RED = '\u001b[31m'
const YELLOW = '\u001b[33m'
const RESET = '\u001b[0m'

/**
 * `outrigger status`: one row per endpoint (the service on every row, so the output greps and
 * sorts), columns padded to fit, then one summary line. A cell never contains spaces where a
 * script would split columns, except the last (WHY), which is free text.
 */
export function renderStatusTable(services: readonly ServiceView[], options: StatusTableOptions = {}): string {
  if (services.length === 0) return 'no services\n'
  const rows: string[][] = [[...HEADER]]
  /** Per row: the service is stale or in panic (its name cell carries a note). */
  const noted: boolean[] = [false]
  let healthyAll = 0
  let totalAll = 0
  let stale = 0
  let panic = 0
  for (const s of services) {
    const notes = [s.stale ? `stale ${Math.round(s.discovery.stalenessSeconds)}s` : '', s.panic ? 'panic' : ''].filter((x) => x !== '').join(', ')
    const name = notes === '' ? s.name : `${s.name} (${notes})`
    if (s.stale) stale++
    if (s.panic) panic++
    if (s.endpoints.length === 0) {
      const waiting = s.discovery.lastUpdate === null
      noted.push(notes !== '')
      rows.push([name, s.strategy, '-', '-', waiting ? 'waiting' : 'none', '-', '-', '-', s.discovery.error ?? (waiting ? 'no discovery result yet' : 'no endpoints')])
    }
    for (const e of s.endpoints) {
      totalAll++
      if (e.healthy) healthyAll++
      noted.push(notes !== '')
      rows.push([
        name,
        s.strategy,
        e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`,
        String(e.weight),
        e.healthy ? 'healthy' : 'unhealthy',
        e.flags.length > 0 ? e.flags.join(',') : '-',
        String(e.inFlight),
        String(e.requests),
        e.reasons.join('; '),
      ])
    }
  }
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const last = HEADER.length - 1
  const lines = rows.map((r, row) =>
    r
      .map((cell, i) => {
        if (i === last) return cell
        const padded = NUMERIC.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)
        if (options.color !== true || row === 0) return padded
        if (i === HEALTH_COLUMN) return `${cell === 'healthy' ? GREEN : cell === 'unhealthy' || cell === 'none' ? RED : YELLOW}${padded}${RESET}`
        if (i === 0 && noted[row] === true) return `${YELLOW}${padded}${RESET}`
        return padded
      })
      .join('  ')
      .trimEnd(),
  )
  const summary = [
    `${services.length} ${services.length === 1 ? 'service' : 'services'}`,
    `${healthyAll}/${totalAll} endpoints healthy`,
    ...(stale > 0 ? [`${stale} stale`] : []),
    ...(panic > 0 ? [`${panic} in panic`] : []),
  ].join(', ')
  return `${lines.join('\n')}\n\n${summary}\n`
}
