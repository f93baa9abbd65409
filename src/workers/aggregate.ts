import { AggregatorRegistry } from 'prom-client'
import type { ServiceView } from '../admin/services-view.ts'
import { endpointKey } from '../discovery/types.ts'
import type { Metrics, WorkerServiceStats } from './protocol.ts'

/** What one worker answered to a `collect`. */
export interface WorkerReport {
  worker: number
  services: WorkerServiceStats[]
  metrics: Metrics | null
}

/**
 * Series the control plane owns: the primary runs discovery, active checks and reloads, so only its
 * values count. Workers export them too (their registry is the same code), at values that would be
 * double counted (`discovery_updates_total` once per worker per set) or meaningless, so theirs are
 * dropped. `outrigger_endpoints` and `outrigger_panic` are the primary's, recomputed with the
 * workers' ejections (see `mergeServices`).
 */
const CONTROL_METRICS = new Set([
  'outrigger_discovery_updates_total',
  'outrigger_discovery_errors_total',
  'outrigger_discovery_staleness_seconds',
  'outrigger_health_checks_total',
  'outrigger_config_reloads_total',
  'outrigger_config_last_reload_successful',
  'outrigger_config_last_reload_success_timestamp_seconds',
  'outrigger_endpoints',
  'outrigger_panic',
])

/** prom-client's default metrics: every process has its own, aggregated by their own rules (CPU and memory summed). */
function isProcessMetric(name: string): boolean {
  return name.startsWith('outrigger_process_') || name.startsWith('outrigger_nodejs_')
}

const FLAG_ORDER = ['failed_active_check', 'ejected', 'draining', 'slow_start']

/** Sums numbers, ORs booleans, recursively; the first value wins for anything else. */
function sumViews(views: unknown[]): unknown {
  const first = views[0]
  if (typeof first === 'number') return views.reduce((a: number, v) => a + (typeof v === 'number' ? v : 0), 0)
  if (typeof first === 'boolean') return views.some((v) => v === true)
  if (typeof first !== 'object' || first === null || Array.isArray(first)) return first
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(first)) out[key] = sumViews(views.map((v) => (v as Record<string, unknown> | null)?.[key]))
  // A ratio does not sum: the cache's hit rate is recomputed from the summed counts.
  if (typeof out.hitRate === 'number' && typeof out.hits === 'number' && typeof out.misses === 'number') {
    const total = out.hits + out.misses + (typeof out.revalidated === 'number' ? out.revalidated : 0)
    out.hitRate = total === 0 ? 0 : out.hits / total
  }
  return out
}

/**
 * `/api/services` over all processes. The primary's view gives membership, discovery status and
 * active-check health; each worker adds its in-flight and request counts (summed) and its passive
 * ejections: an endpoint ejected by any worker shows `ejected`, with that worker's reason, and is not
 * `healthy` (the other workers may still send to it). Traffic-policy and cache state is summed over
 * the workers, whose shares of the limits add up to the configured ones.
 */
export function mergeServices(primary: readonly ServiceView[], reports: readonly WorkerReport[]): ServiceView[] {
  return primary.map((view) => {
    const stats = reports.flatMap((r) => r.services.filter((s) => s.name === view.name).map((s) => ({ worker: r.worker, s })))
    const byKey = new Map<string, Array<{ worker: number; inFlight: number; requests: number; ejected: string | null }>>()
    for (const { worker, s } of stats) {
      for (const e of s.endpoints) {
        let list = byKey.get(e.key)
        if (list === undefined) byKey.set(e.key, (list = []))
        list.push({ worker, ...e })
      }
    }
    const endpoints = view.endpoints.map((e) => {
      const counts = byKey.get(endpointKey(e.address, e.port)) ?? []
      const ejected = counts.filter((c) => c.ejected !== null)
      const flags = ejected.length === 0 || e.flags.includes('ejected') ? e.flags : FLAG_ORDER.filter((f) => f === 'ejected' || e.flags.includes(f))
      return {
        ...e,
        healthy: e.healthy && ejected.length === 0,
        flags,
        inFlight: counts.reduce((a, c) => a + c.inFlight, 0),
        requests: counts.reduce((a, c) => a + c.requests, 0),
        reasons: [...e.reasons, ...ejected.map((c) => `worker ${c.worker}: ${c.ejected}`)],
      }
    })
    const merged: ServiceView = { ...view, panic: view.panic || stats.some(({ s }) => s.panic), endpoints }
    if (stats.length > 0) {
      for (const key of ['policies', 'cache'] as const) {
        const parts = stats.map(({ s }) => s.extra[key]).filter((p) => p !== undefined)
        if (parts.length > 0) Object.assign(merged, { [key]: sumViews(parts) })
      }
    }
    return merged
  })
}

/** The values of `outrigger_endpoints` and `outrigger_panic` over the merged views (see `updateEndpointGauge`). */
function endpointGauges(services: readonly ServiceView[]): Record<'outrigger_endpoints' | 'outrigger_panic', Metrics[number]['values']> {
  const endpoints: Metrics[number]['values'] = []
  const panic: Metrics[number]['values'] = []
  for (const s of services) {
    const n = { healthy: 0, unhealthy: 0, ejected: 0 }
    for (const e of s.endpoints) {
      if (e.flags.includes('draining')) continue
      if (e.flags.includes('ejected')) n.ejected++
      else if (e.flags.includes('failed_active_check')) n.unhealthy++
      else n.healthy++
    }
    for (const state of ['healthy', 'unhealthy', 'ejected'] as const) endpoints.push({ value: n[state], labels: { service: s.name, state } })
    panic.push({ value: s.panic ? 1 : 0, labels: { service: s.name } })
  }
  return { outrigger_endpoints: endpoints, outrigger_panic: panic }
}

/**
 * `/metrics` over all processes, with prom-client's AggregatorRegistry: data-plane series (requests,
 * attempts, retries, in flight, ejections, policies, cache) summed over the workers; control-plane
 * series from the primary alone; process metrics from every process. A worker that did not answer
 * in time is missing from the sums until the next scrape.
 */
export async function mergeMetrics(primary: Metrics, reports: readonly WorkerReport[], services: readonly ServiceView[]): Promise<{ contentType: string; body: string }> {
  const gauges = endpointGauges(services)
  const own = primary
    .filter((m) => CONTROL_METRICS.has(m.name) || isProcessMetric(m.name))
    .map((m) => (m.name === 'outrigger_endpoints' || m.name === 'outrigger_panic' ? { ...m, values: gauges[m.name] } : m))
  const parts: Metrics[] = [own]
  for (const r of reports) if (r.metrics !== null) parts.push(r.metrics.filter((m) => !CONTROL_METRICS.has(m.name)))
  const registry = AggregatorRegistry.aggregate(parts)
  return { contentType: registry.contentType, body: await registry.metrics() }
}
