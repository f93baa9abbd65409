import http from 'node:http'
import type net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Route , Router} from './router.ts'
import { normalizeHost, stripPathPrefix } from './router.ts'
import { sendError, writeRawError } from './errors.ts'
import { clientIp, upstreamRequestHeaders } from './headers.ts'
import { Exchange } from './forwarder.ts'
import { applyHeaderRewrite } from './header-rewrite.ts'
import { UpgradeExchange } from './upgrade.ts'
import type { ServiceRuntime } from './service-runtime.ts'
import type { LimitsConfig } from '../config/types.ts'
import { hashString } from '../balancer/hash.ts'
import type { FastRoute, LaneOwner } from './fast/lane.ts'
import { FastLane, headersOf } from './fast/lane.ts'
import type { RequestHead } from './fast/http1.ts'

/** `OUTRIGGER_FAST_LANE=0` sends every connection through node:http and undici (for comparison). */
const FAST_LANE = process.env.OUTRIGGER_FAST_LANE !== '0'
const NO_HEADERS: Record<string, string> = Object.freeze({})

/** Where requests arriving on one listener go. */
export type ListenerTarget = { kind: 'shared'; router: Router<ServiceRuntime> } | { kind: 'dedicated'; service: ServiceRuntime }

export interface ProxyListenerOptions {
  /** Upstream idle keep-alive time for client connections (ms). */
  keepAliveTimeoutMs: number
  /** Access-log sink or null; a reload may switch it (see `setAccessLog`). */
  accessLog: Logger | null
  logger: Logger
  /** Client limits (`limits` in the config). */
  limits: LimitsConfig
}

interface Resolved {
  service: ServiceRuntime
  path: string
  /** Host to send upstream for an absolute-form request (its authority); null keeps the Host header. */
  hostOverride: string | null
  /** The route that matched; null on a dedicated listener. */
  route: Route<ServiceRuntime> | null
}

/**
 * One proxy listener (the shared one, or a service's dedicated one). Routes each request to its
 * service, rewrites headers once, and hands it to an Exchange. Never throws on the data path: every
 * failure becomes one of the contract's error answers.
 */
export class ProxyListener implements LaneOwner {
  readonly server: http.Server
  target: ListenerTarget
  readonly #options: ProxyListenerOptions
  /** Requests accepted and not yet answered, across all services on this listener. */
  #active = 0
  #idleWaiters: Array<() => void> = []
  #draining = false
  #lane: FastLane | null = null
  #nodeConnection: ((socket: net.Socket) => void) | null = null

