import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../../src/config/errors.ts'
import { formatOf, loadConfigFile, parseConfig } from '../../src/config/load.ts'
import type { ConfigFormat } from '../../src/config/load.ts'
import type { Config, ServiceConfig } from '../../src/config/types.ts'
import { BASE_DIR, issuesOf, onlyIssueOf, parse } from './helpers.ts'

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')
const FULL_YAML = readFileSync(path.join(FIXTURES, 'full.yaml'), 'utf8')

function service(config: Config, name: string): ServiceConfig {
  const s = config.services.find((x) => x.name === name)
  assert.ok(s !== undefined, `service ${name} is missing`)
  return s
}

const DEFAULT_RETRY = { attempts: 2, budgetPercent: 20, replayBodyLimitBytes: 65536, idempotencyKeyHeader: 'idempotency-key' }
const DEFAULT_TIMEOUTS = { connectMs: 2000, requestMs: 30000, idleMs: 60000 }

describe('parseConfig: the full example of the contract', () => {
  const config = parse(FULL_YAML, { env: { CONSUL_TOKEN: 'tok' } })

  it('resolves the top-level fields', () => {
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 15001 })
    assert.deepEqual(config.admin, { host: '127.0.0.1', port: 9901 })
    assert.equal(config.shutdownTimeoutMs, 30000)
    assert.equal(config.accessLog, false)
  })

  it('resolves discovery: stateDir against baseDir, the token from the environment, wait in ms', () => {
    assert.deepEqual(config.discovery, {
      stateDir: path.resolve(BASE_DIR, '.outrigger-state'),
      consul: { url: 'http://127.0.0.1:8500', token: 'tok', datacenter: 'dc1', waitMs: 30000, consistency: 'default' },
      etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/services/' },
    })
  })

  it('keeps the services in document order', () => {
    assert.deepEqual(
      config.services.map((s) => s.name),
      ['api', 'sessions', 'web', 'legacy', 'payments'],
    )
  })

  it('resolves service api completely', () => {
    assert.deepEqual(service(config, 'api'), {
      name: 'api',
      source: 'consul',
      serviceName: 'api',
      tags: ['v2'],
      strategy: 'least-connections',
      listen: { host: '127.0.0.1', port: 15002 },
      routes: [
        { host: 'api.internal', stripPrefix: false },
        { pathPrefix: '/api/', stripPrefix: false },
      ],
      healthCheck: {
        active: { type: 'http', path: '/health', intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 2, unhealthyThreshold: 3 },
        passive: { consecutiveFailures: 5, ejectionTimeMs: 30000, maxEjectionTimeMs: 300000, maxEjectionPercent: 50 },
        panicThreshold: 50,
      },
      retry: DEFAULT_RETRY,
      slowStart: { windowMs: 30000 },
      timeouts: DEFAULT_TIMEOUTS,
      maxConcurrent: 1000,
      hashKey: { kind: 'ip' },
    })
  })

  it('resolves the consistent-hash service: cookie hash key, sticky cookie ttl, balance factor', () => {
    const s = service(config, 'sessions')
    assert.equal(s.source, 'etcd')
    assert.equal(s.strategy, 'consistent-hash')
    assert.deepEqual(s.hashKey, { kind: 'cookie', name: 'session' })
    assert.deepEqual(s.stickyCookie, { ttlMs: 3_600_000 })
    assert.equal(s.hashBalanceFactor, 1.25)
    assert.deepEqual(s.tags, [])
  })

  it('resolves the file source path against baseDir', () => {
    const s = service(config, 'web')
    assert.equal(s.source, 'file')
    assert.equal(s.strategy, 'weighted')
    assert.equal(s.path, path.resolve(BASE_DIR, 'endpoints/web.yaml'))
    assert.equal(s.endpoints, undefined)
  })

  it('fills in the defaults of a service that gives only a source', () => {
    const s = service(config, 'legacy')
    assert.equal(s.serviceName, 'legacy')
    assert.equal(s.strategy, 'round-robin')
    assert.deepEqual(s.tags, [])
    assert.deepEqual(s.routes, [])
    assert.deepEqual(s.healthCheck, { panicThreshold: 50 })
    assert.deepEqual(s.retry, DEFAULT_RETRY)
    assert.deepEqual(s.timeouts, DEFAULT_TIMEOUTS)
    assert.equal(s.maxConcurrent, 1000)
    assert.deepEqual(s.hashKey, { kind: 'ip' })
    for (const key of ['listen', 'slowStart', 'stickyCookie', 'hashBalanceFactor', 'path', 'tls', 'circuitBreaker', 'rateLimit', 'cache'] as const) {
      assert.equal(key in s, false, `${key} should be absent`)
    }
  })

  it('resolves static endpoints in both forms, with weights (default 1)', () => {
    assert.deepEqual(service(config, 'legacy').endpoints, [
      { address: '127.0.0.1', port: 9001, weight: 1 },
      { address: '127.0.0.1', port: 9002, weight: 3 },
    ])
  })

  it('resolves the traffic policies of payments: tls paths, limits, cache size in bytes, routes', () => {
    const s = service(config, 'payments')
    assert.deepEqual(s.tls, {
      ca: path.resolve(BASE_DIR, 'ca.pem'),
      cert: path.resolve(BASE_DIR, 'client.pem'),
      key: path.resolve(BASE_DIR, 'client-key.pem'),
      servername: 'payments.internal',
    })
    assert.deepEqual(s.circuitBreaker, { maxRequests: 500, maxPending: 50 })
    assert.deepEqual(s.rateLimit, { requestsPerSecond: 200, burst: 50 })
    assert.deepEqual(s.cache, { maxEntries: 10000, maxBytes: 64 * 1024 * 1024 })
    assert.deepEqual(s.routes, [
      {
        pathPrefix: '/pay/',
        stripPrefix: false,
        methods: ['GET', 'POST'],
        headers: { 'x-tenant': 'acme' },
        requestHeaders: { set: { 'x-env': 'prod' }, remove: ['x-debug'] },
        responseHeaders: { set: { 'x-served-by': 'outrigger' }, remove: [] },
      },
    ])
  })

  it('resolves register with its check interval in ms', () => {
    assert.deepEqual(config.register, {
      source: 'consul',
      serviceName: 'billing',
      address: '127.0.0.1',
      port: 8080,
      weight: 1,
      tags: ['v1'],
      check: { path: '/health', intervalMs: 10000 },
    })
  })

  it('uses the empty default of ${CONSUL_TOKEN:-} when the variable is not set', () => {
    assert.equal(parse(FULL_YAML, { env: {} }).discovery.consul.token, '')
  })

  it('gives the same result for the same document written as JSON', () => {
    const json = JSON.stringify({
      listen: '127.0.0.1:15001',
      services: {
        legacy: { source: 'static', endpoints: ['127.0.0.1:9001', { address: '127.0.0.1', port: 9002, weight: 3 }] },
      },
    })
    const fromJson = parse(json, { format: 'json' })
    assert.deepEqual(service(fromJson, 'legacy'), service(config, 'legacy'))
  })
})

