import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { Pool } from 'undici'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import type { PickContext } from '../../src/balancer/types.ts'
import { HostFlag } from '../../src/cluster/host.ts'
import type { Host } from '../../src/cluster/host.ts'
import type { ClusterObserver } from '../../src/cluster/service-cluster.ts'
import { RECOVERY_SETTLE_MS, ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ServiceConfig } from '../../src/config/types.ts'
import type { Endpoint } from '../../src/discovery/types.ts'
import { hostAt } from '../support/cluster.ts'

const logger = pino({ level: 'silent' })

function serviceConfig(extra: Record<string, unknown> = {}): ServiceConfig {
  const source = extra.source ?? 'static'
  const doc = source === 'static'
    ? { services: { s: { source, endpoints: ['127.0.0.1:1'], ...extra } } }
    : { discovery: { consul: { url: 'http://127.0.0.1:8500' }, etcd: { endpoints: ['http://127.0.0.1:2379'] } }, services: { s: { ...extra, source } } }
  const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(service !== undefined)
  return service
}

function ep(port: number, weight = 1, address = '127.0.0.1'): Endpoint {
  return { address, port, weight, meta: {} }
}

interface Harness {
  cluster: ServiceCluster
  changes: number
  removed: Host[]
  /** Advances the injected clock. */
  now: { ms: number }
}

/** A real cluster (undici Pools are created lazily and never connect here), closed when the test ends. */
function harness(t: TestContext, extra: Record<string, unknown> = {}): Harness {
  const h = { changes: 0, removed: [] as Host[], now: { ms: 1_700_000_000_000 } } as Harness
  const observer: ClusterObserver = {
    onClusterChange: () => {
      h.changes++
    },
    onHostRemoved: (_cluster, host) => {
      h.removed.push(host)
    },
  }
  h.cluster = new ServiceCluster(serviceConfig(extra), new RoundRobinBalancer(), logger, observer, () => h.now.ms)
  t.after(() => h.cluster.close())
  return h
}

/** The set of ports picked over `count` first attempts. */
function pickedPorts(cluster: ServiceCluster, count: number): number[] {
  const context: PickContext = { hash: -1, stickyToken: null, tried: null }
  const ports = new Set<number>()
  for (let i = 0; i < count; i++) {
    const host = cluster.picker.pick(context)
    if (host !== null) ports.add(host.port)
  }
  return [...ports].sort((a, b) => a - b)
}

