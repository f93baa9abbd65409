import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Host } from '../cluster/host.ts'
import { HostFlag } from '../cluster/host.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'

/** How one attempt on one endpoint ended; the `outcome` label of `outrigger_upstream_attempts_total`. */
export type AttemptOutcome = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'connect_failed' | 'reset' | 'timeout' | 'aborted'

/** Sub-millisecond to tens of seconds: a sidecar adds little, but upstreams can be slow. */
const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * Every metric of the contract in one registry. Label children are bound once per service (and per
 * host for attempts), never per request: prom-client's `labels()` allocates.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests = new Counter({ name: 'outrigger_requests_total', help: 'Requests answered, by service and HTTP status code.', labelNames: ['service', 'code'] as const, registers: [this.registry] })
  readonly duration = new Histogram({ name: 'outrigger_request_duration_seconds', help: 'Time from request to the end of the response, by service.', labelNames: ['service'] as const, buckets: DURATION_BUCKETS_SECONDS, registers: [this.registry] })
  readonly attempts = new Counter({ name: 'outrigger_upstream_attempts_total', help: 'Attempts on upstream endpoints, by outcome.', labelNames: ['service', 'endpoint', 'outcome'] as const, registers: [this.registry] })
  readonly retries = new Counter({ name: 'outrigger_retries_total', help: 'Extra attempts made on another endpoint.', labelNames: ['service'] as const, registers: [this.registry] })
  readonly endpoints = new Gauge({ name: 'outrigger_endpoints', help: 'Endpoints by state (healthy, unhealthy, ejected).', labelNames: ['service', 'state'] as const, registers: [this.registry] })
  readonly discoveryUpdates = new Counter({ name: 'outrigger_discovery_updates_total', help: 'Endpoint sets received from discovery.', labelNames: ['service', 'source'] as const, registers: [this.registry] })
  readonly discoveryErrors = new Counter({ name: 'outrigger_discovery_errors_total', help: 'Failed reads of a registry.', labelNames: ['service', 'source'] as const, registers: [this.registry] })
  readonly staleness: Gauge<'service'>
  readonly inFlight = new Gauge({ name: 'outrigger_in_flight_requests', help: 'Requests being forwarded now.', labelNames: ['service'] as const, registers: [this.registry] })

  readonly #clusters = new Set<ServiceCluster>()

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'outrigger_' })
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

  /** Removes every series of a service that is gone (after a reload). */
  removeService(cluster: ServiceCluster): void {
    this.#clusters.delete(cluster)
    const service = cluster.name
    for (const metric of [this.requests, this.duration, this.retries, this.endpoints, this.discoveryUpdates, this.discoveryErrors, this.staleness, this.inFlight, this.attempts]) {
      ;(metric as Counter<string>).remove({ service })
    }
  }

  /** Removes the attempt series of an endpoint that left. */
  removeHost(service: string, host: Host): void {
    this.attempts.remove({ service, endpoint: host.key })
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
    this.endpoints.set({ service: cluster.name, state: 'healthy' }, healthy)
    this.endpoints.set({ service: cluster.name, state: 'unhealthy' }, unhealthy)
    this.endpoints.set({ service: cluster.name, state: 'ejected' }, ejected)
  }
}

type CounterChild = ReturnType<Counter<string>['labels']>

/** Per-host attempt counters, bound lazily on the first attempt of each outcome. */
const hostCounters = new WeakMap<Host, Map<AttemptOutcome, CounterChild>>()

/** The children of one service, bound once. */
export class ServiceMetrics {
  readonly #metrics: Metrics
  readonly #service: string
  readonly #byCode = new Map<number, CounterChild>()
  readonly duration: ReturnType<Histogram<string>['labels']>
  readonly retries: CounterChild
  readonly inFlight: ReturnType<Gauge<string>['labels']>
  readonly discoveryUpdates: CounterChild
  readonly discoveryErrors: CounterChild

  constructor(metrics: Metrics, service: string, source: string) {
    this.#metrics = metrics
    this.#service = service
    this.duration = metrics.duration.labels(service)
    this.retries = metrics.retries.labels(service)
    this.inFlight = metrics.inFlight.labels(service)
    this.discoveryUpdates = metrics.discoveryUpdates.labels(service, source)
    this.discoveryErrors = metrics.discoveryErrors.labels(service, source)
    this.inFlight.set(0)
    this.retries.inc(0)
  }

  /** Counts an answered request by status code. */
  request(status: number): void {
    let child = this.#byCode.get(status)
    if (child === undefined) {
      child = this.#metrics.requests.labels(this.#service, String(status))
      this.#byCode.set(status, child)
    }
    child.inc()
  }

  attempt(host: Host, outcome: AttemptOutcome): void {
    let byOutcome = hostCounters.get(host)
    if (byOutcome === undefined) {
      byOutcome = new Map()
      hostCounters.set(host, byOutcome)
    }
    let child = byOutcome.get(outcome)
    if (child === undefined) {
      child = this.#metrics.attempts.labels(this.#service, host.key, outcome)
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
