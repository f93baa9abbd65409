import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import fc from 'fast-check'
import type { PendingRequest } from '../../src/policies/circuit-breaker.ts'
import { Admission, CircuitBreaker } from '../../src/policies/circuit-breaker.ts'

/** Fake monotonic clock moved together with node's mocked timers. */
let nowMs = 0
const now = (): number => nowMs
function advance(ms: number): void {
  nowMs += ms
  mock.timers.tick(ms)
}

/** A request that records how the breaker called it back. */
class Waiter implements PendingRequest {
  readonly calls: string[] = []
  readonly name: string
  readonly log: string[]
  constructor(name: string, log: string[]) {
    this.name = name
    this.log = log
  }
  onSlot(): void {
    this.calls.push('slot')
    this.log.push(`${this.name}:slot`)
  }
  onPendingTimeout(): void {
    this.calls.push('timeout')
    this.log.push(`${this.name}:timeout`)
  }
}

function counter(): { inc(): void; count: number } {
  const c = { count: 0, inc: () => void c.count++ }
  return c
}

describe('CircuitBreaker', () => {
  beforeEach(() => {
    nowMs = 0
    mock.timers.enable({ apis: ['setTimeout'] })
  })
  afterEach(() => mock.timers.reset())

  it('admits maxRequests, queues maxPending, refuses the rest at once', () => {
    const rejections = counter()
    const breaker = new CircuitBreaker({ maxRequests: 2, maxPending: 1 }, 1000, rejections, now)
    const log: string[] = []
    const w = (n: string): Waiter => new Waiter(n, log)
    assert.equal(breaker.acquire(w('a')), Admission.ADMITTED)
    assert.equal(breaker.acquire(w('b')), Admission.ADMITTED)
    assert.equal(breaker.acquire(w('c')), Admission.PENDING)
    assert.equal(breaker.acquire(w('d')), Admission.REJECTED)
    assert.deepEqual(breaker.view(), { maxRequests: 2, maxPending: 1, inFlight: 2, pending: 1, rejected: 1, open: true })
    assert.equal(rejections.count, 1)
    assert.deepEqual(log, [], 'nothing is called back synchronously from acquire')
  })

  it('hands a freed slot to the oldest waiter, first in first out, and nobody overtakes a waiter', () => {
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 3 }, 1000, null, now)
    const log: string[] = []
    assert.equal(breaker.acquire(new Waiter('a', log)), Admission.ADMITTED)
    for (const n of ['b', 'c', 'd']) assert.equal(breaker.acquire(new Waiter(n, log)), Admission.PENDING)
    breaker.release()
    assert.deepEqual(log, ['b:slot'])
    assert.equal(breaker.inFlight, 1, 'the slot passed on, not freed')
    assert.equal(breaker.pending, 2)
    breaker.release()
    breaker.release()
    assert.deepEqual(log, ['b:slot', 'c:slot', 'd:slot'])
    breaker.release()
    assert.deepEqual({ inFlight: breaker.inFlight, pending: breaker.pending }, { inFlight: 0, pending: 0 })
  })

  it('with maxPending 0 never queues', () => {
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 0 }, 1000, null, now)
    const log: string[] = []
    assert.equal(breaker.acquire(new Waiter('a', log)), Admission.ADMITTED)
    assert.equal(breaker.acquire(new Waiter('b', log)), Admission.REJECTED)
    assert.equal(breaker.view().open, true)
    breaker.release()
    assert.equal(breaker.view().open, false)
    assert.equal(breaker.acquire(new Waiter('c', log)), Admission.ADMITTED)
  })

  it('a cancelled waiter leaves the queue and is never called back', () => {
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 2 }, 1000, null, now)
    const log: string[] = []
    const a = new Waiter('a', log)
    const b = new Waiter('b', log)
    const c = new Waiter('c', log)
    breaker.acquire(a)
    breaker.acquire(b)
    breaker.acquire(c)
    breaker.cancel(b)
    assert.equal(breaker.pending, 1)
    assert.equal(breaker.acquire(new Waiter('d', log)), Admission.PENDING, 'the cancelled place is free again')
    breaker.release()
    assert.deepEqual(log, ['c:slot'])
    advance(5000)
    assert.deepEqual(b.calls, [])
  })

  it('answers a request that waited longer than maxWaitMs, each at its own deadline', () => {
    const rejections = counter()
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 5 }, 1000, rejections, now)
    const log: string[] = []
    breaker.acquire(new Waiter('a', log))
    breaker.acquire(new Waiter('b', log))
    advance(400)
    breaker.acquire(new Waiter('c', log))
    advance(599)
    assert.deepEqual(log, [])
    advance(1)
    assert.deepEqual(log, ['b:timeout'])
    advance(399)
    assert.deepEqual(log, ['b:timeout'])
    advance(1)
    assert.deepEqual(log, ['b:timeout', 'c:timeout'])
    assert.deepEqual({ inFlight: breaker.inFlight, pending: breaker.pending, rejected: breaker.rejected }, { inFlight: 1, pending: 0, rejected: 2 })
    assert.equal(rejections.count, 2)
    breaker.release()
    assert.equal(breaker.inFlight, 0)
  })

  it('a waiter that fails at once on its slot passes the slot on (re-entrant release)', () => {
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 3 }, 1000, null, now)
    const log: string[] = []
    const failing: PendingRequest = {
      onSlot: () => {
        log.push('failing:slot')
        breaker.release()
      },
      onPendingTimeout: () => log.push('failing:timeout'),
    }
    breaker.acquire(new Waiter('a', log))
    breaker.acquire(failing)
    breaker.acquire(new Waiter('c', log))
    breaker.release()
    assert.deepEqual(log, ['failing:slot', 'c:slot'])
    assert.deepEqual({ inFlight: breaker.inFlight, pending: breaker.pending }, { inFlight: 1, pending: 0 })
  })

  it('close answers every waiter and refuses new waiters', () => {
    const breaker = new CircuitBreaker({ maxRequests: 1, maxPending: 3 }, 1000, null, now)
    const log: string[] = []
    breaker.acquire(new Waiter('a', log))
    breaker.acquire(new Waiter('b', log))
    breaker.acquire(new Waiter('c', log))
    breaker.close()
    assert.deepEqual(log, ['b:timeout', 'c:timeout'])
    assert.equal(breaker.acquire(new Waiter('d', log)), Admission.REJECTED)
    breaker.release()
    assert.equal(breaker.inFlight, 0)
  })

  it('refuses impossible settings with a RangeError', () => {
    assert.throws(() => new CircuitBreaker({ maxRequests: 0, maxPending: 0 }, 1000), RangeError)
    assert.throws(() => new CircuitBreaker({ maxRequests: 1, maxPending: -1 }, 1000), RangeError)
    assert.throws(() => new CircuitBreaker({ maxRequests: 1, maxPending: 0 }, 0), RangeError)
  })

  it('accounting: whatever happens, every request is answered once and the counts return to 0', () => {
    // Ops: a new request arrives, one holding a slot ends, a waiter's client leaves, time passes.
    const op = fc.oneof(
      fc.constant({ kind: 'arrive' as const }),
      fc.constant({ kind: 'finish' as const }),
      fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 700 }) }),
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 4 }), fc.array(op, { maxLength: 200 }), (maxRequests, maxPending, ops) => {
        mock.timers.reset()
        mock.timers.enable({ apis: ['setTimeout'] })
        nowMs = 0
        const breaker = new CircuitBreaker({ maxRequests, maxPending }, 1000, null, now)
        /** Requests holding a slot, and waiting ones, as the requests themselves see it. */
        let holding = 0
        const waiting = new Set<PendingRequest>()
        let answered = 0
        let arrived = 0
        const request = (): PendingRequest => {
          const r: PendingRequest = {
            onSlot: () => {
              assert.ok(waiting.delete(r), 'called back once, while waiting')
              holding++
            },
            onPendingTimeout: () => {
              assert.ok(waiting.delete(r), 'called back once, while waiting')
              answered++
            },
          }
          return r
        }
        for (const o of ops) {
          if (o.kind === 'arrive') {
            arrived++
            const r = request()
            const a = breaker.acquire(r)
            if (a === Admission.ADMITTED) holding++
            else if (a === Admission.PENDING) waiting.add(r)
            else answered++
          } else if (o.kind === 'finish' && holding > 0) {
            holding--
            answered++
            breaker.release()
          } else if (o.kind === 'cancel' && waiting.size > 0) {
            const r = [...waiting][o.pick % waiting.size]!
            waiting.delete(r)
            answered++
            breaker.cancel(r)
          } else if (o.kind === 'wait') {
            advance(o.ms)
          }
          assert.equal(breaker.inFlight, holding)
          assert.equal(breaker.pending, waiting.size)
          assert.ok(breaker.inFlight <= maxRequests && breaker.pending <= maxPending)
        }
        // The load goes away: every holder finishes (waiters get slots and finish in turn).
        while (holding > 0) {
          holding--
          answered++
          breaker.release()
        }
        assert.equal(waiting.size, 0)
        assert.deepEqual({ inFlight: breaker.inFlight, pending: breaker.pending }, { inFlight: 0, pending: 0 })
        assert.equal(answered, arrived)
      }),
      { numRuns: 300 },
    )
  })
})
