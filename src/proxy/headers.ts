/**
 * Header rewriting between client and upstream, on raw header arrays (`[name, value, name, value]`)
 * so duplicates and order survive, as they must for `set-cookie` and repeated custom headers.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1); compared lower-cased. Every `Proxy-*` header is dropped too. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/** True for a lower-cased header name that must not cross the proxy (the contract's list). */
export function isHopByHop(lower: string, named: Set<string> | null): boolean {
  return HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || (named !== null && named.has(lower))
}

/**
 * Connection may name extension headers as hop-by-hop, but never these: the Host header is kept,
 * and so is Content-Length, which frames the message the proxy forwards as it came. Dropping it on
 * a client's `Connection: content-length` would send the body upstream without its length, to be
 * read as further requests on a pooled connection (request smuggling; the same on a response
 * would leave the client a body it cannot delimit). Transfer-Encoding is hop-by-hop anyway and the
 * proxy writes the framing it forwards.
 */
const NEVER_CONNECTION_TOKENS = new Set(['close', 'keep-alive', 'upgrade', 'host', 'content-length'])

/** Adds the header names one Connection header `value` lists to `tokens` (created when needed). */
export function addConnectionTokens(value: string, tokens: Set<string> | null): Set<string> | null {
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase()
    if (name !== '' && !NEVER_CONNECTION_TOKENS.has(name)) (tokens ??= new Set()).add(name)
  }
  return tokens
}

/**
 * Names whose repeated lines node's IncomingMessage drops, keeping the first (its `matchKnownFields`,
 * checked against node 24): a request with two User-Agent lines has the first one in `req.headers`.
 * The fast lane's header map and `rawHeaderValue` follow the same rule, so a route or a hash key reads
 * the same value on either path.
 */
const FIRST_LINE_ONLY: ReadonlySet<string> = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
])

/**
 * What node's `req.headers` puts between the values of a header (`lowerName`) given on several
 * lines: `; ` for cookie, `, ` for most; null where it keeps only the first line (FIRST_LINE_ONLY)
 * or, for set-cookie, gathers an array instead. headerMap and rawHeaderValue both follow it.
 */
export function repeatSeparator(lowerName: string): string | null {
  if (lowerName === 'cookie') return '; '
  return lowerName === 'set-cookie' || FIRST_LINE_ONLY.has(lowerName) ? null : ', '
}

/** node's `req.headers` shape. */
export type RequestHeaderMap = Record<string, string | string[]>

/**
 * node's `req.headers` from raw pairs, for the fast lane's routes that match on headers and its hash
 * keys: lower-cased names; repeated lines kept first-only (FIRST_LINE_ONLY), gathered in an array
 * (`set-cookie`), joined with `; ` (`cookie`) or with `, ` (the rest). The map has no prototype and
 * skips `__proto__`, which node's map ignores too, so no name reaches Object.prototype.
 */
export function headerMap(raw: readonly string[]): RequestHeaderMap {
  const map: RequestHeaderMap = Object.create(null) as RequestHeaderMap
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const value = raw[i + 1]!
    const had = map[name]
    if (had === undefined) {
      if (name !== '__proto__') map[name] = name === 'set-cookie' ? [value] : value
    } else if (typeof had !== 'string') {
      had.push(value)
    } else {
      const separator = repeatSeparator(name)
      if (separator !== null) map[name] = `${had}${separator}${value}`
    }
  }
  return map
}

/** Names listed in Connection headers: they are hop-by-hop too. Null when there are none (the usual case). */
function connectionTokens(raw: readonly string[]): Set<string> | null {
  let tokens: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') tokens = addConnectionTokens(raw[i + 1]!, tokens)
  }
  return tokens
}

export interface UpstreamRequestHeaders {
  headers: string[]
  /** The client's Host header value (first one), or '' when it had none. */
  host: string
}

/**
 * The headers to send upstream: hop-by-hop removed (for an upgrade, undici writes `connection` and
 * `upgrade` itself from the dispatch options), `Expect` removed (node answers `100 Continue` to the client itself), one Host only (replaced by
 * `hostOverride` for absolute-form requests), `X-Forwarded-For` appended to, `X-Forwarded-Proto`
 * and `X-Forwarded-Host` set.
 */
export function upstreamRequestHeaders(
  raw: readonly string[],
  clientAddress: string,
  proto: string,
  hostOverride: string | null,
): UpstreamRequestHeaders {
  const dropNamed = connectionTokens(raw)
  const out: string[] = []
  let host = ''
  let forwardedFor = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    const lower = name.toLowerCase()
    if (isHopByHop(lower, dropNamed)) continue
    switch (lower) {
      case 'host':
        if (host === '') host = value
        continue
      case 'x-forwarded-for':
        forwardedFor = forwardedFor === '' ? value : `${forwardedFor}, ${value}`
        continue
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
      case 'expect':
        continue
    }
    out.push(name, value)
  }
  const effectiveHost = hostOverride ?? host
  if (effectiveHost !== '') out.push('host', effectiveHost)
  out.push('x-forwarded-for', forwardedFor === '' ? clientAddress : `${forwardedFor}, ${clientAddress}`)
  out.push('x-forwarded-proto', proto)
  if (effectiveHost !== '') out.push('x-forwarded-host', effectiveHost)
  return { headers: out, host: effectiveHost }
}

/**
 * The upstream's response headers for the client, hop-by-hop ones removed. undici hands raw headers
 * as Buffers; node's `writeHead` takes a flat string array and keeps duplicates.
 */
export function downstreamResponseHeaders(raw: ReadonlyArray<Buffer | string>): string[] {
  const strings: string[] = new Array<string>(raw.length)
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i]!
    strings[i] = typeof v === 'string' ? v : v.toString('latin1')
  }
  const dropNamed = connectionTokens(strings)
  const out: string[] = []
  for (let i = 0; i < strings.length; i += 2) {
    const lower = strings[i]!.toLowerCase()
    if (isHopByHop(lower, dropNamed)) continue
    out.push(strings[i]!, strings[i + 1]!)
  }
  return out
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; other addresses unchanged. */
export function clientIp(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return 'unknown'
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress
}