describe('parseConfig: defaults and normalisation', () => {
  it('an empty document is a valid config with every default', () => {
    const c = parse('')
    assert.deepEqual(c, {
      listen: { host: '127.0.0.1', port: 15001 },
      admin: { host: '127.0.0.1', port: 9901 },
      shutdownTimeoutMs: 30000,
      accessLog: false,
      workers: 1,
      discovery: {
        stateDir: path.resolve(BASE_DIR, '.outrigger-state'),
        consul: { url: 'http://127.0.0.1:8500', token: '', waitMs: 30000, consistency: 'default' },
        etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/services/' },
      },
      services: [],
      limits: { headersTimeoutMs: 10000, requestTimeoutMs: 300000, maxHeaderSizeBytes: 16384 },
    })
  })

  it('an empty adminToken leaves the admin API open', () => {
    assert.equal(parse('adminToken: ""\n').adminToken, undefined)
    assert.equal(parse('adminToken: abc\n').adminToken, 'abc')
  })

  it('a bare port listens on 127.0.0.1, [ipv6]:port loses its brackets', () => {
    const c = parse('listen: 8080\nadmin: "[::1]:9000"\n')
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 })
    assert.deepEqual(c.admin, { host: '::1', port: 9000 })
  })

  it('two listeners on port 0 do not collide', () => {
    const c = parse('listen: 0\nadmin: 0\n')
    assert.equal(c.listen.port, 0)
    assert.equal(c.admin.port, 0)
  })

  it('durations accept 1m30s, 1.5s, plain numbers of ms and 1h; sizes accept 1MB', () => {
    const c = parse(
      [
        'shutdownTimeout: 1m30s',
        'services:',
        '  a:',
        '    source: consul',
        '    timeouts: { connect: 1.5s, request: 250, idle: 1h }',
        '    retry: { replayBodyLimit: 1MB, attempts: 0 }',
      ].join('\n'),
    )
    assert.equal(c.shutdownTimeoutMs, 90000)
    const s = service(c, 'a')
    assert.deepEqual(s.timeouts, { connectMs: 1500, requestMs: 250, idleMs: 3_600_000 })
    assert.equal(s.retry.replayBodyLimitBytes, 1_000_000)
    assert.equal(s.retry.attempts, 0)
  })

  it('workers: a number, a numeric string (for ${WORKERS}) or auto', () => {
    assert.equal(parse('workers: 4\n').workers, 4)
    assert.equal(parse('workers: "2"\n').workers, 2)
    assert.equal(parse('workers: auto\n').workers, 'auto')
  })

  it('lower-cases header names and upper-cases methods; absolute paths stay as written', () => {
    const c = parse(
      [
        'discovery: { stateDir: /var/lib/outrigger }',
        'services:',
        '  a:',
        '    source: file',
        '    path: /srv/endpoints.yaml',
        '    retry: { idempotencyKeyHeader: X-Request-Key }',
        '    routes:',
        '      - host: API.Internal',
        '        methods: [get]',
        '        headers: { X-Tenant: Acme }',
      ].join('\n'),
    )
    assert.equal(c.discovery.stateDir, '/var/lib/outrigger')
    const s = service(c, 'a')
    assert.equal(s.path, '/srv/endpoints.yaml')
    assert.equal(s.retry.idempotencyKeyHeader, 'x-request-key')
    assert.deepEqual(s.routes, [{ host: 'api.internal', methods: ['GET'], headers: { 'x-tenant': 'Acme' }, stripPrefix: false }])
  })

  it('resolves every hash key form', () => {
    const keys = ['ip', 'path', 'header:X-User', 'cookie:sid', 'query:q'].map(
      (k) => service(parse(`services:\n  a: { source: consul, strategy: consistent-hash, hashKey: "${k}" }\n`), 'a').hashKey,
    )
    assert.deepEqual(keys, [
      { kind: 'ip' },
      { kind: 'path' },
      { kind: 'header', name: 'x-user' },
      { kind: 'cookie', name: 'sid' },
      { kind: 'query', name: 'q' },
    ])
  })

  it('supports YAML anchors and merge keys', () => {
    const c = parse('services:\n  a: &base { source: consul, strategy: weighted }\n  b: { <<: *base, strategy: least-connections }\n')
    assert.deepEqual(
      c.services.map((s) => [s.name, s.source, s.strategy]),
      [
        ['a', 'consul', 'weighted'],
        ['b', 'consul', 'least-connections'],
      ],
    )
  })

  it('ignores a byte order mark', () => {
    assert.deepEqual(parse('\uFEFFlisten: 8080\n').listen, { host: '127.0.0.1', port: 8080 })
    assert.deepEqual(parse('\uFEFF{"listen": 8081}', { format: 'json' }).listen, { host: '127.0.0.1', port: 8081 })
  })
})

