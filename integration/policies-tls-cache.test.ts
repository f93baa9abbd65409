import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import type { TLSSocket } from 'node:tls'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent } from 'undici'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { CLI, send, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'
import type { RegistryServer } from './registries/servers.ts'
import { startConsul } from './registries/servers.ts'

// ---------------------------------------------------------------------------------------------------
// Certificates, made at test time with the openssl CLI (node:crypto cannot sign certificates).

interface Pki {
  dir: string
  ca: string
  serverCert: string
  serverKey: string
  /** A client certificate and key signed by the CA, CN=`name`. */
  client(name: string): { cert: string; key: string }
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

function makePki(): Pki {
  const probe = spawnSync('openssl', ['version'])
  if (probe.error !== undefined || probe.status !== 0) throw new Error('these tests need the openssl command line tool to make certificates; install openssl')
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-pki-'))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=outrigger test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir)
  const issue = (name: string, ext: string): { cert: string; key: string } => {
    writeFileSync(path.join(dir, `${name}.ext`), ext)
    openssl(['req', ...ec, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir)
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir)
    return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}-key.pem`) }
  }
  const server = issue('payments.internal', 'subjectAltName=DNS:payments.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    serverCert: server.cert,
    serverKey: server.key,
    client: (name) => issue(name, 'extendedKeyUsage=clientAuth\n'),
  }
}

interface HttpsUpstream {
  port: number
  hits: number
  close(): Promise<void>
}

/**
 * An HTTPS upstream answering `{cn, encrypted}` (the client certificate's CN, if any). With
 * `requireClientCert` it refuses connections without a client certificate from the CA.
 */
async function startHttpsUpstream(pki: Pki, requireClientCert: boolean): Promise<HttpsUpstream> {
  const upstream = { hits: 0 } as HttpsUpstream
  const server = https.createServer(
    { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ca: readFileSync(pki.ca), requestCert: requireClientCert, rejectUnauthorized: requireClientCert },
    (req: IncomingMessage, res: ServerResponse) => {
      upstream.hits++
      const socket = req.socket as TLSSocket
      const peer = socket.getPeerCertificate()
      const body = JSON.stringify({ cn: peer.subject?.CN ?? null, encrypted: socket.encrypted === true, path: req.url })
      // One connection per request, so a certificate rotation shows on the next request.
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' })
      res.end(body)
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  upstream.port = (server.address() as AddressInfo).port
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return upstream
}

function json(body: string): { cn: string | null; encrypted: boolean } {
  return JSON.parse(body) as { cn: string | null; encrypted: boolean }
}

/** A client certificate and key copied into a folder of their own, for tests that replace the files. */
function copyClientCert(from: { cert: string; key: string }): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-certs-'))
  const cert = path.join(dir, 'client.pem')
  const key = path.join(dir, 'client-key.pem')
  writeFileSync(cert, readFileSync(from.cert))
  writeFileSync(key, readFileSync(from.key))
  return { cert, key }
}

describe('upstream TLS and mTLS', () => {
  let pki: Pki
  let agent: Agent
  const cleanup: Array<() => Promise<void>> = []
  before(() => {
    pki = makePki()
    agent = new Agent()
  })
  after(async () => {
    for (const c of cleanup.reverse()) await c()
    await agent.destroy()
  })

  async function sidecar(service: Record<string, unknown>): Promise<RunningSidecar> {
    const s = await startSidecar({ services: { payments: { source: 'static', ...service } } })
    cleanup.push(() => s.stop())
    return s
  }

  async function upstream(requireClientCert: boolean): Promise<HttpsUpstream> {
    const u = await startHttpsUpstream(pki, requireClientCert)
    cleanup.push(() => u.close())
    return u
  }

  it('forwards over mutual TLS with the configured CA, client certificate and servername', async () => {
    const u = await upstream(true)
    const client = pki.client('client-1')
    const s = await sidecar({ endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca, cert: client.cert, key: client.key, servername: 'payments.internal' } })
    const r = await send(agent, `${s.url}/pay`, { headers: { host: 'payments' } })
    assert.equal(r.status, 200, r.body)
    assert.deepEqual(json(r.body), { cn: 'client-1', encrypted: true, path: '/pay' })
  })

  it('answers 502 upstream_connect_failed when the upstream refuses a connection without a client certificate, whatever the method', async () => {
    const u = await upstream(true)
    const s = await sidecar({ endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca } })
    for (const method of ['GET', 'POST']) {
      const r = await send(agent, `${s.url}/pay`, { method, headers: { host: 'payments' }, body: method === 'POST' ? 'x' : undefined })
      assert.equal(r.status, 502, `${method}: ${r.body}`)
      assert.equal(r.headers['x-outrigger-error'], 'upstream_connect_failed', method)
      assert.deepEqual(JSON.parse(r.body), { error: 'upstream_connect_failed', service: 'payments' })
    }
    assert.equal(u.hits, 0)
  })

  it('answers 502 upstream_connect_failed when the upstream certificate does not chain to the CA, or no endpoint certificate names the servername', async () => {
    const bad = await upstream(false)
    const other = makePki()
    const s = await sidecar({ endpoints: [`127.0.0.1:${bad.port}`], tls: { ca: other.ca, servername: 'payments.internal' } })
    const r = await send(agent, `${s.url}/`, { headers: { host: 'payments' } })
    assert.equal(r.status, 502)
    assert.equal(r.headers['x-outrigger-error'], 'upstream_connect_failed')

    const good = await upstream(false)
    const s2 = await sidecar({ strategy: 'round-robin', endpoints: [`127.0.0.1:${bad.port}`, `127.0.0.1:${good.port}`], tls: { ca: pki.ca, servername: 'wrong.name' } })
    // servername wrong.name matches no certificate: every endpoint fails the handshake, each retried on the next.
    const r2 = await send(agent, `${s2.url}/`, { headers: { host: 'payments' } })
    assert.equal(r2.headers['x-outrigger-error'], 'upstream_connect_failed')
    assert.equal(good.hits + bad.hits, 0)
  })

  it('uses a rotated client certificate for new connections once the files change', async () => {
    const u = await upstream(true)
    const first = pki.client('client-1')
    const second = pki.client('client-2')
    const { cert, key } = copyClientCert(first)
    const s = await sidecar({ endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca, cert, key, servername: 'payments.internal' } })
    assert.equal(json((await send(agent, `${s.url}/`, { headers: { host: 'payments' } })).body).cn, 'client-1')

    // A broken file is logged and ignored: the old certificate stays in use.
    writeFileSync(`${cert}.tmp`, 'not a certificate')
    renameSync(`${cert}.tmp`, cert)
    // Replace both files atomically, as a secret manager would.
    writeFileSync(`${key}.tmp`, readFileSync(second.key))
    renameSync(`${key}.tmp`, key)
    writeFileSync(`${cert}.tmp`, readFileSync(second.cert))
    renameSync(`${cert}.tmp`, cert)
    await waitFor('requests to carry the rotated client certificate', async () => {
      const r = await send(agent, `${s.url}/`, { headers: { host: 'payments' } })
      assert.equal(r.status, 200, r.body)
      return json(r.body).cn === 'client-2'
    }, 15_000)
  })

  it('keeps the old certificate when the new files do not load', async () => {
    const u = await upstream(true)
    const first = pki.client('client-3')
    const { cert, key } = copyClientCert(first)
    const s = await sidecar({ endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca, cert, key, servername: 'payments.internal' } })
    const tlsPolicy = s.sidecar.clusters()[0]!.policies!.tls!
    writeFileSync(cert, 'garbage')
    assert.equal(await (tlsPolicy as unknown as { reload(): Promise<boolean> }).reload(), false)
    const r = await send(agent, `${s.url}/`, { headers: { host: 'payments' } })
    assert.equal(r.status, 200, r.body)
    assert.equal(json(r.body).cn, 'client-3')
  })

  it('probes TLS endpoints over TLS with the service certificates: a check without a client certificate fails, one with it passes', async () => {
    const u = await upstream(true)
    const client = pki.client('client-1')
    const active = { type: 'http', path: '/health', interval: '200ms', timeout: '150ms', healthyThreshold: 1, unhealthyThreshold: 1 }
    const good = await sidecar({ endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca, cert: client.cert, key: client.key, servername: 'payments.internal' }, healthCheck: { active, panicThreshold: 0 } })
    const bad = await startSidecar({ services: { nocert: { source: 'static', endpoints: [`127.0.0.1:${u.port}`], tls: { ca: pki.ca, servername: 'payments.internal' }, healthCheck: { active, panicThreshold: 0 } } } })
    cleanup.push(() => bad.stop())
    await waitFor('the probe without a client certificate to fail', async () => {
      const view = (await (await fetch(`${bad.adminUrl}/api/services`)).json()) as Array<{ endpoints: Array<{ flags: string[] }> }>
      return view[0]!.endpoints[0]!.flags.includes('failed_active_check')
    })
    await waitFor('probes with the client certificate to pass', async () => {
      const metrics = await (await fetch(`${good.adminUrl}/metrics`)).text()
      return /outrigger_health_checks_total\{endpoint="127\.0\.0\.1:\d+",result="pass"\} [1-9]/.test(metrics)
    })
    const view = (await (await fetch(`${good.adminUrl}/api/services`)).json()) as Array<{ endpoints: Array<{ healthy: boolean }> }>
    assert.equal(view[0]!.endpoints[0]!.healthy, true)
  })

  it('outrigger validate names an unreadable or broken certificate file', () => {
    const file = writeTempFile('tls.yaml', `services:\n  payments:\n    source: static\n    endpoints: ["127.0.0.1:1"]\n    tls: { ca: ./missing-ca.pem }\n  other:\n    source: static\n    endpoints: ["127.0.0.1:2"]\n    tls: { ca: ${JSON.stringify(pki.ca)}, cert: ${JSON.stringify(pki.serverCert)}, key: ${JSON.stringify(pki.client('mismatch').key)} }\n`)
    const r = spawnSync(process.execPath, [CLI, 'validate', '-c', file], { encoding: 'utf8' })
    assert.equal(r.status, 1)
    const lines = r.stdout.trimEnd().split('\n')
    assert.equal(lines.length, 2, r.stdout)
    assert.match(lines[0]!, /^services\.payments\.tls\.ca: cannot read .*missing-ca\.pem: ENOENT$/)
    assert.match(lines[1]!, /^services\.other\.tls: cert\/key: .*key values mismatch/)
  })
})

describe('Consul Service.Meta.scheme: https turns TLS on for that instance', () => {
  let consul: RegistryServer
  let pki: Pki
  let agent: Agent
  const cleanup: Array<() => Promise<void>> = []
  before(async () => {
    pki = makePki()
    // No `tls:` in the config: the instance is checked against the default CAs, to which the
    // test's CA is added for this process.
    tls.setDefaultCACertificates([...tls.getCACertificates('default'), readFileSync(pki.ca, 'utf8')])
    consul = await startConsul()
    agent = new Agent()
  })
  after(async () => {
    for (const c of cleanup.reverse()) await c()
    await agent.destroy()
    await consul.destroy()
  })

  it('reaches an https instance and a plain one of the same service, each in its own scheme', async () => {
    const secure = await startHttpsUpstream(pki, false)
    cleanup.push(() => secure.close())
    const plain = await startUpstream('plain')
    cleanup.push(() => plain.close())
    for (const [id, port, meta] of [['secure-1', secure.port, { scheme: 'https' }], ['plain-1', plain.port, {}]] as const) {
      const res = await fetch(`${consul.url}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ ID: id, Name: 'mixed', Address: '127.0.0.1', Port: port, Meta: meta }) })
      assert.equal(res.status, 200, await res.text())
    }
    const s = await startSidecar({ discovery: { consul: { url: consul.url, wait: '5s' } }, services: { mixed: { source: 'consul' } } })
    cleanup.push(() => s.stop())
    await waitFor('both instances to be discovered', () => s.sidecar.clusters()[0]!.hosts().length === 2)
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const r = await send(agent, `${s.url}/`, { headers: { host: 'mixed' } })
      assert.equal(r.status, 200, r.body)
      const body = JSON.parse(r.body) as { encrypted?: boolean; upstream?: string }
      seen.add(body.encrypted === true ? 'https' : body.upstream === 'plain' ? 'http' : 'other')
    }
    assert.deepEqual([...seen].sort(), ['http', 'https'])
  })
})

