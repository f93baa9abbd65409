/**
 * The config file as written (the raw document, after `${VAR}` expansion), as a zod 4 schema whose
 * transforms produce exactly the resolved types of ./types.ts: durations in ms, sizes in bytes,
 * addresses split, defaults filled in.
 *
 * Messages are the contract's (`must be one of a, b`, `must be a duration like 250ms, 5s or 1m`, ...):
 * parse with `configErrorMap` (see `validateDocument`), which replaces every zod default message.
 * Unknown keys are reported at the parent's path (`services.api: unknown field "foo"`).
 *
 * Cross-field checks run even when other fields are broken (`when: always`), so one pass reports
 * every problem; they therefore look at partially parsed values and check types before using them.
 *
 * Defaults are written in the raw form (`'30s'`, `'64KiB'`) so a generated reference shows what a
 * user would type. Relative file paths are left as written: the loader resolves them.
 */
import { z } from 'zod'
import { formatAddress, isValidHost, listenersCollide, parseHostPort } from './address.ts'
import { formatPath, isPlainObject } from './errors.ts'
import type { RawIssue } from './errors.ts'
import { formatDuration, MAX_DURATION_MS, parseDuration, parseSize } from './units.ts'
import { SOURCES, STRATEGIES } from './types.ts'
import type {
  ActiveHealthCheckConfig,
  Config,
  HashKey,
  LimitsConfig,
  ListenAddress,
  PassiveHealthCheckConfig,
  RegisterConfig,
  ServiceConfig,
  StaticEndpoint,
} from './types.ts'

// ---------------------------------------------------------------------------------------------------
// Messages

export const MESSAGES = {
  required: 'is required',
  string: 'must be a string',
  number: 'must be a number',
  integer: 'must be an integer',
  boolean: 'must be a boolean',
  list: 'must be a list',
  map: 'must be a map',
  duration: 'must be a duration like 250ms, 5s or 1m',
  size: 'must be a size like 64KiB or 1MiB',
  notEmpty: 'must not be empty',
  positive: 'must be greater than 0',
  name: 'must contain only letters, digits, ".", "_" and "-", and start with a letter or digit',
  headerName: 'must be a header name (letters, digits and !#$%&\'*+-.^_`|~)',
  headerValue: 'must not contain line breaks',
  method: 'must be an HTTP method like GET',
  unrewritableHeader: 'is a hop-by-hop or framing header, which the proxy manages itself and a route cannot rewrite',
  httpPath: 'must start with /',
  routeHost: 'must be a host name like api.internal (without a port)',
  host: 'must be a host name or an IP address',
  endpoint: 'must be "host:port" or a map with address, port and weight',
  hashKey: 'must be one of ip, path, header:NAME, cookie:NAME, query:NAME',
  workers: 'must be an integer of at least 1, or auto',
  maxDuration: `must be at most ${formatDuration(MAX_DURATION_MS)}`,
} as const

export const unknownField = (key: string): string => `unknown field "${key}"`
export const oneOf = (values: readonly unknown[]): string => `must be one of ${values.map(String).join(', ')}`

/** Per-parse error map: every zod issue gets the contract's wording. */
export const configErrorMap: z.core.$ZodErrorMap = (iss) => {
  const input = iss.input
  switch (iss.code) {
    case 'invalid_type':
      if (input === undefined) return MESSAGES.required
      switch (iss.expected) {
        case 'string':
          return MESSAGES.string
        case 'int':
          return typeof input === 'number' && Number.isFinite(input) ? MESSAGES.integer : MESSAGES.number
        case 'number':
          return MESSAGES.number
        case 'boolean':
          return MESSAGES.boolean
        case 'array':
        case 'tuple':
          return MESSAGES.list
        case 'object':
        case 'record':
        case 'map':
          return MESSAGES.map
        default:
          return `must be a ${iss.expected}`
      }
    case 'invalid_value':
      if (input === undefined) return MESSAGES.required
      return iss.values.length === 1 ? `must be ${String(iss.values[0])}` : oneOf(iss.values)
    case 'too_small': {
      const min = Number(iss.minimum)
      if (iss.origin === 'string') return min <= 1 ? MESSAGES.notEmpty : `must be at least ${min} characters long`
      if (iss.origin === 'array' || iss.origin === 'set') return min <= 1 ? MESSAGES.notEmpty : `must have at least ${min} items`
      return iss.inclusive === false ? `must be greater than ${min}` : `must be at least ${min}`
    }
    case 'too_big': {
      const max = Number(iss.maximum)
      if (iss.origin === 'string') return `must be at most ${max} characters long`
      if (iss.origin === 'array' || iss.origin === 'set') return `must have at most ${max} items`
      return iss.inclusive === false ? `must be less than ${max}` : `must be at most ${max}`
    }
    case 'unrecognized_keys':
      return iss.keys.map(unknownField).join('; ')
    case 'invalid_union':
      return input === undefined ? MESSAGES.required : 'has an invalid value'
    case 'invalid_key':
      return 'has an invalid key'
    case 'invalid_format':
      return 'has an invalid format'
    case 'not_multiple_of':
      return `must be a multiple of ${String(iss.divisor)}`
    default:
      return 'is invalid'
  }
}

