import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import fc from 'fast-check'
import type { Dispatcher } from 'undici'
import { FULL_SCAN_MAX_HOSTS, LeastConnectionsBalancer } from '../../src/balancer/least-connections.ts'
import { FastRandom } from '../../src/balancer/random.ts'
import type { PickContext, Picker } from '../../src/balancer/types.ts'
import { EMPTY_PICKER, canTake } from '../../src/balancer/types.ts'
import { Host } from '../../src/cluster/host.ts'

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

/** Hosts named h0, h1, ... with the given weights and in-flight counts. */
function makeHosts(weights: readonly number[], inFlight: readonly number[] = [], maxConcurrent = 100): Host[] {
  return weights.map((weight, i) => {
    const host = new Host({ address: `h${i}`, port: 80, weight, meta: {} }, fakeDispatcher, maxConcurrent, 0)
    host.inFlight = inFlight[i] ?? 0
    return host
  })
}

function firstAttempt(tried: Host[] | null = null): PickContext {
  return { hash: -1, stickyToken: null, tried }
}

function tally(picker: Picker, picks: number, context: PickContext = firstAttempt()): Map<string, number> {
  const out = new Map<string, number>()
  for (let i = 0; i < picks; i++) {
    const host = picker.pick(context)
    assert.ok(host !== null, `pick ${i} found no host`)
    out.set(host.address, (out.get(host.address) ?? 0) + 1)
  }
  return out
}

/** Runs `body` with Math.random answering `values` in order (then 0.5): pins a picker's seed. */
function withRandom<T>(t: TestContext, values: readonly number[], body: () => T): T {
  let i = 0
  const m = t.mock.method(Math, 'random', () => (i < values.length ? values[i++]! : 0.5))
  try {
    return body()
  } finally {
    m.mock.restore()
  }
}

