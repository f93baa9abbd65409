import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Dispatcher } from 'undici'
import { ConsistentHashBalancer } from '../../src/balancer/consistent-hash.ts'
import { hashString } from '../../src/balancer/hash.ts'
import { LeastConnectionsBalancer } from '../../src/balancer/least-connections.ts'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import type { Balancer, PickContext, Picker } from '../../src/balancer/types.ts'
import { WeightedBalancer } from '../../src/balancer/weighted.ts'
import { Host } from '../../src/cluster/host.ts'
import type { ClusterLoad } from '../../src/cluster/host.ts'
import { prng } from '../support/prng.ts'

/**
 * Envoy-style simulations: 100,000 picks per strategy, shares compared with the weights, and a
 * discrete-event model of concurrent requests (no real time passes).
 */

const PICKS = 100_000

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

function makeHosts(weights: readonly number[]): Host[] {
  const load: ClusterLoad = { inFlight: 0 }
  return weights.map((weight, i) => new Host({ address: `10.0.0.${i + 1}`, port: 8080, weight, meta: {} }, fakeDispatcher, 10_000, 0, load))
}


const random10 = prng(2024)
const WEIGHT_SETS: ReadonlyArray<{ name: string; weights: number[] }> = [
  { name: '[1,1,1]', weights: [1, 1, 1] },
  { name: '[5,1,1]', weights: [5, 1, 1] },
  { name: '[1,2,3,4]', weights: [1, 2, 3, 4] },
  { name: '10 hosts, random 1..10', weights: Array.from({ length: 10 }, () => 1 + Math.floor(random10() * 10)) },
]

/** Each host's share of PICKS picks; `context` is updated before each pick by `prepare`. */
function shares(hosts: readonly Host[], picker: () => Picker, prepare: (context: PickContext, i: number) => void = () => undefined): number[] {
  const index = new Map(hosts.map((h, i) => [h, i]))
  const counts = new Array<number>(hosts.length).fill(0)
  const context: PickContext = { hash: -1, stickyToken: null, tried: null }
  for (let i = 0; i < PICKS; i++) {
    prepare(context, i)
    const host = picker().pick(context)
    assert.ok(host !== null)
    counts[index.get(host)!]!++
  }
  return counts.map((c) => c / PICKS)
}

/** Largest |share − expected| over the hosts; asserts it is within `tolerance`. */
function assertShares(actual: readonly number[], expected: readonly number[], tolerance: number, label: string): number {
  let worst = 0
  for (let i = 0; i < expected.length; i++) {
    const off = Math.abs(actual[i]! - expected[i]!)
    worst = Math.max(worst, off)
    assert.ok(off <= tolerance, `${label}: host ${i} got ${(actual[i]! * 100).toFixed(2)}%, expected ${(expected[i]! * 100).toFixed(2)}%`)
  }
  return worst
}

function weightShares(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  return weights.map((w) => w / total)
}