/** zod issues to raw issues: one issue per unknown key, at the parent's path. */
export function zodIssuesToRaw(issues: readonly z.core.$ZodIssue[]): RawIssue[] {
  const out: RawIssue[] = []
  for (const i of issues) {
    if (i.code === 'unrecognized_keys') for (const k of i.keys) out.push({ path: [...i.path], message: unknownField(k), at: [...i.path, k] })
    else out.push({ path: [...i.path], message: i.message })
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Building blocks

/** Refinements that run even when the value has other problems (so every issue is reported at once). */
const ALWAYS = { when: () => true }

/** A schema-level error for a value of the wrong type: `is required` when absent, else `message`. */
function typeError(message: string): z.core.$ZodErrorMap {
  return (iss) => (iss.input === undefined ? MESSAGES.required : message)
}

function custom(ctx: z.core.$RefinementCtx, message: string, path: PropertyKey[] = []): void {
  ctx.addIssue({ code: 'custom', message, path, input: ctx.value })
}

const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/

/** A number; a numeric string is accepted too, so `port: ${PORT}` works. */
function numberLike() {
  return z.union([z.number(), z.string()], { error: typeError(MESSAGES.number) }).transform((v, ctx) => {
    if (typeof v === 'number') return v
    const t = v.trim()
    if (NUMERIC.test(t)) return Number(t)
    ctx.addIssue({ code: 'custom', message: MESSAGES.number, input: v })
    return z.NEVER
  })
}

function int(min: number, max?: number) {
  const base = z.number().int().min(min)
  return numberLike().pipe(max === undefined ? base : base.max(max))
}

function num(bounds: { min?: number; gt?: number; max?: number }) {
  let s = z.number()
  if (bounds.min !== undefined) s = s.min(bounds.min)
  if (bounds.gt !== undefined) s = s.gt(bounds.gt)
  if (bounds.max !== undefined) s = s.max(bounds.max)
  return numberLike().pipe(s)
}

const percent = () => num({ min: 0, max: 100 })

/** `true`/`false`, or the strings `"true"`/`"false"` (so `accessLog: ${ACCESS_LOG}` works). */
function bool() {
  return z.union([z.boolean(), z.string()], { error: typeError(MESSAGES.boolean) }).transform((v, ctx) => {
    if (typeof v === 'boolean') return v
    const t = v.trim().toLowerCase()
    if (t === 'true') return true
    if (t === 'false') return false
    ctx.addIssue({ code: 'custom', message: MESSAGES.boolean, input: v })
    return z.NEVER
  })
}

/** A duration (`250ms`, `5s`, `1m`, `1h`, or a number of ms) in milliseconds. */
function duration(opts: { positive?: boolean } = {}) {
  return z.union([z.string(), z.number()], { error: typeError(MESSAGES.duration) }).transform((v, ctx) => {
    let ms: number
    try {
      ms = parseDuration(v)
    } catch {
      ctx.addIssue({ code: 'custom', message: MESSAGES.duration, input: v })
      return z.NEVER
    }
    if (ms > MAX_DURATION_MS) ctx.addIssue({ code: 'custom', message: MESSAGES.maxDuration, input: v })
    else if (opts.positive === true && ms <= 0) ctx.addIssue({ code: 'custom', message: MESSAGES.positive, input: v })
    return ms
  })
}

/** A size (`64KiB`, `1MiB`, `10KB`, or a number of bytes) in bytes. */
function size(opts: { positive?: boolean } = {}) {
  return z.union([z.string(), z.number()], { error: typeError(MESSAGES.size) }).transform((v, ctx) => {
    let bytes: number
    try {
      bytes = parseSize(v)
    } catch {
      ctx.addIssue({ code: 'custom', message: MESSAGES.size, input: v })
      return z.NEVER
    }
    if (opts.positive === true && bytes <= 0) ctx.addIssue({ code: 'custom', message: MESSAGES.positive, input: v })
    return bytes
  })
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const name = () => z.string().regex(NAME, MESSAGES.name)
const nonEmpty = () => z.string().min(1)

/** RFC 9110 token: header names and methods. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** A header name, lower-cased. */
const headerName = () =>
  z
    .string()
    .regex(TOKEN, MESSAGES.headerName)
    .transform((s) => s.toLowerCase())

const headerValue = () => z.string().refine((s) => !/[\r\n\0]/.test(s), MESSAGES.headerValue)

/** `{ header-name: value }`, names lower-cased; `forbidden` (given a lower-cased name) rejects a name as written. */
const headerMap = (forbidden?: (lower: string) => string | null) =>
  noProtoKey(
    z
      .record(z.string(), headerValue())
      .superRefine((rec, ctx) => {
        if (!isPlainObject(rec)) return
        for (const key of Object.keys(rec)) {
          const refused = TOKEN.test(key) ? (forbidden?.(key.toLowerCase()) ?? null) : MESSAGES.headerName
          if (refused !== null) custom(ctx, refused, [key])
        }
      }, ALWAYS)
      .transform((rec) => {
        const out: Record<string, string> = {}
        for (const [k, v] of Object.entries(rec)) out[k.toLowerCase()] = v
        return out
      }),
    'is not allowed as a header name',
  )

/**
 * zod's records skip a `__proto__` key without a word, so a map keyed by user-chosen names would
 * lose it silently. This runs on the raw value, before the record, and reports the key instead.
 */
function noProtoKey<T extends z.ZodType>(schema: T, message: string) {
  return z.preprocess((v, ctx) => {
    if (isPlainObject(v) && Object.hasOwn(v, '__proto__')) ctx.addIssue({ code: 'custom', message, path: ['__proto__'], input: v })
    return v
  }, schema)
}

const httpPath = () => z.string().refine((s) => s.startsWith('/'), MESSAGES.httpPath)

/** An http(s) URL, without a trailing slash. */
const httpUrl = (example: string) => {
  const message = `must be a URL like ${example}`
  return z.string().transform((s, ctx) => {
    let url: URL
    try {
      url = new URL(s)
    } catch {
      ctx.addIssue({ code: 'custom', message, input: s })
      return z.NEVER
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', message: `${message} (http or https)`, input: s })
      return z.NEVER
    }
    return s.replace(/\/+$/, '')
  })
}

/** A host for an endpoint or a registration: name, IPv4, or IPv6 (brackets optional, removed). */
const hostSchema = () =>
  z
    .string()
    .transform((s) => (s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s))
    .refine(isValidHost, MESSAGES.host)

/** A listener: `host:port`, `[::1]:port`, or a bare port on 127.0.0.1; port 0 picks a free port. */
const listenAddress = () =>
  z.union([z.string(), z.number()], { error: typeError('must be host:port, [ipv6]:port or a port') }).transform((v, ctx): ListenAddress => {
    try {
      return parseHostPort(String(v), { defaultHost: '127.0.0.1', minPort: 0 })
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: v })
      return z.NEVER
    }
  })

/** Drops keys whose value is undefined, so optional fields are absent rather than `undefined`. */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k]
  return o
}

