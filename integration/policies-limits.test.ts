import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { Agent, request } from 'undici'
import type { RunningSidecar, SimpleResponse, Upstream } from './helpers.ts'
import { closedPort, echoHandler, rawExchange, send, startSidecar, startUpstream, waitFor } from './helpers.ts'
import type { ServiceView } from '../src/admin/services-view.ts'
import { parseConfig } from '../src/config/load.ts'

interface GatedUpstream extends Upstream {
  /** Requests received and not yet answered. */
  held: number
  /** Answers every held request, and from now on every request at once. */
  open(): void
}

/**
 * An upstream that holds every request until the test opens the gate: "slow" for exactly as long as
 * the test needs, so counts are decided by the limits and never by timing.
 */
async function gatedUpstream(name: string): Promise<GatedUpstream> {
  const waiting: Array<() => void> = []
  let opened = false
  const u = await startUpstream(name, (req, res, upstream) => {
    const gated = upstream as GatedUpstream
    const answer = (): void => {
      gated.held--
      echoHandler(req, res, upstream)
    }
    gated.held++
    if (opened) answer()
    else waiting.push(answer)
  })
  return Object.assign(u, {
    held: 0,
    open(): void {
      opened = true
      for (const w of waiting.splice(0)) w()
    },
  })
}

async function services(s: RunningSidecar, agent: Agent): Promise<ServiceView[]> {
  return JSON.parse((await send(agent, `${s.adminUrl}/api/services`)).body) as ServiceView[]
}

async function breakerOf(s: RunningSidecar, agent: Agent, name: string): Promise<Record<string, number | boolean>> {
  const view = (await services(s, agent)).find((v) => v.name === name)
  assert.ok(view?.policies?.circuitBreaker !== undefined, `${name} shows its circuit breaker`)
  return { ...view.policies.circuitBreaker }
}

async function rejections(s: RunningSidecar, agent: Agent, service: string, policy: string): Promise<number> {
  const families = parsePrometheusTextFormat((await send(agent, `${s.adminUrl}/metrics`)).body)
  const f = families.find((m) => m.name === 'outrigger_policy_rejections_total')
  assert.ok(f !== undefined && f.type === 'COUNTER', 'outrigger_policy_rejections_total is a counter')
  const sample = f.metrics.find((m) => m.labels?.service === service && m.labels.policy === policy)
  assert.ok(sample !== undefined, `a ${policy} series for ${service}`)
  return Number(sample.value)
}

function assertError(res: SimpleResponse, status: number, code: string, service: string | null): void {
  assert.equal(res.status, status)
  assert.equal(res.headers['x-outrigger-error'], code)
  assert.equal(res.headers['content-type'], 'application/json')
  assert.deepEqual(JSON.parse(res.body), { error: code, service })
}

describe('circuit breaker under real concurrent load', () => {
  let slow: GatedUpstream
  let sc: RunningSidecar
  let agent: Agent

  before(async () => {
    slow = await gatedUpstream('slow')
    sc = await startSidecar({
      services: {
        // connect: 1m: waiting requests must outlast the test's slowest machine; the timeout has its own test.
        guarded: { source: 'static', endpoints: [slow.address], circuitBreaker: { maxRequests: 10, maxPending: 5 }, timeouts: { connect: '1m' } },
      },
    })
    agent = new Agent({ connections: 128 })
  })
  after(async () => {
    slow.open()
    await agent.close()
    await sc.stop()
    await slow.close()
  })

  it('holds 10 in flight and 5 waiting; answers the other 35 of 50 with 503 overloaded at once; then serves the 15', async () => {
    const replies = Array.from({ length: 50 }, () => send(agent, `${sc.url}/work`, { headers: { host: 'guarded' } }))
    // The 35 refusals come back while the upstream still holds every admitted request.
    await waitFor('10 requests at the upstream, 5 waiting, 35 refused', async () => slow.held === 10 && (await breakerOf(sc, agent, 'guarded')).rejected === 35)
    assert.deepEqual(await breakerOf(sc, agent, 'guarded'), { maxRequests: 10, maxPending: 5, inFlight: 10, pending: 5, rejected: 35, open: true })
    assert.equal(await rejections(sc, agent, 'guarded', 'circuit_breaker'), 35)
    assert.equal(slow.held, 10, 'nothing reached the upstream past the limit')
    slow.open()
    const all = await Promise.all(replies)
    let ok = 0
    let overloaded = 0
    for (const res of all) {
      if (res.status === 200) {
        ok++
        assert.equal((JSON.parse(res.body) as { upstream: string }).upstream, 'slow')
      } else {
        assertError(res, 503, 'overloaded', 'guarded')
        overloaded++
      }
    }
    assert.deepEqual({ ok, overloaded }, { ok: 15, overloaded: 35 })
    await waitFor('the breaker to empty', async () => (await breakerOf(sc, agent, 'guarded')).inFlight === 0)
    assert.deepEqual(await breakerOf(sc, agent, 'guarded'), { maxRequests: 10, maxPending: 5, inFlight: 0, pending: 0, rejected: 35, open: false })
  })

  it('recovers once the load is gone: every request succeeds', async () => {
    for (let round = 0; round < 3; round++) {
      const all = await Promise.all(Array.from({ length: 10 }, () => send(agent, `${sc.url}/again`, { headers: { host: 'guarded' } })))
      assert.deepEqual(
        all.map((r) => r.status),
        Array.from({ length: 10 }, () => 200),
      )
    }
    assert.equal(await rejections(sc, agent, 'guarded', 'circuit_breaker'), 35)
  })
})

