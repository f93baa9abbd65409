import http from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import type { Metrics } from '../observability/metrics.ts'
import { serviceView } from './services-view.ts'
import type { ServiceView } from './services-view.ts'
import type { PoliciesView } from '../policies/policies.ts'
import { STATUS_PAGE_HEADERS, STATUS_PAGE_HTML } from './status-page.ts'

/** What the admin API reads; supplied by the sidecar so a reload can swap the clusters. */
export interface AdminSource {
  clusters(): readonly ServiceCluster[]
  /** False once shutdown began: `/readyz` turns 503 so an orchestrator stops sending. */
  accepting(): boolean
  /** A service's traffic policies as `/api/services` shows them; absent or null: none. */
  policies?(service: string): PoliciesView | null
  /** The `/api/services` document when it is not this process's clusters alone (merged over workers). */
  servicesView?(): Promise<ServiceView[]>
  /** The `/metrics` text when it is not this process's registry alone (aggregated over workers). */
  metricsText?(): Promise<string>
}

/** The admin listener: `/healthz`, `/readyz`, `/metrics`, `/api/services` and the status page. */
export class AdminServer {
  readonly server: http.Server
  readonly #source: AdminSource
  readonly #metrics: Metrics
  readonly #logger: Logger
  /** `Bearer <adminToken>`, or null when the API is open. */
  #authorization: Buffer | null

  constructor(source: AdminSource, metrics: Metrics, logger: Logger, adminToken?: string) {
    this.#source = source
    this.#metrics = metrics
    this.#logger = logger
    this.#authorization = adminToken === undefined ? null : Buffer.from(`Bearer ${adminToken}`)
    this.server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#logger.error({ err }, 'admin request failed')
        if (!res.headersSent) send(res, 500, 'application/json', '{"error":"internal"}')
        else res.destroy()
      })
    })
  }

  /** A reload set, changed or removed the token: it applies to the next request. */
  setToken(adminToken: string | undefined): void {
    this.#authorization = adminToken === undefined ? null : Buffer.from(`Bearer ${adminToken}`)
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        const a = this.server.address()
        resolve(typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host, port })
      })
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  #authorized(req: IncomingMessage): boolean {
    return authorizedBy(this.#authorization!, req.headers.authorization)
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      send(res, 405, 'application/json', '{"error":"method_not_allowed"}')
      return
    }
    // Probes stay open: an orchestrator's liveness and readiness checks carry no token.
    if (this.#authorization !== null && path !== '/healthz' && path !== '/readyz' && !this.#authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer realm="outrigger"')
      send(res, 401, 'application/json', '{"error":"unauthorized"}')
      return
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain; charset=utf-8', 'ok\n')
        return
      case '/readyz': {
        const waiting = this.#source.clusters().filter((c) => !c.ready).map((c) => c.name)
        if (!this.#source.accepting()) send(res, 503, 'application/json', JSON.stringify({ ready: false, reason: 'shutting down' }))
        else if (waiting.length > 0) send(res, 503, 'application/json', JSON.stringify({ ready: false, waiting }))
        else send(res, 200, 'application/json', '{"ready":true}')
        return
      }
      case '/metrics': {
        const body = await (this.#source.metricsText?.() ?? this.#metrics.registry.metrics())
        send(res, 200, this.#metrics.registry.contentType, body)
        return
      }
      case '/api/services':
        send(res, 200, 'application/json', JSON.stringify((await this.#source.servicesView?.()) ?? this.#source.clusters().map((c) => serviceView(c, this.#source.policies?.(c.name) ?? {}))))
        return
      case '/':
        send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE_HTML, STATUS_PAGE_HEADERS)
        return
      default:
        send(res, 404, 'application/json', '{"error":"not_found"}')
    }
  }
}

/** Constant-time comparison of the Authorization header with the expected one. */
function authorizedBy(expected: Buffer, header: string | undefined): boolean {
  if (header === undefined) return false
  const got = Buffer.from(header)
  return got.length === expected.length && timingSafeEqual(got, expected)
}

function send(res: ServerResponse, status: number, type: string, body: string, extra?: Readonly<Record<string, string>>): void {
  res.writeHead(status, { ...extra, 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
