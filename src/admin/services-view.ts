import type { Host } from '../cluster/host.ts'
import { flagNames } from '../cluster/host.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import type { PoliciesView } from '../policies/policies.ts'

/** One endpoint as `/api/services` shows it (the contract's field names). */
export interface EndpointView {
  address: string
  port: number
  weight: number
  healthy: boolean
  flags: string[]
  inFlight: number
  requests: number
  reasons: string[]
}

export interface ServiceView {
  name: string
  source: string
  strategy: string
  stale: boolean
  panic: boolean
  discovery: { lastUpdate: string | null; error: string | null; stalenessSeconds: number }
  endpoints: EndpointView[]
  /** One key per configured traffic policy (`circuitBreaker`, `rateLimit`); `{}` when none. */
  policies?: PoliciesView
  /** With `cache:` configured: entries, bytes, hits, misses, revalidated, hitRate. */
  cache?: Record<string, number>
}

function endpointView(host: Host): EndpointView {
  return {
    address: host.address,
    port: host.port,
    weight: host.weight,
    healthy: host.routable,
    flags: flagNames(host.flags),
    inFlight: host.inFlight,
    requests: host.requests,
    reasons: [...host.reasons.values()],
  }
}

/** The `/api/services` document: members first, then hosts still draining. */
export function serviceView(cluster: ServiceCluster, policies: PoliciesView = {}): ServiceView {
  const d = cluster.discovery
  const view: ServiceView = {
    name: cluster.name,
    source: cluster.config.source,
    strategy: cluster.config.strategy,
    stale: d.stale,
    panic: cluster.panic,
    discovery: {
      lastUpdate: d.lastUpdateMs === null ? null : new Date(d.lastUpdateMs).toISOString(),
      error: d.error,
      stalenessSeconds: cluster.stalenessSeconds(),
    },
    endpoints: [...cluster.hosts().map(endpointView), ...cluster.drainingHosts().map(endpointView)],
    policies,
  }
  return cluster.policies === null ? view : Object.assign(view, cluster.policies.view())
}
