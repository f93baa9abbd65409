import type { ServiceConfig } from '../config/types.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { CircuitBreakerView } from './circuit-breaker.ts'
import { CircuitBreaker } from './circuit-breaker.ts'
import type { RateLimitView } from './rate-limit.ts'
import { TokenBucket } from './rate-limit.ts'

/** A service's traffic policies; each null when not configured, so the data path pays a null check. */
export interface ServicePolicies {
  readonly circuitBreaker: CircuitBreaker | null
  readonly rateLimit: TokenBucket | null
}

/** The `policies` member of a service in `/api/services`: one key per configured policy. */
export interface PoliciesView {
  circuitBreaker?: CircuitBreakerView
  rateLimit?: RateLimitView
}

/**
 * Builds a service's policies once per config load (a reload builds new ones: counts start again).
 * Rejection counters are bound here, once, and exported at 0 from the start.
 */
export function createPolicies(config: ServiceConfig, metrics: Metrics): ServicePolicies {
  const service = config.name
  let circuitBreaker: CircuitBreaker | null = null
  if (config.circuitBreaker !== undefined) {
    const rejections = metrics.bind(metrics.policyRejections, { service, policy: 'circuit_breaker' })
    rejections.inc(0)
    // A waiting request waits for a connection slot, so it waits no longer than a connect may take.
    circuitBreaker = new CircuitBreaker(config.circuitBreaker, config.timeouts.connectMs, rejections)
  }
  let rateLimit: TokenBucket | null = null
  if (config.rateLimit !== undefined) {
    const rejections = metrics.bind(metrics.policyRejections, { service, policy: 'rate_limit' })
    rejections.inc(0)
    rateLimit = new TokenBucket(config.rateLimit, rejections)
  }
  return { circuitBreaker, rateLimit }
}

export function policiesView(policies: ServicePolicies): PoliciesView {
  const view: PoliciesView = {}
  if (policies.circuitBreaker !== null) view.circuitBreaker = policies.circuitBreaker.view()
  if (policies.rateLimit !== null) view.rateLimit = policies.rateLimit.view()
  return view
}

/** Releases what the policies hold (the breaker's timer and waiting requests); idempotent. */
export function closeTrafficLimits(policies: ServicePolicies): void {
  policies.circuitBreaker?.close()
}
