import net from 'node:net'
import type { Logger } from 'pino'
import type { ActiveHealthCheckConfig } from '../config/types.ts'
import { endpointKey } from '../discovery/types.ts'
import { HttpProbe } from './http-probe.ts'
import { clockTime } from './outlier.ts'
import type { TlsDialer } from '../policies/tls.ts'

/** Each probe interval is stretched or shrunk by up to this fraction, so loops drift apart. */
export const INTERVAL_JITTER = 0.1
/**
 * Probes start on a grid of this many ms, so that the probes due in the same slot share one wake-up
 * of the event loop (and their replies tend to arrive together). A thousand endpoints at 1 s would
 * otherwise wake the process about two thousand times a second, which costs more than the probes.
 */
export const PROBE_GRID_MS = 10

/** The verdict of an endpoint's checks as a watcher sees it. */
export interface CheckVerdict {
  healthy: boolean
  /** Why, in words, when unhealthy: `3 consecutive failed checks (HTTP 503) since 12:01:07`. */
  reason: string
}

export type CheckWatcher = (verdict: CheckVerdict) => void

/** The result of one probe: null when it passed, else what went wrong. */
export type Probe = (address: string, port: number, config: ActiveHealthCheckConfig) => Promise<string | null>

/** What the checker tells the outside world (metrics). */
export interface CheckObserver {
  onCheck?(endpoint: string, passed: boolean): void
  /** The endpoint's loop stopped (its last watcher left). */
  onStop?(endpoint: string): void
}

/**
 * Active health checking: probes every watched endpoint periodically (HTTP GET expecting a 2xx, or
 * a TCP connect) and reports a verdict when it changes. One loop per endpoint and check settings,
 * however many services watch that endpoint; the loop stops when its last watcher leaves.
 *
 * `healthyThreshold` consecutive passes make an unhealthy endpoint healthy again and
 * `unhealthyThreshold` consecutive failures make a healthy one unhealthy, so one lost probe does not
 * flap. An endpoint nobody has probed yet counts as healthy (traffic flows at once); if its very
 * first probe fails it turns unhealthy at once, since it never proved itself. Each loop probes
 * HTTP on its own kept-alive connection (see http-probe.ts). The first probe runs
 * at a random point of the first interval (at most one second in), later ones every interval
 * ± 10%, so loops that started together do not stay in step; start times are rounded up to a
 * 10 ms grid so that probes due together share one wake-up of the event loop.
 */
export class ActiveHealthChecker {
  readonly #logger: Logger
  /** Injected by tests; null: each loop probes with its own Prober. */
  readonly #probe: Probe | null
  readonly #observer: CheckObserver
  readonly #loops = new Map<string, CheckLoop>()
  #closed = false

  constructor(logger: Logger, options: { probe?: Probe; observer?: CheckObserver } = {}) {
    this.#logger = logger
    this.#probe = options.probe ?? null
    this.#observer = options.observer ?? {}
  }

  /**
   * Starts (or joins) the loop for this endpoint and settings; returns the function that leaves it.
   * With `tls`, probes go over TLS with that dialer's certificates (a TCP check is then a TLS handshake).
   */
  watch(address: string, port: number, config: ActiveHealthCheckConfig, watcher: CheckWatcher, tls: TlsDialer | null = null): () => void {
    const key = `${endpointKey(address, port)} ${config.type} ${config.path} ${config.intervalMs} ${config.timeoutMs} ${config.healthyThreshold} ${config.unhealthyThreshold} ${tls === null ? 'plain' : `tls#${tls.id}`}`
    let loop = this.#loops.get(key)
    if (loop === undefined) {
      loop = new CheckLoop(address, port, config, this.#probe, this.#logger, this.#observer, tls)
      this.#loops.set(key, loop)
      loop.start()
    }
    const joined = loop
    joined.watchers.add(watcher)
    if (joined.verdict !== null && !joined.verdict.healthy) queueMicrotask(() => watcher(joined.verdict!))
    let left = false
    return () => {
      if (left) return
      left = true
      joined.watchers.delete(watcher)
      if (joined.watchers.size === 0) {
        joined.stop()
        // Only if still the registered loop: a newer one may have taken the key since.
        if (this.#loops.get(key) === joined) this.#loops.delete(key)
        this.#observer.onStop?.(endpointKey(address, port))
      }
    }
  }

  /** Loops running now (for tests and metrics). */
  get loopCount(): number {
    return this.#loops.size
  }

  /** Stops every loop and closes the probes' connections; safe to call more than once. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      for (const loop of this.#loops.values()) loop.stop()
      this.#loops.clear()
    }
    return Promise.resolve()
  }
}

class CheckLoop {
  readonly watchers = new Set<CheckWatcher>()
  /** The last verdict reported; null until the first probe decided anything. */
  verdict: CheckVerdict | null = null
  readonly #address: string
  readonly #port: number
  readonly #config: ActiveHealthCheckConfig
  readonly #probe: Probe | null
  /** The loop's own prober (and, for HTTP, its kept-alive connection), when no probe was injected. */
  #prober: Prober | null = null
  readonly #logger: Logger
  readonly #observer: CheckObserver
  readonly #endpoint: string
  readonly #tls: TlsDialer | null
  #timer: NodeJS.Timeout | null = null
  #stopped = false
  #passes = 0
  #failures = 0
  #failingSinceMs = 0
  #lastError = ''
  #probed = false

  constructor(address: string, port: number, config: ActiveHealthCheckConfig, probe: Probe | null, logger: Logger, observer: CheckObserver, tls: TlsDialer | null) {
    this.#tls = tls
    this.#address = address
    this.#port = port
    this.#config = config
    this.#probe = probe
    this.#logger = logger
    this.#observer = observer
    this.#endpoint = endpointKey(address, port)
  }

  start(): void {
    this.#schedule(Math.random() * Math.min(this.#config.intervalMs, 1000))
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#prober?.close()
    this.#prober = null
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    const now = Date.now()
    const due = Math.ceil((now + delayMs) / PROBE_GRID_MS) * PROBE_GRID_MS
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.#run()
    }, due - now)
    this.#timer.unref()
  }

