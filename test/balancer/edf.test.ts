import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import type { Dispatcher } from 'undici'
import { EdfPicker } from '../../src/balancer/edf.ts'
import type { PickContext, Picker } from '../../src/balancer/types.ts'
import { Host } from '../../src/cluster/host.ts'
import { prng } from '../support/prng.ts'

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

function makeHosts(names: readonly string[], maxConcurrent = 100): Host[] {
  return names.map((address) => new Host({ address, port: 80, weight: 1, meta: {} }, fakeDispatcher, maxConcurrent, 0))
}

function firstAttempt(): PickContext {
  return { hash: -1, stickyToken: null, tried: null }
}

/** An EDF picker whose random start phase is pinned to `random`. */
function edfWithPhase(t: TestContext, hosts: readonly Host[], weights: readonly number[], random: number): EdfPicker {
  const m = t.mock.method(Math, 'random', () => random)
  const picker = new EdfPicker(hosts, weights)
  m.mock.restore()
  return picker
}

/** Addresses of `count` successive picks (null as '-'). */
function pickSequence(picker: Picker, count: number, context: PickContext = firstAttempt()): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(picker.pick(context)?.address ?? '-')
  return out
}

function counts(sequence: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of sequence) out[s] = (out[s] ?? 0) + 1
  return out
}

function longestRun(sequence: readonly string[]): { name: string; length: number } {
  let best = { name: '', length: 0 }
  let run = 0
  for (let i = 0; i < sequence.length; i++) {
    run = i > 0 && sequence[i] === sequence[i - 1] ? run + 1 : 1
    if (run > best.length) best = { name: sequence[i]!, length: run }
  }
  return best
}


/** Start phases to pin, including both ends of [0, 1). */
const PHASES = [0, 0.1, 0.25, 0.381966, 0.5, 0.618034, 0.9, 0.999999]

