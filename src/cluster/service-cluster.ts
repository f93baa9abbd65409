import type { Logger } from 'pino'
import { Pool } from 'undici'
import type { ServiceConfig } from '../config/types.ts'
import type { Balancer, Picker } from '../balancer/types.ts'
import { EMPTY_PICKER } from '../balancer/types.ts'
import type { Endpoint } from '../discovery/types.ts'
import { endpointKey } from '../discovery/types.ts'
import { Host, HostFlag, UNROUTABLE_FLAGS } from './host.ts'
import type { ClusterLoad } from './host.ts'
import type { UpstreamTls } from '../policies/tls.ts'

/** A host in slow start begins at this share of its weight (Envoy's min_weight_percent default). */
export const SLOW_START_MIN_FACTOR = 0.1
/** The ramp is applied in this many steps over the window (one picker rebuild each). */
export const SLOW_START_STEPS = 20
/** Never rebuild for slow start more often than this. */
export const SLOW_START_MIN_STEP_MS = 100
/**
 * After a registry outage, endpoints its first answers leave out stay this long before they are
 * drained (see `setEndpoints`). A restarted Consul answers before its agents' anti-entropy has
 * re-registered their services, so its first answer can be empty or short for a few milliseconds.
 */
export const RECOVERY_SETTLE_MS = 5000
/** Sources whose answers right after an outage may be incomplete: the registries. */
const SETTLING_SOURCES: ReadonlySet<string> = new Set(['consul', 'etcd'])

/** What the cluster tells the outside world; metrics and the admin API hang off this. */
export interface ClusterObserver {
  /** Membership or health changed and a new picker is in place. */
  onClusterChange?(cluster: ServiceCluster): void
  /** A host joined the cluster (health checking starts watching it). Called before the rebuild. */
  onHostAdded?(cluster: ServiceCluster, host: Host): void
  /** A host left the registry and is draining (health checking stops watching it). */
  onHostLeft?(cluster: ServiceCluster, host: Host): void
  /** A host left the cluster for good (its pool is closed); drop its metric series. */
  onHostRemoved?(cluster: ServiceCluster, host: Host): void
}

export interface DiscoveryStatus {
  /** When the last endpoint set arrived (ms since epoch); null before the first. */
  lastUpdateMs: number | null
  /** The last discovery error, cleared by the next good update. */
  error: string | null
  /** True while the registry cannot be read and the last known set is in use. */
  stale: boolean
  /** When the cluster became stale (ms since epoch). */
  staleSinceMs: number | null
}

export type Clock = () => number

/** Per-service traffic policies the cluster carries (src/policies/service-policies.ts). */
export interface ClusterPolicies {
  /** Upstream TLS: used for every host with `tls:`, else for hosts discovery marks https. */
  readonly tls: UpstreamTls | null
  /** Policy state for `/api/services`, merged into the service's entry (e.g. `{ cache: {...} }`). */
  view(): Record<string, unknown>
}

/**
 * The live state of one upstream service: a stable Host per `address:port`, the balancer, and the
 * current picker. Endpoint sets come in whole (from discovery); the cluster diffs them against its
 * hosts, drains the ones that left, and rebuilds the picker only when something changed.
 */
export class ServiceCluster {
  readonly name: string
  readonly config: ServiceConfig
  readonly discovery: DiscoveryStatus = { lastUpdateMs: null, error: null, stale: false, staleSinceMs: null }
  /** True while fewer hosts are healthy than `panicThreshold` allows and health is being ignored. */
  panic = false

