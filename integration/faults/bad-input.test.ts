/**
 * Bad input on raw sockets: malformed and ambiguous requests are refused (400, 431, 405) and the
 * connection closed; nothing smuggled reaches an upstream; routing cannot be escaped with `..` or
 * encoded slashes; random bytes never crash or hang the listener while a well-formed client keeps
 * being served.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import fc from 'fast-check'
import type { RunningSidecar, Upstream } from '../helpers.ts'
import { rawExchange, startSidecar, startUpstream } from '../helpers.ts'
import { Load, report } from './load.ts'

describe('bad input', () => {
  let api: Upstream
  let web: Upstream
  let s: RunningSidecar
  let port: number
  /** Every request line the upstreams received. */
  const received: string[] = []

  before(async () => {
    const record = (u: () => Upstream) => (req: IncomingMessage, res: ServerResponse): void => {
      received.push(`${u().name} ${req.method} ${req.url}`)
      req.resume()
      req.on('end', () => res.end(JSON.stringify({ upstream: u().name, url: req.url })))
    }
    api = await startUpstream('api', record(() => api))
    web = await startUpstream('web', record(() => web))
    s = await startSidecar({
      services: {
        api: { source: 'static', endpoints: [api.address], routes: [{ pathPrefix: '/api/', stripPrefix: true }] },
        web: { source: 'static', endpoints: [web.address], routes: [{ pathPrefix: '/web/' }, { host: 'web' }] },
      },
    })
    port = Number(new URL(s.url).port)
  })
  after(async () => {
    await s.stop()
    await api.close()
    await web.close()
  })

  const statusOf = (out: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0)

  it('refuses malformed request lines and headers with 400 and closes the connection', async () => {
    const cases = [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/9.9\r\nHost: web\r\n\r\n',
      'GET / HTTP/1.1\r\nHost web\r\n\r\n',
      'GET / HTTP/1.1\r\n Host: web\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web\r\nX-Folded: a\r\n b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web\r\nX-Ctl: a\u0001b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web\r\nX-Nul: a\u0000b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web\r\nX-Bad Name: a\r\n\r\n',
      'GET /a b HTTP/1.1\r\nHost: web\r\n\r\n',
      'GET / HTTP/1.1\nHost: web\n\n',
    ]
    for (const c of cases) {
      const out = await rawExchange(port, c, 1000)
      assert.equal(statusOf(out), 400, `${JSON.stringify(c)} → ${JSON.stringify(out.slice(0, 60))}`)
      assert.match(out, /connection: close/i, JSON.stringify(c))
    }
    assert.deepEqual(received, [], 'nothing reached an upstream')
  })

  it('answers oversized headers with 431', async () => {
    const out = await rawExchange(port, `GET / HTTP/1.1\r\nHost: web\r\n${'X-Many: aaaaaaaaaaaaaaaaaaaa\r\n'.repeat(2000)}\r\n`)
    assert.equal(statusOf(out), 431)
  })

  it('refuses request-smuggling shapes with 400 and forwards nothing smuggled', async () => {
    const smuggled = 'GET /web/SMUGGLED HTTP/1.1\r\nHost: web\r\n\r\n'
    const cases = [
      `POST /web/x HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nContent-Length: 0, ${smuggled.length}\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n4;ext\u0001\r\nabcd\r\n0\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n${smuggled}`,
      `POST /web/x HTTP/1.1\r\nHost: web\r\nContent-Length: +4\r\n\r\nabcd${smuggled}`,
    ]
    for (const c of cases) {
      const out = await rawExchange(port, c, 1000)
      assert.equal(statusOf(out), 400, `${JSON.stringify(c.slice(0, 90))} → ${JSON.stringify(out.slice(0, 80))}`)
      assert.doesNotMatch(out, /SMUGGLED/)
    }
    assert.deepEqual(received.filter((r) => r.includes('SMUGGLED')), [], 'no smuggled request reached an upstream')
  })

  it('CONNECT is 405; absolute-form is routed by its own host; an unknown host is 404 no_route', async () => {
    assert.equal(statusOf(await rawExchange(port, 'CONNECT web:443 HTTP/1.1\r\nHost: web:443\r\n\r\n')), 405)
    const abs = await rawExchange(port, 'GET http://web/abs HTTP/1.1\r\nHost: nobody\r\nConnection: close\r\n\r\n')
    assert.equal(statusOf(abs), 200)
    assert.match(abs, /"upstream":"web","url":"\/abs"/)
    // The URL's host wins over a Host header naming a routed service.
    const unrouted = await rawExchange(port, 'GET http://nobody.internal/x HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n')
    assert.equal(statusOf(unrouted), 404)
    assert.match(unrouted, /x-outrigger-error: no_route/)
    assert.equal(statusOf(await rawExchange(port, 'GET http:/// HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n')), 400)
    assert.equal(statusOf(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: nobody.internal\r\nConnection: close\r\n\r\n')), 404)
  })

  it('routes on the path as sent: `..` and encoded slashes cannot move a request to another service', async () => {
    // The route's service is chosen on the raw path, which is forwarded unchanged: the upstream
    // that owns the prefix decides what `..` means in its own path space (Envoy's default,
    // normalize_path: false). A prefix route is a routing choice, not an access control.
    const cases: Array<[string, string, string]> = [
      ['/api/../web/x', 'api', '/../web/x'],
      ['/api/%2e%2e/web/x', 'api', '/%2e%2e/web/x'],
      ['/api%2F..%2Fweb/x', '', ''],
      ['/web/..%2Fapi/x', 'web', '/web/..%2Fapi/x'],
      ['/api//web/x', 'api', '/web/x'],
    ]
    for (const [path, service, upstreamPath] of cases) {
      const out = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n`)
      if (service === '') {
        assert.equal(statusOf(out), 404, path)
        continue
      }
      assert.equal(statusOf(out), 200, path)
      const body = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as { upstream: string; url: string }
      assert.deepEqual(body, { upstream: service, url: upstreamPath }, path)
    }
  })

  it('random bytes never crash or hang the listener, and a well-formed client is served throughout (fast-check)', async (t) => {
    const load = new Load({ url: s.url, host: 'web', concurrency: 4 }).start()
    const fragments = fc.constantFrom(
      'GET / HTTP/1.1\r\n', 'POST /web/ HTTP/1.1\r\n', 'Host: web\r\n', 'Host: api\r\n', 'Content-Length: 3\r\n', 'Content-Length: -1\r\n',
      'Transfer-Encoding: chunked\r\n', 'Connection: close\r\n', 'Expect: 100-continue\r\n', 'Upgrade: websocket\r\n', '\r\n', '\r\n\r\n',
      '0\r\n\r\n', '5\r\nhello\r\n', 'abc', ' ', ':', '\n', '\u0000', '\u00ff', 'GET http://web/ HTTP/1.1\r\n', 'CONNECT x:1 HTTP/1.1\r\n',
    )
    const payload = fc.array(fc.oneof(fragments, fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a).toString('latin1'))), { minLength: 1, maxLength: 12 })
    let runs = 0
    await fc.assert(
      fc.asyncProperty(payload, async (parts) => {
        runs++
        const out = await rawExchange(port, Buffer.from(parts.join(''), 'latin1'), 150)
        // Whatever came back is HTTP responses, never anything else.
        if (out.length > 0) assert.match(out, /^HTTP\/1\.1 \d{3} /)
      }),
      { numRuns: 120 },
    )
    const fates = await load.stop()
    report(t, `well-formed client during ${runs} random payloads`, fates)
    assert.deepEqual(load.other(['200']), {})
    assert.ok(load.total > 0)
  })
})