/** Resolves after pending promise callbacks and one macrotask. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

describe('ServiceCluster membership', () => {
  it('is not ready and picks nothing before the first endpoint set', (t) => {
    const { cluster } = harness(t)
    assert.equal(cluster.ready, false)
    assert.equal(cluster.picker.pick({ hash: -1, stickyToken: null, tried: null }), null)
  })

  it('keeps the same Host object per address:port across updates', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    assert.equal(h.cluster.ready, true)
    const first = hostAt(h.cluster, 1001)
    first.inFlight = 5
    first.requests = 42
    h.cluster.setEndpoints([ep(1003), ep(1001), ep(1002)])
    assert.equal(hostAt(h.cluster, 1001), first)
    assert.equal(hostAt(h.cluster, 1001).inFlight, 5)
    assert.equal(hostAt(h.cluster, 1001).requests, 42)
    assert.deepEqual(
      h.cluster.hosts().map((x) => x.key),
      ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003'],
    )
  })

  it('updates a changed weight on the same host and rebuilds', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const host = hostAt(h.cluster, 1001)
    const picker = h.cluster.picker
    assert.equal(h.changes, 1)
    h.cluster.setEndpoints([ep(1001, 5), ep(1002)])
    assert.equal(hostAt(h.cluster, 1001), host)
    assert.equal(host.weight, 5)
    assert.equal(h.changes, 2)
    assert.notEqual(h.cluster.picker, picker)
  })

  it('does not rebuild on an update that changes nothing', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const picker = h.cluster.picker
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setEndpoints([ep(1002), ep(1001)])
    assert.equal(h.changes, 1)
    assert.equal(h.cluster.picker, picker)
  })

  it('updates meta without a rebuild', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001)])
    h.cluster.setEndpoints([{ ...ep(1001), meta: { zone: 'b' } }])
    assert.deepEqual(hostAt(h.cluster, 1001).meta, { zone: 'b' })
    assert.equal(h.changes, 1)
  })

  it('deduplicates repeated endpoints in one set (first one wins)', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001, 2), ep(1002), ep(1001, 7), ep(1002)])
    assert.deepEqual(
      h.cluster.hosts().map((x) => [x.key, x.weight]),
      [
        ['127.0.0.1:1001', 2],
        ['127.0.0.1:1002', 1],
      ],
    )
    assert.deepEqual(pickedPorts(h.cluster, 10), [1001, 1002])
  })

  it('drains a host that leaves: flagged, never picked, listed until its pool has closed and its last request ended', async (t) => {
    // Hold every pool's close() until the test lets it go, so "until its pool closes" is observable.
    const releases = new Map<Pool, () => void>()
    t.mock.method(Pool.prototype, 'close', function (this: Pool): Promise<void> {
      return new Promise<void>((resolve) => releases.set(this, resolve))
    })
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const leaving = hostAt(h.cluster, 1002)
    leaving.acquire() // a request in flight on the fast lane, which undici's pool does not see
    h.cluster.setEndpoints([ep(1001)])

    assert.equal(h.changes, 2)
    assert.equal(leaving.flags & HostFlag.DRAINING, HostFlag.DRAINING)
    assert.equal(leaving.routable, false)
    assert.equal(leaving.reasons.get(HostFlag.DRAINING), 'left the registry')
    assert.deepEqual(
      h.cluster.hosts().map((x) => x.port),
      [1001],
    )
    assert.deepEqual(h.cluster.drainingHosts(), [leaving])
    assert.deepEqual(pickedPorts(h.cluster, 10), [1001])

    await settle()
    assert.deepEqual(h.cluster.drainingHosts(), [leaving], 'still draining while its pool is open')
    assert.deepEqual(h.removed, [])

    const release = releases.get(leaving.dispatcher as Pool)
    assert.ok(release !== undefined, 'the cluster closes the leaving host pool')
    release()
    await settle()
    assert.deepEqual(h.cluster.drainingHosts(), [leaving], 'still draining while a request is in flight on it')
    assert.deepEqual(h.removed, [])
    leaving.release()
    await settle()
    assert.deepEqual(h.cluster.drainingHosts(), [])
    assert.deepEqual(h.removed, [leaving])

    // Let the remaining pools close for real when the cluster closes.
    t.mock.restoreAll()
    for (const r of releases.values()) r()
  })

  it('flags of a draining host do not trigger rebuilds', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const leaving = hostAt(h.cluster, 1002)
    h.cluster.setEndpoints([ep(1001)])
    const changes = h.changes
    h.cluster.setHostFlag(leaving, HostFlag.EJECTED, true, 'x')
    assert.equal(h.changes, changes)
  })

  it('ignores endpoint sets after close', async (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001)])
    await h.cluster.close()
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    assert.deepEqual(h.cluster.hosts(), [])
    assert.equal(h.cluster.picker.pick({ hash: -1, stickyToken: null, tried: null }), null)
    assert.equal(h.changes, 1)
  })
})

describe('ServiceCluster discovery status', () => {
  it('records the time of the last update', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001)])
    assert.equal(h.cluster.discovery.lastUpdateMs, h.now.ms)
    h.now.ms += 5000
    h.cluster.setEndpoints([ep(1001)])
    assert.equal(h.cluster.discovery.lastUpdateMs, h.now.ms)
  })

  it('a discovery error marks the cluster stale and keeps its hosts; the next set clears it', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    const before = h.cluster.hosts()
    const changes = h.changes
    h.cluster.setDiscoveryError(new Error('connection refused'))
    assert.equal(h.cluster.discovery.stale, true)
    assert.equal(h.cluster.discovery.error, 'connection refused')
    assert.equal(h.cluster.discovery.staleSinceMs, h.now.ms)
    assert.deepEqual(h.cluster.hosts(), before)
    assert.deepEqual(pickedPorts(h.cluster, 10), [1001, 1002])
    assert.equal(h.changes, changes)

    h.cluster.setEndpoints([ep(1001), ep(1002)])
    assert.deepEqual(h.cluster.discovery, { lastUpdateMs: h.now.ms, error: null, stale: false, staleSinceMs: null })
    assert.equal(h.cluster.stalenessSeconds(), 0)
  })

  it('stalenessSeconds counts from the first error, on the injected clock', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001)])
    assert.equal(h.cluster.stalenessSeconds(), 0)
    h.cluster.setDiscoveryError(new Error('first'))
    assert.equal(h.cluster.stalenessSeconds(), 0)
    h.now.ms += 1500
    assert.equal(h.cluster.stalenessSeconds(), 1.5)
    h.cluster.setDiscoveryError(new Error('second'))
    h.now.ms += 2500
    assert.equal(h.cluster.stalenessSeconds(), 4)
    assert.equal(h.cluster.discovery.error, 'second')
    h.cluster.setEndpoints([ep(1001)])
    h.now.ms += 1000
    assert.equal(h.cluster.stalenessSeconds(), 0)
  })
})

describe('ServiceCluster after a registry outage', () => {
  const ports = (h: Harness): number[] => h.cluster.hosts().map((x) => x.port).sort((a, b) => a - b)

  for (const source of ['consul', 'etcd']) {
    it(`${source}: members the first answers leave out stay for RECOVERY_SETTLE_MS, then the latest answer applies`, (t) => {
      t.mock.timers.enable({ apis: ['setTimeout'] })
      const h = harness(t, { source })
      h.cluster.setEndpoints([ep(1001), ep(1002)])
      h.cluster.setDiscoveryError(new Error('No cluster leader'))
      // A restarted Consul's first answer, before anti-entropy has re-registered anything.
      h.cluster.setEndpoints([])
      assert.equal(h.cluster.discovery.stale, false)
      assert.deepEqual(ports(h), [1001, 1002])
      assert.deepEqual(pickedPorts(h.cluster, 10), [1001, 1002])
      assert.equal(h.removed.length, 0)
      // Additions and weight changes apply at once; 1002 is still missing and still kept.
      h.cluster.setEndpoints([ep(1001, 3), ep(1003)])
      assert.deepEqual(ports(h), [1001, 1002, 1003])
      assert.equal(h.cluster.hosts().find((x) => x.port === 1001)?.weight, 3)
      t.mock.timers.tick(RECOVERY_SETTLE_MS - 1)
      assert.deepEqual(ports(h), [1001, 1002, 1003])
      t.mock.timers.tick(1)
      assert.deepEqual(ports(h), [1001, 1003])
      assert.deepEqual(h.cluster.drainingHosts().map((x) => x.port), [1002])
      // Settled: a removal applies at once again.
      h.cluster.setEndpoints([ep(1003)])
      assert.deepEqual(ports(h), [1003])
    })
  }

  it('without an outage, or for a static source, a removal applies at once', (t) => {
    const h = harness(t, { source: 'consul' })
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setEndpoints([ep(1001)])
    assert.deepEqual(ports(h), [1001])

    const s = harness(t)
    s.cluster.setEndpoints([ep(1001), ep(1002)])
    s.cluster.setDiscoveryError(new Error('unreadable'))
    s.cluster.setEndpoints([ep(1001)])
    assert.deepEqual(ports(s), [1001])
  })

  it('a second outage inside the window does not extend it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] })
    const h = harness(t, { source: 'consul' })
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setDiscoveryError(new Error('down'))
    h.cluster.setEndpoints([ep(1001)])
    t.mock.timers.tick(RECOVERY_SETTLE_MS / 2)
    h.cluster.setDiscoveryError(new Error('down again'))
    h.cluster.setEndpoints([ep(1001)])
    t.mock.timers.tick(RECOVERY_SETTLE_MS / 2)
    assert.deepEqual(ports(h), [1001])
  })
})

describe('ServiceCluster health', () => {
  it('FAILED_ACTIVE_CHECK takes a host out of the picker, clearing it brings it back', (t) => {
    const h = harness(t, { healthCheck: { panicThreshold: 0 } })
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    const host = hostAt(h.cluster, 1002)
    h.cluster.setHostFlag(host, HostFlag.FAILED_ACTIVE_CHECK, true, 'GET /health: 500')
    assert.equal(h.changes, 2)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1003])
    assert.equal(host.reasons.get(HostFlag.FAILED_ACTIVE_CHECK), 'GET /health: 500')

    // Setting a flag that is already set changes nothing.
    h.cluster.setHostFlag(host, HostFlag.FAILED_ACTIVE_CHECK, true)
    assert.equal(h.changes, 2)

    h.cluster.setHostFlag(host, HostFlag.FAILED_ACTIVE_CHECK, false)
    assert.equal(h.changes, 3)
    assert.equal(host.flags, 0)
    assert.equal(host.reasons.size, 0)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1002, 1003])
  })

  it('SLOW_START does not take a host out of the picker', (t) => {
    const h = harness(t)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setHostFlag(hostAt(h.cluster, 1002), HostFlag.SLOW_START, true)
    assert.deepEqual(pickedPorts(h.cluster, 10), [1001, 1002])
  })

  it('health survives a new endpoint set', (t) => {
    const h = harness(t, { healthCheck: { panicThreshold: 0 } })
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    h.cluster.setHostFlag(hostAt(h.cluster, 1002), HostFlag.EJECTED, true)
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    assert.equal(hostAt(h.cluster, 1002).flags, HostFlag.EJECTED)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1003])
  })

  it('panics below panicThreshold: picks go to every host', (t) => {
    const h = harness(t, { healthCheck: { panicThreshold: 50 } })
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003), ep(1004)])
    h.cluster.setHostFlag(hostAt(h.cluster, 1001), HostFlag.FAILED_ACTIVE_CHECK, true)
    h.cluster.setHostFlag(hostAt(h.cluster, 1002), HostFlag.EJECTED, true)
    // 2 of 4 healthy is exactly 50%: not below the threshold.
    assert.equal(h.cluster.panic, false)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1003, 1004])

    h.cluster.setHostFlag(hostAt(h.cluster, 1003), HostFlag.FAILED_ACTIVE_CHECK, true)
    assert.equal(h.cluster.panic, true)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1002, 1003, 1004])

    h.cluster.setHostFlag(hostAt(h.cluster, 1001), HostFlag.FAILED_ACTIVE_CHECK, false)
    assert.equal(h.cluster.panic, false)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1004])
  })

  it('panics when every host is unhealthy, and never routes to draining hosts', (t) => {
    const h = harness(t, { healthCheck: { panicThreshold: 50 } })
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003)])
    for (const host of h.cluster.hosts()) h.cluster.setHostFlag(host, HostFlag.EJECTED, true)
    assert.equal(h.cluster.panic, true)
    h.cluster.setEndpoints([ep(1001), ep(1002)])
    assert.equal(h.cluster.panic, true)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1001, 1002])
  })

  it('never panics with panicThreshold 0', (t) => {
    const h = harness(t, { healthCheck: { panicThreshold: 0 } })
    h.cluster.setEndpoints([ep(1001), ep(1002), ep(1003), ep(1004)])
    for (const port of [1001, 1002, 1003]) h.cluster.setHostFlag(hostAt(h.cluster, port), HostFlag.FAILED_ACTIVE_CHECK, true)
    assert.equal(h.cluster.panic, false)
    assert.deepEqual(pickedPorts(h.cluster, 12), [1004])
    h.cluster.setHostFlag(hostAt(h.cluster, 1004), HostFlag.FAILED_ACTIVE_CHECK, true)
    assert.equal(h.cluster.panic, false)
    assert.equal(h.cluster.picker.pick({ hash: -1, stickyToken: null, tried: null }), null)
  })
})
