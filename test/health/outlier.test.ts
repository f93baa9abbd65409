import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import type { PickContext } from '../../src/balancer/types.ts'
import { HostFlag } from '../../src/cluster/host.ts'
import type { Host } from '../../src/cluster/host.ts'
import type { ClusterObserver } from '../../src/cluster/service-cluster.ts'
import { ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ServiceConfig } from '../../src/config/types.ts'
import { OutlierDetector, clockTime } from '../../src/health/outlier.ts'
import type { AttemptOutcome } from '../../src/observability/metrics.ts'
import { hostAt } from '../support/cluster.ts'

const logger = pino({ level: 'silent' })

/** The fake clock starts here: 12:01:07 UTC, so reasons read like the DESIGN example. */
const START_MS = Date.UTC(2025, 0, 1, 12, 1, 7)
const EJECTION_MS = 10_000
const MAX_EJECTION_MS = 25_000

/** consecutiveFailures 3, ejectionTime 10s, maxEjectionTime 25s, no ejection cap. */
const BASE_PASSIVE = { consecutiveFailures: 3, ejectionTime: '10s', maxEjectionTime: '25s', maxEjectionPercent: 100 }

function serviceConfig(healthCheck: Record<string, unknown>): ServiceConfig {
  const doc = { services: { s: { source: 'static', endpoints: ['127.0.0.1:1'], healthCheck } } }
  const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(service !== undefined)
  return service
}

interface Harness {
  cluster: ServiceCluster
  detector: OutlierDetector
  /** Picker rebuilds since the first endpoint set. */
  changes: number
  /** Hosts reported to the observer's onEject, in order. */
  ejections: Host[]
}

/**
 * A real cluster of `hosts` endpoints (ports 1001…) with an OutlierDetector on it, both on fake
 * timers and the fake Date (starting at START_MS). Stopped and closed when the test ends.
 */
function harness(t: TestContext, options: { hosts?: number; passive?: Record<string, unknown>; panicThreshold?: number } = {}): Harness {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: START_MS })
  const config = serviceConfig({ passive: { ...BASE_PASSIVE, ...options.passive }, panicThreshold: options.panicThreshold ?? 0 })
  const passive = config.healthCheck.passive
  assert.ok(passive !== undefined)
  const h = { changes: 0, ejections: [] as Host[] } as Harness
  const observer: ClusterObserver = {
    onClusterChange: () => {
      h.changes++
    },
  }
  const now = (): number => Date.now()
  h.cluster = new ServiceCluster(config, new RoundRobinBalancer(), logger, observer, now)
  h.detector = new OutlierDetector(h.cluster, passive, logger, now, { onEject: (host) => h.ejections.push(host) })
  t.after(async () => {
    h.detector.stop()
    await h.cluster.close()
  })
  const count = options.hosts ?? 3
  h.cluster.setEndpoints(Array.from({ length: count }, (_, i) => ({ address: '127.0.0.1', port: 1001 + i, weight: 1, meta: {} })))
  h.changes = 0
  return h
}

function isEjected(host: Host): boolean {
  return (host.flags & HostFlag.EJECTED) !== 0
}

function ejectedPorts(cluster: ServiceCluster): number[] {
  return cluster
    .hosts()
    .filter(isEjected)
    .map((x) => x.port)
}

/** The set of ports picked over `count` first attempts, sorted. */
function pickedPorts(cluster: ServiceCluster, count = 40): number[] {
  const context: PickContext = { hash: -1, stickyToken: null, tried: null }
  const ports = new Set<number>()
  for (let i = 0; i < count; i++) {
    const host = cluster.picker.pick(context)
    if (host !== null) ports.add(host.port)
  }
  return [...ports].sort((a, b) => a - b)
}

/** Records `times` attempts ending with a 503. */
function fail(detector: OutlierDetector, host: Host, times = 1, outcome: AttemptOutcome = '5xx', status = 503): void {
  for (let i = 0; i < times; i++) detector.record(host, outcome, status)
}

/**
 * Asserts the host's current ejection ends exactly `durationMs` from now: still ejected one ms
 * before, back in the picker on the dot.
 */
