import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RouteConfig } from '../../src/config/types.ts'
import type { Routable } from '../../src/proxy/router.ts'
import { Router, normalizeHost, stripPathPrefix } from '../../src/proxy/router.ts'

type Headers = Readonly<Record<string, string | string[] | undefined>>

function route(r: Partial<RouteConfig>): RouteConfig {
  return { stripPrefix: false, ...r }
}

function service(name: string, routes: Partial<RouteConfig>[], hasDedicatedListener = false): { routable: Routable; target: string } {
  return { routable: { name, routes: routes.map(route), hasDedicatedListener }, target: name }
}

/** The service a request reaches, or null; `host` as a client writes it (normalised here, as the listener does). */
function target(router: Router<string>, host: string, path: string, method = 'GET', headers: Headers = {}): string | null {
  return router.match(normalizeHost(host), path, method, headers)?.target ?? null
}

describe('Router', () => {
  it('matches the host ignoring port and case', () => {
    const router = new Router([service('api', [{ host: 'Api.Internal' }]), service('web', [{ host: 'web.internal:8080' }])])
    const table: ReadonlyArray<[string, string | null]> = [
      ['api.internal', 'api'],
      ['API.INTERNAL:15001', 'api'],
      ['api.internal:80', 'api'],
      ['web.internal', 'web'],
      ['Web.Internal:9999', 'web'],
      ['api.internal.evil', null],
      ['', null],
    ]
    for (const [host, expected] of table) assert.equal(target(router, host, '/x'), expected, host)
  })

  it('tries the longest pathPrefix first, whatever the config order', () => {
    for (const services of [
      [service('short', [{ pathPrefix: '/api/' }]), service('long', [{ pathPrefix: '/api/v2/' }])],
      [service('long', [{ pathPrefix: '/api/v2/' }]), service('short', [{ pathPrefix: '/api/' }])],
    ]) {
      const router = new Router(services)
      assert.equal(target(router, 'h', '/api/v2/users'), 'long')
      assert.equal(target(router, 'h', '/api/v1/users'), 'short')
      assert.equal(target(router, 'h', '/api/'), 'short')
      assert.equal(target(router, 'h', '/other'), null)
    }
  })

  it('a host-only route counts as a prefix of length 0', () => {
    const router = new Router([service('byhost', [{ host: 'a.internal' }]), service('bypath', [{ pathPrefix: '/' }])])
    assert.deepEqual(
      router.routes.map((r) => r.target),
      ['bypath', 'byhost'],
    )
  })

  it('keeps config order among equal prefix lengths', () => {
    const router = new Router([
      service('first', [{ pathPrefix: '/same/' }]),
      service('second', [{ pathPrefix: '/same/' }, { host: 'h' }]),
      service('third', [{ host: 'h' }]),
    ])
    assert.equal(target(router, 'h', '/same/x'), 'first')
    assert.equal(target(router, 'h', '/x'), 'second')
    assert.deepEqual(
      router.routes.map((r) => r.target),
      ['first', 'second', 'second', 'third'],
    )
  })

  it('narrows routes by method (case-insensitive in config)', () => {
    const router = new Router([service('pay', [{ pathPrefix: '/pay/', methods: ['get', 'POST'] }]), service('fallback', [{ pathPrefix: '/' }])])
    assert.equal(target(router, 'h', '/pay/1', 'GET'), 'pay')
    assert.equal(target(router, 'h', '/pay/1', 'POST'), 'pay')
    assert.equal(target(router, 'h', '/pay/1', 'DELETE'), 'fallback')
  })

  it('narrows routes by headers: every one present with its exact value', () => {
    const router = new Router([
      service('acme', [{ pathPrefix: '/pay/', headers: { 'X-Tenant': 'acme', 'x-env': 'prod' } }]),
      service('fallback', [{ pathPrefix: '/' }]),
    ])
    const table: ReadonlyArray<[Headers, string]> = [
      [{ 'x-tenant': 'acme', 'x-env': 'prod' }, 'acme'],
      [{ 'x-tenant': ['other', 'acme'], 'x-env': 'prod' }, 'acme'],
      [{ 'x-tenant': 'acme' }, 'fallback'],
      [{ 'x-tenant': 'ACME', 'x-env': 'prod' }, 'fallback'],
      [{ 'x-tenant': ['other'], 'x-env': 'prod' }, 'fallback'],
      [{}, 'fallback'],
    ]
    for (const [headers, expected] of table) assert.equal(target(router, 'h', '/pay/1', 'GET', headers), expected, JSON.stringify(headers))
  })

  it('first match wins by method and header within the longest prefix, then falls back to shorter prefixes', () => {
    const router = new Router([
      service('admin', [{ pathPrefix: '/pay/admin/', headers: { 'x-role': 'admin' } }]),
      service('writes', [{ pathPrefix: '/pay/', methods: ['POST', 'PUT'] }]),
      service('acme', [{ pathPrefix: '/pay/', headers: { 'x-tenant': 'acme' } }]),
      service('reads', [{ pathPrefix: '/pay/', methods: ['GET'] }]),
      service('fallback', [{ pathPrefix: '/' }]),
    ])
    const table: ReadonlyArray<[method: string, path: string, headers: Headers, expected: string]> = [
      ['GET', '/pay/admin/x', { 'x-role': 'admin' }, 'admin'],
      ['POST', '/pay/admin/x', {}, 'writes'], // the longer prefix wants a header it lacks
      ['POST', '/pay/1', { 'x-tenant': 'acme' }, 'writes'], // both match: config order among equal prefixes
      ['GET', '/pay/1', { 'x-tenant': 'acme' }, 'acme'],
      ['GET', '/pay/1', {}, 'reads'],
      ['HEAD', '/pay/1', {}, 'fallback'], // methods match exactly: HEAD is not GET
      ['DELETE', '/pay/1', { 'x-tenant': 'other' }, 'fallback'],
    ]
    for (const [method, path, headers, expected] of table) assert.equal(target(router, 'h', path, method, headers), expected, `${method} ${path} ${JSON.stringify(headers)}`)
  })

  it('compiles each route\'s header rewrites once, null where a route has none', () => {
    const router = new Router([
      service('pay', [{ pathPrefix: '/pay/', requestHeaders: { set: { 'x-env': 'prod' }, remove: ['x-debug'] }, responseHeaders: { set: { 'x-served-by': 'outrigger' }, remove: [] } }]),
      service('plain', [{ pathPrefix: '/' }]),
    ])
    const [pay, plain] = router.routes
    assert.deepEqual([...pay!.requestHeaders!.drop], ['x-env', 'x-debug'])
    assert.deepEqual(pay!.requestHeaders!.set, ['x-env', 'prod'])
    assert.deepEqual(pay!.responseHeaders!.set, ['x-served-by', 'outrigger'])
    assert.equal(plain!.requestHeaders, null)
    assert.equal(plain!.responseHeaders, null)
  })

  it('gives a service with no routes and no dedicated listener an implicit host route on its key', () => {
    const router = new Router([service('Billing', [])])
    assert.equal(router.routes.length, 1)
    assert.equal(router.routes[0]!.host, 'billing')
    assert.equal(target(router, 'billing', '/anything', 'DELETE'), 'Billing')
    assert.equal(target(router, 'BILLING:15001', '/'), 'Billing')
    assert.equal(target(router, 'billing.internal', '/'), null)
  })

  it('gives no implicit route to a service with a dedicated listener', () => {
    const router = new Router([service('billing', [], true)])
    assert.equal(router.routes.length, 0)
    assert.equal(target(router, 'billing', '/'), null)
  })

  it('a service with a dedicated listener and routes keeps its routes on the shared listener', () => {
    const router = new Router([service('billing', [{ pathPrefix: '/bill/' }], true)])
    assert.equal(target(router, 'x', '/bill/1'), 'billing')
    assert.equal(target(router, 'billing', '/'), null)
  })

  it('compiles stripPrefix only where a pathPrefix is given', () => {
    const router = new Router([
      service('strip', [{ pathPrefix: '/api/', stripPrefix: true }]),
      service('keep', [{ pathPrefix: '/keep/' }]),
      service('hostonly', [{ host: 'h', stripPrefix: true }]),
    ])
    const byTarget = new Map(router.routes.map((r) => [r.target, r.stripPrefix]))
    assert.deepEqual(Object.fromEntries(byTarget), { strip: '/api/', keep: null, hostonly: null })
  })
})

describe('stripPathPrefix', () => {
  it('removes the prefix and keeps a leading slash', () => {
    const table: ReadonlyArray<[string, string, string]> = [
      ['/api/users', '/api/', '/users'],
      ['/api/users', '/api', '/users'],
      ['/api/', '/api/', '/'],
      ['/api', '/api', '/'],
      ['/api?q=1', '/api', '/?q=1'],
      ['/api/v2/x?y=1', '/api/', '/v2/x?y=1'],
    ]
    for (const [path, prefix, expected] of table) assert.equal(stripPathPrefix(path, prefix), expected, `${path} less ${prefix}`)
  })
})

describe('normalizeHost', () => {
  it('lower-cases and drops the port, IPv6 literals included', () => {
    const table: ReadonlyArray<[string, string]> = [
      ['Api.Internal:8080', 'api.internal'],
      ['api.internal', 'api.internal'],
      ['[::1]:80', '::1'],
      ['[::1]', '::1'],
      ['[2001:DB8::1]:443', '2001:db8::1'],
      ['127.0.0.1:15001', '127.0.0.1'],
      ['', ''],
    ]
    for (const [input, expected] of table) assert.equal(normalizeHost(input), expected, input)
  })
})