// ---------------------------------------------------------------------------------------------------
// Endpoints

const endpointObject = z.strictObject(
  {
    address: hostSchema().describe('Host name or IP address of the instance.'),
    port: int(1, 65535).describe('Port of the instance.'),
    weight: int(1).prefault(1).describe('Relative weight (strategy `weighted`, and slow start). A positive integer.'),
  },
  { error: (iss) => (iss.code === 'invalid_type' ? (iss.input === undefined ? MESSAGES.required : MESSAGES.endpoint) : undefined) },
)

/** One endpoint: `"host:port"` or `{ address, port, weight }`. Also the items of a `file` source. */
export const endpointSchema = z
  .preprocess((v, ctx) => {
    if (typeof v !== 'string') return v
    try {
      const a = parseHostPort(v, { minPort: 1 })
      return { address: a.host, port: a.port }
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: v })
      return z.NEVER
    }
  }, endpointObject)
  .transform((e): StaticEndpoint => ({ address: e.address, port: e.port, weight: e.weight }))
  .describe('An endpoint: "host:port", "[ipv6]:port", or { address, port, weight } (weight defaults to 1).')

/** The document of a `file` source: a list of endpoints. */
export const endpointListSchema = z.array(endpointSchema).describe('A list of endpoints, as in `static`.')

// ---------------------------------------------------------------------------------------------------
// Services

const hashKeySchema = z
  .string()
  .transform((s, ctx): HashKey => {
    if (s === 'ip') return { kind: 'ip' }
    if (s === 'path') return { kind: 'path' }
    const colon = s.indexOf(':')
    const kind = s.slice(0, colon)
    const keyName = s.slice(colon + 1)
    if (colon > 0 && keyName !== '') {
      if (kind === 'header' && TOKEN.test(keyName)) return { kind: 'header', name: keyName.toLowerCase() }
      if (kind === 'cookie' && TOKEN.test(keyName)) return { kind: 'cookie', name: keyName }
      if (kind === 'query') return { kind: 'query', name: keyName }
    }
    ctx.addIssue({ code: 'custom', message: MESSAGES.hashKey, input: s })
    return z.NEVER
  })
  .describe('What consistent hashing hashes: `ip` (client address, the default), `path`, `header:NAME`, `cookie:NAME` or `query:NAME`.')