describe('simulation: 100,000 picks, shares against weights', () => {
  it('round-robin gives every host an equal share (registry weights are not its input)', (t) => {
    for (const { name, weights } of WEIGHT_SETS) {
      const hosts = makeHosts(weights)
      const picker = new RoundRobinBalancer().rebuild(hosts)
      const worst = assertShares(
        shares(hosts, () => picker),
        weights.map(() => 1 / weights.length),
        0.01,
        name,
      )
      t.diagnostic(`round-robin ${name}: worst |share − expected| = ${(worst * 100).toFixed(3)}%`)
    }
  })

  it('weighted gives every host its weight share within 1%', (t) => {
    for (const { name, weights } of WEIGHT_SETS) {
      const hosts = makeHosts(weights)
      const picker = new WeightedBalancer().rebuild(hosts)
      const worst = assertShares(
        shares(hosts, () => picker),
        weightShares(weights),
        0.01,
        name,
      )
      t.diagnostic(`weighted ${name}: worst |share − expected| = ${(worst * 100).toFixed(3)}%`)
    }
  })

  it('round-robin and weighted keep their shares when the picker is rebuilt every 997 picks', (t) => {
    for (const { name, weights } of WEIGHT_SETS) {
      for (const [strategy, balancer, expected] of [
        ['round-robin', new RoundRobinBalancer(), weights.map(() => 1 / weights.length)],
        ['weighted', new WeightedBalancer(), weightShares(weights)],
      ] as const) {
        const hosts = makeHosts(weights)
        let picker = balancer.rebuild(hosts)
        let picks = 0
        const rebuilding = (): Picker => {
          if (++picks % 997 === 0) picker = balancer.rebuild(hosts)
          return picker
        }
        const worst = assertShares(shares(hosts, rebuilding), expected, 0.01, `${strategy} ${name}`)
        t.diagnostic(`${strategy} ${name} with rebuilds: worst |share − expected| = ${(worst * 100).toFixed(3)}%`)
      }
    }
  })

  it('consistent-hash spreads 100,000 distinct keys by weight, within the ring layout variance', (t) => {
    for (const { name, weights } of WEIGHT_SETS) {
      const hosts = makeHosts(weights)
      const picker = new ConsistentHashBalancer().rebuild(hosts)
      const actual = shares(
        hosts,
        () => picker,
        (context, i) => {
          context.hash = hashString(`session-${i}`)
        },
      )
      // Ring layout, not sampling, dominates: a host with share p of M = 512 × total weight random
      // points owns p ± sqrt(p (1 − p) / M) of the ring (1.2% for three equal hosts). 4 σ of that
      // plus 4 σ of sampling 100,000 keys.
      const points = 512 * weights.reduce((a, b) => a + b, 0)
      const expected = weightShares(weights)
      let worst = 0
      let worstSigmas = 0
      for (const [i, p] of expected.entries()) {
        const sigma = Math.sqrt((p * (1 - p)) / points) + Math.sqrt((p * (1 - p)) / PICKS)
        const off = Math.abs(actual[i]! - p)
        worst = Math.max(worst, off)
        worstSigmas = Math.max(worstSigmas, off / sigma)
        assert.ok(off <= 4 * sigma, `${name}: host ${i} got ${(actual[i]! * 100).toFixed(2)}%, expected ${(p * 100).toFixed(2)}% ± ${(4 * sigma * 100).toFixed(2)}%`)
      }
      t.diagnostic(`consistent-hash ${name}: worst |share − expected| = ${(worst * 100).toFixed(3)}% (${worstSigmas.toFixed(2)} σ)`)
    }
  })
})

/** A binary min-heap of (time, host index) completion events. */
class EventQueue {
  readonly #time: number[] = []
  readonly #host: number[] = []

  get size(): number {
    return this.#time.length
  }

  push(time: number, host: number): void {
    const times = this.#time
    const hosts = this.#host
    let pos = times.length
    times.push(time)
    hosts.push(host)
    while (pos > 0) {
      const parent = (pos - 1) >> 1
      if (times[parent]! <= time) break
      times[pos] = times[parent]!
      hosts[pos] = hosts[parent]!
      pos = parent
    }
    times[pos] = time
    hosts[pos] = host
  }

  pop(): { time: number; host: number } {
    const times = this.#time
    const hosts = this.#host
    const top = { time: times[0]!, host: hosts[0]! }
    const lastTime = times.pop()!
    const lastHost = hosts.pop()!
    const size = times.length
    if (size > 0) {
      let pos = 0
      for (;;) {
        let child = 2 * pos + 1
        if (child >= size) break
        if (child + 1 < size && times[child + 1]! < times[child]!) child++
        if (times[child]! >= lastTime) break
        times[pos] = times[child]!
        hosts[pos] = hosts[child]!
        pos = child
      }
      times[pos] = lastTime
      hosts[pos] = lastHost
    }
    return top
  }
}

interface ClosedLoopResult {
  /** Each host's share of the picks. */
  shares: number[]
  /** The most requests any host held at once. */
  peakInFlight: number[]
}

/**
 * A closed loop of `concurrency` clients: each request goes to the picked host (acquire), takes
 * that host's mean service time × uniform(0.5, 1.5), then ends (release) and its client sends the
 * next one at once. Stops after `picks` requests were sent.
 */
