import { EventEmitter } from 'node:events'
import Consul from 'consul'
import pRetry from 'p-retry'
import type { Logger } from 'pino'
import type { ConsulDiscoveryConfig, ServiceConfig } from '../config/types.ts'
import type { DiscoveryAdapter, DiscoveryListener, Endpoint } from './types.ts'
import { endpointKey } from './types.ts'

/** Consul's docs: rate-limit the blocking loop, since an answer may come back at once without any change. */
export const MIN_QUERY_INTERVAL_MS = 50
/** Reconnect backoff while Consul cannot be read (jittered, doubling). */
export const RETRY_MIN_MS = 200
export const RETRY_MAX_MS = 10_000

export { CONSUL_CONNECTIONS_WARNING } from './consul-limits.ts'
const CONNECTION_LIMIT_HINT =
  'the agent may be refusing connections beyond limits.http_max_conns_per_client (default 200 per client address; outrigger holds one per consul service)'

/** One entry of `/v1/health/service/<name>`, as far as we read it. */
export interface ConsulHealthEntry {
  Node?: { Address?: string }
  Service?: { Address?: string; Port?: number; Weights?: { Passing?: number }; Meta?: Record<string, string> | null }
}

/**
 * The `consul` source: `GET /v1/health/service/<serviceName>?passing=true` as a blocking query.
 *
 * Index handling as Consul's documentation requires: the first query does not block; each answer's
 * `X-Consul-Index` is the next query's `index`; an index that goes backwards (a restarted or
 * replaced server) resets to 0, and one below 1 is raised to 1. The loop is rate-limited, since an
 * answer is no proof of change; answers that change nothing deliver nothing. While Consul cannot
 * be read, the last set stays in use, the failure is reported once per streak, and the query is
 * retried with jittered exponential backoff (p-retry).
 *
 * The `consul` package is used with `includeResponse` to see the index header, and with its
 * cancellable context rather than its `watch()`, which has no rate limit and no jitter.
 */
export class ConsulDiscovery implements DiscoveryAdapter {
  readonly source = 'consul'
  readonly #service: ServiceConfig
  readonly #config: ConsulDiscoveryConfig
  readonly #logger: Logger
  readonly #client: Consul
  readonly #abort = new AbortController()
  /** Cancels the blocking query in flight (the consul package listens for 'cancel'). */
  readonly #ctx = Object.assign(new EventEmitter(), { includeResponse: true })
  #running: Promise<void> | null = null
  #index = 0
  #last: string | null = null

  constructor(service: ServiceConfig, config: ConsulDiscoveryConfig, logger: Logger) {
    this.#service = service
    this.#config = config
    this.#logger = logger
    const defaults: Record<string, unknown> = {}
    if (config.token !== '') defaults.token = config.token
    if (config.datacenter !== undefined) defaults.dc = config.datacenter
    if (config.consistency === 'stale') defaults.stale = true
    if (config.consistency === 'consistent') defaults.consistent = true
    this.#client = consulClient(config.url, defaults)
  }

  start(listener: DiscoveryListener): void {
    // Never call back synchronously: the loop's first step is behind a timer.
    this.#running = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#loop(listener))
  }

  async stop(): Promise<void> {
    this.#abort.abort()
    this.#ctx.emit('cancel')
    await this.#running?.catch(() => undefined)
    this.#client.destroy()
  }

