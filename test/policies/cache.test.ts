import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ResponseCache, entryLimitBytes, headersObject, MAX_ENTRY_BYTES } from '../../src/policies/cache.ts'
import type { ResponseTap } from '../../src/proxy/service-runtime.ts'

/** What a fake client response received. */
interface Written {
  status: number
  headers: Record<string, string>
  body: string
}

function fakeRes(): { res: ServerResponse; written: Written } {
  const written: Written = { status: 0, headers: {}, body: '' }
  const res = {
    writeHead(status: number, headers: string[]) {
      written.status = status
      for (let i = 0; i < headers.length; i += 2) written.headers[headers[i]!] = headers[i + 1]!
      return res
    },
    end(body?: Buffer) {
      if (body !== undefined) written.body = body.toString()
      return res
    },
  }
  return { res: res as unknown as ServerResponse, written }
}

const req = (method: string): IncomingMessage => ({ method }) as IncomingMessage

/** Runs one request through the cache; `origin` answers when the cache does not. */
function exchange(
  cache: ResponseCache,
  method: string,
  path: string,
  requestHeaders: string[],
  origin: (headers: string[]) => { status: number; headers: string[]; body: string },
): { written: Written; upstreamHeaders: string[] | null; result: string | undefined } {
  const headers = ['host', 'svc', ...requestHeaders]
  const tap: ResponseTap = cache.begin(req(method), path, 'svc', headers)
  const { res, written } = fakeRes()
  if (tap.answer(res) !== 0) return { written, upstreamHeaders: null, result: written.headers['x-outrigger-cache'] }
  const answer = origin(headers)
  const out = [...answer.headers]
  if (tap.onResponseStart(answer.status, out, res) !== 0) return { written, upstreamHeaders: headers, result: written.headers['x-outrigger-cache'] }
  res.writeHead(answer.status, out)
  const body = Buffer.from(answer.body)
  for (let i = 0; i < body.length; i += 4) tap.onResponseData(body.subarray(i, i + 4))
  res.end(body)
  tap.onResponseEnd()
  return { written, upstreamHeaders: headers, result: written.headers['x-outrigger-cache'] }
}

const ok = (cacheControl: string, body = 'hello', extra: string[] = []) => () => ({ status: 200, headers: ['cache-control', cacheControl, 'content-length', String(Buffer.byteLength(body)), ...extra], body })

