import type { Logger } from 'pino'
import type { Config, DiscoveryConfig, ListenAddress, ServiceConfig } from './config/types.ts'
import { balancerFactory } from './balancer/registry.ts'
import { ServiceCluster } from './cluster/service-cluster.ts'
import type { ClusterObserver } from './cluster/service-cluster.ts'
import { createDiscovery, loadSources } from './discovery/registry.ts'
import { EndpointStateStore } from './discovery/state.ts'
import { CONSUL_CONNECTIONS_WARNING } from './discovery/consul-limits.ts'
import { createRegistrar, loadRegistrar } from './registration/registry.ts'
import type { Registrar } from './registration/types.ts'
import type { DiscoveryAdapter } from './discovery/types.ts'
import { Metrics } from './observability/metrics.ts'
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
import { createServicePolicies } from './policies/service-policies.ts'
import { planReload, summarize } from './reload/plan.ts'
import { closeTrafficLimits, createPolicies, policiesView } from './policies/policies.ts'
import type { CheckVerdict, CheckWatcher } from './health/active.ts'
import type { AdminSource } from './admin/server.ts'
import { serviceView } from './admin/services-view.ts'
import type { ServiceView } from './admin/services-view.ts'

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
  /**
   * Where the adapter's callbacks go. A reload that rebuilds the cluster but keeps the discovery
   * selection hands the running adapter over by pointing this at the new service.
   */
  binding: { service: RunningService }
  /** The dedicated listener, when the service has `listen`. */
  listener: ProxyListener | null
  /** Ends this service's active-check subscriptions. */
  unwatchHealth(): void
}

/**
 * Which parts this process runs. `all`: everything (one process, `workers: 1`). With workers
 * (src/workers/), the primary runs the `control` plane (registries, active checks, registration,
 * state, admin; no proxy listener) and each worker the `data` plane (the proxy listeners, fed by the
 * primary: no registry client, no active check, no admin). See docs/architecture.md, "Workers".
 */
export type Plane = 'all' | 'control' | 'data'

export interface SidecarOptions {
  plane?: Plane
  /** `data`: where a service's endpoint sets come from, instead of its registry. */
  discovery?: (config: ServiceConfig) => DiscoveryAdapter
  /** `data`: active-check verdicts decided elsewhere; returns the function that stops watching. */
  health?: (service: string, host: Host, watcher: CheckWatcher) => () => void
  /** `control`: a service's current cluster applied a discovery answer (endpoints or error). */
  onDiscovery?: (cluster: ServiceCluster) => void
  /** `control`: an active check's verdict on a host of a service changed. */
  onHealth?: (service: string, host: Host, verdict: CheckVerdict) => void
  /** `control`: more in-flight work that stop() waits for, within `shutdownTimeout` (the workers' drain). */
  drain?: () => Promise<void>
  /** `control`: the admin API's views merged over the workers. */
  admin?: Pick<AdminSource, 'servicesView' | 'metricsText'>
}

/** What a reload did, for the log line and the tests. */
export interface ReloadResult {
  added: string[]
  changed: string[]
  removed: string[]
  unchanged: string[]
}

/**
 * Wires a config into running parts: per service a discovery adapter feeding a cluster whose
 * balancer publishes pickers; the shared and dedicated proxy listeners; the admin listener.
 * It holds no request logic of its own.
 */
export class Sidecar {
  readonly metrics: Metrics
  #config: Config
  readonly #logger: Logger
  readonly #proxyLogger: Logger
  #accessLog: Logger | null
  readonly #services = new Map<string, RunningService>()
  #shared: ProxyListener
  #admin: AdminServer
  /** One checker for all services: an endpoint shared by services is probed by one loop. */
  readonly #checker: ActiveHealthChecker
  #state: EndpointStateStore
  /** Announces the local app (`register`); null when not configured. */
  #registrar: Registrar | null
  #accepting = true
  #addresses: SidecarAddresses | null = null
  #stopping: Promise<void> | null = null
  /** Resolves when stop() is called: a reload waiting for discovery gives up. */
  readonly #stopRequested: Promise<void>
  #requestStop!: () => void
  /**
   * Clusters not yet closed, by service name: during a reload a service has two (the old one draining,
   * the new one serving), and an endpoint's metric series belong to both until neither has it.
   */
  readonly #liveClusters = new Map<string, Set<ServiceCluster>>()
  /** Reloads run one at a time, in order. */
  #reloading: Promise<unknown> = Promise.resolve()
  /** Listeners and clusters a reload replaced, still finishing their in-flight requests. */
  readonly #retiring = new Set<{ listeners: ProxyListener[]; done: Promise<void>; destroy(): Promise<void> }>()
  readonly #plane: Plane
  readonly #options: SidecarOptions

