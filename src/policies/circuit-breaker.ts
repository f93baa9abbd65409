/**
 * Per-service concurrency bounds (`circuitBreaker: { maxRequests, maxPending }`), after Envoy's
 * cluster circuit breakers.
 *
 * What "pending" means here. Envoy, for HTTP/1.1, puts a request on its pending list whenever no
 * upstream connection is free to take it at once (`max_connections` reached), and answers 503 once
 * that list holds `max_pending_requests`. Our forwarder speaks HTTP/1.1 with one request per
 * connection, so the equivalent of Envoy's connection slot is an in-flight slot: a request holds one
 * of `maxRequests` slots from its first dispatch until its response ends (across retries and
 * endpoints). A request that finds every slot taken waits, first in first out, in a queue of at most
 * `maxPending`; a finishing request hands its slot straight to the head of the queue. Beyond that,
 * and for a request that waited longer than the service's connect timeout (it was waiting for a
 * connection, after all), the answer is 503 `overloaded` at once. undici's own pool queue stays
 * empty: pools have `connections = maxConcurrent` and the picker never sends a host more than that,
 * so the breaker's queue is the only place a request can wait, and it is bounded.
 *
 * Cost: nothing for services without a breaker (the forwarder checks for null); with one, two
 * counter updates per request. The queue and its one timer are used only while requests wait.
 */

import type { Counter, MonotonicClock } from './types.ts'
import { monotonicNow } from './types.ts'

export interface CircuitBreakerSettings {
  maxRequests: number
  maxPending: number
}

/** A request that may have to wait for a slot. Called back at most once, never synchronously from `acquire`. */
export interface PendingRequest {
  /** A slot was handed over: dispatch now. The request holds the slot until it calls `release()`. */
  onSlot(): void
  /** Waited too long, or the breaker closed: answer 503 overloaded. The request holds no slot. */
  onPendingTimeout(): void
}

/** What `acquire` decided. */
export const Admission = {
  /** A slot is taken: dispatch now, `release()` when done. */
  ADMITTED: 0,
  /** Queued: `onSlot` or `onPendingTimeout` follows, or `cancel()` if the client leaves first. */
  PENDING: 1,
  /** Answer 503 overloaded; nothing to release. */
  REJECTED: 2,
} as const
export type Admission = (typeof Admission)[keyof typeof Admission]

export interface CircuitBreakerView {
  maxRequests: number
  maxPending: number
  /** Requests holding a slot now. */
  inFlight: number
  /** Requests waiting for a slot now. */
  pending: number
  /** Requests answered 503 overloaded by the breaker since start (queue full, or waited too long). */
  rejected: number
  /** True while a new request would be refused at once (every slot and every queue place taken). */
  open: boolean
}

/** Compact the queue's array once this many dead entries sit before its head. */
const COMPACT_AFTER = 64

export class CircuitBreaker {
  readonly maxRequests: number
  readonly maxPending: number
  /** Longest a request may wait in the queue (ms). */
  readonly maxWaitMs: number
  inFlight = 0
  pending = 0
  rejected = 0
  readonly #rejections: Counter | null
  readonly #now: MonotonicClock
  /** FIFO of waiting requests from `#head`; a cancelled one is left as null and skipped. */
  #queue: Array<PendingRequest | null> = []
  /** When each queued request arrived (ms, monotonic), parallel to `#queue`. */
  #queuedAt: number[] = []
  #head = 0
  #timer: NodeJS.Timeout | null = null
  #closed = false

  constructor(settings: CircuitBreakerSettings, maxWaitMs: number, rejections: Counter | null = null, now: MonotonicClock = monotonicNow) {
    if (!Number.isInteger(settings.maxRequests) || settings.maxRequests < 1) throw new RangeError('maxRequests must be an integer of at least 1')
    if (!Number.isInteger(settings.maxPending) || settings.maxPending < 0) throw new RangeError('maxPending must be an integer of at least 0')
    if (!(maxWaitMs > 0)) throw new RangeError('maxWaitMs must be greater than 0')
    this.maxRequests = settings.maxRequests
    this.maxPending = settings.maxPending
    this.maxWaitMs = maxWaitMs
    this.#rejections = rejections
    this.#now = now
  }

