import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import { ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import { Metrics } from '../../src/observability/metrics.ts'
import type { ServiceRuntime } from '../../src/proxy/service-runtime.ts'
import { MIN_RETRY_CONCURRENCY, retryAllowed } from '../../src/proxy/service-runtime.ts'

/** One metrics registry for the file: prom-client's default metrics are costly to set up per test. */
const metrics = new Metrics()

function runtime(t: TestContext, budgetPercent: number): ServiceRuntime {
  const doc = { services: { s: { source: 'static', endpoints: ['127.0.0.1:1'], retry: { budgetPercent } } } }
  const config = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(config !== undefined)
  assert.equal(config.retry.budgetPercent, budgetPercent)
  const cluster = new ServiceCluster(config, new RoundRobinBalancer(), pino({ level: 'silent' }))
  t.after(() => {
    metrics.removeService(cluster)
    return cluster.close()
  })
  return { name: config.name, config, cluster, metrics: metrics.forService(cluster, 'static'), hashKey: null, stickyCookie: null, outlier: null, circuitBreaker: null, rateLimit: null, cache: null, closePolicies: () => undefined, inFlight: 0, retriesInFlight: 0 }
}

/** The largest number of retries in flight that still allows one more. */
function maxAllowed(service: ServiceRuntime): number {
  service.retriesInFlight = 0
  while (retryAllowed(service)) service.retriesInFlight++
  return service.retriesInFlight
}

describe('retryAllowed', () => {
  it('has a floor of 3 concurrent retries', () => {
    assert.equal(MIN_RETRY_CONCURRENCY, 3)
  })

  it('allows the floor on a quiet service, and no more', (t) => {
    const s = runtime(t, 20)
    s.inFlight = 0
    s.retriesInFlight = 2
    assert.equal(retryAllowed(s), true)
    s.retriesInFlight = 3
    assert.equal(retryAllowed(s), false)
  })

  it('allows budgetPercent of the requests in flight once that exceeds the floor', (t) => {
    const s = runtime(t, 20)
    // inFlight → retries that may be in flight (a retry is allowed while fewer are).
    const table: ReadonlyArray<[number, number]> = [
      [0, 3],
      [1, 3],
      [15, 3], // 20% of 15 = 3, the floor
      [16, 4], // 3.2: a 4th retry may start
      [20, 4],
      [21, 5],
      [100, 20],
      [1000, 200],
    ]
    for (const [inFlight, expected] of table) {
      s.inFlight = inFlight
      assert.equal(maxAllowed(s), expected, `inFlight ${inFlight}`)
    }
  })

  it('keeps the floor with budgetPercent 0 and scales with 100', (t) => {
    const none = runtime(t, 0)
    none.inFlight = 1000
    assert.equal(maxAllowed(none), MIN_RETRY_CONCURRENCY)
    const all = runtime(t, 100)
    all.inFlight = 10
    assert.equal(maxAllowed(all), 10)
  })
})