function assertEjectionLasts(t: TestContext, h: Harness, host: Host, durationMs: number): void {
  assert.ok(isEjected(host), 'ejected to begin with')
  assert.equal(host.outlier.ejectedUntilMs, Date.now() + durationMs)
  t.mock.timers.tick(durationMs - 1)
  assert.ok(isEjected(host), `still ejected 1 ms before ${durationMs} ms`)
  t.mock.timers.tick(1)
  assert.ok(!isEjected(host), `back after ${durationMs} ms`)
  assert.ok(pickedPorts(h.cluster).includes(host.port))
}

describe('OutlierDetector counting', () => {
  it('ejects exactly at consecutiveFailures, not one before', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1002)
    fail(h.detector, host, 2)
    assert.equal(host.outlier.consecutiveFailures, 2)
    assert.ok(!isEjected(host), 'not ejected after 2 of 3 failures')
    assert.equal(h.changes, 0)
    assert.deepEqual(h.ejections, [])
    fail(h.detector, host)
    assert.ok(isEjected(host), 'ejected at the third failure')
    assert.equal(host.routable, false)
    assert.equal(h.changes, 1)
    assert.deepEqual(h.ejections, [host])
  })

  it('counts 5xx, connect_failed, reset and timeout alike, mixed', (t) => {
    const h = harness(t, { passive: { consecutiveFailures: 4 } })
    const host = hostAt(h.cluster, 1001)
    h.detector.record(host, 'connect_failed', 0)
    h.detector.record(host, '5xx', 502)
    h.detector.record(host, 'reset', 0)
    assert.ok(!isEjected(host))
    h.detector.record(host, 'timeout', 0)
    assert.ok(isEjected(host))
    assert.equal(host.reasons.get(HostFlag.EJECTED), '4 consecutive timeout since 12:01:07; ejected until 12:01:17')
  })

  for (const [outcome, status] of [
    ['1xx', 101],
    ['2xx', 200],
    ['3xx', 304],
    ['4xx', 404],
    ['4xx', 429],
  ] as const) {
    it(`a ${status} (${outcome}) counts as a success and resets the count`, (t) => {
      const h = harness(t)
      const host = hostAt(h.cluster, 1001)
      fail(h.detector, host, 2)
      h.detector.record(host, outcome, status)
      assert.equal(host.outlier.consecutiveFailures, 0)
      fail(h.detector, host, 2)
      assert.ok(!isEjected(host), 'the success started the count over')
      fail(h.detector, host)
      assert.ok(isEjected(host))
    })
  }

  it('ignores aborted attempts: they neither count nor reset', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    for (let i = 0; i < 10; i++) h.detector.record(host, 'aborted', 0)
    assert.equal(host.outlier.consecutiveFailures, 0)
    assert.ok(!isEjected(host))
    fail(h.detector, host, 2)
    h.detector.record(host, 'aborted', 0)
    assert.equal(host.outlier.consecutiveFailures, 2)
    fail(h.detector, host)
    assert.ok(isEjected(host), 'the abort between failures did not break the run')
  })

  it('each host is counted on its own', (t) => {
    const h = harness(t)
    const a = hostAt(h.cluster, 1001)
    const b = hostAt(h.cluster, 1002)
    fail(h.detector, a, 2)
    fail(h.detector, b, 2)
    h.detector.record(b, '2xx', 200)
    fail(h.detector, a)
    assert.deepEqual(ejectedPorts(h.cluster), [1001])
    assert.equal(b.outlier.consecutiveFailures, 0)
  })
})