interface Mistake {
  name: string
  text: string
  format?: ConfigFormat
  env?: Record<string, string>
  path: string
  message: string | RegExp
}

const svc = (body: string): string => `services:\n  api:\n${body}`

const MISTAKES: Mistake[] = [
  {
    name: 'unknown strategy',
    text: svc('    source: consul\n    strategy: random\n'),
    path: 'services.api.strategy',
    message: 'must be one of round-robin, weighted, least-connections, consistent-hash',
  },
  { name: 'unknown field in a service', text: svc('    source: consul\n    stratgy: weighted\n'), path: 'services.api', message: 'unknown field "stratgy"' },
  { name: 'unknown top-level field', text: 'lisen: 8080\n', path: '', message: 'unknown field "lisen"' },
  { name: 'missing source', text: svc('    strategy: weighted\n'), path: 'services.api.source', message: 'is required' },
  { name: 'unknown source', text: svc('    source: zookeeper\n'), path: 'services.api.source', message: 'must be one of consul, etcd, file, static' },
  { name: 'static without endpoints', text: 'services:\n  x:\n    source: static\n', path: 'services.x.endpoints', message: 'is required for source static' },
  { name: 'static with an empty list', text: 'services:\n  x:\n    source: static\n    endpoints: []\n', path: 'services.x.endpoints', message: 'must not be empty' },
  { name: 'file without path', text: svc('    source: file\n'), path: 'services.api.path', message: 'is required for source file' },
  { name: 'path on a consul service', text: svc('    source: consul\n    path: ./x.yaml\n'), path: 'services.api.path', message: 'only applies to source file' },
  {
    name: 'tags on a static service',
    text: svc('    source: static\n    endpoints: ["a:1"]\n    tags: [v1]\n'),
    path: 'services.api.tags',
    message: 'only applies to source consul',
  },
  {
    name: 'endpoint port out of range (map form)',
    text: 'services:\n  x:\n    source: static\n    endpoints: ["127.0.0.1:1", { address: 127.0.0.1, port: 70000 }]\n',
    path: 'services.x.endpoints[1].port',
    message: 'must be at most 65535',
  },
  {
    name: 'endpoint port out of range (string form)',
    text: 'services:\n  x:\n    source: static\n    endpoints: ["127.0.0.1:1", "127.0.0.1:99999"]\n',
    path: 'services.x.endpoints[1]',
    message: 'port must be between 1 and 65535',
  },
  {
    name: 'endpoint weight 0',
    text: 'services:\n  x:\n    source: static\n    endpoints: [{ address: a, port: 1, weight: 0 }]\n',
    path: 'services.x.endpoints[0].weight',
    message: 'must be at least 1',
  },
  {
    name: 'duration with a unit in words',
    text: svc('    source: consul\n    timeouts: { connect: 5 seconds }\n'),
    path: 'services.api.timeouts.connect',
    message: 'must be a duration like 250ms, 5s or 1m',
  },
  {
    name: 'negative duration',
    text: svc('    source: consul\n    timeouts: { request: -5s }\n'),
    path: 'services.api.timeouts.request',
    message: 'must be a duration like 250ms, 5s or 1m',
  },
  { name: 'zero timeout', text: svc('    source: consul\n    timeouts: { connect: 0 }\n'), path: 'services.api.timeouts.connect', message: 'must be greater than 0' },
  { name: 'duration over the timer limit', text: 'shutdownTimeout: 1000h\n', path: 'shutdownTimeout', message: 'must be at most 596h' },
  {
    name: 'size with a unit in words',
    text: svc('    source: consul\n    retry: { replayBodyLimit: 64 kilobytes }\n'),
    path: 'services.api.retry.replayBodyLimit',
    message: 'must be a size like 64KiB or 1MiB',
  },
  {
    name: 'zero cache size',
    text: svc('    source: consul\n    cache: { maxEntries: 10, maxBytes: 0 }\n'),
    path: 'services.api.cache.maxBytes',
    message: 'must be greater than 0',
  },
  { name: 'maxConcurrent 0', text: svc('    source: consul\n    maxConcurrent: 0\n'), path: 'services.api.maxConcurrent', message: 'must be at least 1' },
  { name: 'negative retry attempts', text: svc('    source: consul\n    retry: { attempts: -1 }\n'), path: 'services.api.retry.attempts', message: 'must be at least 0' },
  { name: 'fractional retry attempts', text: svc('    source: consul\n    retry: { attempts: 1.5 }\n'), path: 'services.api.retry.attempts', message: 'must be an integer' },
  {
    name: 'negative maxPending',
    text: svc('    source: consul\n    circuitBreaker: { maxRequests: 1, maxPending: -1 }\n'),
    path: 'services.api.circuitBreaker.maxPending',
    message: 'must be at least 0',
  },
  {
    name: 'zero rate',
    text: svc('    source: consul\n    rateLimit: { requestsPerSecond: 0, burst: 1 }\n'),
    path: 'services.api.rateLimit.requestsPerSecond',
    message: 'must be greater than 0',
  },
  {
    name: 'zero maxRequests',
    text: svc('    source: consul\n    circuitBreaker: { maxRequests: 0, maxPending: 1 }\n'),
    path: 'services.api.circuitBreaker.maxRequests',
    message: 'must be at least 1',
  },
  {
    name: 'circuitBreaker without maxPending',
    text: svc('    source: consul\n    circuitBreaker: { maxRequests: 10 }\n'),
    path: 'services.api.circuitBreaker.maxPending',
    message: 'is required',
  },
  {
    name: 'misspelt circuitBreaker field',
    text: svc('    source: consul\n    circuitBreaker: { maxRequests: 10, maxPending: 1, maxConnections: 5 }\n'),
    path: 'services.api.circuitBreaker',
    message: 'unknown field "maxConnections"',
  },
  {
    name: 'fractional burst',
    text: svc('    source: consul\n    rateLimit: { requestsPerSecond: 10, burst: 2.5 }\n'),
    path: 'services.api.rateLimit.burst',
    message: 'must be an integer',
  },
  {
    name: 'rateLimit without burst',
    text: svc('    source: consul\n    rateLimit: { requestsPerSecond: 10 }\n'),
    path: 'services.api.rateLimit.burst',
    message: 'is required',
  },
  {
    name: 'rate as a string that is not a number',
    text: svc('    source: consul\n    rateLimit: { requestsPerSecond: fast, burst: 1 }\n'),
    path: 'services.api.rateLimit.requestsPerSecond',
    message: 'must be a number',
  },
  {
    name: 'route method that is not a token',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, methods: ["GET POST"] }]\n'),
    path: 'services.api.routes[0].methods[0]',
    message: 'must be an HTTP method like GET',
  },
  {
    name: 'route with an empty method list',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, methods: [] }]\n'),
    path: 'services.api.routes[0].methods',
    message: 'must not be empty',
  },
  {
    name: 'route header value with a line break',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, headers: { x-tenant: "a\\r\\nb" } }]\n'),
    path: 'services.api.routes[0].headers.x-tenant',
    message: 'must not contain line breaks',
  },
  {
    name: 'requestHeaders setting a hop-by-hop header',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, requestHeaders: { set: { Connection: close } } }]\n'),
    path: 'services.api.routes[0].requestHeaders.set.Connection',
    message: 'is a hop-by-hop or framing header, which the proxy manages itself and a route cannot rewrite',
  },
  {
    name: 'responseHeaders removing content-length',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, responseHeaders: { remove: [x-a, Content-Length] } }]\n'),
    path: 'services.api.routes[0].responseHeaders.remove[1]',
    message: 'is a hop-by-hop or framing header, which the proxy manages itself and a route cannot rewrite',
  },
  {
    name: 'requestHeaders setting a proxy-* header',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, requestHeaders: { set: { proxy-authorization: x } } }]\n'),
    path: 'services.api.routes[0].requestHeaders.set.proxy-authorization',
    message: 'is a hop-by-hop or framing header, which the proxy manages itself and a route cannot rewrite',
  },
  {
    name: 'header both set and removed',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, requestHeaders: { set: { X-Env: prod }, remove: [x-env] } }]\n'),
    path: 'services.api.routes[0].requestHeaders.remove[0]',
    message: 'is also in set: a header is either set or removed',
  },
  {
    name: 'header rewrite with a bad name',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, responseHeaders: { set: { "x served": y } } }]\n'),
    path: 'services.api.routes[0].responseHeaders.set.x served',
    message: "must be a header name (letters, digits and !#$%&'*+-.^_`|~)",
  },
  {
    name: 'unknown field in a header rewrite',
    text: svc('    source: consul\n    routes: [{ pathPrefix: /p/, responseHeaders: { add: { x: y } } }]\n'),
    path: 'services.api.routes[0].responseHeaders',
    message: 'unknown field "add"',
  },
  { name: 'listen without a port', text: 'listen: localhost\n', path: 'listen', message: 'must be host:port, [ipv6]:port or a port, got "localhost"' },
  { name: 'listen port out of range', text: 'listen: 127.0.0.1:99999\n', path: 'listen', message: 'port must be between 0 and 65535' },
  { name: 'IPv6 listen without brackets', text: 'admin: "::1:9901"\n', path: 'admin', message: 'an IPv6 address needs brackets, like [::1]:9901' },
  {
    name: 'admin on the port of listen',
    text: 'listen: 127.0.0.1:8000\nadmin: 127.0.0.1:8000\n',
    path: 'admin',
    message: '127.0.0.1:8000 is already used by listen (127.0.0.1:8000)',
  },
  {
    name: 'a service listener on a port the wildcard admin takes',
    text: 'admin: 0.0.0.0:9000\nservices:\n  api:\n    source: consul\n    listen: 10.0.0.1:9000\n',
    path: 'services.api.listen',
    message: '10.0.0.1:9000 is already used by admin (0.0.0.0:9000)',
  },
  {
    name: 'panicThreshold over 100',
    text: svc('    source: consul\n    healthCheck: { panicThreshold: 101 }\n'),
    path: 'services.api.healthCheck.panicThreshold',
    message: 'must be at most 100',
  },
  {
    name: 'active check timeout equal to the interval',
    text: svc('    source: consul\n    healthCheck: { active: { interval: 1s, timeout: 1s } }\n'),
    path: 'services.api.healthCheck.active.timeout',
    message: 'must be shorter than interval (1s)',
  },
  {
    name: 'active check timeout over the default interval',
    text: svc('    source: consul\n    healthCheck: { active: { timeout: 10s } }\n'),
    path: 'services.api.healthCheck.active.timeout',
    message: 'must be shorter than interval (5s)',
  },
  {
    name: 'maxEjectionTime below ejectionTime',
    text: svc('    source: consul\n    healthCheck: { passive: { ejectionTime: 1m, maxEjectionTime: 30s } }\n'),
    path: 'services.api.healthCheck.passive.maxEjectionTime',
    message: 'must be at least ejectionTime (1m)',
  },
  {
    name: 'bogus hashKey',
    text: svc('    source: consul\n    strategy: consistent-hash\n    hashKey: bogus\n'),
    path: 'services.api.hashKey',
    message: 'must be one of ip, path, header:NAME, cookie:NAME, query:NAME',
  },
  {
    name: 'hashKey with an empty name',
    text: svc('    source: consul\n    strategy: consistent-hash\n    hashKey: "header:"\n'),
    path: 'services.api.hashKey',
    message: 'must be one of ip, path, header:NAME, cookie:NAME, query:NAME',
  },
  {
    name: 'hashKey with the default strategy',
    text: svc('    source: consul\n    hashKey: ip\n'),
    path: 'services.api.hashKey',
    message: 'only applies to strategy consistent-hash',
  },
  {
    name: 'hashBalanceFactor with strategy weighted',
    text: svc('    source: consul\n    strategy: weighted\n    hashBalanceFactor: 2\n'),
    path: 'services.api.hashBalanceFactor',
    message: 'only applies to strategy consistent-hash',
  },
  {
    name: 'hashBalanceFactor 1',
    text: svc('    source: consul\n    strategy: consistent-hash\n    hashBalanceFactor: 1\n'),
    path: 'services.api.hashBalanceFactor',
    message: 'must be greater than 1',
  },
  {
    name: 'stickyCookie with a header hashKey',
    text: svc('    source: consul\n    strategy: consistent-hash\n    hashKey: header:x-user\n    stickyCookie: { ttl: 1h }\n'),
    path: 'services.api.stickyCookie',
    message: 'needs hashKey: cookie:NAME',
  },
  {
    name: 'stickyCookie without hashKey',
    text: svc('    source: consul\n    strategy: consistent-hash\n    stickyCookie: { ttl: 1h }\n'),
    path: 'services.api.stickyCookie',
    message: 'needs hashKey: cookie:NAME',
  },
  {
    name: 'route without host or pathPrefix',
    text: svc('    source: consul\n    routes:\n      - host: a.internal\n      - methods: [GET]\n'),
    path: 'services.api.routes[1]',
    message: 'needs host or pathPrefix',
  },
  {
    name: 'stripPrefix without pathPrefix',
    text: svc('    source: consul\n    routes: [{ host: a.internal, stripPrefix: true }]\n'),
    path: 'services.api.routes[0].stripPrefix',
    message: 'needs pathPrefix',
  },
  { name: 'pathPrefix without a slash', text: svc('    source: consul\n    routes: [{ pathPrefix: api }]\n'), path: 'services.api.routes[0].pathPrefix', message: 'must start with /' },
  {
    name: 'route host with a port',
    text: svc('    source: consul\n    routes: [{ host: "a.internal:80" }]\n'),
    path: 'services.api.routes[0].host',
    message: 'must be a host name like api.internal (without a port)',
  },
  { name: 'workers zero', text: 'workers: 0\n', path: 'workers', message: 'must be an integer of at least 1, or auto' },
  { name: 'workers not an integer', text: 'workers: 1.5\n', path: 'workers', message: 'must be an integer of at least 1, or auto' },
  { name: 'workers a word other than auto', text: 'workers: all\n', path: 'workers', message: 'must be an integer of at least 1, or auto' },
  { name: 'workers a list', text: 'workers: [2]\n', path: 'workers', message: 'must be an integer of at least 1, or auto' },
  { name: 'workers beyond the guard', text: 'workers: 100000\n', path: 'workers', message: 'must be at most 256' },
  { name: 'accessLog not a boolean', text: 'accessLog: maybe\n', path: 'accessLog', message: 'must be a boolean' },
  {
    name: 'service name with a space',
    text: 'services:\n  "my api":\n    source: consul\n',
    path: 'services.my api',
    message: 'service name must contain only letters, digits, ".", "_" and "-", and start with a letter or digit',
  },
  { name: 'service that is not a map', text: 'services:\n  api: consul\n', path: 'services.api', message: 'must be a map' },
  { name: 'document that is a list', text: '- listen: 8080\n', path: '', message: 'must be a map' },
  { name: 'consul url with another scheme', text: 'discovery: { consul: { url: "ftp://x" } }\n', path: 'discovery.consul.url', message: 'must be a URL like http://127.0.0.1:8500 (http or https)' },
  { name: 'consul consistency', text: 'discovery: { consul: { consistency: eventual } }\n', path: 'discovery.consul.consistency', message: 'must be one of default, stale, consistent' },
  { name: 'etcd username without password', text: 'discovery: { etcd: { username: u } }\n', path: 'discovery.etcd.password', message: 'is required with username' },
  { name: 'tls unknown field', text: svc('    source: consul\n    tls: { ca: ./ca.pem, verify: false }\n'), path: 'services.api.tls', message: 'unknown field "verify"' },
  { name: 'tls empty servername', text: svc('    source: consul\n    tls: { servername: "" }\n'), path: 'services.api.tls.servername', message: 'must not be empty' },
  { name: 'tls not a map', text: svc('    source: consul\n    tls: yes\n'), path: 'services.api.tls', message: 'must be a map' },
  { name: 'cache without maxEntries', text: svc('    source: consul\n    cache: { maxBytes: 1MiB }\n'), path: 'services.api.cache.maxEntries', message: 'is required' },
  { name: 'cache maxEntries zero', text: svc('    source: consul\n    cache: { maxEntries: 0, maxBytes: 1MiB }\n'), path: 'services.api.cache.maxEntries', message: 'must be at least 1' },
  { name: 'cache maxBytes not a size', text: svc('    source: consul\n    cache: { maxEntries: 10, maxBytes: lots }\n'), path: 'services.api.cache.maxBytes', message: 'must be a size like 64KiB or 1MiB' },
  { name: 'tls cert without key', text: svc('    source: consul\n    tls: { cert: ./client.pem }\n'), path: 'services.api.tls.key', message: 'is required with cert' },
  { name: 'tls key without cert', text: svc('    source: consul\n    tls: { key: ./client-key.pem }\n'), path: 'services.api.tls.cert', message: 'is required with key' },
  {
    name: 'register with port 0',
    text: 'register: { source: consul, serviceName: billing, address: 127.0.0.1, port: 0 }\n',
    path: 'register.port',
    message: 'must be at least 1',
  },
  {
    name: 'register with a named port',
    text: 'register: { source: consul, serviceName: billing, address: 127.0.0.1, port: http }\n',
    path: 'register.port',
    message: 'must be a number',
  },
  {
    name: 'register on a file source',
    text: 'register: { source: file, serviceName: billing, address: 127.0.0.1, port: 8080 }\n',
    path: 'register.source',
    message: 'must be one of consul, etcd',
  },
  {
    name: 'register check path without a slash',
    text: 'register: { source: etcd, serviceName: billing, address: 127.0.0.1, port: 8080, check: { path: health } }\n',
    path: 'register.check.path',
    message: 'must start with /',
  },
  {
    name: 'unset ${VAR}',
    text: svc('    source: consul\n    serviceName: ${FOO}\n'),
    path: 'services.api.serviceName',
    message: 'environment variable FOO is not set',
  },
  {
    name: 'unterminated ${',
    text: 'discovery: { consul: { token: "${TOKEN" } }\n',
    path: 'discovery.consul.token',
    message: 'unterminated variable reference "${TOKEN" (write $${ for a literal ${)',
  },
  {
    name: 'invalid variable name',
    text: 'discovery: { consul: { token: "${1TOKEN}" } }\n',
    path: 'discovery.consul.token',
    message: 'invalid variable reference "${1TOKEN}" (write $${ for a literal ${)',
  },
  {
    name: 'YAML: tab indentation',
    text: 'services:\n  api:\n\tsource: consul\n',
    path: '',
    message: /^YAML syntax error at line 3, column 1: Tabs are not allowed as indentation/,
  },
  {
    name: 'YAML: misaligned key',
    text: 'services:\n  api:\n    source: consul\n   strategy: weighted\n',
    path: '',
    message: /^YAML syntax error at line 4, column 1: /,
  },
  { name: 'YAML: duplicate key', text: 'listen: 8080\nadmin: 9000\nlisten: 8081\n', path: '', message: /^YAML syntax error at line 3, column 1: Map keys must be unique/ },
  { name: 'YAML: unknown alias', text: 'listen: *port\n', path: '', message: /^YAML error: Unresolved alias.*port/ },
  {
    name: 'JSON: duplicate key',
    format: 'json',
    text: '{\n  "listen": "127.0.0.1:8080",\n  "listen": 8081\n}',
    path: '',
    message: 'JSON syntax error at line 3, column 3: duplicate key "listen"',
  },
  {
    name: 'JSON: trailing comma',
    format: 'json',
    text: '{\n  "services": {\n    "api": { "source": "consul" },\n  }\n}',
    path: '',
    message: 'JSON syntax error at line 3, column 34: trailing comma (not allowed in JSON)',
  },
  {
    name: 'JSON: single quotes',
    format: 'json',
    text: "{\n  'listen': 8080\n}",
    path: '',
    message: "JSON syntax error at line 2, column 3: unexpected ''': expected a property name in double quotes",
  },
  {
    name: 'JSON: schema mistake',
    format: 'json',
    text: '{"services": {"api": {"source": "consul", "strategy": "fastest"}}}',
    path: 'services.api.strategy',
    message: 'must be one of round-robin, weighted, least-connections, consistent-hash',
  },
]

