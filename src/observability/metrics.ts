import { createRequire } from 'node:module'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { CellHistogram, CounterCell, GaugeCell } from './cells.ts'
import type { HistogramCell } from './cells.ts'
import type { Host } from '../cluster/host.ts'
import { HostFlag } from '../cluster/host.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'

/** How one attempt on one endpoint ended; the `outcome` label of `outrigger_upstream_attempts_total`. */
export type AttemptOutcome = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'connect_failed' | 'reset' | 'timeout' | 'aborted'

/** The `state` label values of `outrigger_endpoints`. */
const ENDPOINT_STATES = ['healthy', 'unhealthy', 'ejected'] as const

/** Sub-millisecond to tens of seconds: a sidecar adds little, but upstreams can be slow. */
const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** A collector of prom-client's default metrics, one file of `prom-client/lib/metrics/` each. */
type DefaultCollector = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void

/** The defaults outrigger leaves out: `gc` (nodejs_gc_duration_seconds), see collectProcessMetrics. */
const LEFT_OUT_DEFAULTS = new Set(['gc'])

/**
 * The sampling period of the event-loop delay histogram (`outrigger_nodejs_eventloop_lag_p99_seconds`
 * and its siblings): a repeating timer whose lateness is recorded. prom-client's default of 10 ms
 * wakes an idle sidecar 100 times a second, and those wake-ups were nearly all its idle CPU: 6.5 ms
 * of CPU a second against 0.5 with the timer at 1 s (one process, Node 24, 20 s idle; per process,
 * so three times that with `workers: 2`). At 100 ms it wakes 10 times a second. Every stall of 100
 * ms or more is still recorded in full (it spans a tick), a shorter one when a tick falls due in it
 * (a 20 ms stall one time in five); `outrigger_nodejs_eventloop_lag_seconds`, taken at each scrape,
 * is unchanged.
 */
const EVENT_LOOP_SAMPLE_MS = 100

/**
 * prom-client's default process and Node.js metrics, prefixed `outrigger_`, except the garbage
 * collection histogram. That one observes every collection through a `perf_hooks` observer, and
 * Node then builds a performance entry and calls into JavaScript after each one: about 75 µs with an
 * empty observer and 90 to 105 µs with prom-client's (Node 24, one core), right after the
 * collection's own pause. A proxy at half its max rate scavenges about 50 times a second, and each
 * scavenge is where the p99 is made (bench/README.md, "Latency at a fixed rate"): with the observer,
 * the event loop's busy spells after scavenges lasted about 1.1 ms instead of 0.75. prom-client has no
 * option to leave one default out, so each is loaded by the name it lists (`metricsList`, its
 * file's name); a name with no such file fails at start, and the metrics tests with it.
 */
function collectProcessMetrics(registry: Registry, prefix: string): void {
  const load = createRequire(import.meta.url)
  for (const name of collectDefaultMetrics.metricsList) {
    if (LEFT_OUT_DEFAULTS.has(name)) continue
    const collector = load(`prom-client/lib/metrics/${name}.js`) as DefaultCollector
    collector(registry, { prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })
  }
}

/** A series bound to a cell (see cells.ts): its metric, its full label set, and whether it exists yet. */
interface Bound {
  metric: Counter<string> | Gauge<string>
  labels: Record<string, string>
  cell: CounterCell
  exported: boolean
}

