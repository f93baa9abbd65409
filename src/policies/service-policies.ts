import type { Logger } from 'pino'
import type { Config, ServiceConfig } from '../config/types.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { ClusterPolicies } from '../cluster/service-cluster.ts'
import { ResponseCache } from './cache.ts'
import { TlsMaterialError, UpstreamTls } from './tls.ts'

/** The traffic policies of one service that this module builds (`tls`, `cache`). */
export interface TransportPolicies extends ClusterPolicies {
  /** Upstream TLS: every endpoint with `tls:`, else only endpoints discovery marks `scheme: https`. */
  readonly tls: UpstreamTls
  /** Null when `cache` is not configured: the data path then pays one null check. */
  readonly cache: ResponseCache | null
  /** Stops certificate watching and drops the cache and its metric series; idempotent. */
  readonly close: () => void
}

/**
 * Builds a service's policies once per config load. A certificate file that cannot be used is
 * reported through `fail(path, message)` (the sidecar's StartupError), naming the field.
 */
export function createServicePolicies(config: ServiceConfig, metrics: Metrics | null, logger: Logger, fail: (path: string, message: string) => Error): TransportPolicies {
  let tls: UpstreamTls
  try {
    tls = new UpstreamTls(config.name, config.tls, config.timeouts.connectMs, logger)
  } catch (err) {
    if (err instanceof TlsMaterialError) throw fail(err.path, err.message.slice(err.path.length + 2))
    throw err
  }
  const cache = config.cache === undefined ? null : new ResponseCache(config.name, config.cache, metrics)
  let closed = false
  return {
    tls,
    cache,
    view: () => (cache === null ? {} : { cache: cache.view() }),
    close: () => {
      if (closed) return
      closed = true
      tls.close()
      cache?.close()
    },
  }
}

/**
 * What `outrigger validate` adds to the schema's checks: certificate files that cannot be read or
 * do not load, as `<path>: <message>` lines. Empty when all is well.
 */
export function policyFileProblems(config: Config): string[] {
  const problems: string[] = []
  for (const s of config.services) {
    if (s.tls === undefined) continue
    const problem = UpstreamTls.check(s.name, s.tls)
    if (problem !== null) problems.push(problem)
  }
  return problems
}
