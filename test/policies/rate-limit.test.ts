import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TokenBucket } from '../../src/policies/rate-limit.ts'

/** A monotonic clock the test moves by hand (ms). */
function fakeClock(): { now: () => number; advance(ms: number): void } {
  let ms = 1000
  return { now: () => ms, advance: (d) => void (ms += d) }
}

function counter(): { inc(): void; count: number } {
  const c = { count: 0, inc: () => void c.count++ }
  return c
}

/** Takes tokens until one is refused; returns how many went through. */
function drain(bucket: TokenBucket): number {
  let n = 0
  while (bucket.take() === 0) n++
  return n
}

describe('TokenBucket', () => {
  it('starts full: burst requests go at once, the next is refused', () => {
    const clock = fakeClock()
    const rejections = counter()
    const bucket = new TokenBucket({ requestsPerSecond: 10, burst: 5 }, rejections, clock.now)
    assert.equal(drain(bucket), 5)
    assert.equal(bucket.rejected, 1)
    assert.equal(rejections.count, 1)
  })

  it('refills at the rate, lazily, and never above burst', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket({ requestsPerSecond: 10, burst: 5 }, null, clock.now)
    drain(bucket)
    clock.advance(99)
    assert.notEqual(bucket.take(), 0, '0.99 tokens after 99 ms at 10/s')
    clock.advance(1)
    assert.equal(bucket.take(), 0, 'a whole token after 100 ms')
    assert.notEqual(bucket.take(), 0)
    clock.advance(350)
    assert.equal(drain(bucket), 3, '3.5 tokens after 350 ms')
    clock.advance(60_000)
    assert.equal(bucket.tokens, 5, 'capped at burst after a long idle time')
    assert.equal(drain(bucket), 5)
  })

  it('answers Retry-After as whole seconds until the next token, at least 1', () => {
    const table: ReadonlyArray<[rate: number, elapsedMs: number, seconds: number]> = [
      [10, 0, 1], // 0.1 s to a token: rounded up to 1
      [1, 0, 1], // exactly 1 s
      [0.5, 0, 2], // 2 s per token
      [0.1, 0, 10],
      [0.1, 5000, 5], // half a token already back
      [0.1, 9999, 1],
    ]
    for (const [rate, elapsedMs, seconds] of table) {
      const clock = fakeClock()
      const bucket = new TokenBucket({ requestsPerSecond: rate, burst: 1 }, null, clock.now)
      assert.equal(bucket.take(), 0)
      clock.advance(elapsedMs)
      assert.equal(bucket.take(), seconds, `rate ${rate}/s after ${elapsedMs} ms`)
    }
  })

  it('holds the long-run rate: over 10 s at 100/s with burst 20, 1,020 requests go', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket({ requestsPerSecond: 100, burst: 20 }, null, clock.now)
    let admitted = 0
    // Ten requests every millisecond: far more than the rate.
    for (let ms = 0; ms < 10_000; ms++) {
      for (let i = 0; i < 10; i++) if (bucket.take() === 0) admitted++
      clock.advance(1)
    }
    assert.ok(admitted >= 1019 && admitted <= 1020, `${admitted}`)
  })

  it('ignores a clock that goes backwards', () => {
    let ms = 5000
    const bucket = new TokenBucket({ requestsPerSecond: 1, burst: 1 }, null, () => ms)
    assert.equal(bucket.take(), 0)
    ms = 1000
    assert.notEqual(bucket.take(), 0)
    ms = 5999
    assert.notEqual(bucket.take(), 0, 'the time going back is not counted as elapsed')
    ms = 6000
    assert.equal(bucket.take(), 0)
  })

  it('shows its state for /api/services', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket({ requestsPerSecond: 2, burst: 3 }, null, clock.now)
    bucket.take()
    bucket.take()
    clock.advance(250)
    assert.deepEqual(bucket.view(), { requestsPerSecond: 2, burst: 3, tokens: 1.5, rejected: 0 })
  })

  it('refuses impossible settings with a RangeError', () => {
    assert.throws(() => new TokenBucket({ requestsPerSecond: 0, burst: 1 }), RangeError)
    assert.throws(() => new TokenBucket({ requestsPerSecond: 1, burst: 0 }), RangeError)
    assert.throws(() => new TokenBucket({ requestsPerSecond: 1, burst: 1.5 }), RangeError)
  })
})