/**
 * Every metric of the contract in one registry. Series are bound once per service (and per host for
 * attempts), never per request, to cells that the data path adds to; the registry takes their counts
 * when it is read (`collect`).
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests = new Counter({ name: 'outrigger_requests_total', help: 'Requests answered, by service and HTTP status code.', labelNames: ['service', 'code'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly duration = new CellHistogram({ name: 'outrigger_request_duration_seconds', help: 'Time from request to the end of the response, by service.', labelNames: ['service'] as const, buckets: DURATION_BUCKETS_SECONDS, registers: [this.registry] })
  readonly attempts = new Counter({ name: 'outrigger_upstream_attempts_total', help: 'Attempts on upstream endpoints, by outcome.', labelNames: ['service', 'endpoint', 'outcome'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly retries = new Counter({ name: 'outrigger_retries_total', help: 'Extra attempts made on another endpoint.', labelNames: ['service'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly endpoints = new Gauge({ name: 'outrigger_endpoints', help: 'Endpoints by state (healthy, unhealthy, ejected).', labelNames: ['service', 'state'] as const, registers: [this.registry] })
  readonly discoveryUpdates = new Counter({ name: 'outrigger_discovery_updates_total', help: 'Endpoint sets received from discovery.', labelNames: ['service', 'source'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly discoveryErrors = new Counter({ name: 'outrigger_discovery_errors_total', help: 'Failed reads of a registry.', labelNames: ['service', 'source'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly staleness: Gauge<'service'>
  readonly inFlight = new Gauge({ name: 'outrigger_in_flight_requests', help: 'Requests being forwarded now.', labelNames: ['service'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly healthChecks = new Counter({ name: 'outrigger_health_checks_total', help: 'Active health check probes, by endpoint and result (pass or fail).', labelNames: ['endpoint', 'result'] as const, registers: [this.registry] })
  readonly ejections = new Counter({ name: 'outrigger_ejections_total', help: 'Ejections of an endpoint by passive health checking.', labelNames: ['service', 'endpoint'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly policyRejections = new Counter({ name: 'outrigger_policy_rejections_total', help: 'Requests refused by a traffic policy: circuit_breaker (503 overloaded) or rate_limit (429).', labelNames: ['service', 'policy'] as const, registers: [this.registry], collect: () => this.#flushCells() })
  readonly panic = new Gauge({ name: 'outrigger_panic', help: '1 while too few endpoints of the service are healthy and health is ignored (panic mode), else 0.', labelNames: ['service'] as const, registers: [this.registry] })
  readonly configReloads = new Counter({ name: 'outrigger_config_reloads_total', help: 'Config reloads (SIGHUP or a change of the config file), by result: success or failure (the running config was kept).', labelNames: ['result'] as const, registers: [this.registry] })
  readonly configLastReloadSuccessful = new Gauge({ name: 'outrigger_config_last_reload_successful', help: '1 if the last config reload succeeded (or none was tried), 0 if it was refused.', registers: [this.registry] })
  readonly configLastReloadSuccessTimestamp = new Gauge({ name: 'outrigger_config_last_reload_success_timestamp_seconds', help: 'When the running config was loaded (start or last successful reload), as a Unix time.', registers: [this.registry] })

  readonly #clusters = new Set<ServiceCluster>()
  /** Bound series by service, then by metric and label set (see `bind`). */
  readonly #bound = new Map<string, Map<string, Bound>>()

  constructor() {
    collectProcessMetrics(this.registry, 'outrigger_')
    this.configReloads.inc({ result: 'success' }, 0)
    this.configReloads.inc({ result: 'failure' }, 0)
    this.configLastReloadSuccessful.set(1)
    this.configLastReloadSuccessTimestamp.set(Date.now() / 1000)
    // Staleness grows by itself between discovery events: compute it at scrape time.
    const clusters = this.#clusters
    this.staleness = new Gauge({
      name: 'outrigger_discovery_staleness_seconds',
      help: 'Seconds the service has been served from its last known endpoints because the registry could not be read; 0 when fresh.',
      labelNames: ['service'] as const,
      registers: [this.registry],
      collect() {
        for (const c of clusters) this.labels(c.name).set(c.stalenessSeconds())
      },
    })
  }

  /** Binds the per-service children once. */
  forService(cluster: ServiceCluster, source: string): ServiceMetrics {
    this.#clusters.add(cluster)
    return new ServiceMetrics(this, cluster.name, source)
  }

  /**
   * The cell of a counter series (the same cell for the same series: a reload's new cluster and the
   * old one's last requests add to one count). The series exists, at 0, from the next read of the
   * registry. Remembering every bound label set is also what lets series be dropped later:
   * prom-client's `remove()` matches a full label set only.
   */
  bind<T extends string>(metric: Counter<T>, labels: Partial<Record<T, string>> & { service: string }): CounterCell {
    return this.#bind(metric, labels, () => new CounterCell())
  }

  /** The cell of a gauge series, as `bind` for counters. */
  bindGauge<T extends string>(metric: Gauge<T>, labels: Partial<Record<T, string>> & { service: string }): GaugeCell {
    return this.#bind(metric, labels, () => new GaugeCell()) as GaugeCell
  }

  #bind(metric: Counter<string> | Gauge<string>, labels: Record<string, string> & { service: string }, create: () => CounterCell): CounterCell {
    let byKey = this.#bound.get(labels.service)
    if (byKey === undefined) this.#bound.set(labels.service, (byKey = new Map<string, Bound>()))
    let key = (metric as unknown as { name: string }).name
    for (const name of Object.keys(labels).sort()) key += `\u0000${name}=${labels[name]}`
    let bound = byKey.get(key)
    if (bound === undefined) byKey.set(key, (bound = { metric, labels, cell: create(), exported: false }))
    return bound.cell
  }

  /** Adds every cell's pending count to its metric: the `collect` of each metric with cells. */
  #flushCells(): void {
    for (const byKey of this.#bound.values()) {
      for (const b of byKey.values()) {
        if (b.cell.pending === 0 && b.exported) continue
        b.metric.inc(b.labels, b.cell.pending)
        b.cell.pending = 0
        b.exported = true
      }
    }
  }

  /** Drops the bound series of `service` that `match` selects. */
  #unbind(service: string, match: (b: Bound) => boolean): void {
    const byKey = this.#bound.get(service)
    if (byKey === undefined) return
    for (const [key, b] of byKey) {
      if (!match(b)) continue
      b.metric.remove(b.labels)
      byKey.delete(key)
    }
  }

  /**
   * A reload replaced a service's cluster by a new one of the same name: the series carry on (counters
   * must not reset), only the old cluster stops being read and, when the source changed, the discovery
   * series of the old source go.
   */
  replaceCluster(old: ServiceCluster, oldSource: string, newSource: string): void {
    this.#clusters.delete(old)
    if (oldSource === newSource) return
    this.#unbind(old.name, (b) => b.labels.source === oldSource)
  }

  /** Removes every series of a service that is gone (after a reload). */
  removeService(cluster: ServiceCluster): void {
    this.#clusters.delete(cluster)
    const service = cluster.name
    this.#unbind(service, () => true)
    this.#bound.delete(service)
    for (const state of ENDPOINT_STATES) this.endpoints.remove({ service, state })
    // Bound series (requests, attempts, retries, in flight, discovery...) went with #unbind above.
    for (const metric of [this.duration, this.staleness, this.panic] as const) metric.remove({ service })
  }

  /** Records the result of a reload the way Prometheus records its own. */
  configReload(ok: boolean): void {
    this.configReloads.inc({ result: ok ? 'success' : 'failure' })
    this.configLastReloadSuccessful.set(ok ? 1 : 0)
    if (ok) this.configLastReloadSuccessTimestamp.set(Date.now() / 1000)
  }

  /** Counts one active health check probe (once per interval per endpoint, not per request). */
  healthCheck(endpoint: string, passed: boolean): void {
    this.healthChecks.labels(endpoint, passed ? 'pass' : 'fail').inc()
  }

  /** An endpoint's check loop stopped: drop its probe series. */
  removeHealthChecks(endpoint: string): void {
    this.healthChecks.remove({ endpoint, result: 'pass' })
    this.healthChecks.remove({ endpoint, result: 'fail' })
  }

  /** Counts one ejection. */
  ejection(service: string, host: Host): void {
    this.bind(this.ejections, { service, endpoint: host.key }).inc()
  }

  /** Removes the per-endpoint series (attempts, ejections) of an endpoint that left. */
  removeHost(service: string, host: Host): void {
    this.#unbind(service, (b) => b.labels.endpoint === host.key)
    // The host is gone, so its late increments (a request finishing after) go nowhere: its cells
    // are no longer flushed, and none is bound again for it.
    hostCounters.set(host, null)
  }

  /** Recomputes `outrigger_endpoints` for a service; called on each cluster change, not per request. */
  updateEndpointGauge(cluster: ServiceCluster): void {
    let healthy = 0
    let unhealthy = 0
    let ejected = 0
    for (const host of cluster.hosts()) {
      if ((host.flags & HostFlag.EJECTED) !== 0) ejected++
      else if ((host.flags & HostFlag.FAILED_ACTIVE_CHECK) !== 0) unhealthy++
      else healthy++
    }
    // States are fixed (ENDPOINT_STATES), so removeService removes them without tracking.
    this.endpoints.set({ service: cluster.name, state: 'healthy' }, healthy)
    this.endpoints.set({ service: cluster.name, state: 'unhealthy' }, unhealthy)
    this.endpoints.set({ service: cluster.name, state: 'ejected' }, ejected)
    this.panic.set({ service: cluster.name }, cluster.panic ? 1 : 0)
  }
}