  async #run(): Promise<void> {
    let error: string | null
    try {
      if (this.#probe !== null) {
        error = await this.#probe(this.#address, this.#port, this.#config)
      } else {
        this.#prober ??= createProber(this.#address, this.#port, this.#config, this.#tls)
        error = await this.#prober.probe()
      }
    } catch (err) {
      error = (err as Error).message
    }
    if (this.#stopped) return
    this.#observer.onCheck?.(this.#endpoint, error === null)
    this.#record(error)
    const jitter = 1 + (Math.random() * 2 - 1) * INTERVAL_JITTER
    this.#schedule(this.#config.intervalMs * jitter)
  }

  #record(error: string | null): void {
    const first = !this.#probed
    this.#probed = true
    const healthyNow = this.verdict === null || this.verdict.healthy
    if (error === null) {
      this.#failures = 0
      this.#passes++
      if (!healthyNow && this.#passes >= this.#config.healthyThreshold) this.#report({ healthy: true, reason: '' })
      return
    }
    this.#passes = 0
    if (this.#failures++ === 0) this.#failingSinceMs = Date.now()
    this.#lastError = error
    if (healthyNow && (first || this.#failures >= this.#config.unhealthyThreshold)) {
      const count = this.#failures === 1 ? 'failed check' : `${this.#failures} consecutive failed checks`
      this.#report({ healthy: false, reason: `${count} (${this.#lastError}) since ${clockTime(this.#failingSinceMs)}` })
    }
  }

  #report(verdict: CheckVerdict): void {
    this.verdict = verdict
    if (verdict.healthy) this.#logger.info({ endpoint: this.#endpoint }, 'active check: endpoint healthy again')
    else this.#logger.warn({ endpoint: this.#endpoint, reason: verdict.reason }, 'active check: endpoint unhealthy')
    for (const watcher of this.watchers) watcher(verdict)
  }
}

/** Probes one endpoint again and again: HTTP on one kept-alive connection, or a TCP connect each time. */
export interface Prober {
  probe(): Promise<string | null>
  close(): void
}

export function createProber(address: string, port: number, config: ActiveHealthCheckConfig, tls: TlsDialer | null = null): Prober {
  if (config.type === 'tcp') return { probe: () => probeTcp(address, port, config.timeoutMs, tls), close: () => undefined }
  const http = new HttpProbe(address, port, config.path, endpointKey(address, port), tls)
  return { probe: () => http.probe(config.timeoutMs), close: () => http.close() }
}

/** One probe on a fresh connection: HTTP GET `path` expecting a 2xx, or a TCP connect, within `timeout`. */
export async function probeEndpoint(address: string, port: number, config: ActiveHealthCheckConfig): Promise<string | null> {
  const prober = createProber(address, port, config)
  try {
    return await prober.probe()
  } finally {
    prober.close()
  }
}

/** A TCP connect, or with `tls` a completed TLS handshake, within `timeoutMs`. */
function probeTcp(address: string, port: number, timeoutMs: number, tls: TlsDialer | null): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = tls === null ? net.connect({ host: address, port }) : tls.dial(address, port)
    const done = (result: string | null): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => done(`timeout after ${timeoutMs} ms`), timeoutMs)
    socket.once(tls === null ? 'connect' : 'secureConnect', () => done(null))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}