  private constructor(config: Config, logger: Logger, options: SidecarOptions) {
    this.#config = config
    this.#logger = logger
    this.#options = options
    this.#plane = options.plane ?? 'all'
    this.#stopRequested = new Promise((resolve) => (this.#requestStop = resolve))
    this.metrics = new Metrics()
    this.#state = new EndpointStateStore(config.discovery.stateDir, logger.child({ module: 'discovery' }))
    this.#registrar = this.#plane === 'data' ? null : this.#createRegistrar(config)
    this.#checker = new ActiveHealthChecker(logger.child({ module: 'health' }), {
      observer: { onCheck: (endpoint, passed) => this.metrics.healthCheck(endpoint, passed), onStop: (endpoint) => this.metrics.removeHealthChecks(endpoint) },
    })
    this.#accessLog = config.accessLog ? logger.child({ module: 'access' }) : null
    this.#proxyLogger = logger.child({ module: 'proxy' })
    for (const service of config.services) this.#services.set(service.name, this.#createService(service, config.discovery))
    this.#shared = this.#createSharedListener(config)
    this.#admin = this.#createAdmin(config)
  }

  #createRegistrar(config: Config): Registrar | null {
    if (config.register === undefined) return null
    const registrar = createRegistrar(config.register, config.discovery, this.#logger.child({ module: 'register' }))
    if (registrar === null) throw new StartupError('register.source', `"${config.register.source}" is not available in this build`)
    return registrar
  }

  #createSharedListener(config: Config): ProxyListener {
    return new ProxyListener({ kind: 'shared', router: this.#router(this.#config) }, { keepAliveTimeoutMs: 60_000, accessLog: this.#accessLog, logger: this.#proxyLogger, limits: config.limits })
  }

  /**
   * The shared listener's routes over the current services, rebuilt whole on a reload. Routes come
   * from the config, not the runtime: a reload that changes only routes keeps the runtime.
   */
  #router(config: Config): Router<ServiceRuntime> {
    return new Router(
      config.services.map((c) => ({
        routable: { name: c.name, routes: c.routes, hasDedicatedListener: c.listen !== undefined },
        target: this.#services.get(c.name)!.runtime,
      })),
    )
  }

  #createAdmin(config: Config): AdminServer {
    return new AdminServer(
      {
        clusters: () => [...this.#services.values()].map((s) => s.runtime.cluster),
        accepting: () => this.#accepting,
        policies: (name) => {
          const s = this.#services.get(name)
          return s === undefined ? null : policiesView(s.runtime)
        },
        servicesView: this.#options.admin?.servicesView,
        metricsText: this.#options.admin?.metricsText,
      },
      this.metrics,
      this.#logger.child({ module: 'admin' }),
      config.adminToken,
    )
  }

  /** Starts everything; rejects (having released what it started) when a listener cannot bind. */
  static async start(config: Config, logger: Logger, options: SidecarOptions = {}): Promise<Sidecar> {
    await loadClients(config)
    const sidecar = new Sidecar(config, logger, options)
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

  /** What this process's `/api/services` shows (a worker reports its policy and cache state from it). */
  servicesView(): ServiceView[] {
    return [...this.#services.values()].map((s) => serviceView(s.runtime.cluster, policiesView(s.runtime)))
  }

  /** The config in force (the last one loaded successfully). */
  get config(): Config {
    return this.#config
  }

  async #start(): Promise<void> {
    const c = this.#config
    const admin = this.#plane === 'data' ? c.admin : await bind(this.#admin.listen(c.admin.host, c.admin.port), 'admin', c.admin)
    const listen = await this.#bindProxy(this.#shared, c.listen, 'listen')
    const services: Record<string, ListenAddress> = {}
    for (const [name, s] of this.#services) {
      if (s.listener !== null && s.runtime.config.listen !== undefined) {
        services[name] = await this.#bindProxy(s.listener, s.runtime.config.listen, `services.${name}.listen`)
      }
    }
    this.#addresses = { listen, admin, services }
    if (this.#plane !== 'data') this.#warnAbout(c)
    for (const s of this.#services.values()) void this.#startDiscovery(s)
    this.#registrar?.start()
    // With workers, the supervisor says `outrigger started` once every worker listens.
    if (this.#plane !== 'all') return
    this.#logger.info({ listen: fmt(listen), admin: fmt(admin), services: Object.keys(services).length > 0 ? Object.fromEntries(Object.entries(services).map(([k, v]) => [k, fmt(v)])) : undefined, count: this.#services.size }, 'outrigger started')
  }

  /**
   * Binds a proxy listener. A worker binds its own socket with SO_REUSEPORT beside its siblings' (the
   * kernel spreads connections; the primary never touches one); the control plane binds none.
   */
  #bindProxy(listener: ProxyListener, address: ListenAddress, path: string): Promise<ListenAddress> {
    if (this.#plane === 'control') return Promise.resolve(address)
    return bind(listener.listen(address.host, address.port, this.#plane === 'data'), path, address)
  }

  /** Start-up (and reload) warnings about a config that is valid but will not do all it says. */
  #warnAbout(c: Config): void {
    const consulServices = c.services.filter((s) => s.source === 'consul').length
    if (consulServices > CONSUL_CONNECTIONS_WARNING) {
      this.#logger.warn(
        { consulServices },
        `${consulServices} consul services hold ${consulServices} blocking queries (one connection each) to the agent, which by default closes connections beyond 200 per client address: raise limits.http_max_conns_per_client in the agent's configuration`,
      )
    }
  }

  /**
   * Builds a service's parts without starting anything: discovery is started by `#startDiscovery`,
   * the dedicated listener (if any) is bound by the caller.
   */
  #createService(config: ServiceConfig, discoveryConfig: DiscoveryConfig, createListener = true, handedOver?: DiscoveryAdapter): RunningService {
    const factory = balancerFactory(config.strategy)
    if (factory === undefined) throw new StartupError(`services.${config.name}.strategy`, `"${config.strategy}" is not available in this build`)
    const logger = this.#logger.child({ module: 'cluster' })
    const discovery = handedOver ?? this.#createAdapter(config, discoveryConfig)
    const metrics = this.metrics
    const active = config.healthCheck.active
    const passive = config.healthCheck.passive
    /** Active-check subscriptions of this service's hosts, ended when a host leaves. */
    const unwatch = new Map<Host, () => void>()
    let outlier: OutlierDetector | null = null
    const observer: ClusterObserver = {
      onClusterChange: (cluster) => metrics.updateEndpointGauge(cluster),
      onHostAdded: active === undefined ? undefined : (cluster, host) => {
        const onHealth = this.#options.onHealth
        const watcher: CheckWatcher = (verdict) => {
          cluster.setHostFlag(host, HostFlag.FAILED_ACTIVE_CHECK, !verdict.healthy, verdict.reason)
          onHealth?.(config.name, host, verdict)
        }
        const health = this.#options.health
        unwatch.set(host, health !== undefined ? health(config.name, host, watcher) : this.#checker.watch(host.address, host.port, active, watcher, host.tls))
      },
      onHostLeft: (_cluster, host) => {
        unwatch.get(host)?.()
        unwatch.delete(host)
        outlier?.forget(host)
      },
      onHostRemoved: (cluster, host) => this.#removeHostSeries(cluster, host),
    }
    const policies = createServicePolicies(config, metrics, logger.child({ service: config.name }), (path, message) => new StartupError(path, message))
    const limits = createPolicies(config, metrics)
    const cluster = new ServiceCluster(config, factory(config), logger, observer, Date.now, policies)
    let live = this.#liveClusters.get(config.name)
    if (live === undefined) this.#liveClusters.set(config.name, (live = new Set()))
    live.add(cluster)
    if (passive !== undefined) outlier = new OutlierDetector(cluster, passive, logger.child({ service: config.name }), Date.now, { onEject: (host) => metrics.ejection(config.name, host) })
    const runtime: ServiceRuntime = {
      name: config.name,
      config,
      cluster,
      metrics: metrics.forService(cluster, discovery.source),
      hashKey: config.strategy === 'consistent-hash' ? hashKeyReader(config.hashKey) : null,
      stickyCookie: stickyCookieOf(config),
      outlier,
      ...limits,
      cache: policies.cache,
      closePolicies: () => {
        closeTrafficLimits(limits)
        policies.close()
      },
      inFlight: 0,
      retryBudget: new RetryBudget(config.retry.budgetPercent),
    }
    const listener = createListener && config.listen !== undefined ? this.#dedicatedListener(runtime, this.#config) : null
    const unwatchHealth = (): void => {
      for (const stop of unwatch.values()) stop()
      unwatch.clear()
    }
    const binding = {} as { service: RunningService }
    binding.service = { runtime, discovery, listener, unwatchHealth, binding }
    return binding.service
  }

  #createAdapter(config: ServiceConfig, discoveryConfig: DiscoveryConfig): DiscoveryAdapter {
    if (this.#options.discovery !== undefined) return this.#options.discovery(config)
    const discovery = createDiscovery(config, { discovery: discoveryConfig, logger: this.#logger.child({ module: 'discovery', service: config.name }) })
    if (discovery === null) throw new StartupError(`services.${config.name}.source`, `"${config.source}" is not available in this build`)
    return discovery
  }

  #dedicatedListener(runtime: ServiceRuntime, config: Config): ProxyListener {
    return new ProxyListener({ kind: 'dedicated', service: runtime }, { keepAliveTimeoutMs: 60_000, accessLog: this.#accessLog, logger: this.#proxyLogger, limits: config.limits })
  }

  /** Starts a service's adapter; resolves at its first answer (endpoints or error), never rejects. */
  #startDiscovery(s: RunningService): Promise<void> {
    let answered!: () => void
    const firstAnswer = new Promise<void>((resolve) => (answered = resolve))
    const binding = s.binding
    const name = s.runtime.name
    const source = s.discovery.source
    // A static list needs no memory of its own; every registry-backed source keeps its last set.
    // A worker's sets come from the primary, which keeps them.
    const persist = source !== 'static' && this.#plane !== 'data'
    const published = (cluster: ServiceCluster): void => {
      if (this.#services.get(name)?.runtime.cluster === cluster) this.#options.onDiscovery?.(cluster)
    }
    s.discovery.start({
      onUpdate: (endpoints) => {
        const { metrics, cluster } = binding.service.runtime
        metrics.discoveryUpdates.inc()
        cluster.setEndpoints(endpoints)
        if (persist) this.#state.save(name, source, endpoints)
        published(cluster)
        answered()
      },
      onError: (error) => {
        const { metrics, cluster } = binding.service.runtime
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
        published(cluster)
        answered()
      },
    })
    return firstAnswer
  }

  /**
   * Applies a new config while serving: services that did not change keep running untouched (their
   * connections, health and in-flight requests); changed ones are rebuilt beside the old and swapped
   * in (see reload/plan.ts); removed ones stop taking requests and drain. New listeners are bound
   * before anything is swapped, so a reload that cannot bind changes nothing and rejects with a
   * StartupError. Reloads run one at a time.
   */
  reload(next: Config): Promise<ReloadResult> {
    const run = this.#reloading.then(() => this.#reload(next))
    this.#reloading = run.catch(() => undefined)
    return run
  }

  async #reload(next: Config): Promise<ReloadResult> {
    if (this.#stopping !== null) throw new StartupError('reload', 'the sidecar is shutting down')
    const prev = this.#config
    const plan = planReload(prev, next)
    const result = summarize(plan)
    if (plan.noop) {
      this.#logger.info('config reloaded: nothing changed')
      return result
    }
    await loadClients(next)
    if (this.#plane === 'all' && prev.workers !== next.workers) this.#logger.warn({ workers: next.workers }, 'workers: a change between one process and several takes effect at the next start')
    const configs = new Map(next.services.map((c) => [c.name, c]))

    // 1. Build everything new without starting it; bind new listeners. Undone on any failure.
    const built = new Map<string, RunningService>()
    const adapters = new Map<string, { discovery: DiscoveryAdapter; binding: { service: RunningService } }>()
    const listeners = new Map<string, { listener: ProxyListener; address: ListenAddress }>()
    let shared: { listener: ProxyListener; address: ListenAddress } | null = null
    let admin: { server: AdminServer; address: ListenAddress } | null = null
    let registrar: Registrar | null = null
    const undo = async (): Promise<void> => {
      for (const [name, s] of built) await this.#discard(s, this.#services.get(name)?.discovery.source ?? null)
      for (const a of adapters.values()) await a.discovery.stop()
      for (const l of [...listeners.values(), ...(shared === null ? [] : [shared])]) {
        l.listener.server.close()
        l.listener.destroy()
      }
      await admin?.server.close()
    }
    try {
      if (plan.reregister && this.#plane !== 'data') registrar = this.#createRegistrar(next)
      for (const p of plan.services) {
        const c = configs.get(p.name)
        if (c === undefined) continue
        if (p.kind === 'added' || p.rebuildCluster) {
          const handedOver = p.kind === 'changed' && !p.restartDiscovery ? this.#services.get(p.name)!.discovery : undefined
          built.set(p.name, this.#createService(c, next.discovery, false, handedOver))
        }
        else if (p.restartDiscovery) {
          const binding = { service: this.#services.get(p.name)! }
          adapters.set(p.name, { discovery: this.#createAdapter(c, next.discovery), binding })
        }
      }
      if (plan.relistenShared) {
        const listener = this.#createSharedListener(next)
        shared = { listener, address: await this.#bindProxy(listener, next.listen, 'listen') }
      }
      for (const p of plan.services) {
        const c = configs.get(p.name)
        if (c?.listen === undefined || !(p.kind === 'added' || p.relisten)) continue
        const runtime = built.get(p.name)?.runtime ?? this.#services.get(p.name)!.runtime
        const listener = this.#dedicatedListener(runtime, next)
        listeners.set(p.name, { listener, address: await this.#bindProxy(listener, c.listen, `services.${p.name}.listen`) })
      }
      if (plan.relistenAdmin && this.#plane !== 'data') {
        const server = this.#createAdmin(next)
        admin = { server, address: await bind(server.listen(next.admin.host, next.admin.port), 'admin', next.admin) }
      }
    } catch (err) {
      await undo()
      throw err
    }

    // 2. Start discovery where it is new. A rebuilt cluster with a new adapter is seeded with its
    // predecessor's endpoints (and their staleness) first, so it routes at once and the adapter's
    // answer is diffed against them; one that takes over the running adapter is seeded at the swap.
    const answers: Promise<void>[] = []
    for (const p of plan.services) {
      const s = built.get(p.name)
      if (s === undefined || (p.kind === 'changed' && !p.restartDiscovery)) continue
      const old = this.#services.get(p.name)
      if (old !== undefined) seedFrom(s.runtime.cluster, old.runtime.cluster)
      answers.push(this.#startDiscovery(s))
    }
    for (const a of adapters.values()) {
      answers.push(this.#startDiscovery({ ...a.binding.service, discovery: a.discovery, binding: a.binding }))
    }
    // Warm up (as Envoy warms a cluster): new adapters get a moment for their first answer, so an
    // added service is routable when its routes appear. Bounded: a registry that is down does not
    // hold a reload (the service then waits for it, as at start, and `/readyz` says so).
    let warmTimer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(answers), this.#stopRequested, new Promise<void>((resolve) => (warmTimer = setTimeout(resolve, RELOAD_WARM_TIMEOUT_MS)))])
    clearTimeout(warmTimer)
    if (this.#stopping !== null) {
      await undo()
      throw new StartupError('reload', 'the sidecar is shutting down')
    }

    // 3. Swap, synchronously: from here on every new request sees the new config. Health verdicts of
    // endpoints already checked reach a new cluster's hosts through the shared checker (a microtask
    // queued by seeding), before any request can be routed to them.
    const retired: Array<{ service: RunningService; keepDiscovery: boolean; keepListener: boolean; removed: boolean }> = []
    const retiredListeners: ProxyListener[] = []
    for (const p of plan.services) {
      const old = this.#services.get(p.name)
      if (p.kind === 'removed') {
        this.#services.delete(p.name)
        retired.push({ service: old!, keepDiscovery: false, keepListener: false, removed: true })
        continue
      }
      if (p.kind === 'unchanged') continue
      const fresh = listeners.get(p.name)?.listener ?? null
      const s = built.get(p.name)
      if (s !== undefined) {
        if (old !== undefined) {
          if (!p.restartDiscovery) {
            // Hand the running adapter over: its callbacks follow the binding.
            seedFrom(s.runtime.cluster, old.runtime.cluster)
            s.discovery = old.discovery
            s.binding = old.binding
            s.binding.service = s
          }
          if (!p.relisten && old.listener !== null) {
            s.listener = old.listener
            s.listener.target = { kind: 'dedicated', service: s.runtime }
          }
          this.metrics.replaceCluster(old.runtime.cluster, old.discovery.source, s.discovery.source)
          retired.push({ service: old, keepDiscovery: !p.restartDiscovery, keepListener: !p.relisten, removed: false })
        }
        if (fresh !== null) s.listener = fresh
        this.#services.set(p.name, s)
        continue
      }
      // The cluster is kept: only discovery, routes or the dedicated listener change.
      const kept = old!
      const adapter = adapters.get(p.name)
      if (adapter !== undefined) {
        const previous = kept.discovery
        kept.discovery = adapter.discovery
        kept.binding = adapter.binding
        void previous.stop()
      }
      if (p.relisten) {
        if (kept.listener !== null) retiredListeners.push(kept.listener)
        kept.listener = fresh
      }
    }
    this.#config = next
    if (shared !== null) {
      retiredListeners.push(this.#shared)
      this.#shared = shared.listener
    }
    this.#shared.target = { kind: 'shared', router: this.#router(next) }
    const accessLogChanged = prev.accessLog !== next.accessLog
    if (accessLogChanged) this.#accessLog = next.accessLog ? this.#logger.child({ module: 'access' }) : null
    for (const l of this.#liveListeners()) {
      l.setAccessLog(this.#accessLog)
      if (!l.setLimits(next.limits)) this.#logger.warn('limits.maxHeaderSize: a new value applies to listeners bound from now on (a restart, or a listener moved to another port)')
    }
    if (admin === null && prev.adminToken !== next.adminToken) this.#admin.setToken(next.adminToken)
    if (admin !== null) {
      void this.#admin.close()
      this.#admin = admin.server
    }
    if (plan.restateDir) {
      void this.#state.flush()
      this.#state = new EndpointStateStore(next.discovery.stateDir, this.#logger.child({ module: 'discovery' }))
    }
    if (plan.reregister && this.#plane !== 'data') {
      const previous = this.#registrar
      this.#registrar = registrar
      // Deregister the old announcement before the new one goes out (they may share an ID).
      void (previous?.stop() ?? Promise.resolve()).then(() => registrar?.start())
    }
    const addresses = this.#addresses!
    this.#addresses = {
      listen: shared?.address ?? addresses.listen,
      admin: admin?.address ?? addresses.admin,
      services: Object.fromEntries(
        next.services.flatMap((c) => {
          const address = listeners.get(c.name)?.address ?? addresses.services[c.name]
          return c.listen === undefined || address === undefined ? [] : [[c.name, address] as const]
        }),
      ),
    }

    // 4. What was replaced drains in the background; stop() waits for it (or cuts it at its timeout).
    for (const l of retiredListeners) this.#retire([l], null)
    for (const r of retired) this.#retireService(r.service, r)
    if (this.#plane !== 'data') this.#warnAbout(next)
    this.#logger.info({ ...result, unchanged: result.unchanged.length }, 'config reloaded')
    return result
  }

  /** Listeners serving now: the shared one and every dedicated one. */
  #liveListeners(): ProxyListener[] {
    return [this.#shared, ...[...this.#services.values()].flatMap((s) => (s.listener === null ? [] : [s.listener]))]
  }

  /** Drops an endpoint's series when no live cluster of its service has that endpoint any more. */
  #removeHostSeries(cluster: ServiceCluster, host: Host): void {
    for (const other of this.#liveClusters.get(cluster.name) ?? []) {
      if (other !== cluster && other.hosts().some((h) => h.key === host.key)) return
    }
    this.metrics.removeHost(cluster.name, host)
  }

  /** A cluster closed for good: it no longer holds series, and those only it held go. */
  #clusterClosed(cluster: ServiceCluster, hosts: readonly Host[]): void {
    const live = this.#liveClusters.get(cluster.name)
    live?.delete(cluster)
    if (live?.size === 0) this.#liveClusters.delete(cluster.name)
    for (const host of hosts) this.#removeHostSeries(cluster, host)
  }

  /** Stops a replaced or removed service once its in-flight requests are done. */
  #retireService(s: RunningService, how: { keepDiscovery: boolean; keepListener: boolean; removed: boolean }): void {
    const cluster = s.runtime.cluster
    const listeners = !how.keepListener && s.listener !== null ? [s.listener] : []
    this.#retire(listeners, cluster, async () => {
      if (!how.keepDiscovery) await s.discovery.stop()
      s.runtime.outlier?.stop()
      // After the successor subscribed (it was seeded before the swap), so shared check loops go on.
      s.unwatchHealth()
    }, (hosts) => {
      // Only now: requests still waiting on the old breaker got their slots as the old ones finished.
      s.runtime.closePolicies()
      if (how.removed && !this.#services.has(cluster.name)) {
        this.#clusterClosed(cluster, [])
        this.metrics.removeService(cluster)
      } else this.#clusterClosed(cluster, hosts)
    })
  }

  /** Drains listeners and closes a cluster in the background, tracked for stop(). */
  #retire(listeners: ProxyListener[], cluster: ServiceCluster | null, first?: () => Promise<void>, last?: (hosts: Host[]) => void): void {
    const entry = {
      listeners,
      done: (async () => {
        await first?.()
        await Promise.all(listeners.map((l) => l.drain()))
        const hosts = cluster === null ? [] : [...cluster.hosts(), ...cluster.drainingHosts()]
        await cluster?.close()
        for (const l of listeners) l.destroy()
        last?.(hosts)
      })().catch((err: unknown) => this.#logger.error({ err }, 'retiring a replaced service failed')),
      destroy: async () => {
        for (const l of listeners) l.destroy()
        await cluster?.destroy()
      },
    }
    this.#retiring.add(entry)
    void entry.done.then(() => this.#retiring.delete(entry))
  }

  /** Releases a service built by a reload that was then abandoned. */
  async #discard(s: RunningService, previousSource: string | null): Promise<void> {
    // A cluster that was to take over the running adapter leaves it running.
    if (s.discovery !== this.#services.get(s.runtime.name)?.discovery) await s.discovery.stop()
    s.runtime.outlier?.stop()
    s.runtime.closePolicies()
    s.unwatchHealth()
    const hosts = [...s.runtime.cluster.hosts(), ...s.runtime.cluster.drainingHosts()]
    await s.runtime.cluster.destroy()
    this.#clusterClosed(s.runtime.cluster, previousSource === null ? [] : hosts)
    if (previousSource === null) this.metrics.removeService(s.runtime.cluster)
    else this.metrics.replaceCluster(s.runtime.cluster, s.discovery.source, previousSource)
  }

  /**
   * Graceful stop: `/readyz` turns 503, listeners stop accepting, in-flight requests finish (up to
   * `shutdownTimeout`, then connections are cut), discovery stops, pools close.
   */
  stop(): Promise<void> {
    this.#requestStop()
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    this.#accepting = false
    // A reload in progress finishes (or gives up) first, so what it built is either live or released.
    await this.#reloading
    // Deregister first: peers stop sending new requests to the app while everything drains.
    await this.#registrar?.stop()
    const listeners = this.#liveListeners()
    const retiring = [...this.#retiring]
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      Promise.all([...listeners.map((l) => l.drain()), ...retiring.map((r) => r.done), this.#options.drain?.()]).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.#config.shutdownTimeoutMs)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      this.#logger.warn({ timeoutMs: this.#config.shutdownTimeoutMs }, 'shutdown timeout: closing the remaining connections')
      for (const l of listeners) l.destroy()
      await Promise.all(retiring.map((r) => r.destroy()))
    }
    await Promise.all([...this.#services.values()].map((s) => s.discovery.stop()))
    for (const s of this.#services.values()) {
      s.runtime.outlier?.stop()
      s.runtime.closePolicies()
    }
    await this.#checker.close()
    await this.#state.flush()
    await Promise.all([...this.#services.values()].map((s) => (timedOut ? s.runtime.cluster.destroy() : s.runtime.cluster.close())))
    for (const l of listeners) l.destroy()
    if (this.#plane !== 'data') await this.#admin.close()
    this.#logger.info('outrigger stopped')
  }
}

/** How long a reload waits for new discovery adapters' first answers before swapping anyway. */
export const RELOAD_WARM_TIMEOUT_MS = 5000

/** Starts a rebuilt cluster from what its predecessor knows: its members and its discovery status. */
function seedFrom(cluster: ServiceCluster, previous: ServiceCluster): void {
  if (!previous.ready) return
  cluster.setEndpoints(previous.endpoints())
  Object.assign(cluster.discovery, previous.discovery)
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

/** Loads the registry clients `config` uses (they are not loaded otherwise; see discovery/registry.ts). */
async function loadClients(config: Config): Promise<void> {
  await loadSources(config.services.map((s) => s.source))
  if (config.register !== undefined) await loadRegistrar(config.register.source)
}