describe('parseConfig: each mistake is reported with its path and what is allowed', () => {
  it('the table has at least 15 different mistakes', () => {
    assert.ok(MISTAKES.length >= 15)
    assert.equal(new Set(MISTAKES.map((m) => m.name)).size, MISTAKES.length)
  })

  for (const m of MISTAKES) {
    it(m.name, () => {
      const issue = onlyIssueOf(() => parse(m.text, { format: m.format ?? 'yaml', env: m.env ?? {} }))
      assert.equal(issue.path, m.path)
      if (typeof m.message === 'string') assert.equal(issue.message, m.message)
      else assert.match(issue.message, m.message)
    })
  }

  it('the error message is one "<path>: <message>" line per issue', () => {
    assert.throws(
      () => parse(svc('    source: consul\n    strategy: random\n    maxConcurrent: 0\n')),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError)
        assert.equal(err.name, 'ConfigError')
        assert.equal(
          err.message,
          [
            'services.api.strategy: must be one of round-robin, weighted, least-connections, consistent-hash',
            'services.api.maxConcurrent: must be at least 1',
          ].join('\n'),
        )
        return true
      },
    )
  })

  it('an issue of the whole document has no path prefix in the message', () => {
    assert.throws(() => parse('lisen: 1\n'), { name: 'ConfigError', message: 'unknown field "lisen"' })
  })

  it('a syntax error names the file when one is given', () => {
    const issue = onlyIssueOf(() => parse('{"a": 1,}', { format: 'json', file: 'outrigger.json' }))
    assert.equal(issue.message, 'outrigger.json: JSON syntax error at line 1, column 8: trailing comma (not allowed in JSON)')
    const yamlIssue = onlyIssueOf(() => parse('a: 1\na: 2\n', { file: 'outrigger.yaml' }))
    assert.match(yamlIssue.message, /^outrigger\.yaml: YAML syntax error at line 2, column 1: /)
  })
})

