import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { Dispatcher } from 'undici'
import { ConsistentHashBalancer, MAX_RING_ENTRIES, MAX_VNODES_PER_WEIGHT, radixSortByKey } from '../../src/balancer/consistent-hash.ts'
import { hashString, vnodeHash } from '../../src/balancer/hash.ts'
import type { PickContext, Picker } from '../../src/balancer/types.ts'
import { EMPTY_PICKER } from '../../src/balancer/types.ts'
import { Host } from '../../src/cluster/host.ts'
import type { ClusterLoad } from '../../src/cluster/host.ts'
import { prng } from '../support/prng.ts'

/** Pickers never touch the pool; this stands in for one. */
const fakeDispatcher = { close: () => Promise.resolve(), destroy: () => Promise.resolve() } as unknown as Dispatcher

interface HostSpec {
  address: string
  port?: number
  weight?: number
}

/** Hosts of one cluster: they share one in-flight counter, as the cluster's hosts do. */
function makeHosts(specs: readonly HostSpec[], maxConcurrent = 1_000_000): Host[] {
  const load: ClusterLoad = { inFlight: 0 }
  return specs.map((s) => new Host({ address: s.address, port: s.port ?? 80, weight: s.weight ?? 1, meta: {} }, fakeDispatcher, maxConcurrent, 0, load))
}

function addresses(count: number, prefix = '10.0'): HostSpec[] {
  const out: HostSpec[] = []
  for (let i = 0; i < count; i++) out.push({ address: `${prefix}.${i >> 8}.${i & 255}` })
  return out
}

/** 50,000 request keys, hashed as the listener hashes them. */
const KEY_COUNT = 50_000
const KEYS = new Uint32Array(KEY_COUNT)
for (let i = 0; i < KEY_COUNT; i++) KEYS[i] = hashString(`user-${i}`)

function ctx(hash: number, tried: Host[] | null = null, stickyToken: string | null = null): PickContext {
  return { hash, stickyToken, tried }
}

/** The `key` (address:port) of the host each of KEYS maps to. */
function assign(picker: Picker): string[] {
  const out = new Array<string>(KEY_COUNT)
  const context = ctx(0)
  for (let k = 0; k < KEY_COUNT; k++) {
    context.hash = KEYS[k]!
    const host = picker.pick(context)
    assert.ok(host !== null)
    out[k] = host.key
  }
  return out
}

/** Asserts two mappings of KEYS are identical; names the first key that differs (deepEqual on 50,000 entries is slow). */
function assertSameMapping(actual: readonly string[], expected: readonly string[], label: string): void {
  for (let k = 0; k < KEY_COUNT; k++) if (actual[k] !== expected[k]) assert.fail(`${label}: key ${k} maps to ${actual[k]}, expected ${expected[k]}`)
}

function countBy(keys: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1)
  return counts
}


/** Between 2 and 40 hosts with distinct `address:port`. */
const memberSpecs = fc
  .uniqueArray(fc.record({ ip: fc.integer({ min: 0, max: 0xffffff }), port: fc.integer({ min: 1, max: 65535 }) }), {
    minLength: 2,
    maxLength: 40,
    selector: (m) => `${m.ip}:${m.port}`,
  })
  .map((members) => members.map((m): HostSpec => ({ address: `10.${m.ip >>> 16}.${(m.ip >>> 8) & 255}.${m.ip & 255}`, port: m.port })))

/** Fixed seeds: the bounds are statistical, so CI runs the same cases every time. */
const PROPERTY_OPTIONS = { numRuns: 50, seed: 0x5eed } as const