describe('OutlierDetector reasons', () => {
  it('names the count, the last status, when the run began and when the ejection ends', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host) // 12:01:07
    t.mock.timers.tick(2_000)
    fail(h.detector, host, 1, '5xx', 500)
    t.mock.timers.tick(3_000)
    fail(h.detector, host) // 12:01:12, ejected for 10 s
    assert.deepEqual(host.reasons.get(HostFlag.EJECTED), '3 consecutive 503 since 12:01:07; ejected until 12:01:22')
    assert.deepEqual(h.cluster.hosts().map((x) => x.reasons.size), [1, 0, 0])
  })

  it('shows the outcome name when the last failure had no status', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1003)
    fail(h.detector, host, 2)
    fail(h.detector, host, 1, 'connect_failed', 0)
    assert.equal(host.reasons.get(HostFlag.EJECTED), '3 consecutive connect_failed since 12:01:07; ejected until 12:01:17')
  })

  it('a success restarts "since" at the next failure', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host, 2)
    t.mock.timers.tick(1_000)
    h.detector.record(host, '2xx', 200)
    t.mock.timers.tick(1_000) // 12:01:09
    fail(h.detector, host, 3, 'reset', 0)
    assert.equal(host.reasons.get(HostFlag.EJECTED), '3 consecutive reset since 12:01:09; ejected until 12:01:19')
  })

  it('clockTime prints UTC HH:MM:SS', () => {
    assert.equal(clockTime(START_MS), '12:01:07')
    assert.equal(clockTime(Date.UTC(2025, 5, 30, 23, 59, 59, 999)), '23:59:59')
    assert.equal(clockTime(Date.UTC(2025, 0, 1, 0, 0, 0)), '00:00:00')
  })

  it('the reason is cleared when the ejection ends', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host, 3)
    t.mock.timers.tick(EJECTION_MS)
    assert.equal(host.reasons.has(HostFlag.EJECTED), false)
    assert.equal(host.flags, 0)
  })
})

describe('OutlierDetector routing', () => {
  it('the picker no longer returns an ejected host', (t) => {
    const h = harness(t)
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1003])
    fail(h.detector, hostAt(h.cluster, 1002), 3)
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1003])
  })

  it('failures while ejected (requests still in flight) neither re-eject nor extend the ejection', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host, 3)
    const until = host.outlier.ejectedUntilMs
    t.mock.timers.tick(1_000)
    fail(h.detector, host, 5)
    assert.equal(host.outlier.ejectedUntilMs, until)
    assert.equal(host.outlier.ejections, 1)
    assert.deepEqual(h.ejections, [host])
    assert.equal(h.changes, 1)
    t.mock.timers.tick(EJECTION_MS - 1_000)
    assert.ok(!isEjected(host))
  })
})

describe('OutlierDetector ejection time', () => {
  it('ends exactly at ejectionTime, not a ms before; the host is picked again and starts a fresh count', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1002)
    fail(h.detector, host, 3)
    assert.equal(host.outlier.ejectedUntilMs, START_MS + EJECTION_MS)
    t.mock.timers.tick(EJECTION_MS - 1)
    assert.ok(isEjected(host))
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1003])
    t.mock.timers.tick(1)
    assert.ok(!isEjected(host))
    assert.equal(h.changes, 2)
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1003])
    assert.equal(host.outlier.consecutiveFailures, 0)
    assert.equal(host.outlier.lastReturnMs, START_MS + EJECTION_MS)
    fail(h.detector, host, 2)
    assert.ok(!isEjected(host), 'a returned host needs a full run of failures again')
  })

  it('the second ejection lasts 2× ejectionTime, the third 3×, capped at maxEjectionTime', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    const expected = [EJECTION_MS, 2 * EJECTION_MS, MAX_EJECTION_MS, MAX_EJECTION_MS]
    for (const [i, durationMs] of expected.entries()) {
      fail(h.detector, host, 3)
      assert.equal(host.outlier.ejections, i + 1)
      assert.match(host.reasons.get(HostFlag.EJECTED) ?? '', new RegExp(`; ejected until ${clockTime(Date.now() + durationMs)}$`))
      assertEjectionLasts(t, h, host, durationMs)
    }
    assert.equal(h.ejections.length, 4)
  })

  it('the ejection count decays back once the host has stayed in for maxEjectionTime', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host, 3)
    assertEjectionLasts(t, h, host, EJECTION_MS)
    // In for exactly maxEjectionTime: the next ejection is a first one again.
    t.mock.timers.tick(MAX_EJECTION_MS)
    fail(h.detector, host, 3)
    assert.equal(host.outlier.ejections, 1)
    assertEjectionLasts(t, h, host, EJECTION_MS)
  })

  it('the ejection count does not decay 1 ms before maxEjectionTime', (t) => {
    const h = harness(t)
    const host = hostAt(h.cluster, 1001)
    fail(h.detector, host, 3)
    assertEjectionLasts(t, h, host, EJECTION_MS)
    t.mock.timers.tick(MAX_EJECTION_MS - 1)
    fail(h.detector, host, 3)
    assert.equal(host.outlier.ejections, 2)
    assertEjectionLasts(t, h, host, 2 * EJECTION_MS)
  })
})

