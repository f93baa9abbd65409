/**
 * Steady concurrent load for the fault suite: `concurrency` clients each loop one request after
 * another until stopped, and every request's fate is counted: its status and `x-outrigger-error`
 * code, the client error it ended with, a response cut short, or `hang` when it got no answer
 * within `hangMs`. A fault test states which fates are allowed and prints all of them.
 */
import type { TestContext } from 'node:test'
import { Agent, request } from 'undici'
import type { Handler, RunningSidecar, Upstream } from '../helpers.ts'
import { startSidecar, startUpstream } from '../helpers.ts'

export interface LoadOptions {
  /** Base URL of the listener, e.g. `http://127.0.0.1:PORT`. */
  url: string
  /** Host header (the service's name on the shared listener). */
  host: string
  concurrency?: number
  method?: string
  path?: string
  body?: string | Buffer
  headers?: Record<string, string>
  /** A request without a complete answer after this long counts as `hang` (ms). */
  hangMs?: number
  /** Pause between one client's requests (ms); 0 loops back at once. */
  pauseMs?: number
}

export type Fates = Record<string, number>

export class Load {
  readonly fates: Fates = {}
  readonly #options: Required<Omit<LoadOptions, 'body'>> & { body: string | Buffer | undefined }
  readonly #agent: Agent
  #running = false
  #workers: Promise<void>[] = []
  /** Requests completed, of any fate. */
  total = 0

  constructor(options: LoadOptions) {
    this.#options = {
      concurrency: 16,
      method: 'GET',
      path: '/',
      headers: {},
      hangMs: 15_000,
      pauseMs: 0,
      ...options,
      body: options.body,
    }
    this.#agent = new Agent({ connections: this.#options.concurrency, headersTimeout: this.#options.hangMs, bodyTimeout: this.#options.hangMs })
  }

  start(): this {
    this.#running = true
    for (let i = 0; i < this.#options.concurrency; i++) this.#workers.push(this.#worker())
    return this
  }

  /** Stops the clients, waits for the requests in progress, and returns the fates. */
  async stop(): Promise<Fates> {
    this.#running = false
    await Promise.all(this.#workers)
    await this.#agent.destroy()
    return this.fates
  }

  /** Count of fates other than the given ones. */
  other(allowed: readonly string[]): Fates {
    const out: Fates = {}
    for (const [k, v] of Object.entries(this.fates)) if (!allowed.includes(k)) out[k] = v
    return out
  }

  /** Waits until `n` more requests have completed (any fate): proof the load is flowing. */
  async advance(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.total + n
    const deadline = Date.now() + timeoutMs
    while (this.total < target) {
      if (Date.now() > deadline) throw new Error(`load made no progress: ${this.total}/${target} after ${timeoutMs} ms; fates ${JSON.stringify(this.fates)}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  /** Waits until a request ends with `fate` (counted from now). */
  async until(fate: string, timeoutMs = 30_000): Promise<void> {
    const start = this.fates[fate] ?? 0
    const deadline = Date.now() + timeoutMs
    while ((this.fates[fate] ?? 0) <= start) {
      if (Date.now() > deadline) throw new Error(`no request ended ${fate} within ${timeoutMs} ms; fates ${JSON.stringify(this.fates)}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  #count(fate: string): void {
    this.fates[fate] = (this.fates[fate] ?? 0) + 1
    this.total++
  }

  async #worker(): Promise<void> {
    const o = this.#options
    while (this.#running) {
      this.#count(await this.#one())
      if (o.pauseMs > 0) await new Promise((r) => setTimeout(r, o.pauseMs))
    }
  }

  async #one(): Promise<string> {
    const o = this.#options
    try {
      const res = await request(`${o.url}${o.path}`, {
        dispatcher: this.#agent,
        method: o.method as 'GET',
        headers: { host: o.host, ...o.headers },
        body: o.body,
        signal: AbortSignal.timeout(o.hangMs),
      })
      const code = res.headers['x-outrigger-error']
      try {
        await res.body.arrayBuffer()
      } catch (err) {
        return isTimeout(err) ? 'hang' : `${res.statusCode} cut`
      }
      return code === undefined ? String(res.statusCode) : `${res.statusCode} ${String(code)}`
    } catch (err) {
      if (isTimeout(err)) return 'hang'
      const e = err as { code?: string; name?: string }
      return `error ${e.code ?? e.name ?? 'unknown'}`
    }
  }
}

function isTimeout(err: unknown): boolean {
  const e = err as { code?: string; name?: string }
  return e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT'
}

/** Prints the fates as a test diagnostic: `label: 200×1234, 502 upstream_reset×3`. */
export function report(t: TestContext, label: string, fates: Fates): void {
  const parts = Object.entries(fates)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}×${v}`)
  t.diagnostic(`${label}: ${parts.join(', ') || 'no requests'}`)
}

/**
 * What a fault test starts, stopped in reverse order by `close()` (call it from `after`): sidecars,
 * upstreams, anything else pushed to `cleanup`, and one shared client agent.
 */
export class FaultScope {
  readonly cleanup: Array<() => Promise<void>> = []
  readonly agent = new Agent()

  async sidecar(services: Record<string, unknown>): Promise<RunningSidecar> {
    const s = await startSidecar({ services })
    this.cleanup.push(() => s.stop())
    return s
  }

  async upstream(name: string, handler?: Handler): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    this.cleanup.push(() => u.close())
    return u
  }

  async close(): Promise<void> {
    for (const c of this.cleanup.reverse()) await c()
    await this.agent.destroy()
  }
}
