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
  /** Caps retries at `retry.budgetPercent` of requests (see RetryBudget). */
  readonly retryBudget: RetryBudget
}

/** Retries always allowed in a burst, whatever the traffic, and refilled at this many per second. */
export const MIN_RETRY_BURST = 10
export const MIN_RETRIES_PER_SECOND = 3

/**
 * The retry budget: retries ≤ `budgetPercent` of requests, plus a small floor (the contract's
 * words), as a token bucket. Every request earns `budgetPercent / 100` of a retry; a retry spends
 * one. The bucket holds at most max(MIN_RETRY_BURST, requests in flight), so a burst of failures
 * (an endpoint dying with a share of the in-flight requests on it) can be retried at once, while
 * over any period retries stay within budgetPercent of that period's requests plus the bucket.
 * The floor: an empty bucket refills at MIN_RETRIES_PER_SECOND, so a quiet service can still retry.
 *
 * An earlier version capped retries *in flight* at budgetPercent of requests in flight (Envoy's
 * retry budget). Under 24 concurrent clients, killing one of three endpoints failed a few GETs:
 * the requests caught on it all retried at once, briefly above 20% of those in flight, before the
 * dead endpoint was ejected. Counting requests, not concurrency, absorbs that burst and still
 * bounds the extra load a sick fleet sees (integration/faults/retry.test.ts counts attempts).
 *
 * Costs one add and compare per request; the clock is read only when the bucket is empty.
 */
export class RetryBudget {
  readonly #earnedPerRequest: number
  #tokens = MIN_RETRY_BURST
  #refilledAtMs: number
  readonly #now: () => number

  constructor(budgetPercent: number, now: () => number = Date.now) {
    this.#earnedPerRequest = budgetPercent / 100
    this.#now = now
    this.#refilledAtMs = now()
  }

  /** A request started while `inFlight` requests (itself included) are in progress. */
  onRequest(inFlight: number): void {
    const cap = inFlight > MIN_RETRY_BURST ? inFlight : MIN_RETRY_BURST
    const t = this.#tokens + this.#earnedPerRequest
    this.#tokens = t > cap ? cap : t
  }

  /** Spends one retry; false when the budget is exhausted (then the request fails as it is). */
  tryRetry(): boolean {
    if (this.#tokens < 1) {
      const now = this.#now()
      const refill = ((now - this.#refilledAtMs) / 1000) * MIN_RETRIES_PER_SECOND
      this.#refilledAtMs = now
      // The floor's refill never fills the bucket beyond its minimum size.
      this.#tokens = Math.min(MIN_RETRY_BURST, this.#tokens + refill)
      if (this.#tokens < 1) return false
    }
    this.#tokens -= 1
    return true
  }

  /** Retries available now (for tests and the admin view). */
  get available(): number {
    return this.#tokens
  }
}