  async #loop(listener: DiscoveryListener): Promise<void> {
    const signal = this.#abort.signal
    while (!signal.aborted) {
      const started = Date.now()
      let entries: ConsulHealthEntry[]
      try {
        entries = await pRetry(() => this.#query(), {
          retries: Number.POSITIVE_INFINITY,
          minTimeout: RETRY_MIN_MS,
          maxTimeout: RETRY_MAX_MS,
          randomize: true,
          signal,
          onFailedAttempt: ({ error }) => {
            if (signal.aborted) return
            // A failure may mean a new server whose index restarted: ask afresh, without blocking.
            // (The cluster logs the first failure of a streak and the recovery.)
            this.#index = 0
            listener.onError(error)
          },
        })
      } catch {
        return // aborted: stop() was called
      }
      if (signal.aborted) return
      const endpoints = consulEndpoints(entries, this.#logger)
      const text = JSON.stringify(endpoints)
      if (text !== this.#last) {
        this.#last = text
        try {
          listener.onUpdate(endpoints)
        } catch (err) {
          // The loop must outlive a failing consumer, or discovery of this service stops for good.
          this.#logger.error({ err }, 'applying consul endpoints failed')
        }
      }
      const elapsed = Date.now() - started
      if (elapsed < MIN_QUERY_INTERVAL_MS) await sleep(MIN_QUERY_INTERVAL_MS - elapsed, signal)
    }
  }

  /** One (blocking, after the first) query; updates the index. Rejects with a plain Error. */
  async #query(): Promise<ConsulHealthEntry[]> {
    const blocking = this.#index > 0
    const options: Record<string, unknown> = {
      service: this.#service.serviceName,
      passing: true,
      ctx: this.#ctx,
      // Consul adds up to wait/16 of jitter; allow for it and for a slow answer.
      timeout: blocking ? this.#config.waitMs + this.#config.waitMs / 16 + 5000 : 10_000,
    }
    if (this.#service.tags.length > 0) options.tag = this.#service.tags
    if (blocking) {
      options.index = String(this.#index)
      options.wait = `${Math.round(this.#config.waitMs)}ms`
    }
    let res: { headers: Record<string, string | string[] | undefined> }
    let body: unknown
    try {
      ;[res, body] = (await this.#client.health.service(options as unknown as Parameters<Consul['health']['service']>[0])) as unknown as [typeof res, unknown]
    } catch (err) {
      // p-retry does not retry TypeErrors; everything here is worth retrying.
      const message = (err as Error).message
      const hint = /socket hang up|other side closed|ECONNRESET/i.test(message) ? `; ${CONNECTION_LIMIT_HINT}` : ''
      throw new Error(`consul ${this.#config.url}: ${message}${hint}`, { cause: err })
    }
    const index = Number(res.headers['x-consul-index'])
    if (!Number.isFinite(index)) this.#index = 0
    else if (index < this.#index) this.#index = 0 // went backwards: start over
    else this.#index = Math.max(1, index)
    if (!Array.isArray(body)) throw new Error(`consul ${this.#config.url}: unexpected answer for ${this.#service.serviceName}`)
    return body as ConsulHealthEntry[]
  }
}

/**
 * Endpoints from a health answer: address = `Service.Address`, else `Node.Address`; weight =
 * `Service.Meta.weight` when it is a positive integer, else `Service.Weights.Passing`, else 1.
 * Entries without an address or port are skipped with a warning. Sorted, so equal sets compare equal.
 */
export function consulEndpoints(entries: readonly ConsulHealthEntry[], logger?: Logger): Endpoint[] {
  const out: Endpoint[] = []
  for (const entry of entries) {
    const s = entry.Service ?? {}
    const address = s.Address !== undefined && s.Address !== '' ? s.Address : entry.Node?.Address
    const port = s.Port
    if (address === undefined || address === '' || port === undefined || !(port >= 1 && port <= 65535)) {
      logger?.warn({ entry: { address, port } }, 'consul entry without a usable address and port; skipped')
      continue
    }
    const meta = s.Meta ?? {}
    let weight = s.Weights?.Passing ?? 1
    if (meta.weight !== undefined) {
      const w = Number(meta.weight)
      if (Number.isInteger(w) && w >= 1) weight = w
      else logger?.warn({ endpoint: endpointKey(address, port), weight: meta.weight }, 'Service.Meta.weight is not a positive integer; ignored')
    }
    if (!(Number.isInteger(weight) && weight >= 1)) weight = 1
    out.push({ address, port, weight, meta })
  }
  out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port))
  return out
}

/** A client for `url` (the schema guarantees http or https). */
export function consulClient(url: string, defaults: Record<string, unknown> = {}): Consul {
  const u = new URL(url)
  const secure = u.protocol === 'https:'
  return new Consul({ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port === '' ? (secure ? 443 : 80) : Number(u.port), secure, defaults })
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })
}