describe('circuit breaker edges', () => {
  it('answers a request that waited longer than the connect timeout with 503 overloaded', async () => {
    const slow = await gatedUpstream('slow')
    const sc = await startSidecar({
      services: { tight: { source: 'static', endpoints: [slow.address], circuitBreaker: { maxRequests: 1, maxPending: 1 }, timeouts: { connect: '200ms' } } },
    })
    const agent = new Agent({ connections: 8 })
    try {
      const first = send(agent, `${sc.url}/1`, { headers: { host: 'tight' } })
      await waitFor('the first request at the upstream', () => slow.held === 1)
      const started = performance.now()
      const second = await send(agent, `${sc.url}/2`, { headers: { host: 'tight' } })
      assertError(second, 503, 'overloaded', 'tight')
      // Lower bound only: it did wait (a refusal at once would take a millisecond), however slow the machine.
      assert.ok(performance.now() - started >= 150, 'it waited for a slot before giving up')
      slow.open()
      assert.equal((await first).status, 200)
    } finally {
      slow.open()
      await agent.close()
      await sc.stop()
      await slow.close()
    }
  })

  it('counts return to 0 after client aborts (waiting and in flight), connect-failure retries and upstream resets', async () => {
    const slow = await gatedUpstream('slow')
    const resetter = await startUpstream('resetter', (req) => req.socket.destroy())
    const dead = `127.0.0.1:${await closedPort()}`
    const sc = await startSidecar({
      services: {
        held: { source: 'static', endpoints: [slow.address], circuitBreaker: { maxRequests: 2, maxPending: 2 }, timeouts: { connect: '1m' } },
        // Round-robin over a dead endpoint: every other request fails to connect and is retried on the live one.
        flaky: { source: 'static', endpoints: [dead, slow.address], circuitBreaker: { maxRequests: 4, maxPending: 4 }, retry: { attempts: 1 } },
        broken: { source: 'static', endpoints: [resetter.address], circuitBreaker: { maxRequests: 2, maxPending: 2 }, retry: { attempts: 0 } },
      },
    })
    const agent = new Agent({ connections: 32 })
    try {
      // Four requests: 0 and 1 in flight at the gated upstream, then 2 and 3 waiting; abort 0 and 3.
      const controllers = Array.from({ length: 4 }, () => new AbortController())
      const start = (i: number): Promise<{ status: number }> =>
        request(`${sc.url}/${i}`, { dispatcher: agent, headers: { host: 'held' }, signal: controllers[i]!.signal }).then(
          async (r) => ({ status: r.statusCode, body: await r.body.text() }),
          () => ({ status: 0 }),
        )
      const pending = [start(0), start(1)]
      await waitFor('2 in flight', () => slow.held === 2)
      pending.push(start(2), start(3))
      await waitFor('2 waiting', async () => (await breakerOf(sc, agent, 'held')).pending === 2)
      controllers[3]!.abort()
      await waitFor('the aborted waiter to leave the queue', async () => (await breakerOf(sc, agent, 'held')).pending === 1)
      controllers[0]!.abort()
      await waitFor('the aborted request to hand its slot to the waiter', async () => {
        const b = await breakerOf(sc, agent, 'held')
        return b.pending === 0 && b.inFlight === 2 && slow.held === 3
      })
      slow.open()
      const results = await Promise.all(pending)
      assert.deepEqual(
        results.map((r) => r.status),
        [0, 200, 200, 0],
      )
      await waitFor('held to return to 0', async () => {
        const b = await breakerOf(sc, agent, 'held')
        return b.inFlight === 0 && b.pending === 0
      })

      const flaky = await Promise.all(Array.from({ length: 12 }, (_, i) => send(agent, `${sc.url}/f${i}`, { headers: { host: 'flaky' } })))
      for (const r of flaky) assert.ok(r.status === 200 || r.status === 503, `flaky answered ${r.status}`)
      assert.ok(flaky.some((r) => r.status === 200))
      const broken = await Promise.all(Array.from({ length: 6 }, (_, i) => send(agent, `${sc.url}/b${i}`, { headers: { host: 'broken' } })))
      for (const r of broken) assert.ok(r.status === 502 || r.status === 503, `broken answered ${r.status}`)
      assert.ok(broken.some((r) => r.status === 502))
      for (const name of ['held', 'flaky', 'broken']) {
        await waitFor(`${name} to return to 0`, async () => {
          const b = await breakerOf(sc, agent, name)
          return b.inFlight === 0 && b.pending === 0
        })
      }
      const views = await services(sc, agent)
      for (const v of views) for (const e of v.endpoints) assert.equal(e.inFlight, 0, `${v.name} ${e.address}:${e.port}`)
    } finally {
      slow.open()
      await agent.close()
      await sc.stop()
      await slow.close()
      await resetter.close()
    }
  })
})

