import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { formatDuration, MAX_DURATION_MS, parseDuration, parseSize } from '../../src/config/units.ts'

describe('parseDuration', () => {
  const valid: [string, number][] = [
    ['250ms', 250],
    ['5s', 5000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h1m1s1ms', 3_661_001],
    ['1.5s', 1500],
    ['.5s', 500],
    ['1.1s', 1100],
    ['0.25m', 15_000],
    ['0', 0],
    ['0s', 0],
    ['250', 250],
    ['1.5', 1.5],
    [' 5s ', 5000],
    ['596h', MAX_DURATION_MS],
  ]
  for (const [text, ms] of valid) {
    it(`"${text}" is ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms)
    })
  }

  it('takes a number as milliseconds', () => {
    assert.equal(parseDuration(0), 0)
    assert.equal(parseDuration(1500), 1500)
    assert.equal(parseDuration(0.5), 0.5)
  })

  it('does not cap the value itself: the schema checks the maximum', () => {
    assert.equal(parseDuration('1000h'), 3_600_000_000)
  })

  it('MAX_DURATION_MS is 596h, just below the 2^31-1 ms limit of Node timers', () => {
    assert.equal(MAX_DURATION_MS, 596 * 3_600_000)
    assert.ok(MAX_DURATION_MS <= 2 ** 31 - 1)
    assert.ok(MAX_DURATION_MS + 3_600_000 > 2 ** 31 - 1)
  })

  const invalid = ['', '   ', 'abc', '5 s', '5 seconds', '5S', '1d', '1.s', '1e3', 's', 'ms5', '5s!', '1m 30s', 'NaN', 'Infinity']
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)} with the expected form`, () => {
      assert.throws(() => parseDuration(text), {
        name: 'RangeError',
        message: `invalid duration "${text}": expected a number with a unit ms, s, m or h, like 250ms, 5s or 1m`,
      })
    })
  }

  it('rejects negative durations', () => {
    assert.throws(() => parseDuration('-1s'), { name: 'RangeError', message: 'invalid duration "-1s": must not be negative' })
    assert.throws(() => parseDuration(' -5'), { name: 'RangeError', message: 'invalid duration " -5": must not be negative' })
    assert.throws(() => parseDuration(-1), { name: 'RangeError', message: 'invalid duration -1: must not be negative' })
  })

  it('rejects non-finite numbers', () => {
    assert.throws(() => parseDuration(Number.POSITIVE_INFINITY), { message: 'invalid duration Infinity: must be a finite number of milliseconds' })
    assert.throws(() => parseDuration(Number.NaN), { message: 'invalid duration NaN: must be a finite number of milliseconds' })
  })
})

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [1, '1ms'],
    [250, '250ms'],
    [999, '999ms'],
    [0.5, '0.5ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [60_000, '1m'],
    [90_000, '1m30s'],
    [3_600_000, '1h'],
    [3_690_000, '1h1m30s'],
    [3_600_500, '1h0.5s'],
    [MAX_DURATION_MS, '596h'],
  ]
  for (const [ms, text] of cases) {
    it(`${ms} ms is "${text}"`, () => {
      assert.equal(formatDuration(ms), text)
    })
  }

  it('parseDuration reads back what formatDuration writes, for every whole number of ms up to the maximum', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
        assert.equal(parseDuration(formatDuration(ms)), ms)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('parseSize', () => {
  const valid: [string, number][] = [
    ['0', 0],
    ['512', 512],
    ['512B', 512],
    ['64KiB', 65_536],
    ['1MiB', 1_048_576],
    ['64MiB', 67_108_864],
    ['1GiB', 1_073_741_824],
    ['1TiB', 1_099_511_627_776],
    ['10KB', 10_000],
    ['10kB', 10_000],
    ['1MB', 1_000_000],
    ['1GB', 1_000_000_000],
    ['1TB', 1_000_000_000_000],
    ['1.5KiB', 1536],
    [' 64KiB ', 65_536],
  ]
  for (const [text, bytes] of valid) {
    it(`"${text}" is ${bytes} bytes`, () => {
      assert.equal(parseSize(text), bytes)
    })
  }

  it('takes a whole number as bytes', () => {
    assert.equal(parseSize(0), 0)
    assert.equal(parseSize(4096), 4096)
  })

  const invalid = ['', 'abc', '64 KiB', '64kib', '64K', '1PB', 'KiB', '1.5.5KiB']
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)} with the expected form`, () => {
      assert.throws(() => parseSize(text), {
        name: 'RangeError',
        message: `invalid size "${text}": expected a number with a unit B, KiB, MiB, GiB, KB, MB or GB, like 64KiB or 1MiB`,
      })
    })
  }

  it('rejects a fraction of a byte and sizes beyond the safe integers', () => {
    assert.throws(() => parseSize('1.5B'), { message: `invalid size "1.5B": must be a whole number of bytes (at most ${Number.MAX_SAFE_INTEGER})` })
    assert.throws(() => parseSize('9007199254740992'), { message: /must be a whole number of bytes \(at most 9007199254740991\)$/ })
    assert.throws(() => parseSize(1.5), { message: 'invalid size 1.5: must be a whole number of bytes' })
  })

  it('rejects negative and non-finite sizes', () => {
    assert.throws(() => parseSize('-1KiB'), { name: 'RangeError', message: 'invalid size "-1KiB": must not be negative' })
    assert.throws(() => parseSize(-1), { name: 'RangeError', message: 'invalid size -1: must not be negative' })
    assert.throws(() => parseSize(Number.POSITIVE_INFINITY), { message: 'invalid size Infinity: must be a finite number of bytes' })
  })
})
