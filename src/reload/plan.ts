import { isDeepStrictEqual } from 'node:util'
import type { Config, ServiceConfig } from '../config/types.ts'

/**
 * What a reload does to one service. Two independent parts can change:
 * - the **cluster** (everything that shapes balancing, health, retries, timeouts, policies): a new
 *   cluster is built, seeded with the old one's endpoints so it routes at once, and the old one
 *   drains (Envoy replaces a cluster whose definition changed the same way);
 * - the **discovery selection** (source, registry name, tags, file, static list, and the registry's
 *   connection settings): a new adapter replaces the old one; otherwise the running adapter, with its
 *   open blocking query or watch, is handed to the new cluster, so a reload costs the registry nothing.
 * Routes and a dedicated `listen` are not part of the cluster: changing only those keeps the cluster
 * (its connections, health and ejection state) and rebuilds the router or moves the listener.
 */
export interface ServicePlan {
  name: string
  kind: 'added' | 'removed' | 'changed' | 'unchanged'
  /** `changed` only: build a new cluster (else the running one is kept). */
  rebuildCluster: boolean
  /** `changed` only: start a new discovery adapter (else the running one is handed over). */
  restartDiscovery: boolean
  /** `changed` only: the routes differ (the shared listener gets a new router). */
  reroute: boolean
  /** `changed` only: the dedicated listen address was added, removed or moved. */
  relisten: boolean
}

export interface ReloadPlan {
  services: ServicePlan[]
  /** The shared listener moves to another address. */
  relistenShared: boolean
  /** The admin listener moves to another address. */
  relistenAdmin: boolean
  /** `register` differs: deregister with the old settings, register with the new. */
  reregister: boolean
  /** `discovery.stateDir` differs. */
  restateDir: boolean
  /** Nothing at all differs. */
  noop: boolean
}

/** The fields of a service that choose which endpoints discovery delivers. */
function discoverySelection(s: ServiceConfig, config: Config): unknown {
  return {
    source: s.source,
    serviceName: s.serviceName,
    tags: s.tags,
    path: s.path,
    endpoints: s.endpoints,
    registry: s.source === 'consul' ? config.discovery.consul : s.source === 'etcd' ? config.discovery.etcd : null,
  }
}

/** The fields of a service that its cluster and data path are built from: all but routes and listen. */
function clusterShape(s: ServiceConfig): unknown {
  const { routes: _routes, listen: _listen, ...rest } = s
  return rest
}

export function planReload(prev: Config, next: Config): ReloadPlan {
  const before = new Map(prev.services.map((s) => [s.name, s]))
  const after = new Map(next.services.map((s) => [s.name, s]))
  const services: ServicePlan[] = []
  const none = { rebuildCluster: false, restartDiscovery: false, reroute: false, relisten: false }
  for (const s of next.services) {
    const old = before.get(s.name)
    if (old === undefined) {
      services.push({ name: s.name, kind: 'added', ...none, rebuildCluster: true, restartDiscovery: true, reroute: true, relisten: s.listen !== undefined })
      continue
    }
    const rebuildCluster = !isDeepStrictEqual(clusterShape(old), clusterShape(s))
    const restartDiscovery = !isDeepStrictEqual(discoverySelection(old, prev), discoverySelection(s, next))
    const reroute = !isDeepStrictEqual(old.routes, s.routes)
    const relisten = !isDeepStrictEqual(old.listen, s.listen)
    const changed = rebuildCluster || restartDiscovery || reroute || relisten
    services.push({ name: s.name, kind: changed ? 'changed' : 'unchanged', rebuildCluster, restartDiscovery, reroute, relisten })
  }
  for (const s of prev.services) {
    if (!after.has(s.name)) services.push({ name: s.name, kind: 'removed', ...none, reroute: true, relisten: s.listen !== undefined })
  }
  const relistenShared = !isDeepStrictEqual(prev.listen, next.listen)
  const relistenAdmin = !isDeepStrictEqual(prev.admin, next.admin)
  const reregister = !isDeepStrictEqual(prev.register, next.register)
  const restateDir = prev.discovery.stateDir !== next.discovery.stateDir
  const noop = isDeepStrictEqual(prev, next)
  return { services, relistenShared, relistenAdmin, reregister, restateDir, noop }
}

/** `added: a, b; changed: c; removed: d` for the log line of a reload. */
export function summarize(plan: ReloadPlan): Record<'added' | 'changed' | 'removed' | 'unchanged', string[]> {
  const out = { added: [] as string[], changed: [] as string[], removed: [] as string[], unchanged: [] as string[] }
  for (const s of plan.services) out[s.kind].push(s.name)
  return out
}