const routeHost = () =>
  z
    .string()
    .transform((s) => s.toLowerCase())
    .refine((s) => isValidHost(s) || (s.startsWith('[') && s.endsWith(']') && isValidHost(s.slice(1, -1))), MESSAGES.routeHost)

/**
 * Headers a route may not rewrite: the hop-by-hop ones (stripped at every hop, so setting one would
 * smuggle it through), and the body's framing, which node and undici write themselves (undici
 * throws on a `transfer-encoding`, `expect` or `keep-alive` request header).
 */
const UNREWRITABLE_HEADERS = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'expect'])
const unrewritable = (name: string): boolean => UNREWRITABLE_HEADERS.has(name) || name.startsWith('proxy-')
const refuseUnrewritable = (lower: string): string | null => (unrewritable(lower) ? MESSAGES.unrewritableHeader : null)

const headerRewriteSchema = z
  .strictObject({
    set: headerMap(refuseUnrewritable).prefault({}).describe('Headers to set: every occurrence already there is replaced by this one value.'),
    remove: z.array(headerName()).prefault([]).describe('Header names to remove (every occurrence).'),
  })
  .superRefine((r, ctx) => {
    if (!isPlainObject(r)) return
    const setNames = new Set(isPlainObject(r.set) ? Object.keys(r.set).map((k) => k.toLowerCase()) : [])
    if (Array.isArray(r.remove)) {
      for (const [i, item] of (r.remove as unknown[]).entries()) {
        if (typeof item !== 'string') continue
        const lower = item.toLowerCase()
        if (unrewritable(lower)) custom(ctx, MESSAGES.unrewritableHeader, ['remove', i])
        else if (setNames.has(lower)) custom(ctx, 'is also in set: a header is either set or removed', ['remove', i])
      }
    }
  }, ALWAYS)
  .describe('Header rewriting: `set` replaces (names are case-insensitive), `remove` drops; hop-by-hop and framing headers cannot be rewritten.')

const routeSchema = z
  .strictObject({
    host: routeHost().optional().describe('Match the Host header (case-insensitive; its port is ignored).'),
    pathPrefix: httpPath().optional().describe('Match paths starting with this prefix; the longest matching prefix wins.'),
    stripPrefix: bool().prefault(false).describe('Remove `pathPrefix` from the path before forwarding. Needs `pathPrefix`.'),
    methods: z
      .array(
        z
          .string()
          .regex(TOKEN, MESSAGES.method)
          .transform((s) => s.toUpperCase()),
      )
      .min(1)
      .optional()
      .describe('Match only these methods (upper-cased).'),
    headers: headerMap().optional().describe('Match only requests carrying these headers with exactly these values.'),
    requestHeaders: headerRewriteSchema.optional().describe('Rewrite request headers before forwarding.'),
    responseHeaders: headerRewriteSchema.optional().describe('Rewrite response headers before answering.'),
  })
  .superRefine((r, ctx) => {
    if (!isPlainObject(r)) return
    if (r.host === undefined && r.pathPrefix === undefined) custom(ctx, 'needs host or pathPrefix')
    if (r.stripPrefix === true && r.pathPrefix === undefined) custom(ctx, 'needs pathPrefix', ['stripPrefix'])
  }, ALWAYS)
  .describe('A route on the shared listener. Needs `host` or `pathPrefix`; `methods` and `headers` narrow it further.')

const activeHealthCheckSchema = z
  .strictObject({
    type: z.enum(['http', 'tcp']).prefault('http').describe('`http`: GET `path` expects a 2xx; `tcp`: a connection must open.'),
    path: httpPath().prefault('/health').describe('Path probed by `http` checks.'),
    interval: duration({ positive: true }).prefault('5s').describe('Time between probes of one endpoint.'),
    timeout: duration({ positive: true }).prefault('1s').describe('Probe timeout; must be shorter than `interval`.'),
    healthyThreshold: int(1).prefault(2).describe('Consecutive successes that make an endpoint healthy again.'),
    unhealthyThreshold: int(1).prefault(3).describe('Consecutive failures that make an endpoint unhealthy.'),
  })
  .superRefine((a, ctx) => {
    if (!isPlainObject(a)) return
    if (typeof a.timeout === 'number' && typeof a.interval === 'number' && a.timeout >= a.interval) {
      custom(ctx, `must be shorter than interval (${formatDuration(a.interval)})`, ['timeout'])
    }
  }, ALWAYS)
  .transform(
    (a): ActiveHealthCheckConfig => ({
      type: a.type,
      path: a.path,
      intervalMs: a.interval,
      timeoutMs: a.timeout,
      healthyThreshold: a.healthyThreshold,
      unhealthyThreshold: a.unhealthyThreshold,
    }),
  )
  .describe('Active health checks: probe every endpoint periodically.')

