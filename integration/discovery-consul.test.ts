import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Agent } from 'undici'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { echoHandler, send, startCli, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'
import type { RegistryServer } from './registries/servers.ts'
import { startConsul } from './registries/servers.ts'

interface Registration {
  id: string
  name: string
  port: number
  tags?: string[]
  weight?: number
  meta?: Record<string, string>
  ttlCheck?: boolean
}

async function register(consul: RegistryServer, r: Registration): Promise<void> {
  const body: Record<string, unknown> = { ID: r.id, Name: r.name, Address: '127.0.0.1', Port: r.port, Tags: r.tags ?? [], Meta: r.meta ?? {} }
  if (r.weight !== undefined) body.Weights = { Passing: r.weight, Warning: 1 }
  if (r.ttlCheck === true) body.Check = { CheckID: `check-${r.id}`, TTL: '30s' }
  const res = await fetch(`${consul.url}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify(body) })
  assert.equal(res.status, 200, await res.text())
}

async function deregister(consul: RegistryServer, id: string): Promise<void> {
  const res = await fetch(`${consul.url}/v1/agent/service/deregister/${id}`, { method: 'PUT' })
  assert.equal(res.status, 200, await res.text())
}

function who(body: string): string {
  return (JSON.parse(body) as { upstream: string }).upstream
}

describe('consul discovery against a real Consul agent', () => {
  let consul: RegistryServer
  let agent: Agent
  const cleanup: Array<() => Promise<void>> = []
  before(async () => {
    consul = await startConsul()
    agent = new Agent()
  })
  after(async () => {
    for (const c of cleanup.reverse()) await c()
    await agent.destroy()
    await consul.destroy()
  })

  async function sidecarFor(name: string, service: Record<string, unknown>): Promise<RunningSidecar> {
    const s = await startSidecar({ discovery: { stateDir: mkdtempSync(path.join(tmpdir(), 'outrigger-state-')), consul: { url: consul.url, wait: '5s' } }, services: { [name]: { source: 'consul', ...service } } })
    cleanup.push(() => s.stop())
    return s
  }

  async function upstream(name: string, handler = echoHandler): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    cleanup.push(() => u.close())
    return u
  }

  it('routes to a registered instance within 1 s, and stops within 1 s of its deregistration while in-flight requests finish', async (t) => {
    let release: () => void = () => undefined
    const held = new Promise<void>((r) => (release = r))
    const a: Upstream = await upstream('a', (req, res) => (req.url === '/slow' ? void held.then(() => echoHandler(req, res, a)) : echoHandler(req, res, a)))
    const b = await upstream('b')
    await register(consul, { id: 'api-a', name: 'api', port: a.port })
    const s = await sidecarFor('api', {})
    await waitFor('the first endpoint set', () => s.sidecar.clusters()[0]!.ready)
    assert.equal(who((await send(agent, `${s.url}/`, { headers: { host: 'api' } })).body), 'a')

    const registered = Date.now()
    await register(consul, { id: 'api-b', name: 'api', port: b.port })
    await waitFor('b to receive traffic', async () => who((await send(agent, `${s.url}/`, { headers: { host: 'api' } })).body) === 'b', 5000)
    const joinMs = Date.now() - registered
    t.diagnostic(`registered → routed in ${joinMs} ms`)
    assert.ok(joinMs < 1000, `took ${joinMs} ms`)

    // A slow request in flight on a, then a leaves the registry.
    let slowDone = false
    const slow = (async () => {
      for (;;) {
        const res = await send(agent, `${s.url}/slow`, { headers: { host: 'api' } })
        if (who(res.body) === 'a') {
          slowDone = true
          return res.status
        }
      }
    })()
    await waitFor('a slow request held at a', () => a.hits >= 2 && !slowDone)
    const left = Date.now()
    await deregister(consul, 'api-a')
    await waitFor('a to leave the routing', () => s.sidecar.clusters()[0]!.hosts().every((h) => h.port !== a.port), 5000)
    const leaveMs = Date.now() - left
    t.diagnostic(`deregistered → out of the routing in ${leaveMs} ms`)
    assert.ok(leaveMs < 1000, `took ${leaveMs} ms`)
    const hitsBefore = a.hits
    for (let i = 0; i < 10; i++) assert.equal(who((await send(agent, `${s.url}/`, { headers: { host: 'api' } })).body), 'b')
    assert.equal(a.hits, hitsBefore, 'no new request reached a')
    release()
    assert.equal(await slow, 200, 'the in-flight request on a finished')
  })

  it('weights from Service.Weights.Passing, overridden by Service.Meta.weight, shape the weighted strategy', async () => {
    const [x, y, z] = [await upstream('x'), await upstream('y'), await upstream('z')]
    await register(consul, { id: 'w-x', name: 'w', port: x.port, weight: 1 })
    await register(consul, { id: 'w-y', name: 'w', port: y.port, weight: 3 })
    await register(consul, { id: 'w-z', name: 'w', port: z.port, weight: 9, meta: { weight: '4' } })
    const s = await sidecarFor('w', { strategy: 'weighted' })
    await waitFor('three endpoints', () => s.sidecar.clusters()[0]!.hosts().length === 3)
    for (let i = 0; i < 400; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'w' } })).status, 200)
    assert.deepEqual([x.hits, y.hits, z.hits].map((n) => Math.round(n / 50)), [1, 3, 4], `${x.hits}/${y.hits}/${z.hits}`)
  })

  it('follows only passing instances carrying every configured tag', async () => {
    const [p, q, r] = [await upstream('p'), await upstream('q'), await upstream('r')]
    await register(consul, { id: 't-p', name: 't', port: p.port, tags: ['v2', 'eu'] })
    await register(consul, { id: 't-q', name: 't', port: q.port, tags: ['v1', 'eu'] })
    await register(consul, { id: 't-r', name: 't', port: r.port, tags: ['v2', 'eu'], ttlCheck: true })
    const s = await sidecarFor('t', { tags: ['v2', 'eu'] })
    await waitFor('the first endpoint set', () => s.sidecar.clusters()[0]!.ready)
    assert.deepEqual(s.sidecar.clusters()[0]!.hosts().map((h) => h.port), [p.port], 'q lacks a tag; r has a critical check')
    const passed = await fetch(`${consul.url}/v1/agent/check/pass/check-t-r`, { method: 'PUT' })
    assert.equal(passed.status, 200)
    await waitFor('r to pass and join', () => s.sidecar.clusters()[0]!.hosts().length === 2, 5000)
  })
})

describe('consul outages', () => {
  it('keeps routing through a Consul restart, follows changes after it, and a sidecar started while Consul is down routes from stateDir', async (t) => {
    const consul = await startConsul({ persistent: true })
    const agent = new Agent()
    const ups = [await startUpstream('a'), await startUpstream('b')]
    const stateDir = mkdtempSync(path.join(tmpdir(), 'outrigger-state-'))
    const doc = { discovery: { stateDir, consul: { url: consul.url, wait: '5s' } }, services: { api: { source: 'consul' } } }
    let s: RunningSidecar | null = null
    let late: RunningSidecar | null = null
    let stop = false
    let traffic: Promise<void> = Promise.resolve()
    try {
      await register(consul, { id: 'api-a', name: 'api', port: ups[0]!.port })
      s = await startSidecar(doc)
      const running = s
      await waitFor('a routed', async () => (await send(agent, `${running.url}/`, { headers: { host: 'api' } })).status === 200, 10_000)

      // Steady traffic while Consul goes down and comes back.
      const failures: string[] = []
      let sent = 0
      traffic = (async () => {
        while (!stop) {
          const res = await send(agent, `${running.url}/`, { headers: { host: 'api' } })
          sent++
          if (res.status !== 200) failures.push(`${res.status} ${res.body}`)
          await new Promise((r) => setTimeout(r, 20))
        }
      })()
      await consul.stop()
      await waitFor('the service to turn stale', async () => {
        const view = JSON.parse((await send(agent, `${running.adminUrl}/api/services`)).body) as Array<{ stale: boolean }>
        return view[0]!.stale
      }, 15_000)

      // Meanwhile a second sidecar starts with the same stateDir and Consul down: it routes from it.
      late = await startSidecar({ ...doc, discovery: { ...doc.discovery } })
      const lateRunning = late
      await waitFor('the late sidecar to route from stateDir', async () => (await send(agent, `${lateRunning.url}/`, { headers: { host: 'api' } })).status === 200, 15_000)
      assert.equal((await send(agent, `${lateRunning.adminUrl}/readyz`)).status, 200)
      const lateView = JSON.parse((await send(agent, `${lateRunning.adminUrl}/api/services`)).body) as Array<{ stale: boolean; endpoints: Array<{ port: number }> }>
      assert.equal(lateView[0]!.stale, true)
      assert.deepEqual(lateView[0]!.endpoints.map((e) => e.port), [ups[0]!.port])

      await consul.start()
      await register(consul, { id: 'api-b', name: 'api', port: ups[1]!.port })
      await waitFor('b to be followed after the restart', () => running.sidecar.clusters()[0]!.hosts().length === 2, 30_000)
      await waitFor('the late sidecar to follow too', () => lateRunning.sidecar.clusters()[0]!.hosts().length === 2, 30_000)
      stop = true
      await traffic
      t.diagnostic(`${sent} requests during the outage and restart, ${failures.length} failed`)
      assert.deepEqual(failures, [])
      assert.equal(running.sidecar.clusters()[0]!.discovery.stale, false)
    } finally {
      stop = true
      await traffic.catch(() => undefined)
      await agent.destroy()
      await s?.stop()
      await late?.stop()
      for (const u of ups) await u.close()
      await consul.destroy()
    }
  })
})

describe('registering the local app in Consul', () => {
  it('registers with weight, tags and a passing HTTP check while running, and deregisters on SIGTERM', async () => {
    const consul = await startConsul()
    const app = await startUpstream('app')
    try {
      const file = writeTempFile('register.yaml', [
        'listen: 127.0.0.1:0',
        'admin: 127.0.0.1:0',
        `discovery: { consul: { url: "${consul.url}" } }`,
        'register:',
        '  source: consul',
        '  serviceName: billing',
        '  address: 127.0.0.1',
        `  port: ${app.port}`,
        '  weight: 3',
        '  tags: [v1, blue]',
        '  check: { path: /health, interval: 1s }',
        '',
      ].join('\n'))
      const cli = await startCli(file)
      const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
      type Entry = { Service: { ID: string; Port: number; Tags: string[]; Weights: { Passing: number }; Meta: Record<string, string> }; Checks: Array<{ Status: string; ServiceID: string }> }
      let entries: Entry[] = []
      await waitFor('billing to be registered with a passing check', async () => {
        entries = (await (await fetch(`${consul.url}/v1/health/service/billing?passing=true`)).json()) as Entry[]
        return entries.length === 1
      }, 15_000)
      const e = entries[0]!
      assert.equal(e.Service.Port, app.port)
      assert.deepEqual(e.Service.Tags, ['v1', 'blue'])
      assert.equal(e.Service.Weights.Passing, 3)
      assert.equal(e.Service.Meta.weight, '3')
      assert.ok(e.Checks.some((c) => c.ServiceID === e.Service.ID && c.Status === 'passing'), 'the HTTP check against the app passes')

      cli.child.kill('SIGTERM')
      assert.equal(await exited, 0)
      const after = (await (await fetch(`${consul.url}/v1/catalog/service/billing`)).json()) as unknown[]
      assert.deepEqual(after, [], 'deregistered on shutdown')
    } finally {
      await app.close()
      await consul.destroy()
    }
  })
})
