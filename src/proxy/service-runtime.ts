import type { ServiceConfig } from '../config/types.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import type { ServiceMetrics } from '../observability/metrics.ts'
import type { HashKeyReader } from './hash-key.ts'
import type { OutlierDetector } from '../health/outlier.ts'
import type { ServicePolicies } from '../policies/policies.ts'

/** A sticky cookie as set on responses: `name=<host token>; <attributes>`. */
export interface StickyCookie {
  readonly name: string
  /** `Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`, built once. */
  readonly attributes: string
}

/**
 * Everything the data path needs about one service, resolved once per config load. The traffic
 * policies (`circuitBreaker`, `rateLimit`; null when not configured) come from `createPolicies`.
 */
export interface ServiceRuntime extends ServicePolicies {
  readonly name: string
  readonly config: ServiceConfig
  readonly cluster: ServiceCluster
  readonly metrics: ServiceMetrics
  /** Reads the request's hash key; null unless the strategy is consistent-hash. */
  readonly hashKey: HashKeyReader | null
  /** Set when `stickyCookie` is configured (with `hashKey: cookie:NAME`). */
  readonly stickyCookie: StickyCookie | null
  /** Passive health checking; null when `healthCheck.passive` is not configured. */
  readonly outlier: OutlierDetector | null
  /** Requests of this service being forwarded now. */
  inFlight: number
  /** Requests of this service currently on a retry attempt; the retry budget caps it. */
  retriesInFlight: number
}

/**
 * Envoy's retry budget: retries in progress may not exceed `budgetPercent` of the requests in
 * progress, with a floor so a quiet service can still retry. Cheap (two counters) and self-scaling:
 * when most of a fleet fails, retries stay a fixed fraction of traffic instead of multiplying it.
 */
export const MIN_RETRY_CONCURRENCY = 3

export function retryAllowed(service: ServiceRuntime): boolean {
  const budget = (service.config.retry.budgetPercent / 100) * service.inFlight
  return service.retriesInFlight < (budget > MIN_RETRY_CONCURRENCY ? budget : MIN_RETRY_CONCURRENCY)
}
