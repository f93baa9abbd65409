import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import http from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import { parseConfig } from '../../src/config/load.ts'
import type { HashKey } from '../../src/config/types.ts'
import { cookieValue, hashKeyReader, queryValue, rawHeaderValue } from '../../src/proxy/hash-key.ts'
import { headerMap } from '../../src/proxy/headers.ts'

/** The readers only look at `headers`; Node lower-cases header names and joins repeats. */
function request(headers: IncomingHttpHeaders = {}): IncomingHttpHeaders {
  return headers
}

/** The hash key a service configured with `hashKey: <text>` ends up with. */
function configuredHashKey(text: string): HashKey {
  const doc = { services: { s: { source: 'static', strategy: 'consistent-hash', hashKey: text, endpoints: ['127.0.0.1:1'] } } }
  const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
  assert.ok(service !== undefined)
  return service.hashKey
}

describe('cookieValue', () => {
  it('finds a cookie among several', () => {
    const table: ReadonlyArray<{ header: string | undefined; name: string; expected: string | null }> = [
      { header: 'session=abc', name: 'session', expected: 'abc' },
      { header: 'a=1; session=abc; b=2', name: 'session', expected: 'abc' },
      { header: 'a=1; b=2; session=abc', name: 'session', expected: 'abc' },
      { header: 'a=1;session=abc;b=2', name: 'session', expected: 'abc' },
      { header: 'a=1;   session=abc  ; b=2', name: 'session', expected: 'abc' },
      { header: '  session=abc', name: 'session', expected: 'abc' },
      { header: 'session=abc;', name: 'session', expected: 'abc' },
      { header: 'a=1; b=2', name: 'session', expected: null },
      { header: '', name: 'session', expected: null },
      { header: undefined, name: 'session', expected: null },
    ]
    for (const { header, name, expected } of table) assert.equal(cookieValue(header, name), expected, JSON.stringify(header))
  })

  it('takes the first of repeated cookies', () => {
    assert.equal(cookieValue('session=first; session=second', 'session'), 'first')
  })

  it('does not confuse names that are prefixes of each other', () => {
    const header = 'sessionid=long; sess=short; session=exact'
    assert.equal(cookieValue(header, 'sess'), 'short')
    assert.equal(cookieValue(header, 'session'), 'exact')
    assert.equal(cookieValue(header, 'sessionid'), 'long')
    assert.equal(cookieValue(header, 'ses'), null)
    assert.equal(cookieValue('xsession=1; session=2', 'session'), '2', 'a name ending in the wanted one')
    assert.equal(cookieValue('session_x=1', 'session'), null)
  })

  it('matches names case-sensitively', () => {
    assert.equal(cookieValue('Session=upper; session=lower', 'session'), 'lower')
    assert.equal(cookieValue('SESSION=upper', 'session'), null)
  })

  it('unquotes a quoted value and keeps everything after the first =', () => {
    const table: ReadonlyArray<{ header: string; expected: string }> = [
      { header: 'session="abc"', expected: 'abc' },
      { header: 'session="a b; c"', expected: '"a b' },
      { header: 'session=""', expected: '' },
      { header: 'session="', expected: '"' },
      { header: 'session="abc', expected: '"abc' },
      { header: 'session=a=b=c', expected: 'a=b=c' },
      { header: 'session=', expected: '' },
      { header: 'session= abc ', expected: 'abc' },
    ]
    for (const { header, expected } of table) assert.equal(cookieValue(header, 'session'), expected, header)
  })

  it('passes over pairs without a value separator', () => {
    assert.equal(cookieValue('flag; session=abc', 'session'), 'abc')
    assert.equal(cookieValue('session; other=1', 'session'), null, 'a bare name is not a cookie with an empty value')
  })
})