  readonly #hosts = new Map<string, Host>()
  /** Hosts that left the registry and still finish in-flight requests. */
  readonly #draining = new Set<Host>()
  readonly #balancer: Balancer
  readonly #logger: Logger
  readonly #observer: ClusterObserver
  readonly #now: Clock
  #picker: Picker = EMPTY_PICKER
  #closed = false
  /** In-flight requests over all hosts, shared by them (bounded-load hashing reads it). */
  readonly #load: ClusterLoad = { inFlight: 0 }
  /** Pending rebuild that advances the slow-start ramp; null when no host is ramping. */
  #slowStartTimer: NodeJS.Timeout | null = null
  /** While the registry settles after an outage: the members it had then, and its latest answer. */
  #settle: { held: readonly Endpoint[]; latest: readonly Endpoint[]; timer: NodeJS.Timeout } | null = null
  readonly policies: ClusterPolicies | null
  readonly #tls: UpstreamTls | null

  constructor(config: ServiceConfig, balancer: Balancer, logger: Logger, observer: ClusterObserver = {}, now: Clock = Date.now, policies: ClusterPolicies | null = null) {
    this.name = config.name
    this.policies = policies
    this.#tls = policies?.tls ?? null
    this.config = config
    this.#balancer = balancer
    this.#logger = logger
    this.#observer = observer
    this.#now = now
  }

  /** The current picker; replaced (never mutated) on every change. */
  get picker(): Picker {
    return this.#picker
  }

  /** True once the first endpoint set has arrived. */
  get ready(): boolean {
    return this.discovery.lastUpdateMs !== null
  }

