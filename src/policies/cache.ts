import type { IncomingMessage, ServerResponse } from 'node:http'
import CachePolicy from 'http-cache-semantics'
import { LRUCache } from 'lru-cache'
import { Counter, Gauge } from 'prom-client'
import type { Metrics } from '../observability/metrics.ts'
import type { ResponseCacheHook, ResponseTap } from '../proxy/service-runtime.ts'

/** The header every answer of a cache-enabled service carries. */
export const CACHE_HEADER = 'x-outrigger-cache'

/** No single response is kept above this, whatever `maxBytes` allows. */
export const MAX_ENTRY_BYTES = 8 * 1024 * 1024

/** Responses kept per URL for different `Vary`-selected request headers; the oldest goes first. */
export const MAX_VARIANTS = 8

/** Bookkeeping charged to each stored response on top of its body and headers. */
const ENTRY_OVERHEAD_BYTES = 256

/** The largest response body stored: a tenth of the cache, at most MAX_ENTRY_BYTES. */
export function entryLimitBytes(maxBytes: number): number {
  return Math.max(1, Math.min(Math.floor(maxBytes / 10), MAX_ENTRY_BYTES))
}

export interface CacheConfig {
  maxEntries: number
  maxBytes: number
}

export type CacheResult = 'hit' | 'miss' | 'revalidated'

/** The cache as `/api/services` shows it. */
export interface CacheView {
  /** URLs stored (each with up to MAX_VARIANTS responses). */
  entries: number
  /** Responses stored, variants included. */
  responses: number
  bytes: number
  maxEntries: number
  maxBytes: number
  hits: number
  misses: number
  revalidated: number
  /** hits / (hits + misses + revalidated) over GET and HEAD requests; 0 before the first. */
  hitRate: number
}

/** One stored response: its caching policy, status and whole body. */
interface Stored {
  readonly policy: CachePolicy
  readonly status: number
  readonly body: Buffer
  readonly size: number
  /** Request headers named by the response's Vary, as the stored request had them. */
  readonly vary: readonly string[]
  readonly varyValues: readonly (string | undefined)[]
}

type Variants = readonly Stored[]

/** The cache metrics of one metrics registry, created once (services come and go with reloads). */
interface CacheMetrics {
  requests: Counter<'service' | 'result'>
  caches: Set<ResponseCache>
}
const metricsByRegistry = new WeakMap<Metrics, CacheMetrics>()

function cacheMetrics(metrics: Metrics): CacheMetrics {
  let m = metricsByRegistry.get(metrics)
  if (m !== undefined) return m
  const caches = new Set<ResponseCache>()
  const registers = [metrics.registry]
  m = {
    caches,
    requests: new Counter({ name: 'outrigger_cache_requests_total', help: 'GET and HEAD requests of cache-enabled services, by result (hit, miss, revalidated).', labelNames: ['service', 'result'] as const, registers }),
  }
  new Gauge({
    name: 'outrigger_cache_entries',
    help: 'Responses stored in the cache of a service.',
    labelNames: ['service'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of caches) this.labels(c.service).set(c.view().responses)
    },
  })
  new Gauge({
    name: 'outrigger_cache_bytes',
    help: 'Bytes (bodies, headers and bookkeeping) stored in the cache of a service.',
    labelNames: ['service'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of caches) this.labels(c.service).set(c.view().bytes)
    },
  })
  metricsByRegistry.set(metrics, m)
  return m
}

const UNSAFE_METHODS_EXCLUDED = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/**
 * A shared HTTP cache for one service (`cache: { maxEntries, maxBytes }`), by RFC 9111 as
 * `http-cache-semantics` implements it in shared-cache mode: `private`, `no-store`, `Authorization`
 * without `public`/`s-maxage`/`must-revalidate`, `Vary: *` and `Set-Cookie` without `public` are not
 * stored; freshness from `s-maxage`, `max-age`, `Expires` or the usual heuristic; request
 * `no-cache`/`max-age` honoured.
 *
 * - Keyed by Host and path (with the query); responses that differ by `Vary` are kept side by side.
 * - GET responses are stored; a HEAD is answered from a stored GET.
 * - A stale response with an ETag or Last-Modified is revalidated: the request goes upstream with
 *   If-None-Match (the stored ETag added to the client's own) or If-Modified-Since, and a 304 that
 *   matches the stored response refreshes it, which is served (`x-outrigger-cache: revalidated`).
 *   A 304 that does not (it answers the client's own validator) drops the stored copy and goes to
 *   the client as it is.
 * - The body streams to the client while it is copied, up to `entryLimitBytes(maxBytes)`; a larger
 *   one is not stored. A response that fails or is aborted midway is never stored.
 * - A successful unsafe request (POST, PUT, DELETE, PATCH...) drops what is stored for its URL.
 * - LRU by URL: at most `maxEntries` URLs and `maxBytes` bytes.
 */