describe('rate limit', () => {
  let up: Upstream
  let sc: RunningSidecar
  let agent: Agent

  before(async () => {
    up = await startUpstream('up')
    sc = await startSidecar({ services: { limited: { source: 'static', endpoints: [up.address], rateLimit: { requestsPerSecond: 1, burst: 3 } } } })
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    await up.close()
  })

  it('lets the burst through, then answers 429 rate_limited with Retry-After, then recovers as tokens come back', async () => {
    // The burst of 3 goes at once; a slow machine may earn a token or two more before the first 429.
    let admitted = 0
    let hitsBefore = up.hits
    let refused = await send(agent, `${sc.url}/`, { headers: { host: 'limited' } })
    while (refused.status === 200 && admitted < 20) {
      admitted++
      hitsBefore = up.hits
      refused = await send(agent, `${sc.url}/`, { headers: { host: 'limited' } })
    }
    assert.ok(admitted >= 3 && admitted < 20, `${admitted} admitted before the first refusal`)
    assertError(refused, 429, 'rate_limited', 'limited')
    // At 1/s, less than one token is back: the next one is at most a second away.
    assert.equal(refused.headers['retry-after'], '1')
    assert.equal(up.hits, hitsBefore, 'a refused request never reaches the upstream')
    assert.ok((await rejections(sc, agent, 'limited', 'rate_limit')) >= 1)
    const view = (await services(sc, agent)).find((v) => v.name === 'limited')!.policies!.rateLimit!
    assert.equal(view.requestsPerSecond, 1)
    assert.equal(view.burst, 3)
    assert.ok(view.tokens < 1 && view.rejected >= 1, JSON.stringify(view))
    // Refusals take no token, so polling does not delay the recovery.
    await waitFor('a token to come back', async () => (await send(agent, `${sc.url}/`, { headers: { host: 'limited' } })).status === 200)
  })
})

