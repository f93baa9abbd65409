import type { Logger } from 'pino'
import type { PassiveHealthCheckConfig } from '../config/types.ts'
import type { Host } from '../cluster/host.ts'
import { HostFlag } from '../cluster/host.ts'
import type { Clock, ServiceCluster } from '../cluster/service-cluster.ts'
import type { AttemptOutcome } from '../observability/metrics.ts'

/** What the detector tells the outside world (metrics). */
export interface OutlierObserver {
  onEject?(host: Host): void
}

/**
 * Passive outlier detection from real traffic (Envoy's consecutive-5xx / consecutive-gateway
 * detectors, grpc-js's outlier detection): an endpoint whose last `consecutiveFailures` attempts
 * all failed (5xx answer, connection refused or reset, timeout) is ejected for
 * `ejectionTime × number of ejections`, capped at `maxEjectionTime`. At most `maxEjectionPercent`
 * of the service's endpoints are ejected at once (at least one when the percent is above 0), so
 * a fleet-wide failure cannot eject everything: panic mode and the remaining hosts carry on.
 * An ejection ends on time, by its own timer; the ejection count decays back to zero once the host
 * has stayed in for `maxEjectionTime`. The detector owns the EJECTED flag and nothing else.
 */
export class OutlierDetector {
  readonly #cluster: ServiceCluster
  readonly #config: PassiveHealthCheckConfig
  readonly #logger: Logger
  readonly #now: Clock
  readonly #observer: OutlierObserver
  readonly #timers = new Map<Host, NodeJS.Timeout>()
  #stopped = false

  constructor(cluster: ServiceCluster, config: PassiveHealthCheckConfig, logger: Logger, now: Clock = Date.now, observer: OutlierObserver = {}) {
    this.#cluster = cluster
    this.#config = config
    this.#logger = logger
    this.#now = now
    this.#observer = observer
  }

  /**
   * Records how one attempt on `host` ended. Called once per attempt by the forwarder; a success
   * costs one field write. `status` is the HTTP status when the outcome is a status class.
   */
  record(host: Host, outcome: AttemptOutcome, status: number): void {
    const state = host.outlier
    switch (outcome) {
      case '5xx':
      case 'connect_failed':
      case 'reset':
      case 'timeout':
        break
      case 'aborted':
        return // the client left: says nothing about the host
      default:
        state.consecutiveFailures = 0
        return
    }
    if (state.consecutiveFailures++ === 0) state.failingSinceMs = this.#now()
    state.lastFailure = outcome === '5xx' ? String(status) : outcome
    if (state.consecutiveFailures >= this.#config.consecutiveFailures && (host.flags & HostFlag.EJECTED) === 0) this.#eject(host)
  }

  /** Clears every ejection timer; hosts keep their flags (the cluster is going away). */
  stop(): void {
    this.#stopped = true
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
  }

  /** A host left the service: forget its timer. */
  forget(host: Host): void {
    const timer = this.#timers.get(host)
    if (timer !== undefined) clearTimeout(timer)
    this.#timers.delete(host)
  }

  #eject(host: Host): void {
    if (this.#stopped) return
    const hosts = this.#cluster.hosts()
    if (!hosts.includes(host)) return
    let ejected = 0
    for (const h of hosts) if ((h.flags & HostFlag.EJECTED) !== 0) ejected++
    const percent = this.#config.maxEjectionPercent
    const allowed = percent <= 0 ? 0 : Math.max(1, Math.floor((percent * hosts.length) / 100))
    if (ejected >= allowed) {
      // Over the cap: the host stays in; it is ejected on its next failure once a slot frees up.
      this.#logger.debug({ service: this.#cluster.name, endpoint: host.key, ejected, allowed }, 'ejection skipped: maxEjectionPercent reached')
      return
    }
    const state = host.outlier
    const now = this.#now()
    if (state.lastReturnMs !== 0 && now - state.lastReturnMs >= this.#config.maxEjectionTimeMs) state.ejections = 0
    state.ejections++
    const durationMs = Math.min(this.#config.ejectionTimeMs * state.ejections, this.#config.maxEjectionTimeMs)
    state.ejectedUntilMs = now + durationMs
    const reason = `${state.consecutiveFailures} consecutive ${state.lastFailure} since ${clockTime(state.failingSinceMs)}; ejected until ${clockTime(state.ejectedUntilMs)}`
    this.#logger.warn({ service: this.#cluster.name, endpoint: host.key, ejections: state.ejections, durationMs, reason }, 'endpoint ejected')
    this.#cluster.setHostFlag(host, HostFlag.EJECTED, true, reason)
    this.#observer.onEject?.(host)
    const timer = setTimeout(() => this.#return(host), durationMs)
    timer.unref()
    this.#timers.set(host, timer)
  }

  #return(host: Host): void {
    this.#timers.delete(host)
    if (this.#stopped) return
    const state = host.outlier
    state.consecutiveFailures = 0
    state.lastReturnMs = this.#now()
    this.#logger.info({ service: this.#cluster.name, endpoint: host.key }, 'ejection ended')
    this.#cluster.setHostFlag(host, HostFlag.EJECTED, false)
  }
}

/** `12:01:07` in UTC, as the reasons on `/api/services` show times. */
export function clockTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19)
}
