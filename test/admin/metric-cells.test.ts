import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { AggregatorRegistry, Histogram, Registry } from 'prom-client'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import { ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import { CellHistogram } from '../../src/observability/cells.ts'
import { Metrics } from '../../src/observability/metrics.ts'
import { prng } from '../support/prng.ts'

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

function cluster(t: TestContext, name: string): ServiceCluster {
  const doc = { services: { [name]: { source: 'static', endpoints: ['127.0.0.1:1'] } } }
  const config = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(config !== undefined)
  const c = new ServiceCluster(config, new RoundRobinBalancer(), pino({ level: 'silent' }), {}, () => 0)
  t.after(() => c.close())
  c.setEndpoints([{ address: '127.0.0.1', port: 1, weight: 1, meta: {} }])
  return c
}

async function lines(metrics: Metrics, prefix: string): Promise<string[]> {
  return (await metrics.registry.metrics()).split('\n').filter((l) => l.startsWith(prefix))
}

describe('CellHistogram', () => {
  it('exposes exactly what prom-client\'s Histogram exposes for the same observations, as text and as JSON', async () => {
    const random = prng(7)
    const ours = new Registry()
    const theirs = new Registry()
    const cells = new CellHistogram({ name: 'd_seconds', help: 'Durations.', labelNames: ['service'] as const, buckets: BUCKETS, registers: [ours] })
    const reference = new Histogram({ name: 'd_seconds', help: 'Durations.', labelNames: ['service'] as const, buckets: BUCKETS, registers: [theirs] })
    for (const service of ['a', 'b', 'with "quote"']) {
      const cell = cells.cell({ service })
      const child = reference.labels(service)
      for (let i = 0; i < 500; i++) {
        // Exact bucket bounds land in that bucket (`le` is inclusive), beyond the last in +Inf.
        const v = random() < 0.2 ? BUCKETS[Math.floor(random() * BUCKETS.length)]! : random() < 0.05 ? 100 + random() : random() ** 4 * 2
        cell.observe(v)
        child.observe(v)
      }
    }
    cells.zero({ service: 'idle' })
    reference.zero({ service: 'idle' })
    assert.equal(await ours.metrics(), await theirs.metrics())
    assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON())
  })

  it('merges over workers like a prom-client histogram (AggregatorRegistry sums each series)', async () => {
    const parts = [1, 2].map((n) => {
      const r = new Registry()
      const h = new CellHistogram({ name: 'd_seconds', help: 'Durations.', labelNames: ['service'] as const, buckets: [0.1, 1], registers: [r] })
      for (let i = 0; i < n; i++) h.cell({ service: 'api' }).observe(0.5)
      return r.getMetricsAsJSON()
    })
    const merged = await AggregatorRegistry.aggregate(await Promise.all(parts)).metrics()
    assert.ok(merged.includes('d_seconds_bucket{le="1",service="api"} 3'), merged)
    assert.ok(merged.includes('d_seconds_count{service="api"} 3'), merged)
  })

  it('supports the rest of the Histogram API: observe with labels, labels(), remove and reset', async () => {
    const r = new Registry()
    const h = new CellHistogram({ name: 'd_seconds', help: 'Durations.', labelNames: ['service'] as const, buckets: [1], registers: [r] })
    h.observe({ service: 'a' }, 0.5)
    h.labels('a').observe(2)
    h.observe({ value: 3, labels: { service: 'b' } })
    let text = await r.metrics()
    assert.ok(text.includes('d_seconds_count{service="a"} 2'))
    assert.ok(text.includes('d_seconds_bucket{le="1",service="a"} 1'))
    assert.ok(text.includes('d_seconds_sum{service="b"} 3'))
    h.remove({ service: 'a' })
    text = await r.metrics()
    assert.ok(!text.includes('service="a"'))
    assert.throws(() => h.cell({ service: 'x', other: 'y' } as never), /not included/)
    h.reset()
    assert.ok(!(await r.metrics()).includes('service='))
  })
})

describe('Metrics cells', () => {
  it('adds what the data path counted since the last read, once', async (t) => {
    const m = new Metrics()
    const sm = m.forService(cluster(t, 'api'), 'static')
    sm.inFlight.inc()
    sm.inFlight.inc()
    sm.retries.inc()
    assert.deepEqual(await lines(m, 'outrigger_in_flight_requests{'), ['outrigger_in_flight_requests{service="api"} 2'])
    assert.deepEqual(await lines(m, 'outrigger_retries_total{'), ['outrigger_retries_total{service="api"} 1'])
    // A second read adds nothing new; then the gauge goes down.
    assert.deepEqual(await lines(m, 'outrigger_retries_total{'), ['outrigger_retries_total{service="api"} 1'])
    sm.inFlight.dec()
    sm.inFlight.dec()
    assert.deepEqual(await lines(m, 'outrigger_in_flight_requests{'), ['outrigger_in_flight_requests{service="api"} 0'])
    sm.duration.observe(0.002)
    assert.ok((await lines(m, 'outrigger_request_duration_seconds_bucket{le="0.0025",service="api"}')).includes('outrigger_request_duration_seconds_bucket{le="0.0025",service="api"} 1'))
  })

  it('gives a reload\'s new cluster the same series: the old cluster\'s requests in flight finish into it', async (t) => {
    const m = new Metrics()
    const old = m.forService(cluster(t, 'api'), 'static')
    old.inFlight.inc()
    old.request(200)
    const rebuilt = m.forService(cluster(t, 'api'), 'static')
    assert.equal(rebuilt.inFlight, old.inFlight)
    rebuilt.inFlight.inc()
    old.inFlight.dec()
    rebuilt.request(200)
    assert.deepEqual(await lines(m, 'outrigger_in_flight_requests{'), ['outrigger_in_flight_requests{service="api"} 1'])
    assert.deepEqual(await lines(m, 'outrigger_requests_total{'), ['outrigger_requests_total{service="api",code="200"} 2'])
  })

  it('a host that left stays gone: late attempts on it bring no series back', async (t) => {
    const m = new Metrics()
    const c = cluster(t, 'api')
    const sm = m.forService(c, 'static')
    const host = c.hosts()[0]!
    sm.attempt(host, '2xx')
    assert.equal((await lines(m, 'outrigger_upstream_attempts_total{')).length, 1)
    sm.attempt(host, '2xx')
    m.removeHost('api', host)
    sm.attempt(host, '2xx')
    sm.attempt(host, 'reset')
    assert.deepEqual(await lines(m, 'outrigger_upstream_attempts_total{'), [])
  })

  it('binding the same series again returns its cell (no growth over reloads)', (t) => {
    const m = new Metrics()
    const first = m.bind(m.policyRejections, { service: 'api', policy: 'rate_limit' })
    for (let i = 0; i < 100; i++) m.forService(cluster(t, 'api'), 'static')
    assert.equal(m.bind(m.policyRejections, { service: 'api', policy: 'rate_limit' }), first)
    assert.notEqual(m.bind(m.policyRejections, { service: 'api', policy: 'circuit_breaker' }), first)
  })
})