describe('LeastConnectionsBalancer, full scan (up to 8 hosts)', () => {
  it('picks the host with the lowest (inFlight + 1) / weight', () => {
    assert.equal(FULL_SCAN_MAX_HOSTS, 8)
    const table: ReadonlyArray<{ weights: number[]; inFlight: number[]; expected: string; why: string }> = [
      { weights: [1, 1, 1], inFlight: [3, 1, 2], expected: 'h1', why: 'fewest in flight' },
      { weights: [1, 2, 4], inFlight: [1, 2, 4], expected: 'h2', why: '2, 1.5, 1.25: most in flight, least relative load' },
      { weights: [1, 3], inFlight: [0, 3], expected: 'h0', why: '1 against 4/3' },
      { weights: [1, 3], inFlight: [0, 1], expected: 'h1', why: '1 against 2/3: the +1 counts the new request' },
      { weights: [1, 1, 1, 1, 1, 1, 1, 1], inFlight: [5, 5, 5, 5, 5, 5, 5, 4], expected: 'h7', why: 'eight hosts are still scanned' },
    ]
    for (const { weights, inFlight, expected, why } of table) {
      const picker = new LeastConnectionsBalancer().rebuild(makeHosts(weights, inFlight))
      assert.deepEqual([...tally(picker, 200)], [[expected, 200]], why)
    }
  })

  it('counts the slow-start factor into the weight', () => {
    const hosts = makeHosts([1, 1, 1], [8, 8, 0])
    hosts[2]!.slowStartFactor = 0.1
    const balancer = new LeastConnectionsBalancer()
    // An idle ramping host weighs (0 + 1) / 0.1 = 10 against (8 + 1) / 1 = 9.
    assert.deepEqual([...tally(balancer.rebuild(hosts), 100).keys()].sort(), ['h0', 'h1'])
    hosts[0]!.inFlight = 10
    hosts[1]!.inFlight = 10
    assert.deepEqual([...tally(balancer.rebuild(hosts), 100)], [['h2', 100]])
  })

  it('breaks ties at random, among the least loaded only', () => {
    const table: ReadonlyArray<{ inFlight: number[]; tied: string[] }> = [
      { inFlight: [0, 0, 0, 0], tied: ['h0', 'h1', 'h2', 'h3'] },
      { inFlight: [2, 0, 1, 0, 3], tied: ['h1', 'h3'] },
      { inFlight: [0, 1, 0, 1, 0], tied: ['h0', 'h2', 'h4'] },
    ]
    const picks = 6000
    for (const { inFlight, tied } of table) {
      const counts = tally(new LeastConnectionsBalancer().rebuild(makeHosts(inFlight.map(() => 1), inFlight)), picks)
      assert.deepEqual([...counts.keys()].sort(), tied)
      const expected = picks / tied.length
      // Binomial: the standard deviation is below 40 picks here; 5 of them is a real failure.
      for (const [name, got] of counts) assert.ok(Math.abs(got - expected) <= 200, `${name}: ${got} of ~${expected}`)
    }
  })

  it('passes over tried and full hosts, and returns null when none is left', () => {
    const hosts = makeHosts([1, 1, 1], [0, 1, 2], 2)
    const [h0, h1, h2] = hosts as [Host, Host, Host]
    const picker = new LeastConnectionsBalancer().rebuild(hosts)
    assert.equal(picker.pick(firstAttempt([h0])), h1)
    assert.equal(picker.pick(firstAttempt([h0, h1])), null, 'h2 is at maxConcurrent')
    h2.inFlight = 1
    assert.equal(picker.pick(firstAttempt([h0, h1])), h2)
    assert.equal(picker.pick(firstAttempt([h0, h1, h2])), null)
  })

  it('sees in-flight counts as they change, without a rebuild', () => {
    const hosts = makeHosts([1, 1, 1])
    const picker = new LeastConnectionsBalancer().rebuild(hosts)
    // Acquiring on every pick fills the hosts evenly: least connections as a request sees it.
    for (let i = 0; i < 30; i++) picker.pick(firstAttempt())!.acquire()
    assert.deepEqual(
      hosts.map((h) => h.inFlight),
      [10, 10, 10],
    )
  })

  it('returns the empty picker for no hosts', () => {
    const picker = new LeastConnectionsBalancer().rebuild([])
    assert.equal(picker, EMPTY_PICKER)
    assert.equal(picker.pick(firstAttempt()), null)
  })
})