describe('parseConfig: several mistakes', () => {
  it('reports them all, in document order', () => {
    const text = [
      'listen: nope',
      'admin: 127.0.0.1:9901',
      'services:',
      '  api:',
      '    foo: 1',
      '    source: consul',
      '    strategy: random',
      '    timeouts: { connect: 5 seconds, request: 0 }',
      '  b:',
      '    source: static',
      '  c:',
      '    source: consul',
      '    healthCheck: { panicThreshold: 150 }',
      'register: { source: consul, serviceName: b, address: 127.0.0.1, port: 0 }',
      '',
    ].join('\n')
    assert.deepEqual(issuesOf(() => parse(text)), [
      { path: 'listen', message: 'must be host:port, [ipv6]:port or a port, got "nope"' },
      { path: 'services.api', message: 'unknown field "foo"' },
      { path: 'services.api.strategy', message: 'must be one of round-robin, weighted, least-connections, consistent-hash' },
      { path: 'services.api.timeouts.connect', message: 'must be a duration like 250ms, 5s or 1m' },
      { path: 'services.api.timeouts.request', message: 'must be greater than 0' },
      { path: 'services.b.endpoints', message: 'is required for source static' },
      { path: 'services.c.healthCheck.panicThreshold', message: 'must be at most 100' },
      { path: 'register.port', message: 'must be at least 1' },
    ])
  })

  it('orders by the document, not by the schema', () => {
    // register is declared last in the schema and listen first; here the document has them the other way round.
    const text = 'register: { source: consul, serviceName: b, address: 127.0.0.1, port: 0 }\naccessLog: maybe\nlisten: nope\n'
    assert.deepEqual(
      issuesOf(() => parse(text)).map((i) => i.path),
      ['register.port', 'accessLog', 'listen'],
    )
  })

  it('reports every bad endpoint of a list', () => {
    const text = 'services:\n  x:\n    source: static\n    endpoints: ["a:0", "b:1", { address: c, port: 70000 }, "d"]\n'
    assert.deepEqual(issuesOf(() => parse(text)), [
      { path: 'services.x.endpoints[0]', message: 'port must be between 1 and 65535' },
      { path: 'services.x.endpoints[2].port', message: 'must be at most 65535' },
      { path: 'services.x.endpoints[3]', message: 'must be host:port or [ipv6]:port, got "d"' },
    ])
  })

  it('reports an unset variable once, not also the value it broke', () => {
    // Without FOO, listen would be "" (invalid) and the endpoint ":80" (invalid): only the variable is reported.
    const text = 'listen: ${FOO}\nservices:\n  x:\n    source: static\n    endpoints: ["${HOST}:80"]\n'
    assert.deepEqual(issuesOf(() => parse(text)), [
      { path: 'listen', message: 'environment variable FOO is not set' },
      { path: 'services.x.endpoints[0]', message: 'environment variable HOST is not set' },
    ])
  })

  it('reports every unset variable of one value', () => {
    assert.deepEqual(issuesOf(() => parse('discovery: { consul: { token: "${A}-${B}" } }\n')), [
      { path: 'discovery.consul.token', message: 'environment variable A is not set' },
      { path: 'discovery.consul.token', message: 'environment variable B is not set' },
    ])
  })

  it('an unknown field sorts at its own place in the document', () => {
    const text = svc('    strategy: random\n    foo: 1\n    source: consul\n')
    assert.deepEqual(
      issuesOf(() => parse(text)).map((i) => i.path + ' ' + i.message),
      ['services.api.strategy must be one of round-robin, weighted, least-connections, consistent-hash', 'services.api unknown field "foo"'],
    )
  })
})