describe('EdfPicker', () => {
  it('interleaves 5:1:1 smoothly', (t) => {
    const hosts = makeHosts(['a', 'b', 'c'])
    // Worked by hand from the deadlines: a every 0.2 from 0.1236, b at 0.236, c at 0.854, then +1.
    assert.deepEqual(pickSequence(edfWithPhase(t, hosts, [5, 1, 1], 0), 14), ['a', 'b', 'a', 'a', 'a', 'c', 'a', 'a', 'b', 'a', 'a', 'a', 'c', 'a'])

    const starts: Array<number | null> = [...PHASES, ...Array<null>(20).fill(null)]
    for (const random of starts) {
      const picker = random === null ? new EdfPicker(hosts, [5, 1, 1]) : edfWithPhase(t, hosts, [5, 1, 1], random)
      const sequence = pickSequence(picker, 700)
      assert.deepEqual(counts(sequence), { a: 500, b: 100, c: 100 }, `phase ${random}`)
      const run = longestRun(sequence)
      assert.ok(run.length <= 4, `phase ${random}: ${run.length} picks of ${run.name} in a row`)
      assert.equal(run.name, 'a')
    }
  })

  it('is a fixed rotation for equal weights', (t) => {
    const hosts = makeHosts(['a', 'b', 'c'])
    for (const random of [...PHASES, null, null, null]) {
      const picker = random === null ? new EdfPicker(hosts, [1, 1, 1]) : edfWithPhase(t, hosts, [1, 1, 1], random)
      const sequence = pickSequence(picker, 300)
      const cycle = sequence.slice(0, 3)
      assert.deepEqual([...cycle].sort(), ['a', 'b', 'c'], `phase ${random}: ${cycle.join('')}`)
      for (let i = 0; i < sequence.length; i++) assert.equal(sequence[i], cycle[i % 3], `phase ${random}, pick ${i}`)
    }
  })

  it('gives every host its weight share within two picks over any stretch', () => {
    const rand = prng(7)
    let worst = 0
    for (let trial = 0; trial < 30; trial++) {
      const n = 2 + Math.floor(rand() * 20)
      const weights = Array.from({ length: n }, () => 1 + Math.floor(rand() * 10))
      const total = weights.reduce((a, b) => a + b, 0)
      const hosts = makeHosts(weights.map((_, i) => `h${i}`))
      const index = new Map(hosts.map((h, i) => [h.address, i]))
      const sequence = pickSequence(new EdfPicker(hosts, weights), 1000).map((a) => index.get(a)!)
      for (const length of [7, 50, 333]) {
        for (let start = 0; start + length <= sequence.length; start += 11) {
          const got = new Array<number>(n).fill(0)
          for (let k = start; k < start + length; k++) got[sequence[k]!]!++
          for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - (length * weights[i]!) / total))
        }
      }
    }
    assert.ok(worst < 2, `a host was ${worst} picks off its share`)
  })

  it('skips a tried host without taking its turn: it is picked next', (t) => {
    const hosts = makeHosts(['a', 'b', 'c'])
    const [, b] = hosts as [Host, Host, Host]
    // Phase 0: deadlines a 0.618, b 0.236, c 0.854, so the order is b a c b a c ...
    assert.deepEqual(pickSequence(edfWithPhase(t, hosts, [1, 1, 1], 0), 6), ['b', 'a', 'c', 'b', 'a', 'c'])
    const picker = edfWithPhase(t, hosts, [1, 1, 1], 0)
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [b] })?.address, 'a')
    assert.deepEqual(pickSequence(picker, 6), ['b', 'c', 'b', 'a', 'c', 'b'])
  })

  it('keeps exact shares when retries skip hosts now and then', () => {
    const hosts = makeHosts(['a', 'b', 'c', 'd'])
    const picker = new EdfPicker(hosts, [4, 3, 2, 1])
    const rand = prng(11)
    const got = new Map<Host, number>()
    for (let i = 0; i < 10_000; i++) {
      // One pick in ten is a retry that excludes some other host.
      const tried = rand() < 0.1 ? [hosts[Math.floor(rand() * 4)]!] : null
      const host = picker.pick({ hash: -1, stickyToken: null, tried })
      assert.ok(host !== null && (tried === null || host !== tried[0]))
      got.set(host, (got.get(host) ?? 0) + 1)
    }
    for (const [i, h] of hosts.entries()) {
      const expected = (10_000 * (4 - i)) / 10
      assert.ok(Math.abs((got.get(h) ?? 0) - expected) <= 2, `${h.address}: ${got.get(h)} of ${expected}`)
    }
  })

  it('a host that was full keeps its turn but not a backlog: once free it is picked next, without a burst', (t) => {
    const hosts = makeHosts(['a', 'b', 'c'], 1)
    const [a, b, c] = hosts as [Host, Host, Host]
    const picker = edfWithPhase(t, hosts, [1, 1, 1], 0.3)
    b.inFlight = 1
    const whileFull = pickSequence(picker, 3000)
    assert.deepEqual(counts(whileFull), { a: 1500, c: 1500 })
    b.inFlight = 0
    assert.equal(picker.pick(firstAttempt()), b, 'its turn was kept')
    // The 3,000 turns it missed are not paid back in a burst: at most one period of catch-up.
    const next = pickSequence(picker, 9)
    assert.ok(counts(next).b! <= 4, `b took ${counts(next).b} of the next 9 picks`)
    const rest = pickSequence(picker, 2991)
    const after = counts(['b', ...next, ...rest])
    for (const h of [a, b, c]) assert.ok(Math.abs(after[h.address]! - 1000) <= 2, `${h.address}: ${after[h.address]} of 3,000 after recovery`)
  })

  it('returns null when every host is tried or full, and carries on unchanged afterwards', (t) => {
    const hosts = makeHosts(['a', 'b', 'c'], 1)
    const [a, b, c] = hosts as [Host, Host, Host]
    const reference = pickSequence(edfWithPhase(t, hosts, [3, 2, 1], 0.42), 12)
    const picker = edfWithPhase(t, hosts, [3, 2, 1], 0.42)
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [a, b, c] }), null)
    a.inFlight = 1
    b.inFlight = 1
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [c] }), null)
    a.inFlight = 0
    b.inFlight = 0
    assert.deepEqual(pickSequence(picker, 12), reference)
  })

  it('leaves out hosts with a zero, negative or NaN weight', () => {
    const hosts = makeHosts(['zero', 'negative', 'nan', 'two', 'one'])
    const picker = new EdfPicker(hosts, [0, -1, Number.NaN, 2, 1])
    assert.deepEqual(counts(pickSequence(picker, 300)), { two: 200, one: 100 })
    // Tried ones gone, the excluded ones are still not a fallback.
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [hosts[3]!, hosts[4]!] }), null)
    assert.equal(new EdfPicker(hosts.slice(0, 3), [0, -1, Number.NaN]).pick(firstAttempt()), null)
  })

  it('handles a single host and fractional weights', () => {
    const [only] = makeHosts(['only']) as [Host]
    const single = new EdfPicker([only], [0.1])
    for (let i = 0; i < 10; i++) assert.equal(single.pick(firstAttempt()), only)
    const hosts = makeHosts(['slow', 'full'])
    assert.deepEqual(counts(pickSequence(new EdfPicker(hosts, [0.1, 1]), 1100)), { slow: 100, full: 1000 })
  })
})
