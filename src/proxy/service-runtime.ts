import type { ServiceConfig } from '../config/types.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import type { ServiceMetrics } from '../observability/metrics.ts'

/** Everything the data path needs about one service, resolved once per config load. */
export interface ServiceRuntime {
  readonly name: string
  readonly config: ServiceConfig
  readonly cluster: ServiceCluster
  readonly metrics: ServiceMetrics
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