describe('parseConfig: ${VAR} expansion', () => {
  it('substitutes variables inside strings, also in numbers and addresses', () => {
    const c = parse('listen: ${PORT}\nadmin: "${HOST}:${ADMIN_PORT}"\nservices:\n  a: { source: consul, maxConcurrent: "${MAX}" }\n', {
      env: { PORT: '18080', HOST: '10.1.2.3', ADMIN_PORT: '9000', MAX: '50' },
    })
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 18080 })
    assert.deepEqual(c.admin, { host: '10.1.2.3', port: 9000 })
    assert.equal(service(c, 'a').maxConcurrent, 50)
  })

  it('${VAR:-default} uses the default when VAR is unset or empty, and VAR otherwise', () => {
    const text = 'listen: "${HOST:-127.0.0.2}:${PORT:-8080}"\ndiscovery: { consul: { token: "${TOKEN:-none}", datacenter: "${DC:-dc9}" } }\n'
    const c = parse(text, { env: { PORT: '', DC: 'eu1' } })
    assert.deepEqual(c.listen, { host: '127.0.0.2', port: 8080 })
    assert.equal(c.discovery.consul.token, 'none')
    assert.equal(c.discovery.consul.datacenter, 'eu1')
  })

  it('a set but empty ${VAR} is the empty string, not an error', () => {
    assert.equal(parse('discovery: { consul: { token: "${TOKEN}" } }\n', { env: { TOKEN: '' } }).discovery.consul.token, '')
  })

  it('a YAML value cannot inject structure', () => {
    const evil = '{ x: 1 }\nregister: { source: consul }\n  - ['
    const c = parse('discovery: { consul: { token: "${T}" } }\n', { env: { T: evil } })
    assert.equal(c.discovery.consul.token, evil)
    assert.equal(c.register, undefined)
  })

  it('a value that looks like YAML stays a string and is validated as one', () => {
    const issue = onlyIssueOf(() => parse(svc('    source: consul\n    serviceName: ${N}\n'), { env: { N: 'api\n    source: static' } }))
    assert.equal(issue.path, 'services.api.serviceName')
    assert.match(issue.message, /^must contain only letters/)
  })

  it('a JSON value cannot inject structure', () => {
    const evil = '", "admin": "0.0.0.0:1", "x": "'
    const c = parse('{"discovery": {"consul": {"token": "${T}"}}}', { format: 'json', env: { T: evil } })
    assert.equal(c.discovery.consul.token, evil)
    assert.deepEqual(c.admin, { host: '127.0.0.1', port: 9901 })
  })

  it('a variable value is not expanded again', () => {
    const c = parse('discovery: { consul: { token: "${T}" } }\n', { env: { T: '${SECRET}', SECRET: 'leaked' } })
    assert.equal(c.discovery.consul.token, '${SECRET}')
  })

  it('$${ is a literal ${, even for an unset variable', () => {
    const c = parse('discovery: { consul: { token: "$${T}-$${U:-x}-${V}" } }\n', { env: { T: 'no', V: 'v' } })
    assert.equal(c.discovery.consul.token, '${T}-${U:-x}-v')
  })

  it('a lone $ and $VAR without braces stay as written', () => {
    const c = parse('discovery: { consul: { token: "a$b $HOME $" } }\n', { env: { HOME: '/root' } })
    assert.equal(c.discovery.consul.token, 'a$b $HOME $')
  })

  it('keys are not expanded', () => {
    const issue = onlyIssueOf(() => parse('services:\n  ${NAME}:\n    source: consul\n', { env: { NAME: 'api' } }))
    assert.equal(issue.path, 'services.${NAME}')
    assert.match(issue.message, /^service name must contain only letters/)
  })

  it('uses only the given environment, not process.env', () => {
    const name = 'OUTRIGGER_TEST_ONLY_IN_PROCESS_ENV'
    process.env[name] = 'from-process'
    try {
      const issue = onlyIssueOf(() => parse(`discovery: { consul: { token: "\${${name}}" } }\n`, { env: {} }))
      assert.equal(issue.message, `environment variable ${name} is not set`)
      const c = parseConfig(`discovery: { consul: { token: "\${${name}}" } }\n`, { format: 'yaml', baseDir: BASE_DIR })
      assert.equal(c.discovery.consul.token, 'from-process')
    } finally {
      delete process.env[name]
    }
  })
})

