import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { MIN_RETRIES_PER_SECOND, MIN_RETRY_BURST, RetryBudget } from '../../src/proxy/service-runtime.ts'

/** Retries the budget grants now, draining it. */
function drain(budget: RetryBudget): number {
  let n = 0
  while (budget.tryRetry()) n++
  return n
}

describe('RetryBudget', () => {
  it('starts with a burst of MIN_RETRY_BURST retries, then refuses while the clock stands still', () => {
    const budget = new RetryBudget(20, () => 1_000_000)
    assert.equal(MIN_RETRY_BURST, 10)
    assert.equal(drain(budget), MIN_RETRY_BURST)
    assert.equal(budget.tryRetry(), false)
  })

  it('earns budgetPercent of a retry per request', () => {
    const budget = new RetryBudget(25, () => 0)
    drain(budget)
    // 100 requests with 100 in flight earn 25 retries (a percentage exact in binary).
    for (let i = 0; i < 100; i++) budget.onRequest(100)
    assert.equal(drain(budget), 25)
  })

  it('holds at most max(MIN_RETRY_BURST, requests in flight)', () => {
    const budget = new RetryBudget(50, () => 0)
    drain(budget)
    for (let i = 0; i < 1000; i++) budget.onRequest(1)
    assert.equal(drain(budget), MIN_RETRY_BURST, 'a quiet service keeps the minimum burst')
    for (let i = 0; i < 1000; i++) budget.onRequest(300)
    assert.equal(drain(budget), 300, 'a busy one can retry every request in flight at once')
  })

  it('refills an empty budget at MIN_RETRIES_PER_SECOND, up to MIN_RETRY_BURST', () => {
    let now = 0
    const budget = new RetryBudget(0, () => now)
    drain(budget)
    now += 1000
    assert.equal(drain(budget), MIN_RETRIES_PER_SECOND)
    now += 3_600_000
    assert.equal(drain(budget), MIN_RETRY_BURST)
  })

  it('over any sequence, retries ≤ budgetPercent of requests + the floor (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.array(fc.record({ requests: fc.integer({ min: 0, max: 50 }), inFlight: fc.integer({ min: 1, max: 200 }), retries: fc.integer({ min: 0, max: 60 }), advanceMs: fc.integer({ min: 0, max: 2000 }) }), { maxLength: 50 }),
        (percent, steps) => {
          let now = 0
          const budget = new RetryBudget(percent, () => now)
          let requests = 0
          let granted = 0
          let maxInFlight = MIN_RETRY_BURST
          for (const s of steps) {
            now += s.advanceMs
            for (let i = 0; i < s.requests; i++) budget.onRequest(s.inFlight)
            requests += s.requests
            if (s.inFlight > maxInFlight) maxInFlight = s.inFlight
            for (let i = 0; i < s.retries; i++) if (budget.tryRetry()) granted++
          }
          const bound = (percent / 100) * requests + maxInFlight + (now / 1000) * MIN_RETRIES_PER_SECOND + 1e-9
          assert.ok(granted <= bound, `${granted} retries granted for ${requests} requests at ${percent}% over ${now} ms`)
        },
      ),
      { numRuns: 300 },
    )
  })
})
