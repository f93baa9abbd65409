import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Agent, request } from 'undici'
import WebSocket, { WebSocketServer } from 'ws'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { closedPort, echoHandler, rawExchange, send, startSidecar, startUpstream, waitFor } from './helpers.ts'

describe('forwarding through the sidecar to real upstreams', () => {
  const upstreams: Upstream[] = []
  let sc: RunningSidecar
  let agent: Agent

  before(async () => {
    for (const name of ['a', 'b', 'c']) upstreams.push(await startUpstream(name))
    sc = await startSidecar({
      services: {
        hello: { source: 'static', endpoints: upstreams.map((u) => u.address) },
        prefixed: { source: 'static', endpoints: [upstreams[0]!.address], routes: [{ pathPrefix: '/p/', stripPrefix: true }] },
      },
    })
    agent = new Agent({ connections: 16 })
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    for (const u of upstreams) await u.close()
  })

  it('spreads 300 requests exactly evenly over 3 upstreams (round-robin)', async () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 300; i++) {
      const res = await send(agent, `${sc.url}/x`, { headers: { host: 'hello' } })
      assert.equal(res.status, 200)
      const who = (JSON.parse(res.body) as { upstream: string }).upstream
      counts.set(who, (counts.get(who) ?? 0) + 1)
    }
    assert.deepEqual([...counts.entries()].sort(), [['a', 100], ['b', 100], ['c', 100]])
  })

  it('routes by path prefix and strips it', async () => {
    const res = await send(agent, `${sc.url}/p/users?id=7`)
    assert.equal(res.status, 200)
    const echoed = JSON.parse(res.body) as { url: string; upstream: string }
    assert.equal(echoed.url, '/users?id=7')
    assert.equal(echoed.upstream, 'a')
  })

  it('sets X-Forwarded-* and keeps the Host header', async () => {
    const res = await send(agent, `${sc.url}/h`, { headers: { host: 'hello:15001', 'x-forwarded-for': '203.0.113.9' } })
    const raw = (JSON.parse(res.body) as { rawHeaders: string[] }).rawHeaders
    const get = (name: string): string[] => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name)
    assert.deepEqual(get('host'), ['hello:15001'])
    assert.deepEqual(get('x-forwarded-for'), ['203.0.113.9, 127.0.0.1'])
    assert.deepEqual(get('x-forwarded-proto'), ['http'])
    assert.deepEqual(get('x-forwarded-host'), ['hello:15001'])
  })

  it('passes duplicate request and response headers as sent', async () => {
    const dup = await startUpstream('dup', (req, res) => {
      const seen = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]!.toLowerCase() === 'x-custom')
      res.writeHead(200, [['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['x-seen', JSON.stringify(seen)]].flat())
      res.end('ok')
    })
    const s = await startSidecar({ services: { dup: { source: 'static', endpoints: [dup.address] } } })
    try {
      const res = await request(`${s.url}/`, { dispatcher: agent, headers: ['host', 'dup', 'x-custom', 'one', 'x-custom', 'two'] })
      await res.body.text()
      assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2'])
      assert.equal(res.headers['x-seen'], '["one","two"]')
    } finally {
      await s.stop()
      await dup.close()
    }
  })

  it('delivers a POST body intact', async () => {
    const body = randomBytes(1024 * 1024)
    const hashing = await startUpstream('hash', (req, res) => {
      const h = createHash('sha256')
      req.on('data', (c: Buffer) => h.update(c))
      req.on('end', () => res.end(h.digest('hex')))
    })
    const s = await startSidecar({ services: { h: { source: 'static', endpoints: [hashing.address] } } })
    try {
      const res = await send(agent, `${s.url}/upload`, { method: 'POST', headers: { host: 'h', 'content-type': 'application/octet-stream' }, body })
      assert.equal(res.status, 200)
      assert.equal(res.body, createHash('sha256').update(body).digest('hex'))
    } finally {
      await s.stop()
      await hashing.close()
    }
  })

  it('routes absolute-form requests (HTTP_PROXY use) by the URL host and forwards origin-form', async () => {
    const out = await rawExchange(Number(new URL(sc.url).port), 'GET http://hello/abs?q=1 HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n')
    assert.match(out, /^HTTP\/1\.1 200/)
    assert.match(out, /"url":"\/abs\?q=1"/)
  })

  it('answers CONNECT with 405 method_not_allowed', async () => {
    const out = await rawExchange(Number(new URL(sc.url).port), 'CONNECT hello:443 HTTP/1.1\r\nHost: hello:443\r\n\r\n')
    assert.match(out, /^HTTP\/1\.1 405/)
    assert.match(out, /x-outrigger-error: method_not_allowed/)
    assert.match(out, /"error":"method_not_allowed"/)
  })

  it('answers an unknown host with 404 no_route', async () => {
    const res = await send(agent, `${sc.url}/`, { headers: { host: 'nobody.internal' } })
    assert.equal(res.status, 404)
    assert.equal(res.headers['x-outrigger-error'], 'no_route')
    assert.deepEqual(JSON.parse(res.body), { error: 'no_route', service: null })
  })

  it('answers a malformed request with 400 and oversized headers with 431, and keeps serving', async () => {
    const port = Number(new URL(sc.url).port)
    assert.match(await rawExchange(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/)
    assert.match(await rawExchange(port, `GET / HTTP/1.1\r\nHost: hello\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431/)
    assert.match(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: hello\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), /^HTTP\/1\.1 400/)
    const res = await send(agent, `${sc.url}/`, { headers: { host: 'hello' } })
    assert.equal(res.status, 200)
  })

  it('passes a WebSocket echo through', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
    const port = (wss.address() as { port: number }).port
    const s = await startSidecar({ services: { ws: { source: 'static', endpoints: [`127.0.0.1:${port}`] } } })
    try {
      const client = new WebSocket(`${s.url.replace('http', 'ws')}/chat`, { headers: { host: 'ws' } })
      await new Promise<void>((resolve, reject) => {
        client.once('open', () => resolve())
        client.once('error', reject)
      })
      const replies: string[] = []
      client.on('message', (d: Buffer) => replies.push(d.toString()))
      for (const m of ['hello', 'through', 'outrigger']) client.send(m)
      await waitFor('three echoes', () => replies.length === 3)
      assert.deepEqual(replies, ['hello', 'through', 'outrigger'])
      client.close()
    } finally {
      await s.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    }
  })
})

describe('failures produce the contract error answers', () => {
  let agent: Agent
  before(() => {
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
  })

  it('502 upstream_connect_failed when no endpoint accepts a connection', async () => {
    const s = await startSidecar({ services: { down: { source: 'static', endpoints: [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${await closedPort()}`] } } })
    try {
      const res = await send(agent, `${s.url}/`, { headers: { host: 'down' } })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-outrigger-error'], 'upstream_connect_failed')
      assert.deepEqual(JSON.parse(res.body), { error: 'upstream_connect_failed', service: 'down' })
    } finally {
      await s.stop()
    }
  })

  it('502 upstream_reset when the upstream drops the connection before answering', async () => {
    const rude = await startUpstream('rude', (req) => req.socket.destroy())
    const s = await startSidecar({ services: { rude: { source: 'static', endpoints: [rude.address] } } })
    try {
      const res = await send(agent, `${s.url}/`, { method: 'POST', headers: { host: 'rude' }, body: 'x' })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-outrigger-error'], 'upstream_reset')
    } finally {
      await s.stop()
      await rude.close()
    }
  })

  it('504 upstream_timeout when the upstream never answers within timeouts.request', async () => {
    const silent = await startUpstream('silent', () => undefined)
    const s = await startSidecar({ services: { slow: { source: 'static', endpoints: [silent.address], timeouts: { request: '300ms' } } } })
    try {
      const res = await send(agent, `${s.url}/`, { headers: { host: 'slow' } })
      assert.equal(res.status, 504)
      assert.equal(res.headers['x-outrigger-error'], 'upstream_timeout')
      assert.equal(silent.hits, 1, 'a timed-out request is not retried')
    } finally {
      await s.stop()
      await silent.close()
    }
  })

  it('503 overloaded when every endpoint is at maxConcurrent', async () => {
    let release: () => void = () => undefined
    const held = new Promise<void>((r) => (release = r))
    const slow = await startUpstream('held', (req, res) => void held.then(() => echoHandler(req, res, slow)))
    const s = await startSidecar({ services: { busy: { source: 'static', endpoints: [slow.address], maxConcurrent: 1 } } })
    try {
      const first = send(agent, `${s.url}/`, { headers: { host: 'busy' } })
      await waitFor('the first request to reach the upstream', () => slow.hits === 1)
      const res = await send(agent, `${s.url}/`, { headers: { host: 'busy' } })
      assert.equal(res.status, 503)
      assert.equal(res.headers['x-outrigger-error'], 'overloaded')
      release()
      assert.equal((await first).status, 200)
    } finally {
      release()
      await s.stop()
      await slow.close()
    }
  })
})

