import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { EndpointView, ServiceView } from '../../src/admin/services-view.ts'
import { renderStatusTable } from '../../src/status-table.ts'

function endpoint(e: Partial<EndpointView> & Pick<EndpointView, 'address' | 'port'>): EndpointView {
  return { weight: 1, healthy: true, flags: [], inFlight: 0, requests: 0, reasons: [], ...e }
}

function view(s: Partial<ServiceView> & Pick<ServiceView, 'name'>): ServiceView {
  return {
    source: 'static',
    strategy: 'round-robin',
    stale: false,
    panic: false,
    discovery: { lastUpdate: '2025-01-01T12:00:00.000Z', error: null, stalenessSeconds: 0 },
    endpoints: [],
    ...s,
  }
}

function lines(...rows: string[]): string {
  return rows.join('\n') + '\n'
}

describe('renderStatusTable', () => {
  it('says so when there are no services', () => {
    assert.equal(renderStatusTable([]), 'no services\n')
  })

  it('shows a healthy and an ejected endpoint in aligned columns, numbers right-aligned, then a summary', () => {
    const out = renderStatusTable([
      view({
        name: 'api',
        endpoints: [
          endpoint({ address: '10.0.0.1', port: 8080, inFlight: 2, requests: 10 }),
          endpoint({
            address: '10.0.0.2',
            port: 8080,
            weight: 3,
            healthy: false,
            flags: ['ejected'],
            requests: 7,
            reasons: ['5 consecutive 503 since 12:01:07; ejected until 12:01:37'],
          }),
        ],
      }),
    ])
    assert.equal(
      out,
      lines(
        'SERVICE  STRATEGY     ENDPOINT       WEIGHT  HEALTH     FLAGS    IN-FLIGHT  REQUESTS  WHY',
        'api      round-robin  10.0.0.1:8080       1  healthy    -                2        10',
        'api      round-robin  10.0.0.2:8080       3  unhealthy  ejected          0         7  5 consecutive 503 since 12:01:07; ejected until 12:01:37',
        '',
        '1 service, 1/2 endpoints healthy',
      ),
    )
  })

  it('marks a stale service in panic, brackets IPv6 endpoints, and explains a service waiting for discovery', () => {
    const out = renderStatusTable([
      view({
        name: 'orders',
        strategy: 'least-connections',
        stale: true,
        panic: true,
        discovery: { lastUpdate: '2025-01-01T12:00:00.000Z', error: 'consul: 500', stalenessSeconds: 12.6 },
        endpoints: [endpoint({ address: '::1', port: 9001, flags: ['slow_start', 'failed_active_check'], healthy: false })],
      }),
      view({ name: 'web', strategy: 'weighted', discovery: { lastUpdate: null, error: null, stalenessSeconds: 0 } }),
    ])
    assert.equal(
      out,
      lines(
        'SERVICE                    STRATEGY           ENDPOINT    WEIGHT  HEALTH     FLAGS                           IN-FLIGHT  REQUESTS  WHY',
        'orders (stale 13s, panic)  least-connections  [::1]:9001       1  unhealthy  slow_start,failed_active_check          0         0',
        'web                        weighted           -                -  waiting    -                                       -         -  no discovery result yet',
        '',
        '2 services, 0/1 endpoints healthy, 1 stale, 1 in panic',
      ),
    )
  })

  it('shows the discovery error of a stale service that has no endpoints', () => {
    const out = renderStatusTable([
      view({
        name: 'legacy',
        stale: true,
        discovery: { lastUpdate: '2025-01-01T12:00:00.000Z', error: 'ECONNREFUSED 127.0.0.1:8500', stalenessSeconds: 0.4 },
      }),
    ])
    assert.equal(
      out,
      lines(
        'SERVICE            STRATEGY     ENDPOINT  WEIGHT  HEALTH  FLAGS  IN-FLIGHT  REQUESTS  WHY',
        'legacy (stale 0s)  round-robin  -              -  none    -              -         -  ECONNREFUSED 127.0.0.1:8500',
        '',
        '1 service, 0/0 endpoints healthy, 1 stale',
      ),
    )
  })

  it('colours health and noted services for a terminal without breaking the alignment', () => {
    const services = [
      view({ name: 'api', endpoints: [endpoint({ address: '10.0.0.1', port: 80 }), endpoint({ address: '10.0.0.2', port: 80, healthy: false, flags: ['ejected'] })] }),
      view({ name: 'web', stale: true, discovery: { lastUpdate: '2025-01-01T12:00:00.000Z', error: 'down', stalenessSeconds: 2 }, endpoints: [endpoint({ address: '10.0.0.3', port: 80 })] }),
    ]
    const plain = renderStatusTable(services)
    const coloured = renderStatusTable(services, { color: true })
    assert.notEqual(coloured, plain)
    // eslint-disable-next-line no-control-regex
    assert.equal(coloured.replace(/\u001b\[\d+m/g, ''), plain)
    const rows = coloured.split('\n')
    assert.ok(rows[1]!.includes('\u001b[32mhealthy  \u001b[0m'), rows[1])
    assert.ok(rows[2]!.includes('\u001b[31munhealthy\u001b[0m'), rows[2])
    assert.ok(rows[3]!.startsWith('\u001b[33mweb (stale 2s)\u001b[0m'), rows[3])
    assert.ok(!rows[0]!.includes('\u001b['), 'header stays plain')
  })
})