const passiveHealthCheckSchema = z
  .strictObject({
    consecutiveFailures: int(1).prefault(5).describe('Consecutive failures (5xx, connect errors, timeouts) that eject an endpoint.'),
    ejectionTime: duration({ positive: true }).prefault('30s').describe('How long the first ejection lasts; each further ejection lasts longer.'),
    maxEjectionTime: duration({ positive: true }).prefault('300s').describe('Upper bound of an ejection; at least `ejectionTime`.'),
    maxEjectionPercent: percent().prefault(50).describe('At most this percentage of endpoints is ejected at once.'),
  })
  .superRefine((p, ctx) => {
    if (!isPlainObject(p)) return
    if (typeof p.ejectionTime === 'number' && typeof p.maxEjectionTime === 'number' && p.maxEjectionTime < p.ejectionTime) {
      custom(ctx, `must be at least ejectionTime (${formatDuration(p.ejectionTime)})`, ['maxEjectionTime'])
    }
  }, ALWAYS)
  .transform(
    (p): PassiveHealthCheckConfig => ({
      consecutiveFailures: p.consecutiveFailures,
      ejectionTimeMs: p.ejectionTime,
      maxEjectionTimeMs: p.maxEjectionTime,
      maxEjectionPercent: p.maxEjectionPercent,
    }),
  )
  .describe('Passive health checks (outlier detection): eject endpoints that fail real requests.')

const healthCheckSchema = z
  .strictObject({
    active: activeHealthCheckSchema.optional(),
    passive: passiveHealthCheckSchema.optional(),
    panicThreshold: percent().prefault(50).describe('Percent healthy below which health is ignored (fail open); 0 disables.'),
  })
  .transform((h) => compact({ active: h.active, passive: h.passive, panicThreshold: h.panicThreshold }))
  .describe('Health checking. Active and passive checks are off unless given.')

const retrySchema = z
  .strictObject({
    attempts: int(0).prefault(2).describe('Extra attempts after the first, each on a different endpoint; 0 disables retries.'),
    budgetPercent: percent().prefault(20).describe('Retries may be at most this percentage of requests (plus a small floor).'),
    replayBodyLimit: size().prefault('64KiB').describe('A request whose body is larger than this is not retried after it was sent.'),
    idempotencyKeyHeader: headerName()
      .prefault('idempotency-key')
      .describe('A request carrying this header may be retried after it was sent, whatever its method.'),
  })
  .transform((r) => ({
    attempts: r.attempts,
    budgetPercent: r.budgetPercent,
    replayBodyLimitBytes: r.replayBodyLimit,
    idempotencyKeyHeader: r.idempotencyKeyHeader,
  }))
  .describe('Retries.')

const timeoutsSchema = z
  .strictObject({
    connect: duration({ positive: true }).prefault('2s').describe('Time to establish a connection to an endpoint.'),
    request: duration({ positive: true }).prefault('30s').describe('Time from sending a request to the end of the response headers.'),
    idle: duration({ positive: true }).prefault('60s').describe('Idle time after which a kept-alive upstream connection is closed.'),
  })
  .transform((t) => ({ connectMs: t.connect, requestMs: t.request, idleMs: t.idle }))
  .describe('Timeouts.')

const tlsSchema = z
  .strictObject({
    ca: nonEmpty().optional().describe('CA bundle (PEM file) that instance certificates must chain to; default: the system CAs.'),
    cert: nonEmpty().optional().describe('Client certificate (PEM file) for mutual TLS; needs `key`.'),
    key: nonEmpty().optional().describe('Private key (PEM file) of `cert`.'),
    servername: nonEmpty().optional().describe('Name sent in SNI and checked against the certificate; default: the endpoint address.'),
  })
  .superRefine((t, ctx) => {
    if (!isPlainObject(t)) return
    if (t.cert !== undefined && t.key === undefined) custom(ctx, 'is required with cert', ['key'])
    if (t.key !== undefined && t.cert === undefined) custom(ctx, 'is required with key', ['cert'])
  }, ALWAYS)
  .transform((t) => compact({ ca: t.ca, cert: t.cert, key: t.key, servername: t.servername }))
  .describe('Talk HTTPS (or mTLS) to the instances. Relative file paths are resolved against the config file\'s folder.')

const CONSISTENT_HASH_ONLY = ['hashKey', 'stickyCookie', 'hashBalanceFactor'] as const