  constructor(target: ListenerTarget, options: ProxyListenerOptions) {
    this.target = target
    this.#options = options
    const limits = options.limits
    this.server = http.createServer({
      keepAliveTimeout: options.keepAliveTimeoutMs,
      // A client slower than these gets 408 and a closed connection (slowloris). node checks them
      // every connectionsCheckingInterval (30 s by default), so check often enough for the limits.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      maxHeaderSize: limits.maxHeaderSizeBytes,
      // Never lenient: ambiguous framing (Content-Length with Transfer-Encoding...) is a 400, as by default.
      insecureHTTPParser: false,
    })
    // The fast lane takes each new connection first; node's own connection handler (which sets
    // up llhttp) gets the ones the lane hands over. See src/proxy/fast/lane.ts.
    if (FAST_LANE) {
      const nodeConnection = this.server.listeners('connection')[0] as (socket: net.Socket) => void
      this.server.removeListener('connection', nodeConnection)
      this.#nodeConnection = nodeConnection
      this.#lane = new FastLane(this)
      this.server.on('connection', this.#lane.accept)
    }
    this.server.on('request', this.#onRequest)
    this.server.on('upgrade', this.#onUpgrade)
    this.server.on('connect', this.#onConnect)
    // Beyond it node closes each new connection at once (and emits 'drop').
    if (limits.maxConnections !== undefined) this.server.maxConnections = limits.maxConnections
  }

  /**
   * Applies new client limits (a reload). Timeouts and the connection cap change in place; the
   * header size is fixed when node's parser is set up, so it returns false when only a new
   * listener (a restart, or a move to another port) would apply it.
   */
  setLimits(limits: LimitsConfig): boolean {
    const previous = this.#options.limits
    this.#options.limits = limits
    this.server.headersTimeout = limits.headersTimeoutMs
    this.server.requestTimeout = limits.requestTimeoutMs
    this.server.maxConnections = limits.maxConnections ?? Infinity
    return previous.maxHeaderSizeBytes === limits.maxHeaderSizeBytes
  }

  /** Turns the access log on (a logger) or off (null) for requests accepted from now on. */
  setAccessLog(accessLog: Logger | null): void {
    this.#options.accessLog = accessLog
  }

  get activeRequests(): number {
    return this.#active
  }

  // LaneOwner: what the fast lane reads and calls.
  get accessLog(): Logger | null {
    return this.#options.accessLog
  }

  get limits(): LimitsConfig {
    return this.#options.limits
  }

  get keepAliveTimeoutMs(): number {
    return this.#options.keepAliveTimeoutMs
  }

  get draining(): boolean {
    return this.#draining
  }

  requestStarted(): void {
    this.#active++
  }

  readonly requestEnded = (): void => {
    this.#active--
    if (this.#active === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  handoff(socket: net.Socket, pending: Buffer | null): void {
    this.#nodeConnection!.call(this.server, socket)
    // node's parser reads this socket from now on; what the lane read first goes to it the same way.
    if (pending !== null && !socket.destroyed) socket.emit('data', pending)
  }

  resolveFast(head: RequestHead): FastRoute | null {
    const target = this.target
    if (target.kind === 'dedicated') return { service: target.service, path: head.target, requestHeaders: null, responseHeaders: null }
    const router = target.router
    const route = router.match(normalizeHost(head.host), head.target, head.method, router.matchesHeaders ? headersOf(head) : NO_HEADERS)
    if (route === null) return null
    return {
      service: route.target,
      path: route.stripPrefix === null ? head.target : stripPathPrefix(head.target, route.stripPrefix),
      requestHeaders: route.requestHeaders,
      responseHeaders: route.responseHeaders,
    }
  }

  /** `reusePort`: bind beside other processes' sockets on the same port (workers; SO_REUSEPORT). */
  listen(host: string, port: number, reusePort = false): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      // exclusive: a node:cluster worker binds its own socket instead of asking the primary for one.
      this.server.listen({ port, host, exclusive: reusePort, reusePort }, () => {
        this.server.off('error', reject)
        const address = this.server.address()
        resolve(typeof address === 'object' && address !== null ? { host: address.address, port: address.port } : { host, port })
      })
    })
  }

  /**
   * Stops accepting connections; resolves when every accepted request is answered. Meanwhile each
   * response says `Connection: close`, so clients stop reusing their connections; once the last
   * request is answered the remaining (idle) connections are closed at once, in the same tick, so
   * no request can arrive on a kept-alive connection after the services behind it are closed (the
   * fault suite's SIGTERM test saw one answered 503 no_healthy_endpoint that way).
   */
  async drain(): Promise<void> {
    this.#draining = true
    this.server.close()
    this.server.closeIdleConnections()
    this.#lane?.drain()
    if (this.#active > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
    this.server.closeAllConnections()
    this.#lane?.closeAll()
  }

  /** Closes every connection now (the end of the shutdown timeout). */
  destroy(): void {
    this.server.closeAllConnections()
    this.#lane?.closeAll()
  }

  #resolve(req: IncomingMessage): Resolved | null | 'bad' {
    let url = req.url ?? '/'
    let hostOverride: string | null = null
    if (url.charCodeAt(0) !== 47 /* '/' */) {
      // Absolute form (`GET http://api/users`): an app using us as its HTTP proxy.
      const schemeEnd = url.indexOf('://')
      if (schemeEnd === -1) return 'bad'
      const authorityStart = schemeEnd + 3
      let pathStart = url.indexOf('/', authorityStart)
      const queryStart = url.indexOf('?', authorityStart)
      if (pathStart === -1 || (queryStart !== -1 && queryStart < pathStart)) pathStart = queryStart
      hostOverride = url.slice(authorityStart, pathStart === -1 ? undefined : pathStart)
      url = pathStart === -1 ? '/' : url[pathStart] === '?' ? `/${url.slice(pathStart)}` : url.slice(pathStart)
      if (hostOverride === '') return 'bad'
    }
    const target = this.target
    if (target.kind === 'dedicated') return { service: target.service, path: url, hostOverride, route: null }
    const host = normalizeHost(hostOverride ?? req.headers.host ?? '')
    const route: Route<ServiceRuntime> | null = target.router.match(host, url, req.method!, req.headers)
    if (route === null) return null
    return { service: route.target, path: route.stripPrefix === null ? url : stripPathPrefix(url, route.stripPrefix), hostOverride, route }
  }

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.#active++
    // node then answers `Connection: close` and closes the connection after this response.
    if (this.#draining) res.shouldKeepAlive = false
    res.once('close', this.requestEnded)
    const resolved = this.#resolve(req)
    if (resolved === 'bad') {
      res.writeHead(400, { 'content-type': 'application/json', 'x-outrigger-error': 'bad_request', connection: 'close' })
      res.end('{"error":"bad_request","service":null}')
      return
    }
    if (resolved === null) {
      sendError(res, 'no_route', null)
      return
    }
    const service = resolved.service
    if (service.rateLimit !== null) {
      const retryAfterSeconds = service.rateLimit.take()
      if (retryAfterSeconds !== 0) {
        rateLimited(res, service, retryAfterSeconds)
        return
      }
    }
    const client = clientIp(req.socket.remoteAddress)
    const { headers, host } = upstreamRequestHeaders(req.rawHeaders, client, 'http', resolved.hostOverride)
    const route = resolved.route
    if (route !== null && route.requestHeaders !== null) applyHeaderRewrite(headers, route.requestHeaders)
    let hash = -1
    let stickyToken: string | null = null
    if (service.hashKey !== null) {
      const key = service.hashKey(req.headers, resolved.path, client)
      if (key !== null && key !== '') {
        hash = hashString(key)
        if (service.stickyCookie !== null) stickyToken = key
      }
    }
    const te = req.headers['transfer-encoding']
    const cl = req.headers['content-length']
    const hasBody = te !== undefined || (cl !== undefined && cl !== '0')
    new Exchange(req, res, service, {
      path: resolved.path,
      headers,
      hasBody,
      contentLength: cl === undefined ? -1 : Number(cl),
      hash,
      stickyToken,
      accessLog: this.#options.accessLog,
      responseHeaders: route === null ? null : route.responseHeaders,
      tap: service.cache === null ? null : service.cache.begin(req, resolved.path, host, headers),
    }).start()
  }


  readonly #onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const resolved = this.#resolve(req)
    if (resolved === 'bad') {
      writeRawError(socket, 400, 'bad_request', null)
      return
    }
    if (resolved === null) {
      writeRawError(socket, 404, 'no_route', null)
      return
    }
    const limit = resolved.service.rateLimit
    const retryAfterSeconds = limit === null ? 0 : limit.take()
    if (retryAfterSeconds !== 0) {
      resolved.service.metrics.request(429)
      writeRawError(socket, 429, 'rate_limited', resolved.service.name, `retry-after: ${retryAfterSeconds}\r\n`)
      return
    }
    const client = clientIp(req.socket.remoteAddress)
    const { headers } = upstreamRequestHeaders(req.rawHeaders, client, 'http', resolved.hostOverride)
    if (resolved.route !== null && resolved.route.requestHeaders !== null) applyHeaderRewrite(headers, resolved.route.requestHeaders)
    const key = resolved.service.hashKey?.(req.headers, resolved.path, client) ?? null
    const hash = key === null || key === '' ? -1 : hashString(key)
    const stickyToken = resolved.service.stickyCookie !== null && hash !== -1 ? key : null
    new UpgradeExchange(req, socket, head, resolved.service, resolved.path, headers, hash, stickyToken).start()
  }

  readonly #onConnect = (_req: IncomingMessage, socket: Duplex): void => {
    writeRawError(socket, 405, 'method_not_allowed', null, 'allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE\r\n')
  }
}

/** 429 `rate_limited` with `Retry-After`, counted like any answered request of the service. */
function rateLimited(res: ServerResponse, service: ServiceRuntime, retryAfterSeconds: number): void {
  sendError(res, 'rate_limited', service.name, { 'retry-after': String(retryAfterSeconds) })
  service.metrics.request(429)
}
