import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LARGE_READ_BYTES, copyRead, recycleRead } from '../../src/proxy/fast/read-copy.ts'

/** A stand-in for the shared read buffer, filled with `fill`. */
const shared = (fill: number): Buffer => Buffer.alloc(64 * 1024, fill)

describe('copies of client reads (read-copy.ts)', () => {
  it('copies the bytes read, small and large, into memory the caller may keep', () => {
    const small = copyRead(shared(1), 100)
    const large = copyRead(shared(2), 20_000)
    assert.equal(small.length, 100)
    assert.equal(large.length, 20_000)
    assert.ok(small.every((b) => b === 1))
    assert.ok(large.every((b) => b === 2))
  })

  it('gives a large copy handed back to the next large read, and only then', () => {
    const first = copyRead(shared(3), 16_000)
    recycleRead(first)
    const second = copyRead(shared(4), 12_000)
    assert.equal(second.buffer, first.buffer, 'the memory handed back serves the next large read')
    assert.ok(second.every((b) => b === 4))
    // Not handed back: the next large read gets memory of its own, and `second` keeps its bytes.
    const third = copyRead(shared(5), 12_000)
    assert.notEqual(third.buffer, second.buffer)
    assert.ok(second.every((b) => b === 4), 'a copy still held is never written over')
    assert.ok(third.every((b) => b === 5))
  })

  it('never takes back a copy that is not the one out, a small copy, or memory it did not make', () => {
    const older = copyRead(shared(6), 8_000)
    const newer = copyRead(shared(7), 8_000)
    recycleRead(older) // an older copy: its memory may still be held, as far as the recycler knows
    const next = copyRead(shared(8), 8_000)
    assert.notEqual(next.buffer, older.buffer)
    assert.ok(older.every((b) => b === 6))
    assert.ok(newer.every((b) => b === 7))

    const readBuffer = shared(9)
    recycleRead(readBuffer) // e.g. the shared read buffer itself
    recycleRead(copyRead(readBuffer, LARGE_READ_BYTES - 1)) // a small copy (from node's pool)
    const after = copyRead(shared(10), 8_000)
    assert.notEqual(after.buffer, readBuffer.buffer)
    assert.ok(readBuffer.every((b) => b === 9))
  })

  it('does not reuse memory too small for the read', () => {
    const small = copyRead(shared(11), LARGE_READ_BYTES)
    recycleRead(small)
    const big = copyRead(shared(12), 40_000)
    assert.notEqual(big.buffer, small.buffer)
    assert.equal(big.length, 40_000)
    assert.ok(big.every((b) => b === 12))
  })
})
