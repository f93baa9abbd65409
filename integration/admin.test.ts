import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'undici'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { send, startSidecar, startUpstream } from './helpers.ts'

describe('admin API', () => {
  let up: Upstream
  let sc: RunningSidecar
  let agent: Agent
  before(async () => {
    up = await startUpstream('a')
    sc = await startSidecar({ services: { api: { source: 'static', endpoints: [up.address, '127.0.0.1:1'] }, web: { source: 'static', endpoints: [up.address], listen: '127.0.0.1:0' } } })
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    await up.close()
  })

  it('/healthz answers ok', async () => {
    const res = await send(agent, `${sc.adminUrl}/healthz`)
    assert.equal(res.status, 200)
    assert.equal(res.body, 'ok\n')
  })

  it('/readyz is 200 once every service had its first discovery result', async () => {
    const res = await send(agent, `${sc.adminUrl}/readyz`)
    assert.equal(res.status, 200)
  })

  it('/api/services describes services and endpoints in the contract shape', async () => {
    await send(agent, `${sc.serviceUrl('web')}/anything`)
    const res = await send(agent, `${sc.adminUrl}/api/services`)
    const services = JSON.parse(res.body) as Array<Record<string, unknown> & { endpoints: Array<Record<string, unknown>> }>
    assert.deepEqual(services.map((s) => s.name), ['api', 'web'])
    const web = services[1]!
    assert.equal(web.source, 'static')
    assert.equal(web.strategy, 'round-robin')
    assert.equal(web.stale, false)
    assert.equal(web.panic, false)
    assert.deepEqual(Object.keys(web.discovery as object).sort(), ['error', 'lastUpdate', 'stalenessSeconds'])
    assert.deepEqual(web.endpoints[0], { address: '127.0.0.1', port: up.port, weight: 1, healthy: true, flags: [], inFlight: 0, requests: 1, reasons: [] })
  })

  it('/metrics exposes the request counters and histogram after traffic', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await send(agent, `${sc.serviceUrl('web')}/`)).status, 200)
    await send(agent, `${sc.url}/`, { headers: { host: 'nobody' } })
    const res = await send(agent, `${sc.adminUrl}/metrics`)
    assert.equal(res.status, 200)
    assert.match(res.body, /^outrigger_requests_total\{service="web",code="200"\} [4-9]$/m)
    assert.match(res.body, /^outrigger_request_duration_seconds_count\{service="web"\} [4-9]$/m)
    assert.match(res.body, /^outrigger_upstream_attempts_total\{service="web",endpoint="127\.0\.0\.1:\d+",outcome="2xx"\} [4-9]$/m)
    assert.match(res.body, /^outrigger_endpoints\{service="api",state="healthy"\} 2$/m)
    assert.match(res.body, /^outrigger_in_flight_requests\{service="web"\} 0$/m)
    assert.match(res.body, /^outrigger_discovery_updates_total\{service="web",source="static"\} 1$/m)
    assert.match(res.body, /^outrigger_discovery_staleness_seconds\{service="web"\} 0$/m)
    assert.match(res.body, /^outrigger_process_resident_memory_bytes \d+/m)
  })

  it('serves the status page', async () => {
    const res = await send(agent, `${sc.adminUrl}/`)
    assert.equal(res.status, 200)
    assert.match(res.headers['content-type'] as string, /^text\/html/)
    assert.match(res.body, /<title>outrigger<\/title>/)
  })
})