describe('LeastConnectionsBalancer, power of two choices (more than 8 hosts)', () => {
  it('compares only the two hosts it drew and takes the less loaded one', (t) => {
    // A picker draws from its own xorshift generator, seeded from Math.random() when it is built.
    // Pinning that seed and running the same generator here tells which two hosts a pick draws:
    // a = below(10), b = below(9) moved past a, then one bit for a tie.
    const n = 10
    for (const random of [0.1, 0.25, 0.5, 0.75, 0.9]) {
      const seed = (random * 0x100000000) | 0
      const oracle = new FastRandom(seed)
      const a = oracle.below(n)
      let b = oracle.below(n - 1)
      if (b >= a) b++
      const tieGoesToA = (oracle.next() & 1) === 0
      const table: ReadonlyArray<{ load: [number, number]; weight?: [number, number]; expected: number; why: string }> = [
        { load: [3, 1], expected: b, why: 'b has fewer in flight' },
        { load: [1, 3], expected: a, why: 'a has fewer in flight' },
        { load: [3, 1], weight: [4, 1], expected: a, why: '(3 + 1) / 4 against (1 + 1) / 1' },
        { load: [2, 2], expected: tieGoesToA ? a : b, why: 'a tie, broken by the next bit' },
      ]
      for (const { load, weight, expected, why } of table) {
        // Every other host is idle: a full scan would pick one of them, two choices must not.
        const weights = new Array<number>(n).fill(1)
        const inFlight = new Array<number>(n).fill(0)
        weights[a] = weight?.[0] ?? 1
        weights[b] = weight?.[1] ?? 1
        inFlight[a] = load[0]
        inFlight[b] = load[1]
        const hosts = makeHosts(weights, inFlight)
        const picker = withRandom(t, [random], () => new LeastConnectionsBalancer().rebuild(hosts))
        assert.equal(picker.pick(firstAttempt()), hosts[expected], `seed ${seed}, drew h${a} and h${b}: ${why}`)
      }
    }
  })

  it('never picks the most loaded host, and the least loaded one about 2/n of the time', () => {
    const n = 10
    const hosts = makeHosts(new Array<number>(n).fill(1), Array.from({ length: n }, (_, i) => i))
    const picks = 40_000
    const counts = tally(new LeastConnectionsBalancer().rebuild(hosts), picks)
    assert.equal(counts.get(`h${n - 1}`) ?? 0, 0)
    for (let rank = 0; rank < n - 1; rank++) {
      // Drawn in a pair with a more loaded host: 2 (n - 1 - rank) / (n (n - 1)).
      const expected = (2 * (n - 1 - rank)) / (n * (n - 1))
      const share = (counts.get(`h${rank}`) ?? 0) / picks
      assert.ok(Math.abs(share - expected) <= 0.01, `rank ${rank}: ${share} against ${expected}`)
    }
  })

  it('switches from a full scan to two choices above 8 hosts', () => {
    for (const n of [FULL_SCAN_MAX_HOSTS, FULL_SCAN_MAX_HOSTS + 1]) {
      const hosts = makeHosts(new Array<number>(n).fill(1), Array.from({ length: n }, (_, i) => i + 1))
      hosts[n - 1]!.inFlight = 0
      const share = (tally(new LeastConnectionsBalancer().rebuild(hosts), 9000).get(`h${n - 1}`) ?? 0) / 9000
      if (n === FULL_SCAN_MAX_HOSTS) assert.equal(share, 1)
      else assert.ok(Math.abs(share - 2 / n) < 0.03, `${n} hosts: the idle one got ${share}`)
    }
  })

  it('never returns a tried or full host, and never null while one can take the request', () => {
    const cluster = fc.integer({ min: FULL_SCAN_MAX_HOSTS + 1, max: 40 }).chain((n) =>
      fc.record({
        weights: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: n, maxLength: n }),
        inFlight: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: n, maxLength: n }),
        // Mostly tried, so the fallback scan after two unusable draws is exercised.
        tried: fc.array(fc.boolean(), { minLength: n, maxLength: n }).map((bits) => bits.map((b, i) => b || i % 3 !== 0)),
        maxConcurrent: fc.integer({ min: 1, max: 5 }),
      }),
    )
    fc.assert(
      fc.property(cluster, ({ weights, inFlight, tried, maxConcurrent }) => {
        const hosts = makeHosts(weights, inFlight, maxConcurrent)
        const context = firstAttempt(hosts.filter((_, i) => tried[i]))
        const picker = new LeastConnectionsBalancer().rebuild(hosts)
        const able = hosts.filter((h) => canTake(h, context))
        for (let i = 0; i < 50; i++) {
          const host = picker.pick(context)
          if (able.length === 0) assert.equal(host, null)
          else assert.ok(host !== null && able.includes(host), `picked ${host?.address ?? 'null'}; could take: ${able.map((h) => h.address).join(',')}`)
        }
      }),
      { numRuns: 300, seed: 0x1c },
    )
  })

  it('finds the one host left when all others were tried', () => {
    const hosts = makeHosts(new Array<number>(20).fill(1))
    const picker = new LeastConnectionsBalancer().rebuild(hosts)
    for (const left of [0, 7, 19]) {
      const context = firstAttempt(hosts.filter((_, i) => i !== left))
      for (let i = 0; i < 200; i++) assert.equal(picker.pick(context), hosts[left])
    }
  })
})
