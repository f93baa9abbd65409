import type { ServiceConfig } from '../config/types.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import type { ServiceMetrics } from '../observability/metrics.ts'
import type { HashKeyReader } from './hash-key.ts'
import type { OutlierDetector } from '../health/outlier.ts'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ServicePolicies } from '../policies/policies.ts'

/** A sticky cookie as set on responses: `name=<host token>; <attributes>`. */
export interface StickyCookie {
  readonly name: string
  /** `Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`, built once. */
  readonly attributes: string
}

/**
 * One request's view of a response cache (src/policies/cache.ts), driven by the Exchange. Hooks are
 * called in this order: `answer` once before any upstream attempt; then, for the attempt that
 * answers, `onResponseStart`, `onResponseData` per chunk, `onResponseEnd` only when the whole
 * response reached the client. An attempt that fails or is aborted just stops calling.
 */
export interface ResponseTap {
  /** Answers from the cache without the upstream; returns the status written, or 0 to forward. */
  answer(res: ServerResponse): number
  /**
   * The upstream's status and the client-bound headers (may be appended to). Returns the status of
   * an answer it wrote itself (a 304 that revalidated a stored response), or 0 to stream the
   * upstream's response as usual.
   */
  onResponseStart(status: number, headers: string[], res: ServerResponse): number
  onResponseData(chunk: Buffer): void
  onResponseEnd(): void
  /** Extra headers on the proxy's own error answers. */
  readonly errorHeaders: Readonly<Record<string, string>>
}

/** A service's response cache as the data path sees it. */
export interface ResponseCacheHook {
  /** Starts one request: may rewrite `headers` (the upstream request headers) for a revalidation. */
  begin(req: IncomingMessage, path: string, host: string, headers: string[]): ResponseTap
}

/**
 * Everything the data path needs about one service, resolved once per config load. The traffic
 * policies (`circuitBreaker`, `rateLimit`; null when not configured) come from `createPolicies`;
 * `cache` and upstream TLS from `createServicePolicies`.
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
  /** Response cache; null when `cache` is not configured. */
  readonly cache: ResponseCacheHook | null
  /** Stops what the policies run in the background (certificate watching, cache metrics); idempotent. */
  readonly closePolicies: () => void
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
