import type { Logger } from 'pino'
import type { Config, ListenAddress, ServiceConfig } from './config/types.ts'
import { balancerFactory } from './balancer/registry.ts'
import { ServiceCluster } from './cluster/service-cluster.ts'
import type { ClusterObserver } from './cluster/service-cluster.ts'
import { createDiscovery } from './discovery/registry.ts'
import { EndpointStateStore } from './discovery/state.ts'
import { CONSUL_CONNECTIONS_WARNING } from './discovery/consul.ts'
import { createRegistrar } from './registration/registry.ts'
import type { Registrar } from './registration/types.ts'
import type { DiscoveryAdapter } from './discovery/types.ts'
import { Metrics } from './observability/metrics.ts'
import { notBuiltYet } from './config/not-built.ts'
import { ActiveHealthChecker } from './health/active.ts'
import { OutlierDetector } from './health/outlier.ts'
import type { Host } from './cluster/host.ts'
import { HostFlag } from './cluster/host.ts'
import { AdminServer } from './admin/server.ts'
import { ProxyListener } from './proxy/listener.ts'
import { Router } from './proxy/router.ts'
import type { ServiceRuntime, StickyCookie } from './proxy/service-runtime.ts'
import { RetryBudget } from './proxy/service-runtime.ts'
import { hashKeyReader } from './proxy/hash-key.ts'

/** A problem found while wiring a valid config (a strategy or source this build lacks, a port in use). */
export class StartupError extends Error {
  readonly path: string
  constructor(path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'StartupError'
    this.path = path
  }
}

export interface SidecarAddresses {
  listen: ListenAddress
  admin: ListenAddress
  /** Dedicated listeners by service name. */
  services: Record<string, ListenAddress>
}

interface RunningService {
  runtime: ServiceRuntime
  discovery: DiscoveryAdapter
  listener: ProxyListener | null
}

/**
 * Wires a config into running parts: per service a discovery adapter feeding a cluster whose
 * balancer publishes pickers; the shared and dedicated proxy listeners; the admin listener.
 * It holds no request logic of its own.
 */
export class Sidecar {
  readonly metrics: Metrics
  readonly #config: Config
  readonly #logger: Logger
  readonly #services = new Map<string, RunningService>()
  readonly #shared: ProxyListener
  readonly #admin: AdminServer
  /** One checker for all services: an endpoint shared by services is probed by one loop. */
  readonly #checker: ActiveHealthChecker
  readonly #state: EndpointStateStore
  /** Announces the local app (`register`); null when not configured. */
  readonly #registrar: Registrar | null
  #accepting = true
  #addresses: SidecarAddresses | null = null
  #stopping: Promise<void> | null = null

