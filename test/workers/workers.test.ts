import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { ServiceView } from '../../src/admin/services-view.ts'
import { parseConfig } from '../../src/config/load.ts'
import { mergeServices } from '../../src/workers/aggregate.ts'
import { perWorkerConfig } from '../../src/workers/per-worker.ts'
import { RemoteControlPlane } from '../../src/workers/remote.ts'
import type { Endpoint } from '../../src/discovery/types.ts'
import type { CheckVerdict } from '../../src/health/active.ts'

function view(endpoints: Array<{ port: number; flags?: string[]; reasons?: string[] }>): ServiceView {
  return {
    name: 'api',
    source: 'static',
    strategy: 'round-robin',
    stale: false,
    panic: false,
    discovery: { lastUpdate: null, error: null, stalenessSeconds: 0 },
    endpoints: endpoints.map((e) => ({ address: '10.0.0.1', port: e.port, weight: 1, healthy: (e.flags ?? []).length === 0, flags: e.flags ?? [], inFlight: 0, requests: 0, reasons: e.reasons ?? [] })),
    policies: {},
  }
}

describe('mergeServices', () => {
  it('sums in-flight and requests over workers, adds a worker’s ejection with its number, sums policy state', () => {
    const primary = [view([{ port: 1 }, { port: 2, flags: ['failed_active_check'], reasons: ['failed check (HTTP 503)'] }])]
    const merged = mergeServices(primary, [
      { worker: 1, metrics: null, services: [{ name: 'api', panic: false, endpoints: [{ key: '10.0.0.1:1', inFlight: 2, requests: 10, ejected: null }, { key: '10.0.0.1:2', inFlight: 0, requests: 3, ejected: null }], extra: { policies: { rateLimit: { requestsPerSecond: 50, burst: 5, tokens: 1.5, rejected: 1 } } } }] },
      { worker: 2, metrics: null, services: [{ name: 'api', panic: false, endpoints: [{ key: '10.0.0.1:1', inFlight: 1, requests: 7, ejected: '5 consecutive 503; ejected until 12:00:30' }], extra: { policies: { rateLimit: { requestsPerSecond: 50, burst: 5, tokens: 2, rejected: 4 } } } }] },
    ])
    const [one, two] = merged[0]!.endpoints
    assert.deepEqual([one!.inFlight, one!.requests, one!.healthy, one!.flags, one!.reasons], [3, 17, false, ['ejected'], ['worker 2: 5 consecutive 503; ejected until 12:00:30']])
    assert.deepEqual([two!.inFlight, two!.requests, two!.healthy, two!.flags], [0, 3, false, ['failed_active_check']])
    assert.deepEqual(merged[0]!.policies, { rateLimit: { requestsPerSecond: 100, burst: 10, tokens: 3.5, rejected: 5 } })
  })

  it('without worker answers, the primary’s view stands with zero counts', () => {
    const merged = mergeServices([view([{ port: 1 }])], [])
    assert.equal(merged[0]!.endpoints[0]!.requests, 0)
    assert.equal(merged[0]!.endpoints[0]!.healthy, true)
  })
})

describe('perWorkerConfig', () => {
  it('splits the sidecar-wide limits over the workers, rounding integers up', () => {
    const config = parseConfig(
      'workers: 3\nservices:\n  api:\n    source: static\n    endpoints: ["127.0.0.1:1"]\n    maxConcurrent: 1000\n    circuitBreaker: { maxRequests: 10, maxPending: 1 }\n    rateLimit: { requestsPerSecond: 300, burst: 50 }\n    cache: { maxEntries: 100, maxBytes: 1MiB }\n',
      { format: 'yaml', baseDir: '/tmp', env: {} },
    )
    const s = perWorkerConfig(config, 3).services[0]!
    assert.equal(s.maxConcurrent, 334)
    assert.deepEqual(s.circuitBreaker, { maxRequests: 4, maxPending: 1 })
    assert.deepEqual(s.rateLimit, { requestsPerSecond: 100, burst: 17 })
    assert.deepEqual(s.cache, { maxEntries: 34, maxBytes: 349526 })
    assert.equal(perWorkerConfig(config, 1), config)
  })
})

describe('RemoteControlPlane', () => {
  const a: Endpoint = { address: '10.0.0.1', port: 1, weight: 1, meta: {} }
  const b: Endpoint = { address: '10.0.0.1', port: 2, weight: 1, meta: {} }
  const config = parseConfig('services:\n  api:\n    source: consul\n', { format: 'yaml', baseDir: '/tmp', env: {} }).services[0]!

  it('delivers the known set asynchronously at start, then every new set; an error after the set', async () => {
    const remote = new RemoteControlPlane()
    remote.setState({ service: 'api', endpoints: [a], error: null, failed: [] })
    const got: string[] = []
    const adapter = remote.adapter(config)
    assert.equal(adapter.source, 'consul')
    adapter.start({ onUpdate: (e) => got.push(`set ${e.length}`), onError: (e) => got.push(`error ${e.message}`) })
    assert.deepEqual(got, [], 'never synchronously from start()')
    await Promise.resolve()
    remote.setState({ service: 'api', endpoints: [a, b], error: 'down', failed: [] })
    assert.deepEqual(got, ['set 1', 'set 2', 'error down'])
    await adapter.stop()
    remote.setState({ service: 'api', endpoints: [a], error: null, failed: [] })
    assert.equal(got.length, 3, 'nothing after stop')
  })

  it('tells watchers of verdict changes; a known failure reaches a new watcher; a leaving endpoint’s verdict goes', async () => {
    const remote = new RemoteControlPlane()
    remote.setState({ service: 'api', endpoints: [a, b], error: null, failed: [['10.0.0.1:2', 'failed check (HTTP 503)']] })
    const seen: CheckVerdict[] = []
    remote.watch('api', '10.0.0.1:2', (v) => seen.push(v))
    await Promise.resolve()
    assert.deepEqual(seen, [{ healthy: false, reason: 'failed check (HTTP 503)' }])
    remote.setVerdict('api', '10.0.0.1:2', { healthy: true, reason: '' })
    remote.setVerdict('api', '10.0.0.1:2', { healthy: true, reason: '' })
    assert.equal(seen.length, 2, 'an unchanged verdict is not repeated')
    remote.setVerdict('api', '10.0.0.1:2', { healthy: false, reason: 'x' })
    remote.setState({ service: 'api', endpoints: [a], error: null, failed: [] })
    assert.deepEqual(seen.at(-1), { healthy: true, reason: '' })
    const late: CheckVerdict[] = []
    remote.watch('api', '10.0.0.1:2', (v) => late.push(v))
    await Promise.resolve()
    assert.deepEqual(late, [])
  })
})
