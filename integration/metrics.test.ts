import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import type { MetricFamily, Sample } from 'parse-prometheus-text-format'
import { Agent } from 'undici'
import { closedPort, send, startSidecar, startUpstream } from './helpers.ts'

/** Every metric the contract names, with its type and labels. */
const CONTRACT: ReadonlyArray<readonly [string, MetricFamily['type'], readonly string[]]> = [
  ['outrigger_requests_total', 'COUNTER', ['service', 'code']],
  ['outrigger_request_duration_seconds', 'HISTOGRAM', ['service']],
  ['outrigger_upstream_attempts_total', 'COUNTER', ['service', 'endpoint', 'outcome']],
  ['outrigger_retries_total', 'COUNTER', ['service']],
  ['outrigger_endpoints', 'GAUGE', ['service', 'state']],
  ['outrigger_discovery_updates_total', 'COUNTER', ['service', 'source']],
  ['outrigger_discovery_errors_total', 'COUNTER', ['service', 'source']],
  ['outrigger_discovery_staleness_seconds', 'GAUGE', ['service']],
  ['outrigger_in_flight_requests', 'GAUGE', ['service']],
]

function value(family: MetricFamily | undefined, labels: Record<string, string>): number {
  const sample = family?.metrics.find((m: Sample) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
  assert.ok(sample !== undefined, `${family?.name ?? '?'} has no sample ${JSON.stringify(labels)}`)
  return Number(sample.value ?? sample.count)
}

describe('/metrics after real traffic', () => {
  it('parses as Prometheus text and holds every metric of the contract with sensible values', async () => {
    const ups = [await startUpstream('a'), await startUpstream('b')]
    const dead = `127.0.0.1:${await closedPort()}`
    const s = await startSidecar({ services: { api: { source: 'static', endpoints: [...ups.map((u) => u.address), dead] } } })
    const agent = new Agent()
    try {
      for (let i = 0; i < 30; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'api' } })).status, 200)
      assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'nobody' } })).status, 404)
      const res = await send(agent, `${s.adminUrl}/metrics`)
      assert.equal(res.status, 200)
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/)
      const families = new Map(parsePrometheusTextFormat(res.body).map((f) => [f.name, f]))

      for (const [name, type, labels] of CONTRACT) {
        const f = families.get(name)
        assert.ok(f !== undefined, `${name} is exported`)
        assert.equal(f.type, type, `${name} is a ${type}`)
        assert.ok(f.help.length > 10, `${name} has help text`)
        // (parse-prometheus-text-format drops the labels, count and sum of labelled histograms; the
        // histogram is checked on its exposition lines below.)
        if (type !== 'HISTOGRAM') for (const m of f.metrics) assert.deepEqual(Object.keys(m.labels ?? {}).sort(), [...labels].sort(), `${name} labels`)
      }
      const requests = families.get('outrigger_requests_total')
      assert.equal(value(requests, { service: 'api', code: '200' }), 30)
      assert.match(res.body, /^outrigger_request_duration_seconds_count\{service="api"\} 30$/m, 'one observation per request')
      assert.match(res.body, /^outrigger_request_duration_seconds_bucket\{le="\+Inf",service="api"\} 30$/m)
      // The dead endpoint was tried (connection refused) and each such attempt retried elsewhere.
      const attempts = families.get('outrigger_upstream_attempts_total')
      const refused = value(attempts, { service: 'api', endpoint: dead, outcome: 'connect_failed' })
      assert.ok(refused >= 1, 'round-robin reached the dead endpoint')
      assert.equal(value(families.get('outrigger_retries_total'), { service: 'api' }), refused)
      assert.equal(value(attempts, { service: 'api', endpoint: ups[0]!.address, outcome: '2xx' }) + value(attempts, { service: 'api', endpoint: ups[1]!.address, outcome: '2xx' }), 30)
      assert.equal(value(families.get('outrigger_endpoints'), { service: 'api', state: 'healthy' }), 3)
      assert.equal(value(families.get('outrigger_discovery_updates_total'), { service: 'api', source: 'static' }), 1)
      assert.equal(value(families.get('outrigger_discovery_errors_total'), { service: 'api', source: 'static' }), 0)
      assert.equal(value(families.get('outrigger_discovery_staleness_seconds'), { service: 'api' }), 0)
      assert.equal(value(families.get('outrigger_in_flight_requests'), { service: 'api' }), 0)
      // Process metrics come with the prefix.
      assert.ok(value(families.get('outrigger_process_resident_memory_bytes'), {}) > 10_000_000)
      assert.ok(families.has('outrigger_nodejs_eventloop_lag_seconds'))
      // Histogram buckets span sub-millisecond to tens of seconds.
      const buckets = [...res.body.matchAll(/^outrigger_request_duration_seconds_bucket\{le="([^"]+)",service="api"\}/gm)].map((m) => (m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1])))
      assert.ok(Math.min(...buckets) <= 0.001 && Math.max(...buckets.filter(Number.isFinite)) >= 10, `buckets ${buckets.join(', ')}`)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })
})
