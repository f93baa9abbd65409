/**
 * Limits: a cap on client connections, header and request timeouts against slow clients
 * (slowloris), an upstream sending huge headers; and the security defaults: the admin token,
 * no secrets in logs or the admin API, X-Forwarded-For never trusted for the `ip` hash key.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { Agent } from 'undici'
import type { RunningSidecar, Upstream } from '../helpers.ts'
import { send, startCli, startSidecar, startUpstream, waitFor, writeTempFile } from '../helpers.ts'
import { Load, report } from './load.ts'

describe('limits', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  const agent = new Agent()
  after(async () => {
    for (const c of cleanup.reverse()) await c()
    await agent.destroy()
  })
  async function sidecar(doc: Record<string, unknown>): Promise<RunningSidecar> {
    const s = await startSidecar(doc)
    cleanup.push(() => s.stop())
    return s
  }
  async function upstream(name: string, handler?: Parameters<typeof startUpstream>[1]): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    cleanup.push(() => u.close())
    return u
  }
  function connect(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
      socket.on('error', reject)
      cleanup.push(() => void socket.destroy())
    })
  }
  const closed = (socket: net.Socket): Promise<void> => new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())))

  it('limits.maxConnections: connections beyond the cap are closed at once; a freed slot serves again', async () => {
    const a = await upstream('a')
    const s = await sidecar({ limits: { maxConnections: 4 }, services: { svc: { source: 'static', endpoints: [a.address] } } })
    const port = Number(new URL(s.url).port)
    const held = [await connect(port), await connect(port), await connect(port), await connect(port)]
    const extra = await connect(port)
    await closed(extra)
    assert.ok(held.every((h) => !h.closed), 'the connections within the cap stay open')
    held[0]!.destroy()
    await waitFor('a freed slot to serve a request', async () => {
      try {
        return (await send(agent, `${s.url}/`, { headers: { host: 'svc' } })).status === 200
      } catch {
        return false
      }
    })
  })

  it('limits.headersTimeout cuts a client sending its head one byte at a time (slowloris); others are served meanwhile', async (t) => {
    const a = await upstream('a')
    const s = await sidecar({ limits: { headersTimeout: '1s' }, services: { svc: { source: 'static', endpoints: [a.address] } } })
    const port = Number(new URL(s.url).port)
    const slow = await connect(port)
    const head = 'GET / HTTP/1.1\r\nHost: svc\r\nX-Padding: ' + 'a'.repeat(200) + '\r\n\r\n'
    let sent = 0
    let answer = ''
    slow.on('data', (c: Buffer) => (answer += c.toString('latin1')))
    const drip = setInterval(() => {
      if (!slow.closed && sent < head.length) slow.write(head[sent++]!)
    }, 100)
    cleanup.push(() => clearInterval(drip))
    const load = new Load({ url: s.url, host: 'svc', concurrency: 4 }).start()
    await closed(slow)
    clearInterval(drip)
    const fates = await load.stop()
    report(t, `slow client cut after ${sent} of ${head.length} bytes (answer ${JSON.stringify(answer.split('\r\n')[0])}); meanwhile`, fates)
    assert.ok(sent < head.length, 'cut before it finished its head')
    assert.match(answer, /^HTTP\/1\.1 408/)
    assert.deepEqual(load.other(['200']), {})
    assert.equal(a.hits, fates['200'], 'the slow client never reached the upstream')
  })

  it('an upstream sending huge response headers is a 502, never a crash', async () => {
    const huge = await upstream('huge', (_req, res) => {
      res.setHeader('x-huge', 'a'.repeat(64 * 1024))
      res.end('never')
    })
    const s = await sidecar({ services: { huge: { source: 'static', endpoints: [huge.address] } } })
    for (let i = 0; i < 5; i++) {
      const res = await send(agent, `${s.url}/`, { headers: { host: 'huge' } })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-outrigger-error'], 'upstream_reset')
    }
    assert.equal((await send(agent, `${s.adminUrl}/healthz`)).status, 200)
  })

  it('validate names bad limits with their paths', async () => {
    const { parseConfig } = await import('../../src/config/load.ts')
    assert.throws(
      () => parseConfig(JSON.stringify({ limits: { maxConnections: 0, headersTimeout: '2m', requestTimeout: '1m', maxHeaderSize: 'big' } }), { format: 'json', baseDir: '/tmp', env: {} }),
      (err: Error) => {
        assert.deepEqual(err.message.split('\n'), [
          'limits.maxConnections: must be at least 1',
          'limits.headersTimeout: must be at most requestTimeout (1m)',
          'limits.maxHeaderSize: must be a size like 64KiB or 1MiB',
        ])
        return true
      },
    )
  })
})

describe('security defaults', () => {
  it('the admin API wants the bearer token when adminToken is set, except /healthz and /readyz', async () => {
    const a = await startUpstream('a')
    const s = await startSidecar({ adminToken: 's3cret-admin', services: { svc: { source: 'static', endpoints: [a.address] } } })
    const agent = new Agent()
    try {
      assert.equal(s.sidecar.addresses.admin.host, '127.0.0.1')
      for (const path of ['/api/services', '/metrics', '/']) {
        const res = await send(agent, `${s.adminUrl}${path}`)
        assert.equal(res.status, 401, path)
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="outrigger"')
        assert.equal((await send(agent, `${s.adminUrl}${path}`, { headers: { authorization: 'Bearer wrong' } })).status, 401)
        assert.equal((await send(agent, `${s.adminUrl}${path}`, { headers: { authorization: 'Bearer s3cret-admin' } })).status, 200, path)
      }
      assert.equal((await send(agent, `${s.adminUrl}/healthz`)).status, 200)
      await waitFor('ready', async () => (await send(agent, `${s.adminUrl}/readyz`)).status === 200)
    } finally {
      await agent.destroy()
      await s.stop()
      await a.close()
    }
  })

  it('no secret (consul token, etcd password, admin token) appears in a real run\'s logs or in /api/services', async () => {
    const secrets = ['consul-TOKEN-7f3a', 'etcd-PASSWORD-91bc', 'admin-TOKEN-55de']
    // Registries that refuse connections: discovery fails and logs its errors, the likeliest place for a leak.
    const deadUpstream = await startUpstream('dead')
    const dead = deadUpstream.address
    const file = writeTempFile('secrets.yaml', [
      'listen: 127.0.0.1:0',
      'admin: 127.0.0.1:0',
      `adminToken: ${secrets[2]}`,
      'discovery:',
      `  consul: { url: "http://127.0.0.1:1", token: ${secrets[0]} }`,
      `  etcd: { endpoints: ["http://127.0.0.1:1"], username: root, password: ${secrets[1]} }`,
      'services:',
      '  c: { source: consul }',
      '  e: { source: etcd }',
      `  s: { source: static, endpoints: ["${dead}"] }`,
      '',
    ].join('\n'))
    const cli = await startCli(file)
    const agent = new Agent()
    try {
      await waitFor('discovery errors to be logged', () => cli.logs.some((l) => l.includes('"service":"c"') && /error|unreachable|fail/i.test(l)) && cli.logs.some((l) => l.includes('"service":"e"')), 20_000)
      const api = await send(agent, `http://${cli.admin}/api/services`, { headers: { authorization: `Bearer ${secrets[2]}` } })
      assert.equal(api.status, 200)
      const metrics = await send(agent, `http://${cli.admin}/metrics`, { headers: { authorization: `Bearer ${secrets[2]}` } })
      const exited = new Promise<void>((resolve) => cli.child.once('exit', () => resolve()))
      cli.child.kill('SIGTERM')
      await exited
      const everything = [...cli.logs, api.body, metrics.body].join('\n')
      for (const secret of secrets) assert.ok(!everything.includes(secret), `${secret} leaked`)
      assert.ok(cli.logs.length > 3)
    } finally {
      cli.child.kill('SIGKILL')
      await agent.destroy()
      await deadUpstream.close()
    }
  })

  it('X-Forwarded-For from a client is appended to, and never trusted as the `ip` hash key', async () => {
    const ups = [await startUpstream('a'), await startUpstream('b'), await startUpstream('c'), await startUpstream('d')]
    const s = await startSidecar({ services: { svc: { source: 'static', strategy: 'consistent-hash', hashKey: 'ip', endpoints: ups.map((u) => u.address) } } })
    const agent = new Agent()
    try {
      const who = new Set<string>()
      for (let i = 0; i < 40; i++) {
        const res = await send(agent, `${s.url}/`, { headers: { host: 'svc', 'x-forwarded-for': `198.51.100.${i}` } })
        const body = JSON.parse(res.body) as { upstream: string; rawHeaders: string[] }
        who.add(body.upstream)
        const xff = body.rawHeaders.filter((_, j) => j % 2 === 1 && body.rawHeaders[j - 1]!.toLowerCase() === 'x-forwarded-for')
        assert.deepEqual(xff, [`198.51.100.${i}, 127.0.0.1`])
      }
      // Forged addresses would spread over the ring; the real client address keeps one endpoint.
      assert.equal(who.size, 1, `spread over ${[...who].join(', ')}`)
    } finally {
      await agent.destroy()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })
})