describe('OutlierDetector maxEjectionPercent', () => {
  it('10 hosts at 30%: at most 3 ejected at once', (t) => {
    const h = harness(t, { hosts: 10, passive: { maxEjectionPercent: 30 } })
    for (const host of h.cluster.hosts()) fail(h.detector, host, 3)
    assert.deepEqual(ejectedPorts(h.cluster), [1001, 1002, 1003])
    assert.equal(h.ejections.length, 3)
    assert.deepEqual(pickedPorts(h.cluster), [1004, 1005, 1006, 1007, 1008, 1009, 1010])
    // More failures on the others change nothing while the cap is reached.
    for (const host of h.cluster.hosts()) fail(h.detector, host, 5)
    assert.equal(ejectedPorts(h.cluster).length, 3)
  })

  it('allows one ejection when the percent is above 0, even if it rounds down to none (2 hosts at 10%)', (t) => {
    const h = harness(t, { hosts: 2, passive: { maxEjectionPercent: 10 } })
    const [a, b] = h.cluster.hosts()
    assert.ok(a !== undefined && b !== undefined)
    fail(h.detector, a, 3)
    fail(h.detector, b, 3)
    assert.deepEqual(ejectedPorts(h.cluster), [1001])
    assert.deepEqual(pickedPorts(h.cluster), [1002])
  })

  it('0% never ejects', (t) => {
    const h = harness(t, { hosts: 3, passive: { maxEjectionPercent: 0 } })
    for (const host of h.cluster.hosts()) fail(h.detector, host, 100)
    assert.deepEqual(ejectedPorts(h.cluster), [])
    assert.deepEqual(h.ejections, [])
    assert.equal(h.changes, 0)
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1003])
  })

  it('a skipped ejection happens on a later failure once a slot frees up', (t) => {
    const h = harness(t, { hosts: 2, passive: { maxEjectionPercent: 50 } })
    const [a, b] = h.cluster.hosts()
    assert.ok(a !== undefined && b !== undefined)
    fail(h.detector, a, 3)
    t.mock.timers.tick(1_000) // b starts failing at 12:01:08
    fail(h.detector, b, 3)
    assert.deepEqual(ejectedPorts(h.cluster), [1001], 'b is over the cap')
    t.mock.timers.tick(EJECTION_MS - 1_000)
    assert.deepEqual(ejectedPorts(h.cluster), [], 'a is back')
    assert.ok(!isEjected(b), 'freeing a slot alone does not eject b')
    fail(h.detector, b)
    assert.deepEqual(ejectedPorts(h.cluster), [1002])
    assert.equal(b.reasons.get(HostFlag.EJECTED), '4 consecutive 503 since 12:01:08; ejected until 12:01:27')
    assert.deepEqual(h.ejections, [a, b])
  })

  it('a success in between wipes a skipped ejection', (t) => {
    const h = harness(t, { hosts: 2, passive: { maxEjectionPercent: 50 } })
    const [a, b] = h.cluster.hosts()
    assert.ok(a !== undefined && b !== undefined)
    fail(h.detector, a, 3)
    fail(h.detector, b, 3)
    h.detector.record(b, '2xx', 200)
    t.mock.timers.tick(EJECTION_MS)
    fail(h.detector, b)
    assert.deepEqual(ejectedPorts(h.cluster), [])
  })

  it('hosts that failed an active check do not use up ejection slots', (t) => {
    const h = harness(t, { hosts: 2, passive: { maxEjectionPercent: 50 } })
    const [a, b] = h.cluster.hosts()
    assert.ok(a !== undefined && b !== undefined)
    h.cluster.setHostFlag(a, HostFlag.FAILED_ACTIVE_CHECK, true, 'failed check (HTTP 503) since 12:01:07')
    fail(h.detector, b, 3)
    assert.deepEqual(ejectedPorts(h.cluster), [1002])
  })

  it('a host that left the service is never ejected', (t) => {
    const h = harness(t)
    const leaving = hostAt(h.cluster, 1003)
    h.cluster.setEndpoints(h.cluster.hosts().slice(0, 2))
    fail(h.detector, leaving, 3)
    assert.ok(!isEjected(leaving))
    assert.deepEqual(h.ejections, [])
  })
})