describe('ConsistentHashBalancer ring (properties)', () => {
  it('maps a key to the same endpoint across rebuilds, member orders and fresh balancers', () => {
    fc.assert(
      fc.property(memberSpecs, fc.nat(), (specs, shuffleSeed) => {
        const balancer = new ConsistentHashBalancer()
        const hosts = makeHosts(specs)
        const first = assign(balancer.rebuild(hosts))
        assertSameMapping(assign(balancer.rebuild(hosts)), first, 'same balancer, same members')

        const rand = prng(shuffleSeed)
        const shuffled = hosts.slice()
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1))
          ;[shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]
        }
        assertSameMapping(assign(balancer.rebuild(shuffled)), first, 'members in another order')
        // Other Host objects for the same endpoints, another balancer: another sidecar of the fleet.
        assertSameMapping(assign(new ConsistentHashBalancer().rebuild(makeHosts(specs).reverse())), first, 'fresh balancer')
      }),
      PROPERTY_OPTIONS,
    )
  })

  it('removing one of N endpoints moves only its keys, at most 1.2 × 1/N of them', (t) => {
    let worst = 0
    fc.assert(
      fc.property(memberSpecs, fc.nat(), (specs, which) => {
        const balancer = new ConsistentHashBalancer()
        const hosts = makeHosts(specs)
        const n = hosts.length
        const before = assign(balancer.rebuild(hosts))
        const removed = hosts[which % n]!
        const after = assign(balancer.rebuild(hosts.filter((h) => h !== removed)))
        let moved = 0
        for (let k = 0; k < KEY_COUNT; k++) {
          if (before[k] === after[k]) continue
          moved++
          assert.equal(before[k], removed.key, `key ${k} moved from ${before[k]} although ${removed.key} was removed`)
        }
        // Every key of the removed endpoint must move (it is gone), so moved is exactly its share.
        assert.equal(moved, countBy(before).get(removed.key) ?? 0)
        const fraction = moved / KEY_COUNT
        worst = Math.max(worst, fraction * n)
        assert.ok(fraction <= 1.2 / n, `N=${n}: ${(fraction * 100).toFixed(2)}% moved, limit ${((1.2 / n) * 100).toFixed(2)}%`)
      }),
      PROPERTY_OPTIONS,
    )
    t.diagnostic(`worst moved fraction on removal: ${worst.toFixed(3)} × 1/N`)
  })

  it('adding an endpoint to N moves only keys onto it, at most 1.2 × 1/(N+1) of them', (t) => {
    let worst = 0
    fc.assert(
      fc.property(memberSpecs, fc.nat(), (specs, where) => {
        // The last spec is the newcomer; it joins at any position of the list.
        const all = makeHosts(specs)
        const added = all.pop()!
        const n = all.length
        const balancer = new ConsistentHashBalancer()
        const before = assign(balancer.rebuild(all))
        const grown = all.slice()
        grown.splice(where % (n + 1), 0, added)
        const after = assign(balancer.rebuild(grown))
        let moved = 0
        for (let k = 0; k < KEY_COUNT; k++) {
          if (before[k] === after[k]) continue
          moved++
          assert.equal(after[k], added.key, `key ${k} moved to ${after[k]}, not to the new ${added.key}`)
        }
        const fraction = moved / KEY_COUNT
        worst = Math.max(worst, fraction * (n + 1))
        assert.ok(fraction <= 1.2 / (n + 1), `N=${n}: ${(fraction * 100).toFixed(2)}% moved, limit ${((1.2 / (n + 1)) * 100).toFixed(2)}%`)
      }),
      PROPERTY_OPTIONS,
    )
    t.diagnostic(`worst moved fraction on addition: ${worst.toFixed(3)} × 1/(N+1)`)
  })

  it('with any weights, removal and addition move only the keys of the endpoint that changed', () => {
    const weighted = fc.tuple(memberSpecs, fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 40, maxLength: 40 }), fc.nat())
    fc.assert(
      fc.property(weighted, ([specs, weights, which]) => {
        const all = makeHosts(specs.map((s, i) => ({ ...s, weight: weights[i]! })))
        const balancer = new ConsistentHashBalancer()
        const full = assign(balancer.rebuild(all))
        const changed = all[which % all.length]!
        const without = assign(balancer.rebuild(all.filter((h) => h !== changed)))
        for (let k = 0; k < KEY_COUNT; k++) {
          if (full[k] !== without[k]) {
            assert.equal(full[k], changed.key, 'removal moved another endpoint key')
          }
        }
        // Seen the other way round, the same two rings are an addition of `changed`.
        assertSameMapping(assign(balancer.rebuild(all)), full, 'rebuilt with the endpoint back')
      }),
      { numRuns: 25, seed: 0x5eed },
    )
  })

  it('bounded load: no endpoint ever holds more than factor × average + 1', (t) => {
    let worstRatio = 0
    let worstOverAverage = 0
    let worstAnyHostAfterReleases = 0
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.double({ min: 1, max: 3, minExcluded: true, noNaN: true }),
        fc.double({ min: 0.1, max: 0.6, noNaN: true }),
        fc.integer(),
        (n, factor, releaseRate, seed) => {
          const rand = prng(seed)
          const hosts = makeHosts(addresses(n, '10.9'))
          const picker = new ConsistentHashBalancer(factor).rebuild(hosts)
          const load = hosts[0]!.load
          const hot = [hashString('hot-1'), hashString('hot-2'), hashString('hot-3')]
          const running: Host[] = []
          const context = ctx(0)
          const check = (host: Host, phase: string): void => {
            const average = load.inFlight / n
            const bound = factor * average + 1
            assert.ok(host.inFlight <= bound, `${phase}: ${host.key} holds ${host.inFlight}, bound ${bound} (n=${n}, factor=${factor}, total=${load.inFlight})`)
            worstRatio = Math.max(worstRatio, host.inFlight / bound)
            if (load.inFlight >= 10 * n) worstOverAverage = Math.max(worstOverAverage, host.inFlight / average / factor)
          }
          const assignOne = (): Host => {
            const r = rand()
            // Half the traffic on three hot keys, some pinned by a sticky cookie: the skew bounded load is for.
            context.hash = r < 0.5 ? hot[Math.floor(rand() * hot.length)]! : (rand() * 0x100000000) >>> 0
            context.stickyToken = r > 0.9 ? hosts[0]!.stickyToken : null
            const host = picker.pick(context)
            assert.ok(host !== null, 'bounded load must leave room on some endpoint')
            host.acquire()
            running.push(host)
            return host
          }
          // Ramp up without releases: the average only grows, so every endpoint stays within its bound.
          for (let i = 0; i < 20 * n; i++) {
            assignOne()
            for (const h of hosts) check(h, 'ramp-up')
          }
          // Then random releases: the endpoint just assigned must be within the bound.
          for (let step = 0; step < 3000; step++) {
            if (running.length > 0 && rand() < releaseRate) {
              const k = Math.floor(rand() * running.length)
              const host = running[k]!
              running[k] = running[running.length - 1]!
              running.pop()
              host.release()
              continue
            }
            check(assignOne(), 'steady')
            const bound = factor * (load.inFlight / n) + 1
            for (const h of hosts) worstAnyHostAfterReleases = Math.max(worstAnyHostAfterReleases, h.inFlight / bound)
          }
          for (const h of running) h.release()
          assert.equal(load.inFlight, 0)
        },
      ),
      PROPERTY_OPTIONS,
    )
    t.diagnostic(`worst assigned-endpoint in-flight / (factor × average + 1): ${worstRatio.toFixed(3)}`)
    t.diagnostic(`worst in-flight / (factor × average) at ≥ 10 requests per endpoint: ${worstOverAverage.toFixed(3)}`)
    t.diagnostic(`worst any-endpoint ratio after releases (not a guarantee): ${worstAnyHostAfterReleases.toFixed(3)}`)
  })
})