describe('rate limit on upgrades', () => {
  it('answers an Upgrade request beyond the rate with a raw 429 and Retry-After', async () => {
    const up = await startUpstream('up')
    // One token per 100 s: after the first request, the next token is 100 s away.
    const sc = await startSidecar({ services: { ws: { source: 'static', endpoints: [up.address], rateLimit: { requestsPerSecond: 0.01, burst: 1 } } } })
    const agent = new Agent()
    try {
      assert.equal((await send(agent, `${sc.url}/`, { headers: { host: 'ws' } })).status, 200)
      const port = Number(new URL(sc.url).port)
      const reply = await rawExchange(port, 'GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
      assert.match(reply, /^HTTP\/1\.1 429 Too Many Requests\r\n/)
      assert.match(reply, /\r\nx-outrigger-error: rate_limited\r\n/)
      const retryAfter = Number(/\r\nretry-after: (\d+)\r\n/.exec(reply)?.[1])
      assert.ok(retryAfter > 90 && retryAfter <= 100, `retry-after ${retryAfter}`)
      assert.ok(reply.endsWith('{"error":"rate_limited","service":"ws"}'))
      assert.equal(up.hits, 1)
    } finally {
      await agent.close()
      await sc.stop()
      await up.close()
    }
  })
})

describe('routes by method and header, with header rewriting', () => {
  const ups: Upstream[] = []
  let sc: RunningSidecar
  let agent: Agent

  before(async () => {
    // Echoes what arrived, and answers with headers the routes rewrite.
    const handler = (req: IncomingMessage, res: ServerResponse, u: Upstream): void => {
      res.setHeader('x-powered-by', 'app')
      res.setHeader('x-served-by', ['app-1', 'app-2'])
      res.setHeader('x-kept', 'yes')
      echoHandler(req, res, u)
    }
    for (const name of ['reads', 'writes', 'acme']) ups.push(await startUpstream(name, handler))
    const [reads, writes, acme] = ups
    sc = await startSidecar({
      services: {
        reads: { source: 'static', endpoints: [reads!.address], routes: [{ pathPrefix: '/pay/', methods: ['GET', 'HEAD'] }] },
        writes: { source: 'static', endpoints: [writes!.address], routes: [{ pathPrefix: '/pay/', methods: ['POST'] }] },
        acme: {
          source: 'static',
          endpoints: [acme!.address],
          routes: [
            {
              pathPrefix: '/pay/',
              headers: { 'X-Tenant': 'acme' },
              requestHeaders: { set: { 'X-Env': 'prod' }, remove: ['x-debug'] },
              responseHeaders: { set: { 'x-served-by': 'outrigger' }, remove: ['X-Powered-By'] },
            },
          ],
        },
      },
    })
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    for (const u of ups) await u.close()
  })

  it('picks the service by method and by header; longest prefix first, then config order', async () => {
    const table: ReadonlyArray<[method: string, headers: Record<string, string>, expected: string | null]> = [
      ['GET', {}, 'reads'],
      ['POST', {}, 'writes'],
      ['GET', { 'x-tenant': 'acme' }, 'reads'], // reads comes first in config and matches
      ['PUT', { 'x-tenant': 'acme' }, 'acme'],
      ['DELETE', { 'x-tenant': 'acme' }, 'acme'],
      ['DELETE', { 'x-tenant': 'other' }, null],
      ['PUT', {}, null],
    ]
    for (const [method, headers, expected] of table) {
      const res = await send(agent, `${sc.url}/pay/1`, { method, headers, body: method === 'POST' || method === 'PUT' ? 'x' : undefined })
      if (expected === null) assertError(res, 404, 'no_route', null)
      else assert.equal((JSON.parse(res.body) as { upstream: string }).upstream, expected, `${method} ${JSON.stringify(headers)}`)
    }
  })

  it('rewrites request headers (set replaces every occurrence, remove drops every one) and response headers', async () => {
    const res = await send(agent, `${sc.url}/pay/1`, {
      method: 'DELETE',
      headers: ['x-tenant', 'acme', 'x-env', 'dev', 'X-ENV', 'test', 'x-debug', '1', 'X-Debug', '2', 'x-other', 'a', 'x-other', 'b'],
    })
    assert.equal(res.status, 200)
    const raw = (JSON.parse(res.body) as { upstream: string; rawHeaders: string[] }).rawHeaders
    const get = (name: string): string[] => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name)
    assert.deepEqual(get('x-env'), ['prod'])
    assert.deepEqual(get('x-debug'), [])
    assert.deepEqual(get('x-other'), ['a', 'b'], 'other duplicates untouched')
    assert.deepEqual(get('x-tenant'), ['acme'])
    assert.equal(res.headers['x-served-by'], 'outrigger', 'both upstream values replaced by one')
    assert.equal(res.headers['x-powered-by'], undefined)
    assert.equal(res.headers['x-kept'], 'yes')
  })

  it('leaves other routes untouched', async () => {
    const res = await send(agent, `${sc.url}/pay/1`, { headers: { 'x-debug': '1' } })
    const echoed = JSON.parse(res.body) as { upstream: string; rawHeaders: string[] }
    assert.equal(echoed.upstream, 'reads')
    assert.ok(echoed.rawHeaders.includes('x-debug'))
    assert.deepEqual(res.headers['x-served-by'], ['app-1', 'app-2'])
    assert.equal(res.headers['x-powered-by'], 'app')
  })
})

describe('policies across a reload', () => {
  it('a changed rate limit takes effect at once, and a removed one is gone', async () => {
    const up = await startUpstream('up')
    const service = (extra: Record<string, unknown>): Record<string, unknown> => ({ api: { source: 'static', endpoints: [up.address], ...extra } })
    const sc = await startSidecar({ services: service({ rateLimit: { requestsPerSecond: 0.01, burst: 1 } }) })
    const reload = (services: Record<string, unknown>): Promise<unknown> => {
      const current = sc.sidecar.config
      const config = parseConfig(JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', discovery: { stateDir: current.discovery.stateDir }, services }), { format: 'json', baseDir: '/tmp', env: {} })
      return sc.sidecar.reload(config)
    }
    const agent = new Agent()
    const status = async (): Promise<number> => (await send(agent, `${sc.url}/`, { headers: { host: 'api' } })).status
    try {
      assert.deepEqual([await status(), await status()], [200, 429])
      await reload(service({ rateLimit: { requestsPerSecond: 0.01, burst: 3 } }))
      assert.deepEqual([await status(), await status(), await status(), await status()], [200, 200, 200, 429])
      await reload(service({}))
      for (let i = 0; i < 10; i++) assert.equal(await status(), 200)
      const view = (await services(sc, agent)).find((v) => v.name === 'api')
      assert.deepEqual(view?.policies, {})
    } finally {
      await agent.close()
      await sc.stop()
      await up.close()
    }
  })
})