export const serviceSchema = z
  .strictObject({
    source: z.enum(SOURCES).describe('Where the endpoints come from: consul, etcd, file or static.'),
    serviceName: name().optional().describe('Name in the registry; defaults to the key.'),
    tags: z.array(nonEmpty()).optional().describe('consul: only instances carrying all these tags.'),
    strategy: z.enum(STRATEGIES).prefault('round-robin').describe('Load-balancing strategy.'),
    listen: listenAddress().optional().describe('Optional dedicated listener: everything arriving here goes to this service.'),
    routes: z.array(routeSchema).prefault([]).describe('Routes on the shared listener; first match wins, longest pathPrefix first.'),
    healthCheck: healthCheckSchema.prefault({}),
    retry: retrySchema.prefault({}),
    slowStart: z
      .strictObject({ window: duration({ positive: true }).describe('Time over which the share ramps up.') })
      .transform((s) => ({ windowMs: s.window }))
      .optional()
      .describe("A new endpoint's share of traffic ramps up over the window, in every strategy."),
    timeouts: timeoutsSchema.prefault({}),
    maxConcurrent: int(1).prefault(1000).describe('In-flight requests per endpoint; beyond it, another endpoint or 503 overloaded.'),
    hashKey: hashKeySchema.optional(),
    stickyCookie: z
      .strictObject({ ttl: duration({ positive: true }).describe('Lifetime of the cookie.') })
      .transform((s) => ({ ttlMs: s.ttl }))
      .optional()
      .describe('With `hashKey: cookie:NAME`: when a request has no such cookie, set one so the client sticks.'),
    hashBalanceFactor: num({ gt: 1 })
      .optional()
      .describe('Bounded load: an endpoint above this × the average in-flight count spills to the next. Greater than 1.'),
    path: nonEmpty().optional().describe('source file: the watched YAML/JSON list of endpoints, relative to the config file.'),
    endpoints: z.array(endpointSchema).min(1).optional().describe('source static: the endpoints.'),
    tls: tlsSchema.optional(),
    circuitBreaker: z
      .strictObject({
        maxRequests: int(1).describe('In-flight requests to the service; beyond it, 503 overloaded at once.'),
        maxPending: int(0).describe('Requests waiting for a connection; beyond it, 503 overloaded at once.'),
      })
      .optional()
      .describe('Bounds on concurrency; requests are never queued without bound.'),
    rateLimit: z
      .strictObject({
        requestsPerSecond: num({ gt: 0 }).describe('Sustained rate.'),
        burst: int(1).describe('Bucket size: requests allowed at once above the rate.'),
      })
      .optional()
      .describe('Local token bucket; beyond it, 429 with Retry-After.'),
    cache: z
      .strictObject({
        maxEntries: int(1).describe('Most responses kept.'),
        maxBytes: size({ positive: true }).describe('Most bytes kept (bodies and headers).'),
      })
      .optional()
      .describe('Cache GET/HEAD responses as HTTP caching rules allow.'),
  })
  .superRefine((s, ctx) => {
    if (!isPlainObject(s)) return
    const source = (SOURCES as readonly unknown[]).includes(s.source) ? s.source : undefined
    if (source !== undefined) {
      if (source === 'static' && s.endpoints === undefined) custom(ctx, 'is required for source static', ['endpoints'])
      if (source !== 'static' && s.endpoints !== undefined) custom(ctx, 'only applies to source static', ['endpoints'])
      if (source === 'file' && s.path === undefined) custom(ctx, 'is required for source file', ['path'])
      if (source !== 'file' && s.path !== undefined) custom(ctx, 'only applies to source file', ['path'])
      if (source !== 'consul' && s.tags !== undefined) custom(ctx, 'only applies to source consul', ['tags'])
    }
    const strategy = (STRATEGIES as readonly unknown[]).includes(s.strategy) ? s.strategy : undefined
    if (strategy !== undefined && strategy !== 'consistent-hash') {
      for (const key of CONSISTENT_HASH_ONLY) if (s[key] !== undefined) custom(ctx, 'only applies to strategy consistent-hash', [key])
    } else if (strategy === 'consistent-hash' && s.stickyCookie !== undefined) {
      const hk = s.hashKey
      if (hk === undefined || (isPlainObject(hk) && hk.kind !== 'cookie')) custom(ctx, 'needs hashKey: cookie:NAME', ['stickyCookie'])
    }
  }, ALWAYS)
  .describe('One upstream service.')

type ServiceFields = z.output<typeof serviceSchema>

function toServiceConfig(key: string, s: ServiceFields): ServiceConfig {
  return compact<ServiceConfig>({
    name: key,
    source: s.source,
    serviceName: s.serviceName ?? key,
    tags: s.tags ?? [],
    strategy: s.strategy,
    listen: s.listen,
    routes: s.routes.map((r) => compact({ ...r })),
    healthCheck: s.healthCheck,
    retry: s.retry,
    slowStart: s.slowStart,
    timeouts: s.timeouts,
    maxConcurrent: s.maxConcurrent,
    hashKey: s.hashKey ?? { kind: 'ip' },
    stickyCookie: s.stickyCookie,
    hashBalanceFactor: s.hashBalanceFactor,
    path: s.path,
    endpoints: s.endpoints,
    tls: s.tls,
    circuitBreaker: s.circuitBreaker,
    rateLimit: s.rateLimit,
    cache: s.cache,
  })
}