describe('parseConfig: special keys', () => {
  it('a top-level __proto__ key is an unknown field', () => {
    assert.deepEqual(onlyIssueOf(() => parse('{"__proto__": {"listen": 5}}', { format: 'json' })), { path: '', message: 'unknown field "__proto__"' })
  })

  it('a service named constructor is an ordinary service', () => {
    assert.deepEqual(
      parse('{"services": {"constructor": {"source": "consul"}}}', { format: 'json' }).services.map((s) => s.name),
      ['constructor'],
    )
  })

  it('a service named __proto__ is reported, not silently dropped', () => {
    const issue = onlyIssueOf(() => parse('services:\n  __proto__:\n    source: nope\n'))
    assert.equal(issue.path, 'services.__proto__')
  })

  it('a route header condition named __proto__ is reported, not silently dropped', () => {
    const text = '{"services": {"a": {"source": "consul", "routes": [{"pathPrefix": "/", "headers": {"__proto__": "x"}}]}}}'
    let routes: unknown
    try {
      routes = parse(text, { format: 'json' }).services[0]?.routes
    } catch (err) {
      assert.ok(err instanceof ConfigError)
      return
    }
    assert.deepEqual(routes, [{ pathPrefix: '/', stripPrefix: false, headers: { ['__proto__']: 'x' } }])
  })
})

