import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import type { Dispatcher } from 'undici'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import type { PickContext, Picker } from '../../src/balancer/types.ts'
import { EMPTY_PICKER } from '../../src/balancer/types.ts'
import { Host } from '../../src/cluster/host.ts'

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

function makeHost(address: string, maxConcurrent = 100): Host {
  return new Host({ address, port: 80, weight: 1, meta: {} }, fakeDispatcher, maxConcurrent, 0)
}

function firstAttempt(): PickContext {
  return { hash: -1, stickyToken: null, tried: null }
}

/** A balancer whose random starting cursor is pinned to `random` (0 → the first host). */
function balancerStartingAt(t: TestContext, random: number): RoundRobinBalancer {
  const m = t.mock.method(Math, 'random', () => random)
  const balancer = new RoundRobinBalancer()
  m.mock.restore()
  return balancer
}

/** Addresses of `count` successive picks (null as '-'). */
function pickSequence(picker: Picker, count: number, context: PickContext = firstAttempt()): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(picker.pick(context)?.address ?? '-')
  return out
}

function shares(picker: Picker, picks: number): Map<string, number> {
  const counts = new Map<string, number>()
  const context = firstAttempt()
  for (let i = 0; i < picks; i++) {
    const host = picker.pick(context)
    assert.ok(host !== null)
    counts.set(host.address, (counts.get(host.address) ?? 0) + 1)
  }
  return counts
}

describe('RoundRobinBalancer', () => {
  it('picks hosts in a fixed cyclic order', (t) => {
    const hosts = ['a', 'b', 'c'].map((a) => makeHost(a))
    const table: ReadonlyArray<{ random: number; expected: string[] }> = [
      { random: 0, expected: ['a', 'b', 'c', 'a', 'b', 'c', 'a'] },
      // floor(0.5 * 0x7fffffff) = 1073741823, and 1073741823 % 3 = 0.
      { random: 0.5, expected: ['a', 'b', 'c', 'a', 'b', 'c', 'a'] },
      // floor(0.25 * 0x7fffffff) = 536870911, and 536870911 % 3 = 1.
      { random: 0.25, expected: ['b', 'c', 'a', 'b', 'c', 'a', 'b'] },
    ]
    for (const { random, expected } of table) {
      const picker = balancerStartingAt(t, random).rebuild(hosts)
      assert.deepEqual(pickSequence(picker, expected.length), expected, `Math.random() = ${random}`)
    }
  })

  it('gives exactly even shares over 3 hosts for 3000 picks', () => {
    const picker = new RoundRobinBalancer().rebuild(['a', 'b', 'c'].map((a) => makeHost(a)))
    assert.deepEqual(Object.fromEntries(shares(picker, 3000)), { a: 1000, b: 1000, c: 1000 })
  })

  it('skips hosts the request already tried', (t) => {
    const [a, b, c] = ['a', 'b', 'c'].map((x) => makeHost(x)) as [Host, Host, Host]
    const picker = balancerStartingAt(t, 0).rebuild([a, b, c])
    assert.deepEqual(pickSequence(picker, 6, { hash: -1, stickyToken: null, tried: [b] }), ['a', 'c', 'a', 'c', 'a', 'c'])
    assert.deepEqual(pickSequence(picker, 3, { hash: -1, stickyToken: null, tried: [a, c] }), ['b', 'b', 'b'])
  })

  it('skips hosts at maxConcurrent and takes them again below it', (t) => {
    const [a, b, c] = ['a', 'b', 'c'].map((x) => makeHost(x, 2)) as [Host, Host, Host]
    const picker = balancerStartingAt(t, 0).rebuild([a, b, c])
    b.inFlight = 2
    c.inFlight = 3
    assert.deepEqual(pickSequence(picker, 3), ['a', 'a', 'a'])
    // The cursor stopped just after `a`, so `b` is next; `c` (3 of 2) stays skipped.
    b.inFlight = 1
    assert.deepEqual(pickSequence(picker, 4), ['b', 'a', 'b', 'a'])
  })

  it('returns null when every host was tried', () => {
    const hosts = ['a', 'b', 'c'].map((a) => makeHost(a))
    const picker = new RoundRobinBalancer().rebuild(hosts)
    assert.equal(picker.pick({ hash: -1, stickyToken: null, tried: [...hosts] }), null)
  })

  it('returns null when every host is full, and picks again once one frees up', () => {
    const hosts = ['a', 'b'].map((a) => makeHost(a, 1))
    const picker = new RoundRobinBalancer().rebuild(hosts)
    for (const h of hosts) h.inFlight = 1
    assert.equal(picker.pick(firstAttempt()), null)
    hosts[1]!.inFlight = 0
    assert.equal(picker.pick(firstAttempt()), hosts[1])
  })

  it('returns null for an empty host set', () => {
    const picker = new RoundRobinBalancer().rebuild([])
    assert.equal(picker, EMPTY_PICKER)
    assert.equal(picker.pick(firstAttempt()), null)
  })

  it('keeps its cursor across rebuilds', (t) => {
    const hosts = ['a', 'b', 'c'].map((a) => makeHost(a))
    const balancer = balancerStartingAt(t, 0)
    assert.equal(balancer.rebuild(hosts).pick(firstAttempt())?.address, 'a')
    assert.equal(balancer.rebuild(hosts).pick(firstAttempt())?.address, 'b')
    assert.equal(balancer.rebuild(hosts).pick(firstAttempt())?.address, 'c')
    assert.equal(balancer.rebuild(hosts).pick(firstAttempt())?.address, 'a')
  })

  it('keeps shares exact when rebuilt between picks', () => {
    const hosts = ['a', 'b', 'c'].map((a) => makeHost(a))
    const balancer = new RoundRobinBalancer()
    const counts = new Map<string, number>()
    let picker = balancer.rebuild(hosts)
    for (let i = 0; i < 3000; i++) {
      // Rebuild at an interval that is not a multiple of the host count.
      if (i % 7 === 0) picker = balancer.rebuild(hosts)
      const host = picker.pick(firstAttempt())
      assert.ok(host !== null)
      counts.set(host.address, (counts.get(host.address) ?? 0) + 1)
    }
    assert.deepEqual(Object.fromEntries(counts), { a: 1000, b: 1000, c: 1000 })
  })

  it('does not see later changes to the array it was built from', (t) => {
    const hosts = ['a', 'b'].map((a) => makeHost(a))
    const picker = balancerStartingAt(t, 0).rebuild(hosts)
    hosts.push(makeHost('c'))
    assert.deepEqual(pickSequence(picker, 4), ['a', 'b', 'a', 'b'])
  })
})