describe('resilience', () => {
  it('stopping one of three upstreams mid-run fails no GET', async () => {
    const ups = [await startUpstream('a'), await startUpstream('b'), await startUpstream('c')]
    const s = await startSidecar({ services: { svc: { source: 'static', endpoints: ups.map((u) => u.address) } } })
    const agent = new Agent({ connections: 8 })
    try {
      let done = 0
      const statuses = new Map<number, number>()
      let stopped = false
      const worker = async (): Promise<void> => {
        while (done < 600) {
          done++
          if (done >= 200 && !stopped) {
            stopped = true
            void ups[1]!.close()
          }
          const res = await send(agent, `${s.url}/`, { headers: { host: 'svc' } })
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        }
      }
      await Promise.all(Array.from({ length: 8 }, worker))
      assert.deepEqual([...statuses.entries()], [[200, statuses.get(200)]])
      assert.ok((statuses.get(200) ?? 0) >= 600)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })

  it('retries a POST whose endpoint refuses the connection on another endpoint, body intact', async () => {
    const hashing = await startUpstream('hash', (req, res) => {
      const h = createHash('sha256')
      req.on('data', (c: Buffer) => h.update(c))
      req.on('end', () => res.end(h.digest('hex')))
    })
    const dead = `127.0.0.1:${await closedPort()}`
    const s = await startSidecar({ services: { h: { source: 'static', endpoints: [dead, hashing.address] } } })
    const agent = new Agent()
    try {
      const body = randomBytes(256 * 1024)
      const want = createHash('sha256').update(body).digest('hex')
      // The cursor passes the dead endpoint on every retry, so at least every other request starts there.
      for (let i = 0; i < 4; i++) {
        const res = await send(agent, `${s.url}/upload`, { method: 'POST', headers: { host: 'h' }, body })
        assert.equal(res.status, 200)
        assert.equal(res.body, want)
      }
      const deadHost = s.sidecar.clusters()[0]!.hosts().find((h) => h.key === dead)!
      assert.ok(deadHost.requests >= 2, `the dead endpoint was tried ${deadHost.requests} times`)
      assert.equal(hashing.hits, 4)
    } finally {
      await agent.close()
      await s.stop()
      await hashing.close()
    }
  })

  it('cancels the upstream request when the client aborts', async () => {
    let upstreamClosed = false
    const streaming = await startUpstream('stream', (_req, res) => {
      res.writeHead(200)
      const timer = setInterval(() => res.write('tick\n'), 10)
      res.on('close', () => {
        clearInterval(timer)
        upstreamClosed = true
      })
    })
    const s = await startSidecar({ services: { st: { source: 'static', endpoints: [streaming.address] } } })
    const agent = new Agent()
    try {
      const controller = new AbortController()
      const res = await request(`${s.url}/`, { dispatcher: agent, headers: { host: 'st' }, signal: controller.signal })
      assert.equal(res.statusCode, 200)
      for await (const _chunk of res.body) break
      controller.abort()
      await waitFor('the upstream to see its request cancelled', () => upstreamClosed)
      await waitFor('in-flight to return to zero', () => s.sidecar.clusters()[0]!.hosts()[0]!.inFlight === 0)
    } finally {
      await agent.close()
      await s.stop()
      await streaming.close()
    }
  })
})