  private constructor(config: Config, logger: Logger) {
    this.#config = config
    this.#logger = logger
    this.metrics = new Metrics()
    this.#state = new EndpointStateStore(config.discovery.stateDir, logger.child({ module: 'discovery' }))
    this.#registrar = null
    if (config.register !== undefined) {
      this.#registrar = createRegistrar(config.register, config.discovery, logger.child({ module: 'register' }))
      if (this.#registrar === null) throw new StartupError('register.source', `"${config.register.source}" is not available in this build`)
    }
    this.#checker = new ActiveHealthChecker(logger.child({ module: 'health' }), {
      observer: { onCheck: (endpoint, passed) => this.metrics.healthCheck(endpoint, passed), onStop: (endpoint) => this.metrics.removeHealthChecks(endpoint) },
    })
    const accessLog = config.accessLog ? logger.child({ module: 'access' }) : null
    const proxyLogger = logger.child({ module: 'proxy' })
    for (const service of config.services) this.#services.set(service.name, this.#createService(service, accessLog, proxyLogger))
    const runtimes = [...this.#services.values()].map((s) => ({
      routable: { name: s.runtime.name, routes: s.runtime.config.routes, hasDedicatedListener: s.runtime.config.listen !== undefined },
      target: s.runtime,
    }))
    this.#shared = new ProxyListener(
      { kind: 'shared', router: new Router(runtimes) },
      { keepAliveTimeoutMs: 60_000, accessLog, logger: proxyLogger, limits: config.limits },
    )
    this.#admin = new AdminServer(
      { clusters: () => [...this.#services.values()].map((s) => s.runtime.cluster), accepting: () => this.#accepting },
      this.metrics,
      logger.child({ module: 'admin' }),
      config.adminToken,
    )
  }

  /** Starts everything; rejects (having released what it started) when a listener cannot bind. */
  static async start(config: Config, logger: Logger): Promise<Sidecar> {
    const sidecar = new Sidecar(config, logger)
    try {
      await sidecar.#start()
    } catch (err) {
      await sidecar.stop().catch(() => undefined)
      throw err
    }
    return sidecar
  }

  get addresses(): SidecarAddresses {
    if (this.#addresses === null) throw new Error('sidecar not started')
    return this.#addresses
  }

  clusters(): ServiceCluster[] {
    return [...this.#services.values()].map((s) => s.runtime.cluster)
  }

  async #start(): Promise<void> {
    const c = this.#config
    const admin = await bind(this.#admin.listen(c.admin.host, c.admin.port), 'admin', c.admin)
    const listen = await bind(this.#shared.listen(c.listen.host, c.listen.port), 'listen', c.listen)
    const services: Record<string, ListenAddress> = {}
    for (const [name, s] of this.#services) {
      if (s.listener !== null && s.runtime.config.listen !== undefined) {
        services[name] = await bind(s.listener.listen(s.runtime.config.listen.host, s.runtime.config.listen.port), `services.${name}.listen`, s.runtime.config.listen)
      }
    }
    this.#addresses = { listen, admin, services }
    for (const path of notBuiltYet(c)) this.#logger.warn({ path }, `${path}: not built yet in this version; ignored`)
    const consulServices = c.services.filter((s) => s.source === 'consul').length
    if (consulServices > CONSUL_CONNECTIONS_WARNING) {
      this.#logger.warn(
        { consulServices },
        `${consulServices} consul services hold ${consulServices} blocking queries (one connection each) to the agent, which by default closes connections beyond 200 per client address: raise limits.http_max_conns_per_client in the agent's configuration`,
      )
    }
    for (const s of this.#services.values()) this.#startDiscovery(s)
    this.#registrar?.start()
    this.#logger.info({ listen: fmt(listen), admin: fmt(admin), services: Object.keys(services).length > 0 ? Object.fromEntries(Object.entries(services).map(([k, v]) => [k, fmt(v)])) : undefined, count: this.#services.size }, 'outrigger started')
  }

  #createService(config: ServiceConfig, accessLog: Logger | null, proxyLogger: Logger): RunningService {
    const factory = balancerFactory(config.strategy)
    if (factory === undefined) throw new StartupError(`services.${config.name}.strategy`, `"${config.strategy}" is not available in this build`)
    const logger = this.#logger.child({ module: 'cluster' })
    const discovery = createDiscovery(config, { discovery: this.#config.discovery, logger: this.#logger.child({ module: 'discovery', service: config.name }) })
    if (discovery === null) throw new StartupError(`services.${config.name}.source`, `"${config.source}" is not available in this build`)
    const metrics = this.metrics
    const active = config.healthCheck.active
    const passive = config.healthCheck.passive
    /** Active-check subscriptions of this service's hosts, ended when a host leaves. */
    const unwatch = new Map<Host, () => void>()
    let outlier: OutlierDetector | null = null
    const observer: ClusterObserver = {
      onClusterChange: (cluster) => metrics.updateEndpointGauge(cluster),
      onHostAdded: active === undefined ? undefined : (cluster, host) => {
        unwatch.set(host, this.#checker.watch(host.address, host.port, active, (verdict) => cluster.setHostFlag(host, HostFlag.FAILED_ACTIVE_CHECK, !verdict.healthy, verdict.reason)))
      },
      onHostLeft: (_cluster, host) => {
        unwatch.get(host)?.()
        unwatch.delete(host)
        outlier?.forget(host)
      },
      onHostRemoved: (cluster, host) => metrics.removeHost(cluster.name, host),
    }
    const cluster = new ServiceCluster(config, factory(config), logger, observer)
    if (passive !== undefined) outlier = new OutlierDetector(cluster, passive, logger.child({ service: config.name }), Date.now, { onEject: (host) => metrics.ejection(config.name, host) })
    const runtime: ServiceRuntime = {
      name: config.name,
      config,
      cluster,
      metrics: metrics.forService(cluster, discovery.source),
      hashKey: config.strategy === 'consistent-hash' ? hashKeyReader(config.hashKey) : null,
      stickyCookie: stickyCookieOf(config),
      outlier,
      inFlight: 0,
      retryBudget: new RetryBudget(config.retry.budgetPercent),
    }
    const listener = config.listen === undefined ? null : new ProxyListener({ kind: 'dedicated', service: runtime }, { keepAliveTimeoutMs: 60_000, accessLog, logger: proxyLogger, limits: this.#config.limits })
    return { runtime, discovery, listener }
  }

  #startDiscovery(s: RunningService): void {
    const { cluster, metrics, name } = s.runtime
    const source = s.discovery.source
    // A static list needs no memory of its own; every registry-backed source keeps its last set.
    const persist = source !== 'static'
    s.discovery.start({
      onUpdate: (endpoints) => {
        metrics.discoveryUpdates.inc()
        cluster.setEndpoints(endpoints)
        if (persist) this.#state.save(name, source, endpoints)
      },
      onError: (error) => {
        metrics.discoveryErrors.inc()
        if (persist && !cluster.ready) {
          // The registry is down before it ever answered: route from the last known set, if any.
          const saved = this.#state.load(name)
          if (saved !== null) {
            this.#logger.warn({ service: name, endpoints: saved.length }, 'registry unreachable at start; routing from the saved endpoints')
            cluster.setEndpoints(saved)
          }
        }
        cluster.setDiscoveryError(error)
      },
    })
  }

  /**
   * Graceful stop: `/readyz` turns 503, listeners stop accepting, in-flight requests finish (up to
   * `shutdownTimeout`, then connections are cut), discovery stops, pools close.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    this.#accepting = false
    // Deregister first: peers stop sending new requests to the app while everything drains.
    await this.#registrar?.stop()
    const listeners = [this.#shared, ...[...this.#services.values()].flatMap((s) => (s.listener === null ? [] : [s.listener]))]
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      Promise.all(listeners.map((l) => l.drain())).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.#config.shutdownTimeoutMs)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      this.#logger.warn({ timeoutMs: this.#config.shutdownTimeoutMs }, 'shutdown timeout: closing the remaining connections')
      for (const l of listeners) l.destroy()
    }
    await Promise.all([...this.#services.values()].map((s) => s.discovery.stop()))
    for (const s of this.#services.values()) s.runtime.outlier?.stop()
    await this.#checker.close()
    await this.#state.flush()
    await Promise.all([...this.#services.values()].map((s) => (timedOut ? s.runtime.cluster.destroy() : s.runtime.cluster.close())))
    for (const l of listeners) l.destroy()
    await this.#admin.close()
    this.#logger.info('outrigger stopped')
  }
}

/** The sticky cookie of a service, or null; the schema allows it only with `hashKey: cookie:NAME`. */
function stickyCookieOf(config: ServiceConfig): StickyCookie | null {
  if (config.stickyCookie === undefined || config.hashKey.kind !== 'cookie') return null
  const maxAge = Math.max(1, Math.round(config.stickyCookie.ttlMs / 1000))
  return { name: config.hashKey.name, attributes: `Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax` }
}

async function bind(p: Promise<ListenAddress>, path: string, wanted: ListenAddress): Promise<ListenAddress> {
  try {
    return await p
  } catch (err) {
    throw new StartupError(path, `cannot listen on ${fmt(wanted)}: ${(err as Error).message}`)
  }
}

export function fmt(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
