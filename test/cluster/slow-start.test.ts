import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { ConsistentHashBalancer } from '../../src/balancer/consistent-hash.ts'
import { LeastConnectionsBalancer } from '../../src/balancer/least-connections.ts'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import type { Balancer, PickContext } from '../../src/balancer/types.ts'
import { WeightedBalancer } from '../../src/balancer/weighted.ts'
import { HostFlag } from '../../src/cluster/host.ts'
import type { Host } from '../../src/cluster/host.ts'
import { SLOW_START_MIN_FACTOR, SLOW_START_MIN_STEP_MS, SLOW_START_STEPS, ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ServiceConfig } from '../../src/config/types.ts'
import type { Endpoint } from '../../src/discovery/types.ts'
import { hostAt } from '../support/cluster.ts'

const logger = pino({ level: 'silent' })

const WINDOW_MS = 10_000
/** One ramp step: the slow-start timer's period for WINDOW_MS. */
const STEP_MS = Math.max(SLOW_START_MIN_STEP_MS, WINDOW_MS / SLOW_START_STEPS)

function serviceConfig(extra: Record<string, unknown> = {}): ServiceConfig {
  const doc = { services: { s: { source: 'static', endpoints: ['127.0.0.1:1'], slowStart: { window: `${WINDOW_MS}ms` }, ...extra } } }
  const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(service !== undefined)
  return service
}

function ep(port: number, weight = 1): Endpoint {
  return { address: '127.0.0.1', port, weight, meta: {} }
}

interface Harness {
  cluster: ServiceCluster
  /** Picker rebuilds seen by the observer. */
  changes: number
  /** Moves the injected clock and the mocked setTimeout forward together. */
  advance(ms: number): void
}

/**
 * A real cluster on a fake clock: `mock.timers` drives the slow-start timer, and the injected clock
 * tells the cluster the same time. Pools are created lazily and never connect here.
 */
function harness(t: TestContext, balancer: Balancer = new RoundRobinBalancer(), extra: Record<string, unknown> = {}): Harness {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  let nowMs = 1_700_000_000_000
  const h: Harness = {
    cluster: new ServiceCluster(serviceConfig(extra), balancer, logger, { onClusterChange: () => { h.changes++ } }, () => nowMs),
    changes: 0,
    advance(ms: number): void {
      // In steps, so each timer callback sees the clock at its own due time.
      for (let left = ms; left > 0; left -= Math.min(left, STEP_MS)) {
        const step = Math.min(left, STEP_MS)
        nowMs += step
        t.mock.timers.tick(step)
      }
    },
  }
  t.after(() => h.cluster.close())
  return h
}

/** Picks per port over `count` first attempts. */
function pickCounts(cluster: ServiceCluster, count: number): Map<number, number> {
  const context: PickContext = { hash: -1, stickyToken: null, tried: null }
  const counts = new Map<number, number>()
  for (let i = 0; i < count; i++) {
    const host = cluster.picker.pick(context)
    assert.ok(host !== null)
    counts.set(host.port, (counts.get(host.port) ?? 0) + 1)
  }
  return counts
}

function isRamping(host: Host): boolean {
  return (host.flags & HostFlag.SLOW_START) !== 0
}

