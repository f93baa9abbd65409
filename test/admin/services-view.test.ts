import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { serviceView } from '../../src/admin/services-view.ts'
import { RoundRobinBalancer } from '../../src/balancer/round-robin.ts'
import { HostFlag } from '../../src/cluster/host.ts'
import { ServiceCluster } from '../../src/cluster/service-cluster.ts'
import { parseConfig } from '../../src/config/load.ts'
import { renderStatusTable } from '../../src/status-table.ts'

const T0_MS = Date.UTC(2025, 0, 1, 12, 0, 0)

function cluster(t: TestContext, now: { ms: number }): ServiceCluster {
  const doc = { services: { api: { source: 'static', endpoints: ['127.0.0.1:1'], healthCheck: { panicThreshold: 0 } } } }
  const config = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(config !== undefined)
  const c = new ServiceCluster(config, new RoundRobinBalancer(), pino({ level: 'silent' }), {}, () => now.ms)
  t.after(() => c.close())
  return c
}

describe('serviceView', () => {
  it('shows a cluster before its first endpoint set', (t) => {
    const c = cluster(t, { ms: T0_MS })
    assert.deepEqual(serviceView(c), {
      name: 'api',
      source: 'static',
      strategy: 'round-robin',
      stale: false,
      panic: false,
      discovery: { lastUpdate: null, error: null, stalenessSeconds: 0 },
      endpoints: [],
    })
  })

  it('lists members with flags and reasons, then draining hosts, and feeds the status table', (t) => {
    const now = { ms: T0_MS }
    const c = cluster(t, now)
    c.setEndpoints([
      { address: '10.0.0.1', port: 80, weight: 2, meta: {} },
      { address: '10.0.0.2', port: 80, weight: 1, meta: {} },
      { address: '10.0.0.3', port: 80, weight: 1, meta: {} },
    ])
    const [h1, h2] = c.hosts()
    assert.ok(h1 !== undefined && h2 !== undefined)
    h1.inFlight = 1
    h1.requests = 9
    c.setHostFlag(h2, HostFlag.EJECTED, true, 'ejected until 12:01:37')
    c.setEndpoints([
      { address: '10.0.0.1', port: 80, weight: 2, meta: {} },
      { address: '10.0.0.2', port: 80, weight: 1, meta: {} },
    ])
    now.ms += 7000
    c.setDiscoveryError(new Error('registry down'))
    now.ms += 3000

    const v = serviceView(c)
    assert.equal(v.stale, true)
    assert.deepEqual(v.discovery, { lastUpdate: '2025-01-01T12:00:00.000Z', error: 'registry down', stalenessSeconds: 3 })
    assert.deepEqual(v.endpoints, [
      { address: '10.0.0.1', port: 80, weight: 2, healthy: true, flags: [], inFlight: 1, requests: 9, reasons: [] },
      { address: '10.0.0.2', port: 80, weight: 1, healthy: false, flags: ['ejected'], inFlight: 0, requests: 0, reasons: ['ejected until 12:01:37'] },
      { address: '10.0.0.3', port: 80, weight: 1, healthy: false, flags: ['draining'], inFlight: 0, requests: 0, reasons: ['left the registry'] },
    ])

    assert.equal(
      renderStatusTable([v]),
      [
        'SERVICE         STRATEGY     ENDPOINT     WEIGHT  HEALTH     FLAGS     IN-FLIGHT  REQUESTS  WHY',
        'api (stale 3s)  round-robin  10.0.0.1:80       2  healthy    -                 1         9',
        'api (stale 3s)  round-robin  10.0.0.2:80       1  unhealthy  ejected           0         0  ejected until 12:01:37',
        'api (stale 3s)  round-robin  10.0.0.3:80       1  unhealthy  draining          0         0  left the registry',
        '',
        '1 service, 1/3 endpoints healthy, 1 stale',
        '',
      ].join('\n'),
    )
  })
})