describe('OutlierDetector stop and forget', () => {
  it('stop() clears the timers: no flag changes afterwards, and no new ejections', (t) => {
    const h = harness(t)
    const a = hostAt(h.cluster, 1001)
    const b = hostAt(h.cluster, 1002)
    fail(h.detector, a, 3)
    const changes = h.changes
    h.detector.stop()
    t.mock.timers.tick(MAX_EJECTION_MS * 10)
    assert.ok(isEjected(a), 'the cluster is going away: flags stay')
    fail(h.detector, b, 10)
    assert.ok(!isEjected(b))
    assert.equal(h.changes, changes)
    assert.deepEqual(h.ejections, [a])
  })

  it('stop() cancels every pending ejection timer', (t) => {
    const h = harness(t)
    fail(h.detector, hostAt(h.cluster, 1001), 3)
    fail(h.detector, hostAt(h.cluster, 1002), 3)
    // Spies on the fake clearTimeout; restored here so the real one comes back when the fake timers go.
    const spy = t.mock.method(globalThis, 'clearTimeout')
    h.detector.stop()
    const cleared = spy.mock.callCount()
    spy.mock.restore()
    assert.equal(cleared, 2)
  })

  it('forget(host) drops that host timer only', (t) => {
    const h = harness(t)
    const a = hostAt(h.cluster, 1001)
    const b = hostAt(h.cluster, 1002)
    fail(h.detector, a, 3)
    fail(h.detector, b, 3)
    h.cluster.setEndpoints(h.cluster.hosts().filter((x) => x !== a))
    h.detector.forget(a)
    h.detector.forget(hostAt(h.cluster, 1003)) // a host without a timer: nothing happens
    t.mock.timers.tick(EJECTION_MS)
    assert.ok(isEjected(a), 'the forgotten host timer never fired')
    assert.ok(!isEjected(b), 'the other host returned on time')
  })

  it('without forget, the timer of a host that left still fires (control for the test above)', (t) => {
    const h = harness(t)
    const a = hostAt(h.cluster, 1001)
    fail(h.detector, a, 3)
    h.cluster.setEndpoints(h.cluster.hosts().filter((x) => x !== a))
    const changes = h.changes
    t.mock.timers.tick(EJECTION_MS)
    assert.ok(!isEjected(a))
    assert.equal(h.changes, changes, 'a host outside the cluster does not rebuild the picker')
  })
})

describe('OutlierDetector and panic mode', () => {
  it('ejecting beyond panicThreshold turns panic on and routes to every host; returns turn it off', (t) => {
    const h = harness(t, { hosts: 4, panicThreshold: 50 })
    const hosts = h.cluster.hosts()
    fail(h.detector, hosts[0]!, 3)
    fail(h.detector, hosts[1]!, 3)
    assert.equal(h.cluster.panic, false, '2 of 4 healthy is not below 50%')
    assert.deepEqual(pickedPorts(h.cluster), [1003, 1004])
    t.mock.timers.tick(1_000)
    fail(h.detector, hosts[2]!, 3)
    assert.equal(h.cluster.panic, true)
    assert.deepEqual(ejectedPorts(h.cluster), [1001, 1002, 1003])
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1003, 1004])
    t.mock.timers.tick(EJECTION_MS - 1_000)
    assert.equal(h.cluster.panic, false, 'two returned: 3 of 4 healthy')
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1004])
    t.mock.timers.tick(1_000)
    assert.deepEqual(pickedPorts(h.cluster), [1001, 1002, 1003, 1004])
  })
})