describe('ResponseCache', () => {
  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-01-01T00:00:00Z') }))
  afterEach(() => mock.timers.reset())

  it('stores a fresh GET, answers GET and HEAD from it until max-age passes', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    assert.equal(exchange(cache, 'GET', '/a', [], ok('max-age=10')).result, 'miss')
    const hit = exchange(cache, 'GET', '/a', [], () => assert.fail('upstream touched'))
    assert.equal(hit.result, 'hit')
    assert.equal(hit.written.body, 'hello')
    const head = exchange(cache, 'HEAD', '/a', [], () => assert.fail('upstream touched'))
    assert.deepEqual([head.result, head.written.body], ['hit', ''])
    mock.timers.tick(9_000)
    assert.equal(exchange(cache, 'GET', '/a', [], () => assert.fail('upstream touched')).written.headers.age, '9')
    mock.timers.tick(2_000)
    assert.equal(exchange(cache, 'GET', '/a', [], ok('max-age=10')).result, 'miss')
    assert.deepEqual(cache.view(), { entries: 1, responses: 1, bytes: cache.view().bytes, maxEntries: 10, maxBytes: 1 << 20, hits: 3, misses: 2, revalidated: 0, hitRate: 0.6 })
  })

  it('does not answer HEAD misses from the HEAD response, nor store them', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    assert.equal(exchange(cache, 'HEAD', '/h', [], ok('max-age=10', '')).result, 'miss')
    assert.equal(exchange(cache, 'GET', '/h', [], ok('max-age=10')).result, 'miss')
  })

  it('revalidates a stale entry with If-None-Match (added to the client own) and refreshes it on a matching 304', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    exchange(cache, 'GET', '/e', [], ok('max-age=1', 'v1', ['etag', '"v1"']))
    mock.timers.tick(2_000)
    const client = exchange(cache, 'GET', '/e', ['If-None-Match', '"other"'], () => ({ status: 200, headers: ['etag', '"v1"', 'cache-control', 'max-age=1', 'content-length', '2'], body: 'v1' }))
    assert.equal(headersObject(client.upstreamHeaders!)['if-none-match'], '"other", "v1"')
    mock.timers.tick(2_000)
    const r = exchange(cache, 'GET', '/e', [], () => ({ status: 304, headers: ['etag', '"v1"', 'cache-control', 'max-age=5'], body: '' }))
    assert.equal(r.result, 'revalidated')
    assert.equal(r.written.status, 200)
    assert.equal(r.written.body, 'v1')
    assert.deepEqual(headersObject(r.upstreamHeaders!)['if-none-match'], '"v1"')
    // The 304's max-age=5 now applies.
    mock.timers.tick(4_000)
    assert.equal(exchange(cache, 'GET', '/e', [], () => assert.fail('upstream touched')).result, 'hit')
  })

  it('revalidates with If-Modified-Since and stores a changed 200 instead', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    exchange(cache, 'GET', '/m', [], ok('no-cache', 'old', ['last-modified', 'Wed, 31 Dec 2025 00:00:00 GMT']))
    const r = exchange(cache, 'GET', '/m', [], (headers) => {
      assert.equal(headersObject(headers)['if-modified-since'], 'Wed, 31 Dec 2025 00:00:00 GMT')
      return ok('max-age=60', 'new')()
    })
    assert.equal(r.result, 'miss')
    assert.equal(exchange(cache, 'GET', '/m', [], () => assert.fail('upstream touched')).written.body, 'new')
  })

  it('keeps Vary variants side by side', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    exchange(cache, 'GET', '/v', ['accept-language', 'en'], ok('max-age=60', 'en', ['vary', 'Accept-Language']))
    exchange(cache, 'GET', '/v', ['accept-language', 'fr'], ok('max-age=60', 'fr', ['vary', 'Accept-Language']))
    assert.equal(exchange(cache, 'GET', '/v', ['accept-language', 'en'], () => assert.fail()).written.body, 'en')
    assert.equal(exchange(cache, 'GET', '/v', ['accept-language', 'fr'], () => assert.fail()).written.body, 'fr')
    assert.equal(exchange(cache, 'GET', '/v', ['accept-language', 'de'], ok('max-age=60', 'de', ['vary', 'Accept-Language'])).result, 'miss')
    assert.equal(cache.view().responses, 3)
  })

  it('stores nothing for no-store, private, Vary: *, Authorization without public, or a body cut short', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    exchange(cache, 'GET', '/1', [], ok('no-store'))
    exchange(cache, 'GET', '/2', [], ok('private, max-age=60'))
    exchange(cache, 'GET', '/3', [], ok('max-age=60', 'x', ['vary', '*']))
    exchange(cache, 'GET', '/4', ['authorization', 'Bearer t'], ok('max-age=60'))
    // A body shorter than its Content-Length (the upstream hung up): never stored.
    exchange(cache, 'GET', '/5', [], () => ({ status: 200, headers: ['cache-control', 'max-age=60', 'content-length', '100'], body: 'short' }))
    assert.equal(cache.view().entries, 0)
    exchange(cache, 'GET', '/6', ['authorization', 'Bearer t'], ok('public, max-age=60'))
    assert.equal(cache.view().entries, 1)
  })

  it('gives up storing a body above the per-entry limit, and evicts the least recently used URL', () => {
    assert.equal(entryLimitBytes(1000), 100)
    assert.equal(entryLimitBytes(1 << 30), MAX_ENTRY_BYTES)
    const cache = new ResponseCache('svc', { maxEntries: 2, maxBytes: 10_000 })
    exchange(cache, 'GET', '/big', [], () => ({ status: 200, headers: ['cache-control', 'max-age=60'], body: 'x'.repeat(1001) }))
    assert.equal(cache.view().entries, 0)
    exchange(cache, 'GET', '/a', [], ok('max-age=60'))
    exchange(cache, 'GET', '/b', [], ok('max-age=60'))
    exchange(cache, 'GET', '/a', [], () => assert.fail())
    exchange(cache, 'GET', '/c', [], ok('max-age=60'))
    assert.equal(exchange(cache, 'GET', '/a', [], () => assert.fail()).result, 'hit')
    assert.equal(exchange(cache, 'GET', '/b', [], ok('max-age=60')).result, 'miss')
  })

  it('drops a URL after a successful unsafe request to it, not after a failed one', () => {
    const cache = new ResponseCache('svc', { maxEntries: 10, maxBytes: 1 << 20 })
    exchange(cache, 'GET', '/p', [], ok('max-age=60'))
    assert.equal(exchange(cache, 'POST', '/p', [], () => ({ status: 500, headers: [], body: '' })).result, 'miss')
    assert.equal(cache.view().entries, 1)
    exchange(cache, 'DELETE', '/p', [], () => ({ status: 204, headers: [], body: '' }))
    assert.equal(cache.view().entries, 0)
  })
})
