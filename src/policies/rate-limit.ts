/**
 * A local token bucket per service (`rateLimit: { requestsPerSecond, burst }`).
 *
 * No timers: the bucket is refilled lazily from a monotonic clock whenever a request asks for a
 * token, so an idle service costs nothing and the wall clock jumping (NTP, suspend) cannot empty or
 * overfill it. `take()` neither allocates nor throws; it is the only call on the data path.
 */

import type { Counter, MonotonicClock } from './types.ts'
import { monotonicNow } from './types.ts'

export interface RateLimitSettings {
  requestsPerSecond: number
  burst: number
}

export interface RateLimitView {
  requestsPerSecond: number
  burst: number
  /** Tokens in the bucket now (fractional while refilling). */
  tokens: number
  /** Requests answered 429 since start. */
  rejected: number
}

export class TokenBucket {
  readonly requestsPerSecond: number
  readonly burst: number
  readonly #tokensPerMs: number
  readonly #now: MonotonicClock
  #tokens: number
  #lastMs: number
  /** Requests refused since start. */
  rejected = 0

  /** Counts refusals in `outrigger_policy_rejections_total`; bound once per service. */
  readonly #rejections: Counter | null

  constructor(settings: RateLimitSettings, rejections: Counter | null = null, now: MonotonicClock = monotonicNow) {
    if (!(settings.requestsPerSecond > 0)) throw new RangeError('requestsPerSecond must be greater than 0')
    if (!Number.isInteger(settings.burst) || settings.burst < 1) throw new RangeError('burst must be an integer of at least 1')
    this.requestsPerSecond = settings.requestsPerSecond
    this.burst = settings.burst
    this.#tokensPerMs = settings.requestsPerSecond / 1000
    this.#now = now
    this.#rejections = rejections
    // A new bucket starts full: a (re)started sidecar must not refuse its first burst.
    this.#tokens = settings.burst
    this.#lastMs = now()
  }

  /**
   * Takes one token. Returns 0 when the request may go, else the whole seconds until a token will
   * be there (rounded up, at least 1): the value of the 429's `Retry-After`.
   */
  take(): number {
    this.#refill()
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      return 0
    }
    this.rejected++
    this.#rejections?.inc()
    const seconds = Math.ceil((1 - this.#tokens) / this.requestsPerSecond)
    return seconds > 1 ? seconds : 1
  }

  /** Tokens available now (for `/api/services`). */
  get tokens(): number {
    this.#refill()
    return this.#tokens
  }

  view(): RateLimitView {
    return { requestsPerSecond: this.requestsPerSecond, burst: this.burst, tokens: Math.floor(this.tokens * 100) / 100, rejected: this.rejected }
  }

  #refill(): void {
    const now = this.#now()
    const elapsedMs = now - this.#lastMs
    // A clock that did not move adds nothing; one going backwards (a fake one) keeps the old origin.
    if (elapsedMs <= 0) return
    this.#lastMs = now
    const tokens = this.#tokens + elapsedMs * this.#tokensPerMs
    this.#tokens = tokens < this.burst ? tokens : this.burst
  }
}