describe('loadConfigFile', () => {
  let dir = ''
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'outrigger-config-test-'))
  })
  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('loads the full fixture and resolves relative paths against its folder', () => {
    const c = loadConfigFile(path.join(FIXTURES, 'full.yaml'), { CONSUL_TOKEN: 'tok' })
    assert.equal(c.discovery.consul.token, 'tok')
    assert.equal(c.discovery.stateDir, path.join(FIXTURES, '.outrigger-state'))
    assert.equal(service(c, 'web').path, path.join(FIXTURES, 'endpoints', 'web.yaml'))
    assert.equal(service(c, 'payments').tls?.key, path.join(FIXTURES, 'client-key.pem'))
    assert.deepEqual(c.services.map((s) => s.name), ['api', 'sessions', 'web', 'legacy', 'payments'])
  })

  it('reads a .json file as JSON', () => {
    const file = path.join(dir, 'conf.JSON')
    writeFileSync(file, '{"listen": 7000, "services": {"s": {"source": "file", "path": "eps.json"}}}')
    assert.equal(formatOf(file), 'json')
    const c = loadConfigFile(file, {})
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 7000 })
    assert.equal(service(c, 's').path, path.join(dir, 'eps.json'))
  })

  it('reads any other extension as YAML', () => {
    assert.equal(formatOf('/x/outrigger.yml'), 'yaml')
    assert.equal(formatOf('/x/outrigger.conf'), 'yaml')
    const file = path.join(dir, 'outrigger.conf')
    writeFileSync(file, 'listen: 7001\n')
    assert.deepEqual(loadConfigFile(file, {}).listen, { host: '127.0.0.1', port: 7001 })
  })

  it('a syntax error names the file as given', () => {
    const file = path.join(dir, 'broken.json')
    writeFileSync(file, '{\n  "listen": 1,\n}')
    assert.deepEqual(onlyIssueOf(() => loadConfigFile(file, {})), {
      path: '',
      message: `${file}: JSON syntax error at line 2, column 14: trailing comma (not allowed in JSON)`,
    })
  })

  it('a missing file is one issue saying so', () => {
    const file = path.join(dir, 'missing.yaml')
    assert.deepEqual(onlyIssueOf(() => loadConfigFile(file, {})), {
      path: '',
      message: `cannot read config file ${file}: no such file (ENOENT)`,
    })
  })

  it('a folder is one issue saying so', () => {
    assert.deepEqual(onlyIssueOf(() => loadConfigFile(dir, {})), {
      path: '',
      message: `cannot read config file ${dir}: is a directory (EISDIR)`,
    })
  })
})
