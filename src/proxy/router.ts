import type { RouteConfig } from '../config/types.ts'
import type { CompiledHeaderRewrite } from './header-rewrite.ts'
import { compileHeaderRewrite } from './header-rewrite.ts'

/** A compiled route: what to match and which service answers. */
export interface Route<T> {
  readonly target: T
  /** Lower-cased, without port; null matches any host. */
  readonly host: string | null
  readonly pathPrefix: string | null
  /** Prefix to remove from the path before forwarding; null keeps the path. */
  readonly stripPrefix: string | null
  readonly methods: ReadonlySet<string> | null
  /** Lower-cased names and exact values; every one must be present. */
  readonly headers: ReadonlyArray<readonly [string, string]> | null
  /** Applied to the upstream request's headers; null when the route rewrites none. */
  readonly requestHeaders: CompiledHeaderRewrite | null
  /** Applied to the upstream response's headers; null when the route rewrites none. */
  readonly responseHeaders: CompiledHeaderRewrite | null
}

/** Something with the routes of a service on the shared listener. */
export interface Routable {
  readonly name: string
  readonly routes: readonly RouteConfig[]
  /** Services with a dedicated listener and no routes are not reachable on the shared one. */
  readonly hasDedicatedListener: boolean
}

/** `Api.Internal:8080` → `api.internal`; `[::1]:80` → `::1`. */
export function normalizeHost(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return (end === -1 ? host : host.slice(1, end)).toLowerCase()
  }
  const colon = host.indexOf(':')
  return (colon === -1 ? host : host.slice(0, colon)).toLowerCase()
}

/**
 * Routing on the shared listener. First match wins, and routes are tried longest `pathPrefix` first
 * (routes without one count as length 0), keeping config order among equals, so `/api/v2/` beats
 * `/api/` wherever each was written. A service with neither routes nor a dedicated listener gets an
 * implicit `host: <service key>` route.
 */
export class Router<T> {
  readonly #routes: Route<T>[]

  constructor(services: ReadonlyArray<{ routable: Routable; target: T }>) {
    const routes: Route<T>[] = []
    for (const { routable, target } of services) {
      if (routable.routes.length === 0) {
        if (!routable.hasDedicatedListener) {
          routes.push({ target, host: routable.name.toLowerCase(), pathPrefix: null, stripPrefix: null, methods: null, headers: null, requestHeaders: null, responseHeaders: null })
        }
        continue
      }
      for (const r of routable.routes) {
        routes.push({
          target,
          host: r.host === undefined ? null : normalizeHost(r.host),
          pathPrefix: r.pathPrefix ?? null,
          stripPrefix: r.stripPrefix && r.pathPrefix !== undefined ? r.pathPrefix : null,
          methods: r.methods === undefined ? null : new Set(r.methods.map((m) => m.toUpperCase())),
          headers: r.headers === undefined ? null : Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v] as const),
          requestHeaders: compileHeaderRewrite(r.requestHeaders),
          responseHeaders: compileHeaderRewrite(r.responseHeaders),
        })
      }
    }
    // Array.prototype.sort is stable: config order survives among equal prefix lengths.
    routes.sort((a, b) => (b.pathPrefix?.length ?? 0) - (a.pathPrefix?.length ?? 0))
    this.#routes = routes
    this.matchesHeaders = routes.some((r) => r.headers !== null)
  }

  /** Some route matches on headers (else `match` never reads them). */
  readonly matchesHeaders: boolean

  get routes(): readonly Route<T>[] {
    return this.#routes
  }

  /**
   * The first route matching the request, or null. `host` is already normalised; `headers` is the
   * node request's lower-cased header map (only read when a route matches on headers).
   */
  match(host: string, path: string, method: string, headers: Readonly<Record<string, string | string[] | undefined>>): Route<T> | null {
    const routes = this.#routes
    for (let i = 0; i < routes.length; i++) {
      const r = routes[i]!
      if (r.host !== null && r.host !== host) continue
      if (r.pathPrefix !== null && !path.startsWith(r.pathPrefix)) continue
      if (r.methods !== null && !r.methods.has(method)) continue
      if (r.headers !== null && !headersMatch(r.headers, headers)) continue
      return r
    }
    return null
  }
}

function headersMatch(wanted: ReadonlyArray<readonly [string, string]>, headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  for (let i = 0; i < wanted.length; i++) {
    const [name, value] = wanted[i]!
    const got = headers[name]
    if (got === undefined) return false
    if (Array.isArray(got) ? !got.includes(value) : got !== value) return false
  }
  return true
}

/** Removes `prefix` from `path`, keeping a leading slash: `/api/users` less `/api/` is `/users`. */
export function stripPathPrefix(path: string, prefix: string): string {
  const rest = path.slice(prefix.length)
  return rest.startsWith('/') ? rest : `/${rest}`
}