export class ResponseCache implements ResponseCacheHook {
  readonly service: string
  readonly config: CacheConfig
  readonly limitBytes: number
  readonly #lru: LRUCache<string, Variants>
  readonly #metrics: CacheMetrics | null
  readonly #counters: Record<CacheResult, { inc(value?: number): void }> | null
  readonly #counts: Record<CacheResult, number> = { hit: 0, miss: 0, revalidated: 0 }
  readonly #passTap: ResponseTap

  constructor(service: string, config: CacheConfig, metrics: Metrics | null = null) {
    this.service = service
    this.config = config
    this.limitBytes = entryLimitBytes(config.maxBytes)
    this.#lru = new LRUCache<string, Variants>({
      max: config.maxEntries,
      maxSize: config.maxBytes,
      sizeCalculation: (variants) => {
        let size = 0
        for (const v of variants) size += v.size
        return Math.max(1, size)
      },
    })
    this.#metrics = metrics === null ? null : cacheMetrics(metrics)
    if (this.#metrics !== null) {
      this.#metrics.caches.add(this)
      const r = this.#metrics.requests
      this.#counters = { hit: r.labels(service, 'hit'), miss: r.labels(service, 'miss'), revalidated: r.labels(service, 'revalidated') }
      // Exported at 0 from the start, so rate() works before the first hit.
      for (const c of Object.values(this.#counters)) c.inc(0)
    } else {
      this.#counters = null
    }
    this.#passTap = passTap()
  }

  begin(req: IncomingMessage, path: string, host: string, headers: string[]): ResponseTap {
    const method = req.method!
    const key = `${host.toLowerCase()} ${path}`
    if (method !== 'GET' && method !== 'HEAD') {
      return UNSAFE_METHODS_EXCLUDED.has(method) ? this.#passTap : new InvalidateTap(this, key)
    }
    // HEAD is answered from a stored GET: the policy sees the request as a GET.
    const request: CachePolicy.Request = { url: path, method: 'GET', headers: headersObject(headers) }
    const variants = this.#lru.get(key)
    let stale: Stored | null = null
    let revalidation: CachePolicy.Headers | null = null
    if (variants !== undefined) {
      for (const v of variants) {
        const r = v.policy.evaluateRequest(request)
        if (r.response !== undefined && r.revalidation === undefined) return new CacheTap(this, key, method, request, { stored: v, headers: r.response.headers }, null)
        if (stale === null && r.revalidation !== undefined && hasValidators(v) && varyMatches(v, request.headers)) {
          stale = v
          revalidation = r.revalidation.headers
        }
      }
    }
    if (stale !== null && revalidation !== null) conditionalHeaders(headers, revalidation)
    return new CacheTap(this, key, method, request, null, stale)
  }

  /** Counts a GET/HEAD result. */
  count(result: CacheResult): void {
    this.#counts[result]++
    this.#counters?.[result].inc()
  }

  /** Stores a response, replacing the variant it supersedes. */
  store(key: string, stored: Stored): void {
    const old = this.#lru.get(key) ?? []
    const kept: Stored[] = []
    for (const v of old) if (!sameVariant(v, stored)) kept.push(v)
    kept.push(stored)
    if (kept.length > MAX_VARIANTS) kept.shift()
    this.#lru.set(key, kept)
  }

  /** Swaps one stored response for another (a revalidated policy), if still there. */
  replace(key: string, old: Stored, next: Stored | null): void {
    const variants = this.#lru.get(key)
    if (variants === undefined) return
    const out: Stored[] = []
    for (const v of variants) {
      if (v !== old) out.push(v)
      else if (next !== null) out.push(next)
    }
    if (out.length === 0) this.#lru.delete(key)
    else this.#lru.set(key, out)
  }

  invalidate(key: string): void {
    this.#lru.delete(key)
  }

  view(): CacheView {
    let responses = 0
    for (const variants of this.#lru.values()) responses += variants.length
    const { hit, miss, revalidated } = this.#counts
    const total = hit + miss + revalidated
    return {
      entries: this.#lru.size,
      responses,
      bytes: this.#lru.calculatedSize,
      maxEntries: this.config.maxEntries,
      maxBytes: this.config.maxBytes,
      hits: hit,
      misses: miss,
      revalidated,
      hitRate: total === 0 ? 0 : hit / total,
    }
  }

  /** Drops the entries and this service's metric series. */
  close(): void {
    this.#lru.clear()
    if (this.#metrics === null) return
    const caches = this.#metrics.caches
    caches.delete(this)
    // A reload builds the successor beside this cache, bound to the same series: keep them for it.
    for (const c of caches) if (c.service === this.service) return
    for (const result of ['hit', 'miss', 'revalidated'] as const) this.#metrics.requests.remove({ service: this.service, result })
  }
}

/** Every other request of a cache-enabled service (OPTIONS, TRACE): marked, not counted. */
function passTap(): ResponseTap {
  return {
    errorHeaders: MISS_HEADERS,
    answer: () => 0,
    onResponseStart(_status, headers) {
      headers.push(CACHE_HEADER, 'miss')
      return 0
    },
    onResponseData: () => undefined,
    onResponseEnd: () => undefined,
  }
}

const MISS_HEADERS: Readonly<Record<string, string>> = Object.freeze({ [CACHE_HEADER]: 'miss' })

/** An unsafe method: a success invalidates what is stored for the URL (RFC 9111 §4.4). */
class InvalidateTap implements ResponseTap {
  readonly errorHeaders = MISS_HEADERS
  readonly #cache: ResponseCache
  readonly #key: string
  constructor(cache: ResponseCache, key: string) {
    this.#cache = cache
    this.#key = key
  }
  answer(): number {
    return 0
  }
  onResponseStart(status: number, headers: string[]): number {
    headers.push(CACHE_HEADER, 'miss')
    if (status < 400) this.#cache.invalidate(this.#key)
    return 0
  }
  onResponseData(): void {}
  onResponseEnd(): void {}
}

/** A GET or HEAD: a fresh hit, a revalidation of `stale`, or a miss that may be stored. */
class CacheTap implements ResponseTap {
  readonly errorHeaders = MISS_HEADERS
  readonly #cache: ResponseCache
  readonly #key: string
  readonly #method: string
  readonly #request: CachePolicy.Request
  /** A fresh stored response and its updated headers, when this is a hit. */
  readonly #hit: { stored: Stored; headers: CachePolicy.Headers } | null
  /** A stale stored response being revalidated. */
  readonly #stale: Stored | null
  #policy: CachePolicy | null = null
  #status = 0
  #chunks: Buffer[] | null = null
  #bytes = 0
  #expectedBytes = -1

  constructor(cache: ResponseCache, key: string, method: string, request: CachePolicy.Request, hit: { stored: Stored; headers: CachePolicy.Headers } | null, stale: Stored | null) {
    this.#cache = cache
    this.#key = key
    this.#method = method
    this.#request = request
    this.#hit = hit
    this.#stale = stale
  }

  answer(res: ServerResponse): number {
    if (this.#hit === null) return 0
    this.#cache.count('hit')
    return writeStored(res, this.#hit.stored, this.#hit.headers, 'hit', this.#method)
  }

  onResponseStart(status: number, headers: string[], res: ServerResponse): number {
    const stale = this.#stale
    if (stale !== null && status === 304) {
      const { policy, modified } = stale.policy.revalidatedPolicy(this.#request, { status, headers: headersObject(headers) })
      if (!modified) {
        const refreshed: Stored = { ...stale, policy }
        this.#cache.replace(this.#key, stale, refreshed)
        this.#cache.count('revalidated')
        return writeStored(res, refreshed, policy.responseHeaders(), 'revalidated', this.#method)
      }
      // A 304 that does not match what is stored: that copy is useless now.
      this.#cache.replace(this.#key, stale, null)
    }
    this.#cache.count('miss')
    if (this.#method === 'GET' && status !== 206) {
      const resHeaders = headersObject(headers)
      const policy = new CachePolicy(this.#request, { status, headers: resHeaders }, { shared: true })
      // `Vary: *` matches no later request (RFC 9111 §4.1): storing it would only take space.
      if (policy.storable() && !varyNames(resHeaders.vary).includes('*')) {
        const length = contentLength(headers)
        if (length <= this.#cache.limitBytes) {
          this.#policy = policy
          this.#status = status
          this.#expectedBytes = length
          this.#chunks = []
        }
      }
    }
    headers.push(CACHE_HEADER, 'miss')
    return 0
  }

  onResponseData(chunk: Buffer): void {
    const chunks = this.#chunks
    if (chunks === null) return
    this.#bytes += chunk.length
    if (this.#bytes > this.#cache.limitBytes) {
      // Too large to keep: give up storing, the client still gets it all.
      this.#chunks = null
      return
    }
    chunks.push(chunk)
  }

  onResponseEnd(): void {
    const chunks = this.#chunks
    const policy = this.#policy
    if (chunks === null || policy === null) return
    this.#chunks = null
    if (this.#expectedBytes >= 0 && this.#expectedBytes !== this.#bytes) return
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#bytes)
    const resHeaders = policy.responseHeaders()
    const vary = varyNames(resHeaders.vary)
    const varyValues = vary.map((name) => headerString(this.#request.headers[name]))
    this.#cache.store(this.#key, { policy, status: this.#status, body, size: body.length + headersSize(resHeaders) + ENTRY_OVERHEAD_BYTES, vary, varyValues })
  }
}

/** Writes a stored response; returns its status. */
function writeStored(res: ServerResponse, stored: Stored, headers: CachePolicy.Headers, result: CacheResult, method: string): number {
  const flat: string[] = []
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) flat.push(name, v)
    else flat.push(name, value)
  }
  flat.push(CACHE_HEADER, result)
  res.writeHead(stored.status, flat)
  if (method === 'HEAD') res.end()
  else res.end(stored.body)
  return stored.status
}

/** `[name, value, ...]` (names of any case) to an object with lower-case names; repeated fields joined, `set-cookie` kept as a list. */
export function headersObject(raw: readonly string[]): CachePolicy.Headers {
  const out: Record<string, string | string[]> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const value = raw[i + 1]!
    const prev = out[name]
    if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value
    else if (Array.isArray(prev)) prev.push(value)
    else out[name] = `${prev}, ${value}`
  }
  return out
}

/** Replaces the request's conditional headers with the ones that revalidate the stored response. */
function conditionalHeaders(headers: string[], revalidation: CachePolicy.Headers): void {
  let kept = 0
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase()
    if (lower === 'if-none-match' || lower === 'if-modified-since') continue
    headers[kept++] = headers[i]!
    headers[kept++] = headers[i + 1]!
  }
  headers.length = kept
  for (const name of ['if-none-match', 'if-modified-since'] as const) {
    const value = headerString(revalidation[name])
    if (value !== undefined) headers.push(name, value)
  }
}

function hasValidators(stored: Stored): boolean {
  const h = stored.policy.responseHeaders()
  return h.etag !== undefined || h['last-modified'] !== undefined
}

function varyNames(vary: string | string[] | undefined): string[] {
  const v = headerString(vary)
  if (v === undefined || v.trim() === '') return []
  return v.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s !== '')
}

function varyMatches(stored: Stored, requestHeaders: CachePolicy.Headers): boolean {
  for (let i = 0; i < stored.vary.length; i++) {
    const name = stored.vary[i]!
    if (name === '*' || headerString(requestHeaders[name]) !== stored.varyValues[i]) return false
  }
  return true
}

/** True when `b` would be selected for the same requests as `a` (same Vary fields and values). */
function sameVariant(a: Stored, b: Stored): boolean {
  if (a.vary.length !== b.vary.length) return false
  for (let i = 0; i < a.vary.length; i++) if (a.vary[i] !== b.vary[i] || a.varyValues[i] !== b.varyValues[i]) return false
  return true
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

/** Content-Length of a raw header list; -1 when absent or unreadable. */
function contentLength(headers: readonly string[]): number {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === 14 && headers[i]!.toLowerCase() === 'content-length') {
      const n = Number(headers[i + 1])
      return Number.isSafeInteger(n) && n >= 0 ? n : -1
    }
  }
  return -1
}

function headersSize(headers: CachePolicy.Headers): number {
  let size = 0
  for (const name of Object.keys(headers)) {
    const v = headers[name]
    size += name.length + 4
    if (Array.isArray(v)) for (const s of v) size += s.length + name.length + 4
    else if (v !== undefined) size += v.length
  }
  return size
}