describe('queryValue', () => {
  it('reads the first parameter of that name, raw', () => {
    const table: ReadonlyArray<{ path: string; expected: string | null }> = [
      { path: '/x?uid=42', expected: '42' },
      { path: '/x?a=1&uid=42&b=2', expected: '42' },
      { path: '/x?uid=1&uid=2', expected: '1' },
      { path: '/x?uid=a%20b+c', expected: 'a%20b+c' },
      { path: '/x?uid=a=b', expected: 'a=b' },
      { path: '/x?uid=42&', expected: '42' },
      { path: '/x?&uid=42', expected: '42' },
      { path: '/?uid=42', expected: '42' },
      { path: '?uid=42', expected: '42' },
    ]
    for (const { path, expected } of table) assert.equal(queryValue(path, 'uid'), expected, path)
  })

  it('gives an empty value for `uid=` and for a bare `uid`', () => {
    const table: ReadonlyArray<{ path: string; expected: string | null }> = [
      { path: '/x?uid=', expected: '' },
      { path: '/x?uid', expected: '' },
      { path: '/x?uid&a=1', expected: '' },
      { path: '/x?a=1&uid', expected: '' },
      { path: '/x?uid=&a=1', expected: '' },
    ]
    for (const { path, expected } of table) assert.equal(queryValue(path, 'uid'), expected, path)
  })

  it('is null without a query or without that parameter', () => {
    for (const path of ['/x', '/x?', '/x?a=1', '/x?a=1&', '/x?&&', '/uid=1', '/x/uid?a=uid', '/x?a=uid=1']) {
      assert.equal(queryValue(path, 'uid'), null, path)
    }
  })

  it('does not confuse names that are prefixes of each other', () => {
    const path = '/x?uidx=long&ui=short&uid=exact'
    assert.equal(queryValue(path, 'uid'), 'exact')
    assert.equal(queryValue(path, 'ui'), 'short')
    assert.equal(queryValue(path, 'uidx'), 'long')
    assert.equal(queryValue('/x?xuid=1', 'uid'), null)
    assert.equal(queryValue('/x?uidx', 'uid'), null)
    assert.equal(queryValue('/x?ui', 'uid'), null)
  })
})

describe('hashKeyReader', () => {
  it('header: the named header, the first of several values, null when absent', () => {
    const read = hashKeyReader({ kind: 'header', name: 'x-user' })
    assert.equal(read(request({ 'x-user': 'alice' }), '/', '10.0.0.1'), 'alice')
    assert.equal(read(request({ 'x-user': ['alice', 'bob'] }), '/', '10.0.0.1'), 'alice')
    assert.equal(read(request({ 'x-user': [] }), '/', '10.0.0.1'), null)
    assert.equal(read(request({ 'x-other': 'alice' }), '/', '10.0.0.1'), null)
    assert.equal(read(request({ 'x-user': '' }), '/', '10.0.0.1'), '')
  })

  it('header: a name configured in capitals still matches the lower-cased request header', () => {
    const key = configuredHashKey('header:X-User')
    assert.deepEqual(key, { kind: 'header', name: 'x-user' })
    assert.equal(hashKeyReader(key)(request({ 'x-user': 'alice' }), '/', '10.0.0.1'), 'alice')
  })

  it('cookie: the named cookie of the Cookie header', () => {
    const read = hashKeyReader(configuredHashKey('cookie:session'))
    assert.equal(read(request({ cookie: 'sess=1; session=abc' }), '/', '10.0.0.1'), 'abc')
    assert.equal(read(request({ cookie: 'sess=1' }), '/', '10.0.0.1'), null)
    assert.equal(read(request(), '/', '10.0.0.1'), null)
    assert.equal(read(request({ 'x-session': 'abc' }), '/?session=abc', '10.0.0.1'), null, 'only the cookie counts')
  })

  it('query: the named parameter of the path', () => {
    const read = hashKeyReader(configuredHashKey('query:uid'))
    assert.equal(read(request({ uid: 'header' }), '/a?uid=42', '10.0.0.1'), '42')
    assert.equal(read(request(), '/a', '10.0.0.1'), null)
    assert.equal(read(request(), '/a?uid', '10.0.0.1'), '')
  })

  it('ip: the client address', () => {
    const read = hashKeyReader(configuredHashKey('ip'))
    assert.equal(read(request({ 'x-forwarded-for': '1.2.3.4' }), '/a?b=c', '10.0.0.7'), '10.0.0.7')
    assert.equal(read(request(), '/', '::1'), '::1')
  })

  it('path: the path without its query', () => {
    const read = hashKeyReader(configuredHashKey('path'))
    const table: ReadonlyArray<{ path: string; expected: string }> = [
      { path: '/users/42', expected: '/users/42' },
      { path: '/users/42?x=1&y=2', expected: '/users/42' },
      { path: '/users/42?', expected: '/users/42' },
      { path: '/', expected: '/' },
      { path: '/?x=1', expected: '/' },
    ]
    for (const { path, expected } of table) assert.equal(read(request(), path, '10.0.0.1'), expected, path)
  })

  it('ip is the default hash key', () => {
    const doc = { services: { s: { source: 'static', strategy: 'consistent-hash', endpoints: ['127.0.0.1:1'] } } }
    const service = parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} }).services[0]
    assert.ok(service !== undefined)
    assert.deepEqual(service.hashKey, { kind: 'ip' })
  })
})

