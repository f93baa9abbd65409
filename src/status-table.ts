import type { ServiceView } from './admin/services-view.ts'

/** `outrigger status`: one block per service, one row per endpoint, columns padded to fit. */
export function renderStatusTable(services: readonly ServiceView[]): string {
  if (services.length === 0) return 'no services\n'
  const rows: string[][] = [['SERVICE', 'STRATEGY', 'ENDPOINT', 'WEIGHT', 'HEALTH', 'IN-FLIGHT', 'REQUESTS', 'WHY']]
  for (const s of services) {
    const notes = [s.stale ? `stale ${Math.round(s.discovery.stalenessSeconds)}s` : '', s.panic ? 'panic' : ''].filter((x) => x !== '').join(', ')
    const name = notes === '' ? s.name : `${s.name} (${notes})`
    if (s.endpoints.length === 0) rows.push([name, s.strategy, '-', '-', s.discovery.lastUpdate === null ? 'waiting for discovery' : 'no endpoints', '-', '-', s.discovery.error ?? ''])
    for (const e of s.endpoints) {
      const health = e.healthy ? 'healthy' : 'unhealthy'
      rows.push([
        name,
        s.strategy,
        e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`,
        String(e.weight),
        e.flags.length > 0 ? `${health} (${e.flags.join(',')})` : health,
        String(e.inFlight),
        String(e.requests),
        e.reasons.join('; '),
      ])
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n'
}
