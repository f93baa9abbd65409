import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addConnectionTokens, clientIp, downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.ts'

/** `[name, value, name, value]` → `[[name, value], ...]`, for readable comparisons. */
function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!])
  return out
}

describe('upstreamRequestHeaders', () => {
  it('removes hop-by-hop headers and the headers named in Connection', () => {
    const raw = [
      'Host', 'api.internal',
      'Connection', 'keep-alive, X-Secret , x-other',
      'Keep-Alive', 'timeout=5',
      'Proxy-Connection', 'keep-alive',
      'Proxy-Authorization', 'Basic Zm9vOmJhcg==',
      'TE', 'trailers',
      'Trailer', 'Expires',
      'Transfer-Encoding', 'chunked',
      'Upgrade', 'websocket',
      'x-secret', 'hidden',
      'X-Other', 'hidden too',
      'Accept', '*/*',
    ]
    const { headers } = upstreamRequestHeaders(raw, '10.1.1.1', 'http', null)
    assert.deepEqual(pairs(headers), [
      ['Accept', '*/*'],
      ['host', 'api.internal'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'api.internal'],
    ])
  })

  it('keeps Host and Content-Length when Connection names them (dropping a framing line smuggles the body)', () => {
    const raw = ['Host', 'api', 'Connection', 'content-length, Host, x-a', 'Content-Length', '5', 'x-a', '1']
    const { headers } = upstreamRequestHeaders(raw, '10.1.1.1', 'http', null)
    assert.deepEqual(pairs(headers).slice(0, 2), [['Content-Length', '5'], ['host', 'api']])
    assert.equal(addConnectionTokens('Content-Length, host, X-A', null)?.has('content-length'), false)
  })

  it('reads the names of several Connection headers', () => {
    const raw = ['Connection', 'x-a', 'connection', 'X-B', 'x-a', '1', 'x-b', '2', 'x-c', '3']
    const { headers } = upstreamRequestHeaders(raw, '10.1.1.1', 'http', null)
    assert.deepEqual(pairs(headers).filter(([n]) => n.startsWith('x-') && !n.startsWith('x-forwarded')), [['x-c', '3']])
  })

  it('keeps duplicates and the order of the other headers', () => {
    const raw = ['X-Custom', 'one', 'Accept', 'text/html', 'x-custom', 'two', 'Cookie', 'a=1', 'Cookie', 'b=2']
    const { headers } = upstreamRequestHeaders(raw, '10.1.1.1', 'https', null)
    assert.deepEqual(pairs(headers), [
      ['X-Custom', 'one'],
      ['Accept', 'text/html'],
      ['x-custom', 'two'],
      ['Cookie', 'a=1'],
      ['Cookie', 'b=2'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'https'],
    ])
  })

  it('keeps only the first Host', () => {
    const { headers, host } = upstreamRequestHeaders(['Host', 'first.example:8080', 'Host', 'second.example'], '10.1.1.1', 'http', null)
    assert.equal(host, 'first.example:8080')
    assert.deepEqual(pairs(headers), [
      ['host', 'first.example:8080'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'first.example:8080'],
    ])
  })

  it('appends the client to X-Forwarded-For, joining several incoming ones in order', () => {
    const raw = ['X-Forwarded-For', '203.0.113.7', 'Host', 'h', 'x-forwarded-for', '198.51.100.2, 10.0.0.3']
    const { headers } = upstreamRequestHeaders(raw, '127.0.0.1', 'http', null)
    const xff = pairs(headers).filter(([n]) => n.toLowerCase() === 'x-forwarded-for')
    assert.deepEqual(xff, [['x-forwarded-for', '203.0.113.7, 198.51.100.2, 10.0.0.3, 127.0.0.1']])
  })

  it('sets X-Forwarded-Proto and X-Forwarded-Host, replacing what the client sent', () => {
    const raw = ['Host', 'api.internal', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'spoofed.example']
    const { headers } = upstreamRequestHeaders(raw, '10.1.1.1', 'http', null)
    assert.deepEqual(pairs(headers), [
      ['host', 'api.internal'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'api.internal'],
    ])
  })

  it('replaces the Host with hostOverride (absolute-form requests)', () => {
    const { headers, host } = upstreamRequestHeaders(['Host', 'proxy.local:15001', 'Accept', '*/*'], '10.1.1.1', 'http', 'api:8080')
    assert.equal(host, 'api:8080')
    assert.deepEqual(pairs(headers), [
      ['Accept', '*/*'],
      ['host', 'api:8080'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'api:8080'],
    ])
  })

  it('sends no Host and no X-Forwarded-Host when the client had no Host', () => {
    const { headers, host } = upstreamRequestHeaders(['Accept', '*/*'], '10.1.1.1', 'http', null)
    assert.equal(host, '')
    assert.deepEqual(pairs(headers), [
      ['Accept', '*/*'],
      ['x-forwarded-for', '10.1.1.1'],
      ['x-forwarded-proto', 'http'],
    ])
  })

  // DESIGN.md lists `Proxy-*` among the removed headers; only three Proxy- names are removed.
  it('removes every Proxy-* request header', () => {
    const { headers } = upstreamRequestHeaders(['Host', 'h', 'Proxy-Foo', 'x', 'Proxy-Authentication-Info', 'y'], '10.1.1.1', 'http', null)
    assert.deepEqual(
      pairs(headers).filter(([n]) => n.toLowerCase().startsWith('proxy-')),
      [],
    )
  })

  it('drops Expect (node answers 100 Continue itself)', () => {
    const { headers } = upstreamRequestHeaders(['Expect', '100-continue', 'Content-Length', '5'], '10.1.1.1', 'http', null)
    assert.deepEqual(pairs(headers).slice(0, 1), [['Content-Length', '5']])
    assert.equal(
      pairs(headers).some(([n]) => n.toLowerCase() === 'expect'),
      false,
    )
  })
})