describe('radixSortByKey', () => {
  it('sorts keys ascending, carries values along and keeps equal keys in input order', () => {
    // Keys from a small range too, so equal keys (colliding ring points) are common.
    const key = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 20 }), fc.constantFrom(0xffff, 0x10000, 0xffff0000))
    fc.assert(
      fc.property(fc.array(key, { maxLength: 300 }), (input) => {
        const keys = Uint32Array.from(input)
        const values = Int32Array.from(input.map((_, i) => i))
        const sorted = radixSortByKey(keys, values)
        const expected = input.map((k, i) => [k, i] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1])
        assert.deepEqual(
          [...sorted.keys].map((k, i) => [k, sorted.values[i]!]),
          expected.map(([k, i]) => [k, i]),
        )
      }),
      { numRuns: 200, seed: 0x5eed },
    )
  })
})

describe('ConsistentHashBalancer weights and ring size', () => {
  it('a weight-3 endpoint gets about 3× the keys of a weight-1 endpoint (within 10%)', (t) => {
    // Five of each weight per ring, three rings: the ratio of the mean shares, so one lucky ring layout cannot pass it.
    for (const prefix of ['10.1', '172.16', '192.168']) {
      const hosts = makeHosts(addresses(10, prefix).map((s, i) => ({ ...s, weight: i < 5 ? 3 : 1 })))
      const counts = countBy(assign(new ConsistentHashBalancer().rebuild(hosts)))
      let heavy = 0
      let light = 0
      for (const [i, h] of hosts.entries()) {
        if (i < 5) heavy += counts.get(h.key) ?? 0
        else light += counts.get(h.key) ?? 0
      }
      const ratio = heavy / light
      t.diagnostic(`${prefix}: weight-3 / weight-1 keys = ${ratio.toFixed(3)}`)
      assert.ok(Math.abs(ratio / 3 - 1) <= 0.1, `${prefix}: ratio ${ratio}`)
    }
  })

  it('a single weight-3 endpoint gets about 3× the keys of a weight-1 one', () => {
    const [heavy, light] = makeHosts([
      { address: '10.0.0.1', weight: 3 },
      { address: '10.0.0.2', weight: 1 },
    ]) as [Host, Host]
    const counts = countBy(assign(new ConsistentHashBalancer().rebuild([heavy, light])))
    const ratio = (counts.get(heavy.key) ?? 0) / (counts.get(light.key) ?? 0)
    assert.ok(Math.abs(ratio / 3 - 1) <= 0.1, `ratio ${ratio}`)
  })

  it('spreads requests without a key (hash -1) over the endpoints by weight', (t) => {
    const hosts = makeHosts([
      { address: '10.0.0.1', weight: 1 },
      { address: '10.0.0.2', weight: 2 },
      { address: '10.0.0.3', weight: 3 },
      { address: '10.0.0.4', weight: 4 },
    ])
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    const counts = new Map<Host, number>()
    const context = ctx(-1)
    const picks = 100_000
    for (let i = 0; i < picks; i++) {
      const host = picker.pick(context)
      assert.ok(host !== null)
      counts.set(host, (counts.get(host) ?? 0) + 1)
    }
    const shares = hosts.map((h) => (counts.get(h) ?? 0) / picks)
    t.diagnostic(`keyless shares for weights 1:2:3:4: ${shares.map((s) => s.toFixed(4)).join(' ')}`)
    // A ring of 5,120 points gives each endpoint its weight's share within a few percent of the total.
    for (const [i, share] of shares.entries()) assert.ok(Math.abs(share - (i + 1) / 10) <= 0.03, `weight ${i + 1}: share ${share}`)
  })

  it('scales a slow-starting endpoint down by its slowStartFactor', () => {
    const hosts = makeHosts(addresses(4, '10.3'))
    const [ramping] = hosts as [Host]
    const full = countBy(assign(new ConsistentHashBalancer().rebuild(hosts))).get(ramping.key) ?? 0
    ramping.slowStartFactor = 0.1
    const slow = countBy(assign(new ConsistentHashBalancer().rebuild(hosts))).get(ramping.key) ?? 0
    // 0.1 / 3.1 of the keys instead of a quarter; every key it keeps was already its own.
    assert.ok(slow < full / 5, `slow start ${slow} of ${full}`)
    assert.ok(slow > 0)
  })

  it('while an endpoint ramps up, keys only ever move onto it', () => {
    const hosts = makeHosts(addresses(5, '10.7'))
    const ramping = hosts[4]!
    const balancer = new ConsistentHashBalancer()
    let previous: string[] | null = null
    // Its points are a prefix of its full set, so each step adds points and removes none.
    for (const factor of [0.1, 0.15, 0.3, 0.55, 0.8, 1]) {
      ramping.slowStartFactor = factor
      const current = assign(balancer.rebuild(hosts))
      if (previous !== null) {
        for (let k = 0; k < KEY_COUNT; k++) {
          if (previous[k] !== current[k]) assert.equal(current[k], ramping.key, `factor ${factor}: key ${k} moved to ${current[k]}`)
        }
      }
      previous = current
    }
  })

  it('keeps 512 virtual nodes per weight for small rings and shrinks them for 10,000 endpoints', () => {
    const balancer = new ConsistentHashBalancer()
    balancer.rebuild(makeHosts(addresses(3)))
    assert.equal(balancer.vnodesPerWeight, MAX_VNODES_PER_WEIGHT)
    assert.equal(MAX_VNODES_PER_WEIGHT, 512)
    balancer.rebuild(makeHosts(addresses(40).map((s) => ({ ...s, weight: 10 }))))
    assert.equal(balancer.vnodesPerWeight, 512, '40 × 10 × 512 points still fit the ring')

    const big = makeHosts(addresses(10_000))
    const picker = balancer.rebuild(big)
    const v = balancer.vnodesPerWeight
    assert.ok(v < MAX_VNODES_PER_WEIGHT, `vnodesPerWeight ${v}`)
    assert.ok(v * 10_000 <= MAX_RING_ENTRIES, 'the ring stays within its size limit')
    assert.ok(2 * v * 10_000 > MAX_RING_ENTRIES, 'and is not shrunk further than needed')
    assert.equal(v & (v - 1), 0, 'a power of two')
    // Still a working ring over all of them.
    const seen = new Set<Host>()
    for (let k = 0; k < KEY_COUNT; k++) seen.add(picker.pick(ctx(KEYS[k]!))!)
    assert.ok(seen.size > 9_000, `${seen.size} of 10,000 endpoints got a key`)

    balancer.rebuild(makeHosts(addresses(3)))
    assert.equal(balancer.vnodesPerWeight, 512, 'grows back once the ring is small again')
  })

  it('sizes the ring from the total weight alone: the largest power of two up to 512 that fits MAX_RING_ENTRIES', () => {
    const balancer = new ConsistentHashBalancer()
    const hosts = makeHosts(addresses(1100, '10.4'))
    for (const [count, expected] of [[1100, 256], [1000, 512], [1050, 256], [10, 512], [1024, 512], [1025, 256]] as const) {
      balancer.rebuild(hosts.slice(0, count))
      assert.equal(balancer.vnodesPerWeight, expected, `${count} endpoints`)
      assert.ok(expected * count <= MAX_RING_ENTRIES && (expected === MAX_VNODES_PER_WEIGHT || 2 * expected * count > MAX_RING_ENTRIES))
    }
    // Within one size class, removing endpoints moves only their keys.
    const before = assign(balancer.rebuild(hosts.slice(0, 1100)))
    const after = assign(balancer.rebuild(hosts.slice(0, 1050)))
    const gone = new Set(hosts.slice(1050, 1100).map((h) => h.key))
    for (let k = 0; k < KEY_COUNT; k++) if (before[k] !== after[k]) assert.ok(gone.has(before[k]!), `key ${k} moved off ${before[k]}`)
  })

  it(
    'maps keys as a fresh balancer does, whatever ring sizes the balancer went through before',

    () => {
      const hosts = makeHosts(addresses(1100, '10.4'))
      const veteran = new ConsistentHashBalancer()
      veteran.rebuild(hosts)
      const members = hosts.slice(0, 1000)
      const fresh = new ConsistentHashBalancer()
      const expected = assign(fresh.rebuild(members))
      const actual = assign(veteran.rebuild(members))
      let differ = 0
      for (let k = 0; k < KEY_COUNT; k++) if (expected[k] !== actual[k]) differ++
      assert.equal(veteran.vnodesPerWeight, fresh.vnodesPerWeight)
      assert.equal(differ, 0, `${differ} of ${KEY_COUNT} keys map elsewhere`)
    },
  )

  it('returns the empty picker for no endpoints', () => {
    const picker = new ConsistentHashBalancer().rebuild([])
    assert.equal(picker, EMPTY_PICKER)
    assert.equal(picker.pick(ctx(123)), null)
  })

  it('rejects a balance factor that is not 0 or greater than 1', () => {
    for (const bad of [1, 0.5, -2, Number.NaN]) assert.throws(() => new ConsistentHashBalancer(bad), RangeError, String(bad))
    assert.doesNotThrow(() => new ConsistentHashBalancer(0))
    assert.doesNotThrow(() => new ConsistentHashBalancer(1.0001))
  })

  it(
    'gives two endpoints whose seeds differ by a multiple of the vnode stride their fair share in any order',

    () => {
      const specs = [{ address: '10.0.4.152' }, { address: '10.0.6.23' }]
      const forward = makeHosts(specs)
      const ab = countBy(assign(new ConsistentHashBalancer().rebuild(forward)))
      const ba = assign(new ConsistentHashBalancer().rebuild(makeHosts(specs).reverse()))
      for (const h of forward) {
        const share = (ab.get(h.key) ?? 0) / KEY_COUNT
        assert.ok(Math.abs(share - 0.5) <= 0.05, `${h.key}: ${(share * 100).toFixed(1)}% of keys`)
      }
      assertSameMapping(ba, assign(new ConsistentHashBalancer().rebuild(forward)), 'member order changed the mapping')
    },
  )
})