/** Per-host attempt counters, bound lazily on the first attempt of each outcome; null once removed. */
const hostCounters = new WeakMap<Host, Map<AttemptOutcome, CounterCell> | null>()

/** The children of one service, bound once. */
export class ServiceMetrics {
  readonly #metrics: Metrics
  readonly #service: string
  readonly #byCode = new Map<number, CounterCell>()
  readonly duration: HistogramCell
  readonly retries: CounterCell
  readonly inFlight: GaugeCell
  readonly discoveryUpdates: CounterCell
  readonly discoveryErrors: CounterCell

  constructor(metrics: Metrics, service: string, source: string) {
    this.#metrics = metrics
    this.#service = service
    // Bound series are exported at 0 from the start, so rate() and "absent" alerts work before the
    // first retry or discovery error. A cluster rebuilt by a reload gets the same cells as the old
    // one, whose requests still in flight will dec() what they inc()ed.
    this.duration = metrics.duration.cell({ service })
    this.retries = metrics.bind(metrics.retries, { service })
    this.inFlight = metrics.bindGauge(metrics.inFlight, { service })
    this.discoveryUpdates = metrics.bind(metrics.discoveryUpdates, { service, source })
    this.discoveryErrors = metrics.bind(metrics.discoveryErrors, { service, source })
  }

  /** Counts an answered request by status code. */
  request(status: number): void {
    let child = this.#byCode.get(status)
    if (child === undefined) {
      child = this.#metrics.bind(this.#metrics.requests, { service: this.#service, code: String(status) })
      this.#byCode.set(status, child)
    }
    child.inc()
  }

  attempt(host: Host, outcome: AttemptOutcome): void {
    let byOutcome = hostCounters.get(host)
    if (byOutcome === null) return
    if (byOutcome === undefined) {
      byOutcome = new Map()
      hostCounters.set(host, byOutcome)
    }
    let child = byOutcome.get(outcome)
    if (child === undefined) {
      child = this.#metrics.bind(this.#metrics.attempts, { service: this.#service, endpoint: host.key, outcome })
      byOutcome.set(outcome, child)
    }
    child.inc()
  }
}

/** `200` → `2xx`. */
export function statusClass(status: number): AttemptOutcome {
  if (status >= 500) return '5xx'
  if (status >= 400) return '4xx'
  if (status >= 300) return '3xx'
  if (status >= 200) return '2xx'
  return '1xx'
}