  /** Current members, in the order discovery listed them. */
  hosts(): Host[] {
    return [...this.#hosts.values()]
  }

  /** Current members as an endpoint set (what discovery would deliver for them). */
  endpoints(): Endpoint[] {
    return this.hosts().map((h) => ({ address: h.address, port: h.port, weight: h.weight, meta: h.meta }))
  }

  /** Members that left and are still finishing requests. */
  drainingHosts(): Host[] {
    return [...this.#draining]
  }

  /**
   * Applies a complete endpoint set from discovery.
   *
   * The first answers of a registry that was unreadable (stale) are not trusted to be complete: for
   * RECOVERY_SETTLE_MS, members they leave out stay in use (additions and weight changes apply at
   * once), and then the latest answer applies in full. A restarted Consul server answers before
   * anti-entropy has re-registered the agents' services, and draining every endpoint for those few
   * milliseconds would fail requests that the last known set serves well; a removal made during the
   * outage waits a few seconds more instead.
   */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    if (this.#closed) return
    const now = this.#now()
    // The first set is the cluster's starting membership: nothing to ramp against.
    const slowStart = this.discovery.lastUpdateMs !== null && this.config.slowStart !== undefined
    const wasStale = this.discovery.stale
    this.discovery.lastUpdateMs = now
    this.discovery.error = null
    this.discovery.stale = false
    this.discovery.staleSinceMs = null
    if (wasStale) this.#logger.info({ service: this.name }, 'discovery recovered')
    if (wasStale && this.#settle === null && this.#hosts.size > 0 && SETTLING_SOURCES.has(this.config.source)) {
      const timer = setTimeout(() => {
        const latest = this.#settle?.latest
        this.#settle = null
        if (latest !== undefined) this.#apply(latest, this.#now(), this.config.slowStart !== undefined)
      }, RECOVERY_SETTLE_MS)
      timer.unref()
      this.#settle = { held: this.endpoints(), latest: endpoints, timer }
    }
    if (this.#settle === null) {
      this.#apply(endpoints, now, slowStart)
      return
    }
    this.#settle.latest = endpoints
    const listed = new Set<string>()
    for (const e of endpoints) listed.add(endpointKey(e.address, e.port))
    const kept = this.#settle.held.filter((e) => !listed.has(endpointKey(e.address, e.port)))
    if (kept.length > 0) {
      this.#logger.info({ service: this.name, kept: kept.map((e) => endpointKey(e.address, e.port)), settleMs: RECOVERY_SETTLE_MS }, 'registry recovered without some endpoints; keeping them until it settles')
    }
    this.#apply(kept.length === 0 ? endpoints : [...endpoints, ...kept], now, slowStart)
  }

  /**
   * Diffs `endpoints` against the members: adds (ramping them when `slowStart`), updates, drains;
   * rebuilds when anything changed.
   */
  #apply(endpoints: readonly Endpoint[], now: number, slowStart: boolean): void {
    if (this.#closed) return

    let changed = false
    const seen = new Set<string>()
    for (const endpoint of endpoints) {
      const key = endpointKey(endpoint.address, endpoint.port)
      if (seen.has(key)) continue
      seen.add(key)
      let existing = this.#hosts.get(key)
      const tls = this.#tls !== null && this.#tls.usesTls(endpoint) ? this.#tls : null
      if (existing !== undefined && existing.tls !== tls) {
        // The endpoint switched between http and https: its pool speaks the old one. Replace it.
        this.#hosts.delete(key)
        this.#drain(existing)
        existing = undefined
      }
      if (existing === undefined) {
        const host = new Host(endpoint, this.#createPool(endpoint, tls), this.config.maxConcurrent, now, this.#load, tls)
        if (slowStart) host.setFlag(HostFlag.SLOW_START, true, `slow start since ${new Date(now).toISOString()}`)
        this.#hosts.set(key, host)
        this.#observer.onHostAdded?.(this, host)
        changed = true
      } else {
        if (existing.weight !== endpoint.weight) {
          existing.weight = endpoint.weight
          changed = true
        }
        existing.meta = endpoint.meta
      }
    }
    for (const [key, host] of this.#hosts) {
      if (!seen.has(key)) {
        this.#hosts.delete(key)
        this.#drain(host)
        changed = true
      }
    }
    if (changed) {
      this.#logger.info({ service: this.name, endpoints: [...seen] }, 'endpoints updated')
      this.rebuild()
    }
  }

  /** Discovery could not be read: keep the last set, remember why. */
  setDiscoveryError(error: Error): void {
    const now = this.#now()
    if (!this.discovery.stale) {
      this.discovery.stale = true
      this.discovery.staleSinceMs = now
      this.#logger.warn({ service: this.name, err: error.message }, 'discovery failed; keeping the last known endpoints')
    }
    this.discovery.error = error.message
  }

  /** Seconds since the cluster became stale; 0 when fresh. */
  stalenessSeconds(): number {
    return this.discovery.staleSinceMs === null ? 0 : (this.#now() - this.discovery.staleSinceMs) / 1000
  }

  /** Sets or clears one health flag on a member and rebuilds the picker when that changed routing. */
  setHostFlag(host: Host, bit: (typeof HostFlag)[keyof typeof HostFlag], on: boolean, reason?: string): void {
    if (host.setFlag(bit, on, reason) && this.#hosts.get(host.key) === host) this.rebuild()
  }

  /** Rebuilds the picker from the current members and their health. */
  rebuild(): void {
    if (this.#closed) return
    this.#advanceSlowStart()
    const all: Host[] = []
    const healthy: Host[] = []
    for (const host of this.#hosts.values()) {
      all.push(host)
      if ((host.flags & UNROUTABLE_FLAGS) === 0) healthy.push(host)
    }
    const threshold = this.config.healthCheck.panicThreshold
    const panic = all.length > 0 && threshold > 0 && healthy.length * 100 < all.length * threshold
    if (panic !== this.panic) {
      this.panic = panic
      const level = panic ? 'warn' : 'info'
      this.#logger[level]({ service: this.name, healthy: healthy.length, total: all.length }, panic ? 'panic mode: routing to all endpoints' : 'panic mode over')
    }
    this.#picker = this.#balancer.rebuild(panic ? all : healthy)
    this.#observer.onClusterChange?.(this)
  }

  /**
   * Sets each ramping host's `slowStartFactor` from its age: linear from SLOW_START_MIN_FACTOR to 1
   * over the window, then clears its SLOW_START flag. While any host ramps, one timer schedules the
   * next rebuild; pickers stay immutable and `pick()` never reads the clock.
   */
  #advanceSlowStart(): void {
    const window = this.config.slowStart?.windowMs
    if (window === undefined) return
    const now = this.#now()
    let ramping = false
    for (const host of this.#hosts.values()) {
      if ((host.flags & HostFlag.SLOW_START) === 0) continue
      const progress = (now - host.addedAtMs) / window
      if (progress >= 1) {
        host.setFlag(HostFlag.SLOW_START, false)
        host.slowStartFactor = 1
      } else {
        host.slowStartFactor = Math.max(SLOW_START_MIN_FACTOR, progress)
        ramping = true
      }
    }
    if (ramping && this.#slowStartTimer === null) {
      this.#slowStartTimer = setTimeout(() => {
        this.#slowStartTimer = null
        this.rebuild()
      }, Math.max(SLOW_START_MIN_STEP_MS, window / SLOW_START_STEPS))
      this.#slowStartTimer.unref()
    }
  }

  #stopTimers(): void {
    if (this.#slowStartTimer !== null) clearTimeout(this.#slowStartTimer)
    this.#slowStartTimer = null
    if (this.#settle !== null) clearTimeout(this.#settle.timer)
    this.#settle = null
  }

  /** Stops routing and closes every pool once its in-flight requests finish. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#stopTimers()
    this.#picker = EMPTY_PICKER
    const closing: Promise<void>[] = []
    for (const host of this.#hosts.values()) closing.push(this.#closePool(host))
    for (const host of this.#draining) closing.push(this.#closePool(host))
    await Promise.all(closing)
    // Members stay listed until their last request is done: a successor cluster (after a reload)
    // asks who still holds an endpoint before dropping its metric series.
    this.#hosts.clear()
  }

  /** Closes pools at once, failing whatever is still in flight (the end of a shutdown timeout). */
  async destroy(): Promise<void> {
    this.#closed = true
    this.#stopTimers()
    this.#picker = EMPTY_PICKER
    const hosts = [...this.#hosts.values(), ...this.#draining]
    this.#hosts.clear()
    this.#draining.clear()
    for (const h of hosts) h.fastPool?.destroy()
    await Promise.all(hosts.map((h) => h.dispatcher.destroy().catch(() => undefined)))
  }

  #drain(host: Host): void {
    host.setFlag(HostFlag.DRAINING, true, 'left the registry')
    this.#draining.add(host)
    this.#observer.onHostLeft?.(this, host)
    // Removed once both paths are done with it: undici's pool closed and no fast-lane request left.
    Promise.all([this.#closePool(host), host.whenIdle()]).then(
      () => {
        this.#draining.delete(host)
        this.#observer.onHostRemoved?.(this, host)
      },
      () => undefined,
    )
  }

  /**
   * undici's close() lets queued and running requests finish before the sockets go; the fast
   * lane's pool closes its idle connections now and the others as their requests end.
   */
  #closePool(host: Host): Promise<void> {
    host.fastPool?.close()
    return host.dispatcher.close().catch((err: unknown) => {
      this.#logger.debug({ service: this.name, endpoint: host.key, err }, 'pool close failed')
    })
  }

  #createPool(endpoint: Endpoint, tls: UpstreamTls | null): Pool {
    const t = this.config.timeouts
    const origin = `${tls === null ? 'http' : 'https'}://${endpointKey(endpoint.address, endpoint.port)}`
    return new Pool(origin, {
      // With TLS the connector carries the certificates, servername and connect timeout (re-read on change).
      connect: tls?.connect,
      // HTTP/1.1 holds one request per connection: as many connections as requests allowed in flight.
      connections: this.config.maxConcurrent,
      pipelining: 1,
      allowH2: false,
      connectTimeout: t.connectMs,
      headersTimeout: t.requestMs,
      bodyTimeout: t.idleMs,
      keepAliveMaxTimeout: t.idleMs,
    })
  }
}