describe('ConsistentHashBalancer pick', () => {
  const specs = addresses(6, '10.5')

  /** Keys of KEYS whose home endpoint (nothing tried) is `host`. */
  function keysOf(picker: Picker, host: Host): number[] {
    const out: number[] = []
    for (let k = 0; k < KEY_COUNT; k++) if (picker.pick(ctx(KEYS[k]!)) === host) out.push(k)
    return out
  }

  it('finds the first ring point at or after the hash, wrapping past the top (against a plain sorted ring)', () => {
    const hosts = makeHosts([{ address: '10.8.0.1' }, { address: '10.8.0.2', weight: 2 }, { address: '10.8.0.3' }])
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    // The ring written out the slow way: every host's 512 × weight points, sorted.
    const ring: Array<{ point: number; owner: Host }> = []
    for (const h of hosts) for (let j = 0; j < 512 * h.weight; j++) ring.push({ point: vnodeHash(h.hashSeed, j), owner: h })
    ring.sort((x, y) => x.point - y.point)
    const expected = (hash: number): Host => (ring.find((e) => e.point >= hash) ?? ring[0]!).owner
    const probes = [0, 1, 0xffff, 0x10000, 0xffffffff, 0xfffffffe, 0x80000000]
    // Exactly on, just before and just after points, across bucket boundaries.
    for (let i = 0; i < ring.length; i += 7) probes.push(ring[i]!.point, (ring[i]!.point + 1) >>> 0, (ring[i]!.point - 1) >>> 0)
    probes.push(ring[ring.length - 1]!.point, (ring[ring.length - 1]!.point + 1) >>> 0, ring[0]!.point)
    for (const hash of probes) assert.equal(picker.pick(ctx(hash)), expected(hash), `hash ${hash.toString(16)}`)
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (hash) => picker.pick(ctx(hash)) === expected(hash)),
      { numRuns: 500, seed: 0x5eed },
    )
  })

  it('sends a key whose endpoint was tried to the next distinct endpoint on the ring; other keys stay', () => {
    const hosts = makeHosts(specs)
    const balancer = new ConsistentHashBalancer()
    const picker = balancer.rebuild(hosts)
    const failed = hosts[2]!
    // Removing an endpoint hands each of its points to the next point clockwise: the same successor
    // the walk must find when that endpoint is only tried.
    const withoutFailed = new ConsistentHashBalancer().rebuild(hosts.filter((h) => h !== failed))
    let rerouted = 0
    for (let k = 0; k < KEY_COUNT; k++) {
      const home = picker.pick(ctx(KEYS[k]!))
      const retry = picker.pick(ctx(KEYS[k]!, [failed]))
      assert.ok(retry !== null)
      assert.notEqual(retry, failed)
      if (home === failed) {
        rerouted++
        assert.equal(retry.key, withoutFailed.pick(ctx(KEYS[k]!))!.key, `key ${k}`)
      } else {
        assert.equal(retry, home, `key ${k} moved although its endpoint was not tried`)
      }
    }
    assert.ok(rerouted > KEY_COUNT / 12, `${rerouted} keys were on the failed endpoint`)
    // The failed endpoint's keys spread over the others rather than all landing on one neighbour.
    const successors = new Set(keysOf(picker, failed).map((k) => picker.pick(ctx(KEYS[k]!, [failed]))))
    assert.equal(successors.size, hosts.length - 1)
  })

  it('walks past several tried endpoints, and returns null once every endpoint was tried', () => {
    const hosts = makeHosts(specs)
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    const tried = [hosts[0]!, hosts[3]!, hosts[4]!]
    const without = new ConsistentHashBalancer().rebuild(hosts.filter((h) => !tried.includes(h)))
    for (let k = 0; k < 5000; k++) assert.equal(picker.pick(ctx(KEYS[k]!, tried))!.key, without.pick(ctx(KEYS[k]!))!.key)
    assert.equal(picker.pick(ctx(KEYS[0]!, hosts.slice())), null)
    assert.equal(picker.pick(ctx(-1, hosts.slice())), null)
  })

  it('passes over an endpoint at maxConcurrent like a tried one', () => {
    const hosts = makeHosts(specs, 2)
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    const full = hosts[1]!
    const itsKeys = keysOf(picker, full)
    assert.ok(itsKeys.length > 0)
    full.inFlight = 2
    for (const k of itsKeys.slice(0, 500)) {
      assert.equal(picker.pick(ctx(KEYS[k]!)), picker.pick(ctx(KEYS[k]!, [full])))
      assert.notEqual(picker.pick(ctx(KEYS[k]!)), full)
    }
    full.inFlight = 1
    for (const k of itsKeys.slice(0, 500)) assert.equal(picker.pick(ctx(KEYS[k]!)), full, 'back home once below maxConcurrent')
    for (const h of hosts) h.inFlight = 2
    assert.equal(picker.pick(ctx(KEYS[0]!)), null, 'null when every endpoint is full')
  })

  it('returns the endpoint named by a sticky token, whatever the key hash', () => {
    const hosts = makeHosts(specs)
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    for (const pinned of hosts) {
      for (let k = 0; k < 200; k++) assert.equal(picker.pick(ctx(KEYS[k]!, null, pinned.stickyToken)), pinned)
      assert.equal(picker.pick(ctx(-1, null, pinned.stickyToken)), pinned)
      assert.equal(picker.pick(ctx(KEYS[0]!, [hosts.find((h) => h !== pinned)!], pinned.stickyToken)), pinned, 'another endpoint tried')
    }
  })

  it('falls back to the ring when the sticky endpoint was tried, is full, unknown or not in the picker', () => {
    const hosts = makeHosts(specs, 3)
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    const pinned = hosts[4]!
    // Keys that are not pinned's own, so the fallback is visible.
    const others: number[] = []
    for (let k = 0; others.length < 200; k++) if (picker.pick(ctx(KEYS[k]!)) !== pinned) others.push(k)

    for (const k of others) {
      const ring = picker.pick(ctx(KEYS[k]!))
      assert.equal(picker.pick(ctx(KEYS[k]!, [pinned], pinned.stickyToken)), ring, 'tried')
      assert.equal(picker.pick(ctx(KEYS[k]!, null, 'ffffffff')), ring, 'unknown token')
    }
    pinned.inFlight = 3
    for (const k of others) assert.equal(picker.pick(ctx(KEYS[k]!, null, pinned.stickyToken)), picker.pick(ctx(KEYS[k]!)), 'full')
    pinned.inFlight = 0

    // An ejected endpoint is left out of the rebuild: its token no longer pins.
    const healthy = hosts.filter((h) => h !== pinned)
    const without = new ConsistentHashBalancer().rebuild(healthy)
    for (const k of others) assert.equal(without.pick(ctx(KEYS[k]!, null, pinned.stickyToken)), without.pick(ctx(KEYS[k]!)))
  })

  it('spills a hot key to the next endpoints under bounded load, and back once load drops', () => {
    const hosts = makeHosts(addresses(4, '10.6'))
    const picker = new ConsistentHashBalancer(1.25).rebuild(hosts)
    const key = hashString('hot')
    const home = picker.pick(ctx(key))!
    const held: Host[] = []
    for (let i = 0; i < 100; i++) {
      const host = picker.pick(ctx(key))!
      host.acquire()
      held.push(host)
      assert.ok(host.inFlight <= Math.ceil((1.25 * host.load.inFlight) / 4), `request ${i}: ${host.inFlight} on ${host.key}`)
    }
    const counts = new Map<Host, number>()
    for (const h of held) counts.set(h, (counts.get(h) ?? 0) + 1)
    assert.equal(counts.size, 4, 'the hot key spread over every endpoint')
    assert.ok((counts.get(home) ?? 0) >= 25, 'its home endpoint kept its bounded share')
    // The sticky endpoint is bounded too: at its capacity, a request pinned to it walks the ring.
    assert.equal(home.inFlight, Math.ceil((1.25 * (home.load.inFlight + 1)) / 4))
    const spilled = picker.pick(ctx(key))
    assert.notEqual(spilled, home)
    assert.equal(picker.pick(ctx(key, null, home.stickyToken)), spilled)
    for (const h of held) h.release()
    assert.equal(picker.pick(ctx(key)), home, 'idle again: the key is home')
    assert.equal(picker.pick(ctx(key, null, hosts[3]!.stickyToken)), hosts[3])
  })

  it('without bounded load a hot key stays on its endpoint however loaded', () => {
    const hosts = makeHosts(addresses(4, '10.6'))
    const picker = new ConsistentHashBalancer().rebuild(hosts)
    const key = hashString('hot')
    const home = picker.pick(ctx(key))!
    for (let i = 0; i < 100; i++) {
      const host = picker.pick(ctx(key))!
      assert.equal(host, home)
      host.acquire()
    }
    assert.equal(home.inFlight, 100)
  })
})