describe('downstreamResponseHeaders', () => {
  it('keeps every set-cookie, drops hop-by-hop ones, and accepts Buffers', () => {
    const raw: Array<Buffer | string> = [
      Buffer.from('Set-Cookie'), Buffer.from('a=1; Path=/'),
      Buffer.from('Connection'), Buffer.from('close, X-Internal'),
      Buffer.from('Content-Type'), Buffer.from('text/plain'),
      Buffer.from('Transfer-Encoding'), Buffer.from('chunked'),
      Buffer.from('Keep-Alive'), Buffer.from('timeout=5'),
      Buffer.from('Proxy-Authenticate'), Buffer.from('Basic'),
      Buffer.from('X-Internal'), Buffer.from('secret'),
      'set-cookie', 'b=2; HttpOnly',
      'Trailer', 'Expires',
      'Upgrade', 'h2c',
    ]
    assert.deepEqual(pairs(downstreamResponseHeaders(raw)), [
      ['Set-Cookie', 'a=1; Path=/'],
      ['Content-Type', 'text/plain'],
      ['set-cookie', 'b=2; HttpOnly'],
    ])
  })

  it('decodes Buffers as latin1, byte for byte', () => {
    const raw = [Buffer.from('X-Name'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]
    assert.deepEqual(downstreamResponseHeaders(raw), ['X-Name', 'caf\u00e9'])
  })

  it('returns an empty list for no headers', () => {
    assert.deepEqual(downstreamResponseHeaders([]), [])
  })
})

describe('clientIp', () => {
  it('strips the IPv4-mapped IPv6 prefix and leaves other addresses alone', () => {
    const table: ReadonlyArray<[string | undefined, string]> = [
      ['::ffff:10.0.0.1', '10.0.0.1'],
      ['10.0.0.1', '10.0.0.1'],
      ['::1', '::1'],
      ['2001:db8::1', '2001:db8::1'],
      [undefined, 'unknown'],
    ]
    for (const [input, expected] of table) assert.equal(clientIp(input), expected, String(input))
  })
})
