import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Dispatcher } from 'undici'
import { balancerFactory } from '../../src/balancer/registry.ts'
import type { PickContext, Picker } from '../../src/balancer/types.ts'
import { EMPTY_PICKER } from '../../src/balancer/types.ts'
import { WeightedBalancer } from '../../src/balancer/weighted.ts'
import { Host } from '../../src/cluster/host.ts'
import { parseConfig } from '../../src/config/load.ts'

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

function makeHost(address: string, weight: number, maxConcurrent = 100): Host {
  return new Host({ address, port: 80, weight, meta: {} }, fakeDispatcher, maxConcurrent, 0)
}

function firstAttempt(): PickContext {
  return { hash: -1, stickyToken: null, tried: null }
}

function tally(picker: Picker, picks: number, context: PickContext = firstAttempt()): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < picks; i++) {
    const host = picker.pick(context)
    assert.ok(host !== null, `pick ${i} found no host`)
    out[host.address] = (out[host.address] ?? 0) + 1
  }
  return out
}

/** True when every count is within `slack` picks of its expected value. */
function assertCounts(actual: Record<string, number>, expected: Record<string, number>, slack = 1): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort())
  for (const [name, want] of Object.entries(expected)) {
    const got = actual[name] ?? 0
    assert.ok(Math.abs(got - want) <= slack, `${name}: ${got} picks, expected ${want} ± ${slack}`)
  }
}

describe('WeightedBalancer', () => {
  it('gives each host its weight share', () => {
    const table: ReadonlyArray<{ weights: number[]; picks: number }> = [
      { weights: [1, 1, 1], picks: 3000 },
      { weights: [5, 1, 1], picks: 7000 },
      { weights: [1, 2, 3, 4], picks: 10_000 },
      { weights: [100, 1], picks: 10_100 },
    ]
    for (const { weights, picks } of table) {
      const hosts = weights.map((w, i) => makeHost(`h${i}`, w))
      const total = weights.reduce((a, b) => a + b, 0)
      const expected = Object.fromEntries(weights.map((w, i) => [`h${i}`, (picks * w) / total]))
      assertCounts(tally(new WeightedBalancer().rebuild(hosts), picks), expected)
    }
  })

  it('interleaves picks instead of sending bursts to the heavy host', () => {
    const hosts = [makeHost('heavy', 5), makeHost('b', 1), makeHost('c', 1)]
    const picker = new WeightedBalancer().rebuild(hosts)
    let run = 0
    let longest = 0
    let previous: Host | null = null
    for (let i = 0; i < 700; i++) {
      const host = picker.pick(firstAttempt())
      run = host === previous ? run + 1 : 1
      longest = Math.max(longest, run)
      previous = host
    }
    assert.ok(longest <= 4, `${longest} picks in a row`)
  })

  it('multiplies the registry weight by the slow-start factor', () => {
    const hosts = [makeHost('a', 2), makeHost('b', 2), makeHost('ramping', 4)]
    hosts[2]!.slowStartFactor = 0.25
    assertCounts(tally(new WeightedBalancer().rebuild(hosts), 5000), { a: 2000, b: 2000, ramping: 1000 })
  })

  it('reads weights at rebuild time: a changed weight shows after the next rebuild only', () => {
    const hosts = [makeHost('a', 1), makeHost('b', 1)]
    const balancer = new WeightedBalancer()
    const before = balancer.rebuild(hosts)
    hosts[0]!.weight = 3
    assertCounts(tally(before, 2000), { a: 1000, b: 1000 })
    assertCounts(tally(balancer.rebuild(hosts), 4000), { a: 3000, b: 1000 })
  })

  it('skips tried and full hosts and returns null when none is left', () => {
    const [a, b, c] = [makeHost('a', 1, 2), makeHost('b', 2, 2), makeHost('c', 3, 2)]
    const picker = new WeightedBalancer().rebuild([a, b, c])
    assertCounts(tally(picker, 400, { hash: -1, stickyToken: null, tried: [c] }), { a: 133, b: 267 }, 2)
    c.inFlight = 2
    assertCounts(tally(picker, 300, { hash: -1, stickyToken: null, tried: [a] }), { b: 300 }, 0)
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [a, b] }), null)
    c.inFlight = 1
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [a, b] }), c)
  })

  it('returns the empty picker for no hosts, and does not see later changes to its input', () => {
    assert.equal(new WeightedBalancer().rebuild([]), EMPTY_PICKER)
    const hosts = [makeHost('a', 1)]
    const picker = new WeightedBalancer().rebuild(hosts)
    hosts.push(makeHost('b', 100))
    assertCounts(tally(picker, 50), { a: 50 }, 0)
  })

  it('is what the registry builds for strategy weighted', () => {
    const doc = { services: { web: { source: 'static', strategy: 'weighted', endpoints: ['127.0.0.1:1'] } } }
    const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
    assert.ok(service !== undefined)
    const factory = balancerFactory(service.strategy)
    assert.ok(factory !== undefined)
    assert.ok(factory(service) instanceof WeightedBalancer)
  })
})
