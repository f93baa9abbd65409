import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'undici'
import type { Handler, Upstream } from './helpers.ts'
import { echoHandler, send, startSidecar, startUpstream, waitFor } from './helpers.ts'

interface EndpointView {
  port: number
  healthy: boolean
  flags: string[]
  reasons: string[]
}
interface ServiceView {
  panic: boolean
  endpoints: EndpointView[]
}

/** An upstream whose /health answers 200 or 503 as `health.ok` says, and echoes everything else. */
async function checkedUpstream(name: string, health: { ok: boolean }, handler: Handler = echoHandler): Promise<Upstream> {
  return startUpstream(name, (req, res, up) => {
    if (req.url === '/health') {
      up.hits-- // probes are not traffic
      res.writeHead(health.ok ? 200 : 503).end()
      return
    }
    handler(req, res, up)
  })
}

async function view(agent: Agent, adminUrl: string): Promise<ServiceView> {
  return (JSON.parse((await send(agent, `${adminUrl}/api/services`)).body) as ServiceView[])[0]!
}

describe('health gating with real upstreams', () => {
  it('active checks: a failing /health stops traffic within interval × unhealthyThreshold + timeout, and good checks bring it back', async (t) => {
    const health = [{ ok: true }, { ok: true }, { ok: true }]
    const ups = [await checkedUpstream('a', health[0]!), await checkedUpstream('b', health[1]!), await checkedUpstream('c', health[2]!)]
    const check = { type: 'http', path: '/health', interval: '200ms', timeout: '100ms', unhealthyThreshold: 2, healthyThreshold: 2 }
    const s = await startSidecar({ services: { svc: { source: 'static', endpoints: ups.map((u) => u.address), healthCheck: { active: check } } } })
    const agent = new Agent()
    try {
      const sick = ups[1]!
      // Until its first probe, an endpoint is trusted, and a failing first probe condemns it at once;
      // the thresholds govern endpoints that have passed. Start from a passed probe.
      const passed = new RegExp(`^outrigger_health_checks_total\\{endpoint="127\\.0\\.0\\.1:${sick.port}",result="pass"\\} [1-9]`, 'm')
      await waitFor('a passing probe of b', async () => passed.test((await send(agent, `${s.adminUrl}/metrics`)).body))
      const started = Date.now()
      health[1]!.ok = false
      await waitFor('b to fail its checks', async () => (await view(agent, s.adminUrl)).endpoints.find((e) => e.port === sick.port)!.flags.includes('failed_active_check'))
      const elapsed = Date.now() - started
      // Worst case: a probe just passed, then two more intervals (+10% jitter) and a probe's time.
      t.diagnostic(`unhealthy after ${elapsed} ms (bound ${200 * 1.1 * 2 + 100} ms plus scheduling)`)
      assert.ok(elapsed < 3000, `took ${elapsed} ms`)
      const e = (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === sick.port)!
      assert.equal(e.healthy, false)
      assert.match(e.reasons[0]!, /^2 consecutive failed checks \(HTTP 503\) since \d\d:\d\d:\d\d$/)
      const before = sick.hits
      for (let i = 0; i < 30; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'svc' } })).status, 200)
      assert.equal(sick.hits, before, 'no traffic to an endpoint failing its checks')

      health[1]!.ok = true
      await waitFor('b to pass its checks again', async () => (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === sick.port)!.healthy)
      for (let i = 0; i < 30; i++) await send(agent, `${s.url}/`, { headers: { host: 'svc' } })
      assert.equal(sick.hits - before, 10, 'b is back in the rotation')
      const metrics = (await send(agent, `${s.adminUrl}/metrics`)).body
      assert.match(metrics, new RegExp(`^outrigger_health_checks_total\\{endpoint="127\\.0\\.0\\.1:${sick.port}",result="fail"\\} \\d+`, 'm'))
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })

  it('passive checks: an upstream answering 500 is ejected after consecutiveFailures and returns after the ejection time', async () => {
    const failing = { on: true }
    const bad: Upstream = await startUpstream('bad', (req, res, up) => {
      if (failing.on) res.writeHead(500).end('boom')
      else echoHandler(req, res, up)
    })
    const good = [await startUpstream('g1'), await startUpstream('g2')]
    const s = await startSidecar({
      services: { svc: { source: 'static', endpoints: [bad.address, ...good.map((u) => u.address)], healthCheck: { passive: { consecutiveFailures: 3, ejectionTime: '1s', maxEjectionPercent: 50 } } } },
    })
    const agent = new Agent()
    try {
      const statuses: number[] = []
      for (let i = 0; i < 30; i++) statuses.push((await send(agent, `${s.url}/`, { headers: { host: 'svc' } })).status)
      assert.equal(bad.hits, 3, 'ejected after exactly three failures')
      assert.equal(statuses.filter((x) => x === 500).length, 3)
      const e = (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === bad.port)!
      assert.deepEqual(e.flags, ['ejected'])
      assert.match(e.reasons[0]!, /^3 consecutive 500 since \d\d:\d\d:\d\d; ejected until \d\d:\d\d:\d\d$/)
      assert.match((await send(agent, `${s.adminUrl}/metrics`)).body, /^outrigger_endpoints\{service="svc",state="ejected"\} 1$/m)
      failing.on = false
      await waitFor('the ejection to end', async () => (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === bad.port)!.healthy, 10_000)
      for (let i = 0; i < 30; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'svc' } })).status, 200)
      assert.equal(bad.hits, 13, 'back in the rotation')
    } finally {
      await agent.close()
      await s.stop()
      await bad.close()
      for (const u of good) await u.close()
    }
  })

  it('a killed upstream is ejected by passive detection before its next active check', async () => {
    const ok = { ok: true }
    const ups = [await checkedUpstream('a', ok), await checkedUpstream('b', ok), await checkedUpstream('c', ok)]
    const s = await startSidecar({
      services: {
        svc: {
          source: 'static',
          endpoints: ups.map((u) => u.address),
          healthCheck: { active: { interval: '30s', timeout: '1s' }, passive: { consecutiveFailures: 2, ejectionTime: '30s' } },
        },
      },
    })
    const agent = new Agent()
    try {
      // Each endpoint's first probe runs within the first second; wait for all three to pass, or a's
      // first probe could run after the kill and condemn it before passive detection gets to.
      await waitFor('a passing first probe of every endpoint', async () => {
        const metrics = (await send(agent, `${s.adminUrl}/metrics`)).body
        return ups.every((u) => metrics.includes(`outrigger_health_checks_total{endpoint="127.0.0.1:${u.port}",result="pass"}`))
      })
      await ups[0]!.close()
      // Connect failures are retried on another endpoint: clients see no error while a's failures count.
      await waitFor('a to be ejected', async () => {
        assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'svc' } })).status, 200)
        return (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === ups[0]!.port)!.flags.includes('ejected')
      })
      const a = (await view(agent, s.adminUrl)).endpoints.find((x) => x.port === ups[0]!.port)!
      assert.deepEqual(a.flags, ['ejected'], 'ejected, and no active check has failed yet')
      assert.match(a.reasons[0]!, /^2 consecutive connect_failed since /)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups.slice(1)) await u.close()
    }
  })

  it('panic: below panicThreshold health is ignored; with 0, no healthy endpoint means 503', async () => {
    const down = { ok: false }
    const ups = [await checkedUpstream('a', down), await checkedUpstream('b', down)]
    const check = { interval: '200ms', timeout: '100ms', unhealthyThreshold: 1 }
    const s = await startSidecar({
      services: {
        panicky: { source: 'static', endpoints: ups.map((u) => u.address), healthCheck: { active: check, panicThreshold: 50 } },
        strict: { source: 'static', endpoints: ups.map((u) => u.address), healthCheck: { active: check, panicThreshold: 0 } },
      },
    })
    const agent = new Agent()
    try {
      await waitFor('both endpoints to fail their checks', async () => {
        const all = JSON.parse((await send(agent, `${s.adminUrl}/api/services`)).body) as ServiceView[]
        return all.every((v) => v.endpoints.every((e) => !e.healthy))
      })
      const all = JSON.parse((await send(agent, `${s.adminUrl}/api/services`)).body) as ServiceView[]
      assert.deepEqual(all.map((v) => v.panic), [true, false])
      const seen = new Set<string>()
      for (let i = 0; i < 4; i++) {
        const res = await send(agent, `${s.url}/`, { headers: { host: 'panicky' } })
        assert.equal(res.status, 200)
        seen.add((JSON.parse(res.body) as { upstream: string }).upstream)
      }
      assert.deepEqual([...seen].sort(), ['a', 'b'], 'panic mode routes to all endpoints')
      const strict = await send(agent, `${s.url}/`, { headers: { host: 'strict' } })
      assert.equal(strict.status, 503)
      assert.equal(strict.headers['x-outrigger-error'], 'no_healthy_endpoint')
      const metrics = (await send(agent, `${s.adminUrl}/metrics`)).body
      assert.match(metrics, /^outrigger_panic\{service="panicky"\} 1$/m)
      assert.match(metrics, /^outrigger_panic\{service="strict"\} 0$/m)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })
})