describe('rawHeaderValue and headerMap (the fast lane reads routes\' headers and hash keys from the raw pairs)', () => {
  /** node's own `req.headers` for raw pairs: the oracle both must agree with. */
  const nodeHeaders = (raw: string[]): IncomingHttpHeaders => {
    const message = new http.IncomingMessage(new net.Socket())
    ;(message as unknown as { _addHeaderLines(raw: string[], n: number): void })._addHeaderLines(raw, raw.length)
    return message.headers
  }

  it('give what node\'s req.headers gives, for names in any case, absent, repeated, first-only, cookie or set-cookie', () => {
    // A seeded generator (mulberry32): the same 500 header lists every run, and a failure names its list.
    let seed = 12345
    const random = (): number => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
    const names = ['x-user', 'X-User', 'X-USER', 'x-usex', 'x-use', 'cookie', 'Cookie', 'host', 'x-user-id', 'User-Agent', 'authorization', 'Set-Cookie', 'content-type', 'constructor', '__proto__']
    const wantedNames = ['x-user', 'cookie', 'host', 'user-agent', 'authorization', 'set-cookie', 'content-type', 'constructor', '__proto__', 'absent']
    for (let run = 0; run < 500; run++) {
      const raw: string[] = []
      const n = Math.floor(random() * 6)
      for (let i = 0; i < n; i++) raw.push(names[Math.floor(random() * names.length)]!, random() < 0.1 ? '' : `v${i}`)
      const node = nodeHeaders(raw)
      const map = headerMap(raw)
      for (const wanted of wantedNames) {
        const expected = Object.hasOwn(node, wanted) ? node[wanted] : undefined
        assert.deepEqual(map[wanted], expected, `headerMap ${JSON.stringify(raw)} ${wanted}`)
        const read = hashKeyReader(configuredHashKey(`header:${wanted}`))
        // What the lane reads: the raw pairs for a header key that names one, else its header map.
        const lane = read.headerName !== null ? rawHeaderValue(raw, read.headerName) : read(map, '/', '127.0.0.1')
        assert.equal(lane, read(node, '/', '127.0.0.1'), `hash key ${JSON.stringify(raw)} ${wanted}`)
      }
    }
  })

  it('is offered only for header keys: hashKeyReader says which header', () => {
    assert.equal(hashKeyReader(configuredHashKey('header:X-User')).headerName, 'x-user')
    assert.equal(hashKeyReader(configuredHashKey('cookie:session')).headerName, null)
    assert.equal(hashKeyReader(configuredHashKey('query:uid')).headerName, null)
    assert.equal(hashKeyReader(configuredHashKey('ip')).headerName, null)
  })
})