describe('slow start', () => {
  it('ramps a host added after the first set linearly from 0.1 to 1 over the window', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.advance(60_000)
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    const added = hostAt(h.cluster, 1003)
    assert.ok(isRamping(added))
    assert.equal(added.routable, true, 'slow start shapes the share, it does not take the host out')
    assert.match(added.reasons.get(HostFlag.SLOW_START) ?? '', /^slow start since /)
    assert.equal(added.slowStartFactor, SLOW_START_MIN_FACTOR)
    assert.equal(SLOW_START_MIN_FACTOR, 0.1)

    // max(0.1, elapsed / window) at every step: flat at the floor for the first 10%, then linear.
    for (let elapsed = STEP_MS; elapsed < WINDOW_MS; elapsed += STEP_MS) {
      const changes = h.changes
      h.advance(STEP_MS)
      assert.equal(h.changes, changes + 1, `one rebuild per step (at ${elapsed} ms)`)
      assert.ok(Math.abs(added.slowStartFactor - Math.max(0.1, elapsed / WINDOW_MS)) < 1e-9, `at ${elapsed} ms: ${added.slowStartFactor}`)
      assert.ok(isRamping(added))
    }
    h.advance(STEP_MS)
    assert.equal(isRamping(added), false, 'the flag is cleared at the end of the window')
    assert.equal(added.reasons.has(HostFlag.SLOW_START), false)
    assert.equal(added.slowStartFactor, 1)

    const changes = h.changes
    h.advance(5 * WINDOW_MS)
    assert.equal(h.changes, changes, 'no timer is left once nothing ramps')
  })

  it('never ramps the hosts of the first set, and leaves them alone when another host ramps', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const first = h.cluster.hosts()
    for (const host of first) {
      assert.equal(host.flags, 0)
      assert.equal(host.slowStartFactor, 1)
    }
    const changes = h.changes
    h.advance(WINDOW_MS)
    assert.equal(h.changes, changes, 'no slow-start timer for the first set')

    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    h.advance(WINDOW_MS / 2)
    for (const host of first) {
      assert.equal(host.flags, 0)
      assert.equal(host.slowStartFactor, 1)
    }
  })

  it('does nothing without a slowStart window', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] })
    const doc = { services: { s: { source: 'static', endpoints: ['127.0.0.1:1'] } } }
    const config = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
    assert.ok(config !== undefined)
    const cluster = new ServiceCluster(config, new RoundRobinBalancer(), logger, {}, () => 0)
    t.after(() => cluster.close())
    cluster.setEndpoints([ep(1001)])
    cluster.setEndpoints([ep(1001), ep(1002)])
    assert.equal(hostAt(cluster, 1002).flags, 0)
    assert.equal(hostAt(cluster, 1002).slowStartFactor, 1)
  })

  it('round-robin: a ramping host gets proportionally fewer picks, then an equal share', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.advance(1000)
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])

    // Factor 0.1: weights 1 : 1 : 0.1 (the EDF picker), so 100 of 2,100 picks.
    let counts = pickCounts(h.cluster, 2100)
    assert.ok(Math.abs(counts.get(1003)! - 100) <= 2, `at 0.1: ${counts.get(1003)}`)
    assert.ok(Math.abs(counts.get(1001)! - 1000) <= 2)

    h.advance(WINDOW_MS / 2)
    assert.ok(Math.abs(hostAt(h.cluster, 1003).slowStartFactor - 0.5) < 1e-9)
    counts = pickCounts(h.cluster, 2500)
    assert.ok(Math.abs(counts.get(1003)! - 500) <= 2, `at 0.5: ${counts.get(1003)}`)

    h.advance(WINDOW_MS / 2)
    assert.equal(hostAt(h.cluster, 1003).slowStartFactor, 1)
    counts = pickCounts(h.cluster, 3000)
    assert.deepEqual(Object.fromEntries(counts), { 1001: 1000, 1002: 1000, 1003: 1000 })
  })

  const otherStrategies: ReadonlyArray<{ strategy: string; balancer: () => Balancer }> = [
    { strategy: 'weighted', balancer: () => new WeightedBalancer() },
    { strategy: 'consistent-hash', balancer: () => new ConsistentHashBalancer() },
  ]
  for (const { strategy, balancer } of otherStrategies) {
    it(`${strategy}: a ramping host gets a small share, then a full one`, (t) => {
      const h = harness(t, balancer(), { strategy })
      h.cluster.setEndpoints([ep(1001, 2), ep(1002, 2)])
      h.cluster.setEndpoints([ep(1001, 2), ep(1002, 2), ep(1003, 2)])
      // Keyless requests: weight 2 × 0.1 against 2 + 2, about 4.8% (the ring is within a few percent of that).
      const early = (pickCounts(h.cluster, 10_000).get(1003) ?? 0) / 10_000
      h.advance(WINDOW_MS)
      const late = (pickCounts(h.cluster, 10_000).get(1003) ?? 0) / 10_000
      assert.ok(early > 0 && early < 0.1, `${early} while ramping`)
      assert.ok(late > 0.25, `${late} after the window`)
    })
  }

  it('least-connections: an idle ramping host is passed over until the others carry more', (t) => {
    const h = harness(t, new LeastConnectionsBalancer(), { strategy: 'least-connections' })
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    const [a, b] = [hostAt(h.cluster, 1001), hostAt(h.cluster, 1002)]
    // Idle at factor 0.1 it weighs (0 + 1) / 0.1 = 10: the others win while below 9 in flight.
    a.inFlight = 8
    b.inFlight = 8
    assert.equal(pickCounts(h.cluster, 100).get(1003), undefined)
    h.advance(WINDOW_MS)
    assert.equal(pickCounts(h.cluster, 100).get(1003), 100)
    a.inFlight = 0
    b.inFlight = 0
  })

  it('clears the slow-start timer on close: no rebuild after close', (t) => {
    const h = harness(t)
    const setTimeoutSpy = t.mock.method(globalThis, 'setTimeout')
    const clearTimeoutSpy = t.mock.method(globalThis, 'clearTimeout')
    t.after(() => {
      // Undo the spies before the mocked timers, so the real functions come back last.
      setTimeoutSpy.mock.restore()
      clearTimeoutSpy.mock.restore()
    })
    h.cluster.setEndpoints([ep(1001)])
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    assert.equal(setTimeoutSpy.mock.callCount(), 1, 'one ramp timer')
    const timer = setTimeoutSpy.mock.calls[0]!.result

    const changes = h.changes
    const pending = h.cluster.close()
    assert.ok(
      clearTimeoutSpy.mock.calls.some((c) => c.arguments[0] === timer),
      'close clears the pending ramp timer',
    )
    h.advance(2 * WINDOW_MS)
    assert.equal(h.changes, changes, 'no rebuild after close')
    assert.equal(setTimeoutSpy.mock.callCount(), 1, 'and no new timer')
    assert.equal(h.cluster.picker.pick({ hash: -1, stickyToken: null, tried: null }), null)
    return pending
  })

  it('a host that leaves while ramping stops the timer once nothing else ramps', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001)])
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.advance(STEP_MS)
    h.cluster.setEndpoints([ep(1001)])
    const changes = h.changes
    // The pending timer fires once more, finds nothing ramping and schedules no other.
    h.advance(STEP_MS)
    assert.equal(h.changes, changes + 1)
    h.advance(WINDOW_MS)
    assert.equal(h.changes, changes + 1)
  })
})