// ---------------------------------------------------------------------------------------------------
// Discovery and registration

const consulSchema = z
  .strictObject({
    url: httpUrl('http://127.0.0.1:8500').prefault('http://127.0.0.1:8500').describe('Consul HTTP API (the local agent).'),
    token: z.string().prefault('').describe('ACL token; empty for none.'),
    datacenter: nonEmpty().optional().describe("Datacenter to query; default: the agent's."),
    wait: duration({ positive: true }).prefault('30s').describe('Blocking query wait time.'),
    consistency: z.enum(['default', 'stale', 'consistent']).prefault('default').describe('Consistency mode of reads.'),
  })
  .transform((c) => compact({ url: c.url, token: c.token, datacenter: c.datacenter, waitMs: c.wait, consistency: c.consistency }))
  .describe('How to reach Consul.')

const etcdSchema = z
  .strictObject({
    endpoints: z
      .array(httpUrl('http://127.0.0.1:2379'))
      .min(1)
      .prefault(['http://127.0.0.1:2379'])
      .describe('etcd cluster members (v3 HTTP/JSON gateway).'),
    prefix: z.string().prefault('/services/').describe('Endpoints of a service are the keys under `<prefix><serviceName>/`.'),
    username: nonEmpty().optional().describe('User for etcd authentication; needs `password`.'),
    password: z.string().optional().describe('Password of `username`.'),
  })
  .superRefine((e, ctx) => {
    if (!isPlainObject(e)) return
    if (e.username !== undefined && e.password === undefined) custom(ctx, 'is required with username', ['password'])
    if (e.password !== undefined && e.username === undefined) custom(ctx, 'is required with password', ['username'])
  }, ALWAYS)
  .transform((e) => compact({ endpoints: e.endpoints, prefix: e.prefix, username: e.username, password: e.password }))
  .describe('How to reach etcd.')

const discoverySchema = z
  .strictObject({
    stateDir: nonEmpty()
      .prefault('./.outrigger-state')
      .describe("Last known endpoint sets are kept here, so a restart while a registry is down still routes. Relative to the config file's folder."),
    consul: consulSchema.prefault({}),
    etcd: etcdSchema.prefault({}),
  })
  .describe('How to reach the registries (each optional).')

const registerSchema = z
  .strictObject({
    source: z.enum(['consul', 'etcd']).describe('consul: agent service with an HTTP check; etcd: a key on a lease, kept alive.'),
    serviceName: name().describe('Name to register under.'),
    address: hostSchema().describe('Address other instances should use to reach the app.'),
    port: int(1, 65535).describe('Port of the app.'),
    weight: int(1).prefault(1).describe('Weight announced with the registration.'),
    tags: z.array(nonEmpty()).prefault([]).describe('Tags announced with the registration.'),
    check: z
      .strictObject({
        path: httpPath().describe("HTTP path of the app's health endpoint."),
        interval: duration({ positive: true }).prefault('10s').describe('Check interval.'),
      })
      .transform((c) => ({ path: c.path, intervalMs: c.interval }))
      .optional()
      .describe('Health check the registry runs against the app.'),
  })
  .transform(
    (r): RegisterConfig =>
      compact({ source: r.source, serviceName: r.serviceName, address: r.address, port: r.port, weight: r.weight, tags: r.tags, check: r.check }),
  )
  .describe('Announce the local app in a registry; removed again on shutdown.')

const limitsSchema = z
  .strictObject({
    maxConnections: int(1).optional().describe('Client connections open at once on each proxy listener; beyond it, new connections are closed at once. Default: no cap.'),
    headersTimeout: duration({ positive: true }).prefault('10s').describe('Time a client has to send a complete request head (slowloris); then 408 and the connection is closed.'),
    requestTimeout: duration({ positive: true }).prefault('5m').describe('Time a client has to send a complete request, body included; then 408 and the connection is closed.'),
    maxHeaderSize: size({ positive: true }).prefault('16KiB').describe('Largest request head accepted from a client; beyond it, 431.'),
  })
  .superRefine((l, ctx) => {
    if (!isPlainObject(l)) return
    if (typeof l.headersTimeout === 'number' && typeof l.requestTimeout === 'number' && l.headersTimeout > l.requestTimeout) {
      custom(ctx, `must be at most requestTimeout (${formatDuration(l.requestTimeout)})`, ['headersTimeout'])
    }
  }, ALWAYS)
  .transform(
    (l): LimitsConfig =>
      compact({ maxConnections: l.maxConnections, headersTimeoutMs: l.headersTimeout, requestTimeoutMs: l.requestTimeout, maxHeaderSizeBytes: l.maxHeaderSize }),
  )
  .describe('Limits on what clients of the proxy listeners may hold or send.')