  /** A request arrives. Allocates nothing unless it has to wait. */
  acquire(request: PendingRequest): Admission {
    // Nobody overtakes a waiting request: a slot freed while others wait was already handed over.
    if (this.inFlight < this.maxRequests && this.pending === 0) {
      this.inFlight++
      return Admission.ADMITTED
    }
    if (this.pending < this.maxPending && !this.#closed) {
      this.pending++
      this.#queue.push(request)
      this.#queuedAt.push(this.#now())
      if (this.#timer === null) this.#arm()
      return Admission.PENDING
    }
    this.#reject()
    return Admission.REJECTED
  }

  /** A request that held a slot ended, however it ended. Hands the slot to the oldest waiter, if any. */
  release(): void {
    const next = this.pending > 0 ? this.#shift() : null
    if (next === null) {
      this.inFlight--
      return
    }
    // The slot passes straight on: inFlight is unchanged.
    next.onSlot()
  }

  /** A waiting request's client went away: it leaves the queue and will not be called back. */
  cancel(request: PendingRequest): void {
    const queue = this.#queue
    for (let i = this.#head; i < queue.length; i++) {
      if (queue[i] === request) {
        queue[i] = null
        this.pending--
        if (this.pending === 0) this.#reset()
        return
      }
    }
  }

  /** Stops the timer and answers every waiting request 503 (its service is going away). */
  close(): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    for (let next = this.#shift(); next !== null; next = this.#shift()) {
      this.#reject()
      next.onPendingTimeout()
    }
  }

  view(): CircuitBreakerView {
    return {
      maxRequests: this.maxRequests,
      maxPending: this.maxPending,
      inFlight: this.inFlight,
      pending: this.pending,
      rejected: this.rejected,
      open: this.inFlight >= this.maxRequests && this.pending >= this.maxPending,
    }
  }

  #reject(): void {
    this.rejected++
    this.#rejections?.inc()
  }

  /** The oldest live waiter, taken off the queue (pending decremented), or null. */
  #shift(): PendingRequest | null {
    const queue = this.#queue
    while (this.#head < queue.length) {
      const request = queue[this.#head] ?? null
      queue[this.#head] = null
      this.#head++
      if (request !== null) {
        this.pending--
        if (this.pending === 0) this.#reset()
        else if (this.#head >= COMPACT_AFTER && this.#head * 2 >= queue.length) this.#compact()
        return request
      }
    }
    this.#reset()
    return null
  }

  /** The queue is empty of live entries: drop the dead ones and the timer. */
  #reset(): void {
    this.#queue.length = 0
    this.#queuedAt.length = 0
    this.#head = 0
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
  }

  #compact(): void {
    this.#queue = this.#queue.slice(this.#head)
    this.#queuedAt = this.#queuedAt.slice(this.#head)
    this.#head = 0
  }

  /** One timer per breaker, due when the oldest live waiter's wait runs out. */
  #arm(): void {
    const queue = this.#queue
    let i = this.#head
    while (i < queue.length && queue[i] === null) i++
    if (i === queue.length) return
    const dueInMs = this.#queuedAt[i]! + this.maxWaitMs - this.#now()
    this.#timer = setTimeout(this.#expire, dueInMs > 1 ? dueInMs : 1)
    // A waiting request keeps its client connection open; the timer alone must not hold the process.
    this.#timer.unref()
  }

  readonly #expire = (): void => {
    this.#timer = null
    const deadline = this.#now() - this.maxWaitMs
    // `#shift` may compact or reset the queue, so read the fields afresh on every turn.
    while (this.#head < this.#queue.length) {
      const request = this.#queue[this.#head] ?? null
      if (request === null) {
        this.#head++
        continue
      }
      if (this.#queuedAt[this.#head]! > deadline) break
      this.#shift()
      this.#reject()
      request.onPendingTimeout()
    }
    if (this.pending > 0 && this.#timer === null) this.#arm()
  }
}