// ---------------------------------------------------------------------------------------------------
// Response caching

describe('response caching', () => {
  let agent: Agent
  let origin: Upstream
  let s: RunningSidecar
  /** Request headers the origin saw last, by path. */
  const seen = new Map<string, IncomingMessage['headers']>()
  const versions = new Map<string, number>()

  before(async () => {
    agent = new Agent()
    origin = await startUpstream('origin', (req, res) => {
      const url = new URL(req.url!, 'http://x')
      seen.set(url.pathname, req.headers)
      const n = (versions.get(url.pathname) ?? 0) + 1
      versions.set(url.pathname, n)
      const reply = (headers: Record<string, string>, body: string): void => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers })
        res.end(req.method === 'HEAD' ? undefined : body)
      }
      switch (url.pathname) {
        case '/fresh':
        case '/invalidate':
          return reply({ 'cache-control': 'max-age=60' }, `fresh #${n}`)
        case '/no-store':
          return reply({ 'cache-control': 'no-store' }, `no-store #${n}`)
        case '/private':
          return reply({ 'cache-control': 'private, max-age=60' }, `private #${n}`)
        case '/vary':
          return reply({ 'cache-control': 'max-age=60', vary: 'accept-language' }, `lang ${req.headers['accept-language'] ?? 'none'} #${n}`)
        case '/short':
          return reply({ 'cache-control': 'max-age=1' }, `short #${n}`)
        case '/etag':
          if (req.headers['if-none-match'] === '"v1"') {
            res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' })
            res.end()
            return
          }
          return reply({ 'cache-control': 'no-cache', etag: '"v1"' }, 'etag body v1')
        case '/big':
          // Chunked, 64 KiB: above the per-entry limit (a tenth of 256 KiB).
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
          for (let i = 0; i < 64; i++) res.write(Buffer.alloc(1024, 97 + (i % 26)))
          res.end()
          return
        default:
          return reply({ 'cache-control': 'max-age=60' }, `other #${n}`)
      }
    })
    s = await startSidecar({ services: { web: { source: 'static', endpoints: [origin.address], cache: { maxEntries: 100, maxBytes: '256KiB' } } } })
  })
  after(async () => {
    await s.stop()
    await origin.close()
    await agent.destroy()
  })

  const get = (p: string, headers: Record<string, string> = {}, method = 'GET') => send(agent, `${s.url}${p}`, { method, headers: { host: 'web', ...headers } })

  it('serves a fresh response from the cache without touching the upstream, GET and HEAD', async () => {
    const a = await get('/fresh')
    assert.equal(a.headers['x-outrigger-cache'], 'miss')
    const hits = origin.hits
    const b = await get('/fresh')
    assert.equal(b.headers['x-outrigger-cache'], 'hit')
    assert.equal(b.body, a.body)
    assert.equal(b.headers['content-type'], 'text/plain')
    assert.ok(Number(b.headers.age) >= 0)
    const head = await get('/fresh', {}, 'HEAD')
    assert.equal(head.headers['x-outrigger-cache'], 'hit')
    assert.equal(head.body, '')
    assert.equal(origin.hits, hits)
  })

  it('never stores no-store or private responses', async () => {
    for (const p of ['/no-store', '/private']) {
      const a = await get(p)
      const b = await get(p)
      assert.equal(a.headers['x-outrigger-cache'], 'miss', p)
      assert.equal(b.headers['x-outrigger-cache'], 'miss', p)
      assert.notEqual(a.body, b.body, p)
    }
  })

  it('does not share a response to a request with Authorization unless the response allows it', async () => {
    await get('/auth', { authorization: 'Bearer a' })
    const b = await get('/auth', { authorization: 'Bearer a' })
    assert.equal(b.headers['x-outrigger-cache'], 'miss')
  })

  it('keeps Vary variants apart', async () => {
    const en = await get('/vary', { 'accept-language': 'en' })
    const fr = await get('/vary', { 'accept-language': 'fr' })
    assert.match(en.body, /^lang en/)
    assert.match(fr.body, /^lang fr/)
    assert.equal(fr.headers['x-outrigger-cache'], 'miss')
    const en2 = await get('/vary', { 'accept-language': 'en' })
    const fr2 = await get('/vary', { 'accept-language': 'fr' })
    assert.deepEqual([en2.headers['x-outrigger-cache'], en2.body], ['hit', en.body])
    assert.deepEqual([fr2.headers['x-outrigger-cache'], fr2.body], ['hit', fr.body])
  })

  it('goes back to the upstream once max-age has passed', async () => {
    const a = await get('/short')
    assert.equal(a.headers['x-outrigger-cache'], 'miss')
    assert.equal((await get('/short')).headers['x-outrigger-cache'], 'hit')
    await waitFor('the entry to expire', async () => (await get('/short')).headers['x-outrigger-cache'] === 'miss')
    assert.equal(versions.get('/short'), 2)
  })

  it('revalidates a stale entry with its ETag and serves it on a 304', async () => {
    const a = await get('/etag')
    assert.equal(a.headers['x-outrigger-cache'], 'miss')
    const b = await get('/etag')
    assert.equal(b.status, 200)
    assert.equal(b.headers['x-outrigger-cache'], 'revalidated')
    assert.equal(b.body, 'etag body v1')
    assert.equal(seen.get('/etag')?.['if-none-match'], '"v1"')
  })

  it('streams a response larger than the per-entry limit without storing it', async () => {
    const a = await get('/big')
    assert.equal(a.body.length, 64 * 1024)
    const b = await get('/big')
    assert.equal(b.headers['x-outrigger-cache'], 'miss')
    assert.equal(b.body.length, 64 * 1024)
  })

  it('drops the stored response of a URL after a successful POST to it', async () => {
    await get('/invalidate')
    assert.equal((await get('/invalidate')).headers['x-outrigger-cache'], 'hit')
    const post = await send(agent, `${s.url}/invalidate`, { method: 'POST', headers: { host: 'web' }, body: 'x' })
    assert.equal(post.headers['x-outrigger-cache'], 'miss')
    assert.equal((await get('/invalidate')).headers['x-outrigger-cache'], 'miss')
  })

  it('reports the cache in /metrics and /api/services', async () => {
    const metrics = await (await fetch(`${s.adminUrl}/metrics`)).text()
    assert.match(metrics, /outrigger_cache_requests_total\{service="web",result="hit"\} [1-9]/)
    assert.match(metrics, /outrigger_cache_requests_total\{service="web",result="revalidated"\} [1-9]/)
    assert.match(metrics, /outrigger_cache_entries\{service="web"\} [1-9]/)
    const view = (await (await fetch(`${s.adminUrl}/api/services`)).json()) as Array<{ cache?: { entries: number; bytes: number; hits: number; hitRate: number } }>
    const cache = view[0]!.cache!
    assert.ok(cache.entries > 0 && cache.bytes > 0 && cache.hits > 0, JSON.stringify(cache))
    assert.ok(cache.hitRate > 0 && cache.hitRate < 1)
  })
})
