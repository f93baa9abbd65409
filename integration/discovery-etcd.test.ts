import { after, before, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Etcd3 } from 'etcd3'
import { pino } from 'pino'
import { Agent } from 'undici'
import { registerDiscovery } from '../src/discovery/registry.ts'
import { EtcdDiscovery } from '../src/discovery/etcd.ts'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { echoHandler, send, startCli, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'
import type { RegistryServer } from './registries/servers.ts'
import { startEtcd } from './registries/servers.ts'

const PREFIX = '/services/'

/** What the etcd adapters log, parsed: the bad-value warnings are how a bad value is reported. */
const logs: Array<{ level: number; msg: string; service?: string; key?: string; err?: string }> = []
const adapterLogger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) })
const WARN = 40

// Harmless once registry.ts knows 'etcd' itself; the logger is the test's, to see the warnings.
registerDiscovery('etcd', (service, context) => new EtcdDiscovery(service, context.discovery.etcd, adapterLogger.child({ module: 'discovery' })))

function who(body: string): string {
  return (JSON.parse(body) as { upstream: string }).upstream
}

interface ServiceView {
  name: string
  stale: boolean
  discovery: { error: string | null }
  endpoints: Array<{ port: number; weight: number }>
}

describe('etcd discovery against a real etcd', () => {
  let etcd: RegistryServer
  let client: Etcd3
  let agent: Agent
  /** Run after each test, newest first: sidecars stop before their upstreams close. */
  let cleanup: Array<() => Promise<void>> = []

  before(async () => {
    etcd = await startEtcd()
    client = new Etcd3({ hosts: [etcd.url] })
    agent = new Agent()
  })
  after(async () => {
    await agent.destroy()
    client.close()
    await etcd.destroy()
  })

  /** Runs a test body, then its cleanups whatever happened. */
  function test(name: string, body: (t: TestContext) => Promise<void>): void {
    it(name, async (t) => {
      try {
        await body(t)
      } finally {
        for (const c of cleanup.reverse()) await c()
        cleanup = []
      }
    })
  }

  async function sidecarFor(name: string, service: Record<string, unknown> = {}, stateDir?: string): Promise<RunningSidecar> {
    const discovery: Record<string, unknown> = { etcd: { endpoints: [etcd.url], prefix: PREFIX } }
    if (stateDir !== undefined) discovery.stateDir = stateDir
    const s = await startSidecar({ discovery, services: { [name]: { source: 'etcd', ...service } } })
    cleanup.push(() => s.stop())
    return s
  }

  async function upstream(name: string, handler = echoHandler): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    cleanup.push(() => u.close())
    return u
  }

  async function get(s: RunningSidecar, host: string, path = '/'): Promise<{ status: number; body: string }> {
    return send(agent, `${s.url}${path}`, { headers: { host } })
  }

  async function services(s: RunningSidecar): Promise<ServiceView[]> {
    return JSON.parse((await send(agent, `${s.adminUrl}/api/services`)).body) as ServiceView[]
  }

  /** Sends a request every 20 ms until `host` answers from `name`. */
  async function untilRoutedTo(s: RunningSidecar, host: string, name: string, timeoutMs = 5000): Promise<void> {
    await waitFor(`${name} to receive traffic`, async () => {
      const res = await get(s, host)
      return res.status === 200 && who(res.body) === name
    }, timeoutMs)
  }

  test('routes to a registered instance within 1 s, and stops within 1 s of its deletion while an in-flight request finishes', async (t) => {
    let release: () => void = () => undefined
    const held = new Promise<void>((r) => (release = r))
    const a: Upstream = await upstream('a', (req, res) => (req.url === '/slow' ? void held.then(() => echoHandler(req, res, a)) : echoHandler(req, res, a)))
    const b = await upstream('b')
    const s = await sidecarFor('api')
    // An empty prefix is a first result too: the service is ready, with nothing to route to.
    await waitFor('the first (empty) endpoint set', () => s.sidecar.clusters()[0]!.ready)
    assert.equal((await send(agent, `${s.adminUrl}/readyz`)).status, 200)
    assert.equal((await get(s, 'api')).status, 503)

    let put = Date.now()
    await client.put(`${PREFIX}api/a`).value(a.address)
    await untilRoutedTo(s, 'api', 'a')
    let ms = Date.now() - put
    t.diagnostic(`put a → first routed request in ${ms} ms`)
    assert.ok(ms < 1000, `took ${ms} ms`)

    put = Date.now()
    await client.put(`${PREFIX}api/b`).value(JSON.stringify({ address: '127.0.0.1', port: b.port }))
    await untilRoutedTo(s, 'api', 'b')
    ms = Date.now() - put
    t.diagnostic(`put b → first routed request in ${ms} ms`)
    assert.ok(ms < 1000, `took ${ms} ms`)

    // A slow request held at a, then a's key is deleted.
    let slowDone = false
    const slow = (async () => {
      for (;;) {
        const res = await get(s, 'api', '/slow')
        if (who(res.body) === 'a') {
          slowDone = true
          return res.status
        }
      }
    })()
    await waitFor('a slow request held at a', () => a.hits >= 2 && !slowDone && s.sidecar.clusters()[0]!.hosts().some((h) => h.port === a.port && h.inFlight === 1))
    const deleted = Date.now()
    await client.delete().key(`${PREFIX}api/a`)
    await waitFor('a to leave the routing', () => s.sidecar.clusters()[0]!.hosts().every((h) => h.port !== a.port), 5000)
    ms = Date.now() - deleted
    t.diagnostic(`delete a → out of the routing in ${ms} ms`)
    assert.ok(ms < 1000, `took ${ms} ms`)
    const hitsBefore = a.hits
    for (let i = 0; i < 10; i++) assert.equal(who((await get(s, 'api')).body), 'b')
    assert.equal(a.hits, hitsBefore, 'no new request reached a')
    release()
    assert.equal(await slow, 200, 'the in-flight request on a finished')
  })

  test('weights in etcd values shape the weighted strategy (1 and 3: 100 and 300 of 400)', async () => {
    const [x, y] = [await upstream('x'), await upstream('y')]
    await client.put(`${PREFIX}weighted/x`).value(JSON.stringify({ address: '127.0.0.1', port: x.port, weight: 1, meta: { zone: 'a' } }))
    await client.put(`${PREFIX}weighted/y`).value(JSON.stringify({ address: '127.0.0.1', port: y.port, weight: 3 }))
    const s = await sidecarFor('weighted', { strategy: 'weighted' })
    await waitFor('two endpoints', () => s.sidecar.clusters()[0]!.hosts().length === 2)
    for (let i = 0; i < 400; i++) assert.equal((await get(s, 'weighted')).status, 200)
    assert.ok(Math.abs(x.hits - 100) <= 2 && Math.abs(y.hits - 300) <= 2, `${x.hits}/${y.hits}`)
    const view = (await services(s))[0]!
    assert.deepEqual(view.endpoints.map((e) => [e.port, e.weight]).sort(), [[x.port, 1], [y.port, 3]].sort())
    // A weight change is followed like any other put.
    await client.put(`${PREFIX}weighted/x`).value(JSON.stringify({ address: '127.0.0.1', port: x.port, weight: 2 }))
    await waitFor('x to weigh 2', () => s.sidecar.clusters()[0]!.hosts().find((h) => h.port === x.port)?.weight === 2, 5000)
  })

  test('a bad value under one key is skipped and reported once; the other endpoints keep routing', async () => {
    const [g1, g2, g3] = [await upstream('g1'), await upstream('g2'), await upstream('g3')]
    await client.put(`${PREFIX}mixed/g1`).value(g1.address)
    await client.put(`${PREFIX}mixed/broken`).value('{"address":"127.0.0.1","port":0}')
    await client.put(`${PREFIX}mixed/g2`).value(JSON.stringify({ address: '127.0.0.1', port: g2.port }))
    const s = await sidecarFor('mixed')
    await waitFor('the first endpoint set', () => s.sidecar.clusters()[0]!.ready)
    assert.deepEqual(s.sidecar.clusters()[0]!.hosts().map((h) => h.port).sort(), [g1.port, g2.port].sort())
    const warnings = (key: string): typeof logs => logs.filter((l) => l.level === WARN && l.service === 'mixed' && l.key === key)
    await waitFor('the bad value to be reported', () => warnings(`${PREFIX}mixed/broken`).length === 1)
    assert.match(warnings(`${PREFIX}mixed/broken`)[0]!.err!, /^\/services\/mixed\/broken: port: must be at least 1$/)

    // A second bad value arrives through the watch: reported, and nothing else moves.
    await client.put(`${PREFIX}mixed/garbage`).value('{not json')
    await waitFor('the second bad value to be reported', () => warnings(`${PREFIX}mixed/garbage`).length === 1)
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const res = await get(s, 'mixed')
      assert.equal(res.status, 200)
      seen.add(who(res.body))
    }
    assert.deepEqual([...seen].sort(), ['g1', 'g2'])
    const view = (await services(s))[0]!
    assert.equal(view.stale, false, 'a bad value is not a registry outage')
    assert.equal(view.discovery.error, null)

    // The same bad value written again is not reported again; a fixed value joins.
    await client.put(`${PREFIX}mixed/garbage`).value('{not json')
    await client.put(`${PREFIX}mixed/broken`).value(g3.address)
    await waitFor('the fixed value to join', () => s.sidecar.clusters()[0]!.hosts().length === 3, 5000)
    assert.equal(warnings(`${PREFIX}mixed/garbage`).length, 1, 'reported once per key and value')
    assert.equal(warnings(`${PREFIX}mixed/broken`).length, 1)
  })

  test('a key on a lease disappears when its owner dies (revoked, or no longer kept alive) and outrigger follows', async (t) => {
    const [keep, revoked, expired] = [await upstream('keep'), await upstream('revoked'), await upstream('expired')]
    await client.put(`${PREFIX}leased/keep`).value(keep.address)
    const lease = client.lease(30)
    cleanup.push(() => lease.revoke().catch(() => undefined))
    await lease.put(`${PREFIX}leased/revoked`).value(revoked.address)
    // The second owner is its own client that goes away without revoking: the lease runs out.
    const owner = new Etcd3({ hosts: [etcd.url] })
    cleanup.push(() => Promise.resolve(owner.close()))
    const shortLease = owner.lease(2)
    shortLease.on('lost', () => undefined)
    await shortLease.put(`${PREFIX}leased/expired`).value(expired.address)
    const s = await sidecarFor('leased')
    await waitFor('three endpoints', () => s.sidecar.clusters()[0]!.hosts().length === 3)

    let since = Date.now()
    await lease.revoke()
    await waitFor('the revoked key to leave', () => s.sidecar.clusters()[0]!.hosts().every((h) => h.port !== revoked.port), 5000)
    t.diagnostic(`lease revoked → out of the routing in ${Date.now() - since} ms`)

    since = Date.now()
    shortLease.release() // stops the keepalives, as a dying owner would; etcd expires the lease after its TTL
    owner.close()
    await waitFor('the expired key to leave', () => s.sidecar.clusters()[0]!.hosts().every((h) => h.port !== expired.port), 15_000)
    t.diagnostic(`owner gone → out of the routing in ${Date.now() - since} ms (lease TTL 2 s)`)
    assert.deepEqual(s.sidecar.clusters()[0]!.hosts().map((h) => h.port), [keep.port])
    assert.equal(who((await get(s, 'leased')).body), 'keep')
  })

  test('a compaction past the watch revision does not lose the following changes', async (t) => {
    const [c1, c2] = [await upstream('c1'), await upstream('c2')]
    await client.put(`${PREFIX}compacted/c1`).value(c1.address)
    const s = await sidecarFor('compacted')
    await waitFor('c1 routed', () => s.sidecar.clusters()[0]!.hosts().length === 1)
    // Many revisions after the watch started, on keys outside the prefix, then compact them all away.
    for (let i = 0; i < 100; i++) await client.put('/other/churn').value(String(i))
    const revision = (await client.getAll().prefix('/other/').exec()).header.revision
    await client.kv.compact({ revision, physical: true })
    const put = Date.now()
    await client.put(`${PREFIX}compacted/c2`).value(c2.address)
    await untilRoutedTo(s, 'compacted', 'c2')
    t.diagnostic(`compacted at revision ${revision}; put c2 → routed in ${Date.now() - put} ms`)
    assert.equal((await services(s))[0]!.stale, false)
  })

  // Last: it stops and restarts the shared etcd.
  test('keeps routing while etcd is down (stale), follows changes after it returns; a sidecar started meanwhile gets ready then', async (t) => {
    const [a, b] = [await upstream('a'), await upstream('b')]
    await client.put(`${PREFIX}outage/a`).value(a.address)
    const stateDir = mkdtempSync(path.join(tmpdir(), 'outrigger-state-'))
    const s = await sidecarFor('outage', {}, stateDir)
    await untilRoutedTo(s, 'outage', 'a')

    // Steady sequential traffic, one request every ~20 ms, through the whole outage.
    const failures: string[] = []
    let sent = 0
    let stop = false
    const traffic = (async () => {
      while (!stop) {
        const res = await get(s, 'outage')
        sent++
        if (res.status !== 200) failures.push(`${res.status} ${res.body}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    cleanup.push(async () => {
      stop = true
      await traffic
    })

    const down = Date.now()
    await etcd.stop()
    await waitFor('the service to turn stale', async () => (await services(s))[0]!.stale, 10_000)
    const view = (await services(s))[0]!
    assert.match(view.discovery.error ?? '', /^etcd \/services\/outage\/: /)
    t.diagnostic(`stale ${Date.now() - down} ms after etcd stopped: ${view.discovery.error}`)

    // A sidecar started while etcd is down has no first result yet (its state folder is new).
    const late = await sidecarFor('outage')
    await waitFor('the late sidecar to report etcd unreachable', () => late.sidecar.clusters()[0]!.discovery.error !== null, 15_000)
    assert.equal((await send(agent, `${late.adminUrl}/readyz`)).status, 503)
    assert.ok((await services(s))[0]!.stale, 'still stale')
    // One that shares the first sidecar's stateDir routes at once from the saved endpoints.
    const restarted = await sidecarFor('outage', {}, stateDir)
    await waitFor('the restarted sidecar to route from stateDir', async () => (await get(restarted, 'outage')).status === 200, 15_000)
    assert.equal((await send(agent, `${restarted.adminUrl}/readyz`)).status, 200)
    assert.deepEqual((await services(restarted)).map((v) => v.stale), [true])

    // Keep etcd down for 3 s before it restarts (which takes another second or two), under traffic,
    // so the adapter is well into its backoff.
    await new Promise((r) => setTimeout(r, Math.max(0, down + 3000 - Date.now())))
    assert.ok((await services(s))[0]!.stale, 'still stale')
    await etcd.start()
    const up = Date.now()
    t.diagnostic(`etcd down for ${up - down} ms`)
    // The test's own client may need a moment to reconnect after the restart.
    await waitFor('the put after the restart', () => client.put(`${PREFIX}outage/b`).value(b.address).then(() => true, () => false), 15_000)
    await waitFor('b to be followed after the restart', () => s.sidecar.clusters()[0]!.hosts().length === 2, 20_000)
    t.diagnostic(`etcd back → change followed in ${Date.now() - up} ms`)
    await waitFor('the late sidecar to get ready and follow', () => late.sidecar.clusters()[0]!.ready && late.sidecar.clusters()[0]!.hosts().length === 2, 20_000)
    assert.equal((await send(agent, `${late.adminUrl}/readyz`)).status, 200)
    assert.equal((await services(s))[0]!.stale, false)
    // The steady traffic reaches b (a request of our own could fall in lockstep with it on a).
    await waitFor('b to receive the steady traffic', () => b.hits > 0, 5000)

    stop = true
    await traffic
    t.diagnostic(`${sent} requests during the outage and restart, ${failures.length} failed`)
    assert.deepEqual(failures, [])
    assert.ok(sent > 50, `only ${sent} requests`)
  })
})

describe('registering the local app in etcd', () => {
  it('puts a key on a kept-alive lease, puts it back when the lease is lost, and revokes it on SIGTERM', async () => {
    const etcd = await startEtcd()
    const client = new Etcd3({ hosts: etcd.url })
    const app = await startUpstream('app')
    const key = `/services/billing/127.0.0.1:${app.port}`
    try {
      const file = writeTempFile('register-etcd.yaml', [
        'listen: 127.0.0.1:0',
        'admin: 127.0.0.1:0',
        `discovery: { etcd: { endpoints: ["${etcd.url}"], prefix: /services/ } }`,
        `register: { source: etcd, serviceName: billing, address: 127.0.0.1, port: ${app.port}, weight: 2, tags: [v1] }`,
        '',
      ].join('\n'))
      const cli = await startCli(file)
      const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
      await waitFor('the registration key', async () => (await client.get(key).string()) !== null, 10_000)
      assert.deepEqual(JSON.parse((await client.get(key).string())!), { address: '127.0.0.1', port: app.port, weight: 2, meta: { 'registered-by': 'outrigger', tags: 'v1' } })
      const first = await client.getAll().prefix('/services/billing/').exec()
      const leaseId = first.kvs[0]!.lease
      assert.notEqual(String(leaseId), '0', 'the key lives on a lease')

      // The lease is lost (revoked from outside): a new lease is granted and the key put again.
      await client.leaseClient.leaseRevoke({ ID: leaseId })
      await waitFor('the key to come back on a new lease', async () => {
        const now = await client.getAll().prefix('/services/billing/').exec()
        return now.kvs.length === 1 && String(now.kvs[0]!.lease) !== String(leaseId)
      }, 15_000)

      cli.child.kill('SIGTERM')
      assert.equal(await exited, 0)
      assert.equal(await client.get(key).string(), null, 'revoked on shutdown')
    } finally {
      client.close()
      await app.close()
      await etcd.destroy()
    }
  })
})