/** The most `workers` a config may ask for: far beyond any sensible machine, a guard against typos. */
export const MAX_WORKERS = 256

/** `workers`: a positive integer, or `auto` (resolved when the sidecar starts, not here). */
function workersSchema() {
  return z.union([z.number(), z.string()], { error: typeError(MESSAGES.workers) }).transform((v, ctx): number | 'auto' => {
    if (typeof v === 'string' && v.trim() === 'auto') return 'auto'
    const n = typeof v === 'number' ? v : NUMERIC.test(v.trim()) ? Number(v.trim()) : NaN
    if (!Number.isInteger(n) || n < 1) ctx.addIssue({ code: 'custom', message: MESSAGES.workers, input: v })
    else if (n > MAX_WORKERS) ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_WORKERS}`, input: v })
    return n
  })
}

// ---------------------------------------------------------------------------------------------------
// The document

const isListenAddress = (v: unknown): v is ListenAddress => isPlainObject(v) && typeof v.host === 'string' && typeof v.port === 'number'

export const configSchema = z
  .strictObject({
    listen: listenAddress().prefault('127.0.0.1:15001').describe('Shared listener: requests are routed to a service by host or path.'),
    admin: listenAddress().prefault('127.0.0.1:9901').describe('Admin API and status page.'),
    shutdownTimeout: duration().prefault('30s').describe('On SIGTERM/SIGINT, how long in-flight requests may take to finish.'),
    accessLog: bool().prefault(false).describe('One JSON line per request.'),
    workers: workersSchema().prefault(1).describe('Proxy processes sharing the listeners; `auto`: one per CPU. Discovery and active checks run once, in the primary.'),
    discovery: discoverySchema.prefault({}),
    services: noProtoKey(
      z.record(z.string(), serviceSchema).superRefine((rec, ctx) => {
        if (!isPlainObject(rec)) return
        for (const key of Object.keys(rec)) if (!NAME.test(key)) custom(ctx, `service name ${MESSAGES.name}`, [key])
      }, ALWAYS),
      `service name ${MESSAGES.name}`,
    )
      .prefault({})
      .describe('The upstream services, by name.'),
    register: registerSchema.optional(),
    limits: limitsSchema.prefault({}),
    adminToken: z
      .string()
      .optional()
      .describe('When set (and not empty), the admin API wants `Authorization: Bearer <token>`, except /healthz and /readyz (probes).'),
  })
  .superRefine((root, ctx) => {
    if (!isPlainObject(root)) return
    const listeners: { path: PropertyKey[]; address: ListenAddress }[] = []
    if (isListenAddress(root.listen)) listeners.push({ path: ['listen'], address: root.listen })
    if (isListenAddress(root.admin)) listeners.push({ path: ['admin'], address: root.admin })
    if (isPlainObject(root.services)) {
      for (const [key, s] of Object.entries(root.services)) {
        if (isPlainObject(s) && isListenAddress(s.listen)) listeners.push({ path: ['services', key, 'listen'], address: s.listen })
      }
    }
    for (const [i, b] of listeners.entries()) {
      const a = listeners.slice(0, i).find((x) => listenersCollide(x.address, b.address))
      if (a !== undefined) custom(ctx, `${formatAddress(b.address)} is already used by ${formatPath(a.path)} (${formatAddress(a.address)})`, b.path)
    }
  }, ALWAYS)
  .transform(
    (c): Config =>
      compact({
        listen: c.listen,
        admin: c.admin,
        shutdownTimeoutMs: c.shutdownTimeout,
        accessLog: c.accessLog,
        workers: c.workers,
        discovery: c.discovery,
        services: Object.entries(c.services).map(([key, s]) => toServiceConfig(key, s)),
        register: c.register,
        limits: c.limits,
        adminToken: c.adminToken === '' ? undefined : c.adminToken,
      }),
  )
  .describe('outrigger configuration.')

export type ValidationResult = { ok: true; config: Config } | { ok: false; issues: RawIssue[] }

/**
 * Validates a parsed, env-expanded document. Relative paths are returned as written (see
 * `resolvePaths` in load.ts). Issues come in zod's order; the loader sorts them.
 */
export function validateDocument(doc: unknown): ValidationResult {
  const r = configSchema.safeParse(doc, { error: configErrorMap })
  return r.success ? { ok: true, config: r.data } : { ok: false, issues: zodIssuesToRaw(r.error.issues) }
}
