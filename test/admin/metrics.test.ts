import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import { HostFlag } from '../../src/cluster/host.ts'
import { ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import { Metrics, statusClass } from '../../src/observability/metrics.ts'
import type { AttemptOutcome } from '../../src/observability/metrics.ts'

function cluster(t: TestContext, name: string, now: { ms: number } = { ms: 0 }): ServiceCluster {
  const doc = { services: { [name]: { source: 'static', endpoints: ['127.0.0.1:1'], healthCheck: { panicThreshold: 0 } } } }
  const config = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(config !== undefined)
  const c = new ServiceCluster(config, new RoundRobinBalancer(), pino({ level: 'silent' }), {}, () => now.ms)
  t.after(() => c.close())
  c.setEndpoints([1, 2, 3, 4].map((port) => ({ address: '127.0.0.1', port, weight: 1, meta: {} })))
  return c
}

/** The exposition lines of `metrics` that carry `service="<service>"`. */
async function seriesOf(metrics: Metrics, service: string): Promise<string[]> {
  const text = await metrics.registry.metrics()
  return text.split('\n').filter((line) => line.includes(`service="${service}"`))
}

describe('Metrics', () => {
  it("exports every one of prom-client's default process and Node.js metrics but the GC histogram", async () => {
    const reference = new Registry()
    collectDefaultMetrics({ register: reference, prefix: 'outrigger_' })
    const expected = (await reference.getMetricsAsJSON()).map((m) => m.name).filter((n) => n !== 'outrigger_nodejs_gc_duration_seconds')
    const ours = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('outrigger_process_') || n.startsWith('outrigger_nodejs_'))
    assert.ok(expected.length >= 10, `prom-client lists ${expected.length} default metrics`)
    assert.deepEqual(ours.sort(), expected.sort())
    assert.ok(!ours.includes('outrigger_nodejs_gc_duration_seconds'))
  })

  it('counts endpoints by state; an ejected host counts as ejected even when it also failed its check', async (t) => {
    const m = new Metrics()
    const c = cluster(t, 'api')
    const [h1, h2, h3] = c.hosts()
    assert.ok(h1 !== undefined && h2 !== undefined && h3 !== undefined)
    c.setHostFlag(h1, HostFlag.FAILED_ACTIVE_CHECK, true)
    c.setHostFlag(h2, HostFlag.EJECTED, true)
    c.setHostFlag(h3, HostFlag.EJECTED, true)
    c.setHostFlag(h3, HostFlag.FAILED_ACTIVE_CHECK, true)
    m.updateEndpointGauge(c)
    const values = (await m.endpoints.get()).values.map((v) => [v.labels.state, v.value])
    assert.deepEqual(Object.fromEntries(values), { healthy: 1, unhealthy: 1, ejected: 2 })
  })

  it('computes staleness at scrape time', async (t) => {
    const m = new Metrics()
    const now = { ms: 1_000_000 }
    const c = cluster(t, 'api', now)
    m.forService(c, 'static')
    c.setDiscoveryError(new Error('down'))
    now.ms += 4500
    assert.ok((await seriesOf(m, 'api')).includes('outrigger_discovery_staleness_seconds{service="api"} 4.5'))
    now.ms += 500
    assert.ok((await seriesOf(m, 'api')).includes('outrigger_discovery_staleness_seconds{service="api"} 5'))
  })

  it('counts requests by code and attempts by endpoint and outcome', async (t) => {
    const m = new Metrics()
    const c = cluster(t, 'api')
    const sm = m.forService(c, 'static')
    const host = c.hosts()[0]
    assert.ok(host !== undefined)
    sm.request(200)
    sm.request(200)
    sm.request(503)
    sm.attempt(host, '2xx')
    sm.attempt(host, 'connect_failed')
    sm.attempt(host, '2xx')
    const lines = await seriesOf(m, 'api')
    for (const expected of [
      'outrigger_requests_total{service="api",code="200"} 2',
      'outrigger_requests_total{service="api",code="503"} 1',
      'outrigger_upstream_attempts_total{service="api",endpoint="127.0.0.1:1",outcome="2xx"} 2',
      'outrigger_upstream_attempts_total{service="api",endpoint="127.0.0.1:1",outcome="connect_failed"} 1',
      'outrigger_in_flight_requests{service="api"} 0',
      'outrigger_retries_total{service="api"} 0',
    ]) {
      assert.ok(lines.includes(expected), `missing ${expected}`)
    }
  })

  it('removeService drops every series of the service', async (t) => {
    const m = new Metrics()
    const gone = cluster(t, 'gone')
    const sm = m.forService(gone, 'static')
    const host = gone.hosts()[0]
    assert.ok(host !== undefined)
    sm.request(200)
    sm.attempt(host, '2xx')
    sm.discoveryUpdates.inc()
    sm.discoveryErrors.inc()
    m.updateEndpointGauge(gone)
    m.removeService(gone)
    assert.deepEqual(await seriesOf(m, 'gone'), [])
  })

  it('removeHost drops the attempt series of that endpoint', async (t) => {
    const m = new Metrics()
    const c = cluster(t, 'api')
    const sm = m.forService(c, 'static')
    const [kept, leaving] = c.hosts()
    assert.ok(kept !== undefined && leaving !== undefined)
    sm.attempt(kept, '2xx')
    sm.attempt(leaving, '2xx')
    sm.attempt(leaving, 'reset')
    m.removeHost('api', leaving)
    const attempts = (await seriesOf(m, 'api')).filter((l) => l.startsWith('outrigger_upstream_attempts_total'))
    assert.deepEqual(attempts, ['outrigger_upstream_attempts_total{service="api",endpoint="127.0.0.1:1",outcome="2xx"} 1'])
  })
})

describe('statusClass', () => {
  it('maps a status code to its class', () => {
    const table: ReadonlyArray<[number, AttemptOutcome]> = [
      [100, '1xx'],
      [101, '1xx'],
      [200, '2xx'],
      [299, '2xx'],
      [304, '3xx'],
      [404, '4xx'],
      [499, '4xx'],
      [500, '5xx'],
      [503, '5xx'],
    ]
    for (const [status, expected] of table) assert.equal(statusClass(status), expected, String(status))
  })
})