function closedLoop(balancer: Balancer, meanServiceTimes: readonly number[], concurrency: number, picks: number, seed: number): ClosedLoopResult {
  const rand = prng(seed)
  const hosts = makeHosts(meanServiceTimes.map(() => 1))
  const index = new Map(hosts.map((h, i) => [h, i]))
  const picker = balancer.rebuild(hosts)
  const context: PickContext = { hash: -1, stickyToken: null, tried: null }
  const counts = new Array<number>(hosts.length).fill(0)
  const peak = new Array<number>(hosts.length).fill(0)
  const events = new EventQueue()
  const send = (now: number): void => {
    const host = picker.pick(context)
    assert.ok(host !== null, 'a host with room is always there')
    const i = index.get(host)!
    host.acquire()
    counts[i]!++
    peak[i] = Math.max(peak[i]!, host.inFlight)
    events.push(now + meanServiceTimes[i]! * (0.5 + rand()), i)
  }
  for (let c = 0; c < concurrency; c++) send(0)
  for (let sent = concurrency; sent < picks; sent++) {
    const done = events.pop()
    hosts[done.host]!.release()
    send(done.time)
  }
  while (events.size > 0) hosts[events.pop().host]!.release()
  assert.equal(hosts[0]!.load.inFlight, 0)
  return { shares: counts.map((c) => c / picks), peakInFlight: peak }
}

describe('simulation: a slow host under 50 concurrent requests', () => {
  const percent = (x: number): string => `${(x * 100).toFixed(2)}%`

  it('least-connections sends the 10× slower host far less than its 1/5; round-robin and weighted do not', (t) => {
    // Host 0 takes ten times longer per request than the other four.
    const serviceTimes = [10, 1, 1, 1, 1]
    const lc = closedLoop(new LeastConnectionsBalancer(), serviceTimes, 50, PICKS, 1)
    const rr = closedLoop(new RoundRobinBalancer(), serviceTimes, 50, PICKS, 1)
    const wt = closedLoop(new WeightedBalancer(), serviceTimes, 50, PICKS, 1)
    t.diagnostic(`slow host share: least-connections ${percent(lc.shares[0]!)}, round-robin ${percent(rr.shares[0]!)}, weighted ${percent(wt.shares[0]!)}`)
    t.diagnostic(`slow host peak in flight: least-connections ${lc.peakInFlight[0]}, round-robin ${rr.peakInFlight[0]}`)

    assert.ok(lc.shares[0]! < 0.1, `least-connections gave the slow host ${percent(lc.shares[0]!)}`)
    // Equal in-flight counts make throughput proportional to speed: 0.1 / 4.1 ≈ 2.4%.
    assert.ok(Math.abs(lc.shares[0]! - 0.1 / 4.1) < 0.01, `least-connections: ${percent(lc.shares[0]!)}`)
    for (let i = 1; i < 5; i++) assert.ok(lc.shares[i]! > 0.22, `fast host ${i}: ${percent(lc.shares[i]!)}`)
    assert.ok(Math.abs(rr.shares[0]! - 0.2) <= 0.01, `round-robin gave the slow host ${percent(rr.shares[0]!)}`)
    assert.ok(Math.abs(wt.shares[0]! - 0.2) <= 0.01, `weighted gave the slow host ${percent(wt.shares[0]!)}`)
    // Round-robin piles requests up on the slow host; least-connections keeps it level with the rest.
    assert.ok(rr.peakInFlight[0]! > 2 * lc.peakInFlight[0]!)
  })

  it('least-connections with two choices (20 hosts) also starves the slow host', (t) => {
    const serviceTimes = [10, ...new Array<number>(19).fill(1)]
    const lc = closedLoop(new LeastConnectionsBalancer(), serviceTimes, 50, PICKS, 2)
    t.diagnostic(`slow host share of 20, two choices: ${percent(lc.shares[0]!)} (fair share 5%)`)
    assert.ok(lc.shares[0]! < 0.025, `slow host got ${percent(lc.shares[0]!)}`)
  })
})
