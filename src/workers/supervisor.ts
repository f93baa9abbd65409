/**
 * `workers: N` (N > 1): the primary process. It runs the control plane (a Sidecar with
 * `plane: 'control'`: registries, active checks, registration, the state store, the admin API,
 * reload) and N node:cluster workers that run the data plane. See docs/architecture.md, "Workers".
 */
import cluster from 'node:cluster'
import type { Worker } from 'node:cluster'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { Config } from '../config/types.ts'
import type { ServiceCluster } from '../cluster/service-cluster.ts'
import { HostFlag } from '../cluster/host.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { ReloadResult, SidecarAddresses } from '../sidecar.ts'
import { RELOAD_WARM_TIMEOUT_MS, Sidecar, StartupError, fmt } from '../sidecar.ts'
import type { FromWorker, ServiceState, ToWorker } from './protocol.ts'
import { isFromWorker } from './protocol.ts'
import { mergeMetrics, mergeServices } from './aggregate.ts'
import type { WorkerReport } from './aggregate.ts'
import { perWorkerConfig, workerCount } from './per-worker.ts'
import { resolveProxyPorts } from './ports.ts'

/** How long the admin API waits for a worker's counts before answering without them. */
export const COLLECT_TIMEOUT_MS = 1000
/** How long a worker may take from fork to listening. */
export const WORKER_START_TIMEOUT_MS = 30_000
/** Restart backoff after a worker died: doubling from the first, capped. */
export const RESTART_BACKOFF_FIRST_MS = 100
export const RESTART_BACKOFF_MAX_MS = 10_000
/** A worker that ran this long before dying resets the backoff. */
export const RESTART_STREAK_RESET_MS = 10_000
/** After the primary's own stop, how long workers still draining get before SIGKILL. */
const STOP_GRACE_MS = 2000

export interface SupervisorOptions {
  /** Passed to the workers' loggers. */
  logLevel: string
  pretty: boolean
}

type Status = 'forked' | 'starting' | 'ready' | 'stopping'

/** One place for a worker: the process in it changes when one dies and is restarted. */
interface Slot {
  readonly id: number
  worker: Worker | null
  status: Status
  forkedAtMs: number
  /** Consecutive short-lived runs, for the backoff. */
  streak: number
  restartTimer: NodeJS.Timeout | null
  /** Answers awaited from this worker, by request id. */
  readonly waiting: Map<number, (m: FromWorker) => void>
  /** Settled when the current process became ready (or failed to). */
  started: { resolve(): void; reject(err: Error): void } | null
  exited: Promise<void>
}

/** The state of one service as the workers need it, read from the primary's cluster. */
function stateOf(c: ServiceCluster): ServiceState {
  const hosts = c.hosts()
  return {
    service: c.name,
    endpoints: c.ready ? hosts.map((h) => ({ address: h.address, port: h.port, weight: h.weight, meta: h.meta })) : null,
    error: c.discovery.stale ? c.discovery.error : null,
    failed: hosts.filter((h) => (h.flags & HostFlag.FAILED_ACTIVE_CHECK) !== 0).map((h) => [h.key, h.reasons.get(HostFlag.FAILED_ACTIVE_CHECK) ?? 'failed active check']),
  }
}

/** The worker module next to this one (`.ts` from source, `.js` once built). */
function workerEntry(): string {
  const self = fileURLToPath(import.meta.url)
  return path.join(path.dirname(self), `worker${path.extname(self)}`)
}

export class Supervisor {
  readonly #logger: Logger
  /** The root logger, for the control plane's own modules. */
  readonly #root: Logger
  readonly #options: SupervisorOptions
  #sidecar!: Sidecar
  /** The config as the file wrote it (ports maybe 0) and as it runs (concrete proxy ports). */
  #written: Config
  #resolved!: Config
  #count: number
  readonly #slots = new Map<number, Slot>()
  #nextRequest = 1
  #stopping = false
  #stopped: Promise<void> | null = null
  #reloading: Promise<unknown> = Promise.resolve()
  #addresses: SidecarAddresses | null = null

  private constructor(config: Config, logger: Logger, options: SupervisorOptions) {
    this.#written = config
    this.#count = workerCount(config.workers)
    this.#root = logger
    this.#logger = logger.child({ module: 'workers' })
    this.#options = options
  }

  /** Starts the control plane and `workers` workers; resolves once every worker listens. */
  static async start(config: Config, logger: Logger, options: SupervisorOptions): Promise<Supervisor> {
    const s = new Supervisor(config, logger, options)
    try {
      await s.#start()
    } catch (err) {
      await s.stop().catch(() => undefined)
      throw err
    }
    return s
  }

  /** The primary's metrics: the reloader records reloads there. */
  get metrics(): Metrics {
    return this.#sidecar.metrics
  }

  get addresses(): SidecarAddresses {
    if (this.#addresses === null) throw new Error('not started')
    return this.#addresses
  }

  async #start(): Promise<void> {
    this.#resolved = await resolveProxyPorts(this.#written, null)
    this.#sidecar = await Sidecar.start(this.#resolved, this.#root, {
      plane: 'control',
      onDiscovery: (c) => this.#broadcast({ t: 'endpoints', state: stateOf(c) }),
      onHealth: (service, host, verdict) => this.#broadcast({ t: 'health', service, key: host.key, healthy: verdict.healthy, reason: verdict.reason }),
      drain: () => this.#stopWorkers(),
      admin: {
        servicesView: async () => mergeServices(this.#sidecar.servicesView(), await this.#collect(false)),
        metricsText: async () => {
          const reports = await this.#collect(true)
          const views = mergeServices(this.#sidecar.servicesView(), reports)
          return (await mergeMetrics(await this.#sidecar.metrics.registry.getMetricsAsJSON(), reports, views)).body
        },
      },
    })
    cluster.setupPrimary({ exec: workerEntry(), args: [], silent: false })
    const started: Promise<void>[] = []
    for (let id = 1; id <= this.#count; id++) started.push(this.#fork(this.#newSlot(id)))
    await Promise.all(started)
    const a = this.#sidecar.addresses
    const c = this.#resolved
    const services = Object.fromEntries(c.services.flatMap((s) => (s.listen === undefined ? [] : [[s.name, fmt(s.listen)] as const])))
    this.#addresses = { listen: c.listen, admin: a.admin, services: Object.fromEntries(c.services.flatMap((s) => (s.listen === undefined ? [] : [[s.name, s.listen] as const]))) }
    this.#logger.info(
      { listen: fmt(c.listen), admin: fmt(a.admin), services: Object.keys(services).length > 0 ? services : undefined, count: c.services.length, workers: this.#count, pids: [...this.#slots.values()].map((s) => s.worker?.process.pid) },
      'outrigger started',
    )
  }

  #newSlot(id: number): Slot {
    const slot: Slot = { id, worker: null, status: 'forked', forkedAtMs: 0, streak: 0, restartTimer: null, waiting: new Map(), started: null, exited: Promise.resolve() }
    this.#slots.set(id, slot)
    return slot
  }

  /** Forks the slot's process; resolves when it listens, rejects when it could not start. */
  #fork(slot: Slot): Promise<void> {
    const worker = cluster.fork({ OUTRIGGER_WORKER_SLOT: String(slot.id), OUTRIGGER_LOG_LEVEL: this.#options.logLevel, OUTRIGGER_LOG_PRETTY: this.#options.pretty ? '1' : '' })
    slot.worker = worker
    slot.status = 'forked'
    slot.forkedAtMs = Date.now()
    slot.exited = new Promise((resolve) => worker.once('exit', () => resolve()))
    const started = new Promise<void>((resolve, reject) => (slot.started = { resolve, reject }))
    const timer = setTimeout(() => slot.started?.reject(new StartupError('workers', `worker ${slot.id} did not start within ${WORKER_START_TIMEOUT_MS / 1000} s`)), WORKER_START_TIMEOUT_MS)
    void started.then(() => clearTimeout(timer), () => clearTimeout(timer))
    worker.on('message', (m: unknown) => {
      if (isFromWorker(m)) this.#onMessage(slot, worker, m)
    })
    worker.once('exit', (code, signal) => this.#onExit(slot, worker, code, signal))
    return started
  }

  #onMessage(slot: Slot, worker: Worker, m: FromWorker): void {
    if (slot.worker !== worker) return
    switch (m.t) {
      case 'hello':
        if (this.#stopping) {
          this.#send(worker, { t: 'stop' })
          return
        }
        slot.status = 'starting'
        // The state goes with the config, so the worker routes from its first request; later
        // changes follow as messages (sent only to workers that got this snapshot).
        this.#send(worker, { t: 'start', config: perWorkerConfig(this.#resolved, this.#count), state: this.#sidecar.clusters().map(stateOf) })
        return
      case 'ready':
        if (slot.status === 'starting') slot.status = 'ready'
        slot.started?.resolve()
        slot.started = null
        return
      case 'failed':
        slot.started?.reject(new StartupError('workers', `worker ${slot.id} cannot start: ${m.message}`))
        slot.started = null
        return
      case 'reloaded':
      case 'collected':
        slot.waiting.get(m.id)?.(m)
        slot.waiting.delete(m.id)
        return
    }
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = null
    for (const answer of slot.waiting.values()) answer({ t: 'reloaded', id: 0, error: 'the worker exited' })
    slot.waiting.clear()
    if (slot.started !== null) {
      // It never listened: a start (or restart) failure, not a crash to retry at once.
      slot.started.reject(new StartupError('workers', `worker ${slot.id} exited before listening (${signal ?? `code ${code}`})`))
      slot.started = null
    }
    if (this.#stopping || slot.status === 'stopping' || !this.#slots.has(slot.id)) return
    const ranMs = Date.now() - slot.forkedAtMs
    slot.streak = ranMs >= RESTART_STREAK_RESET_MS ? 0 : slot.streak + 1
    const delayMs = slot.streak === 0 ? 0 : Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_FIRST_MS * 2 ** (slot.streak - 1))
    this.#logger.error({ worker: slot.id, workerPid: worker.process.pid, code, signal, restartInMs: delayMs }, 'worker died; restarting it')
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null
      if (this.#stopping) return
      this.#fork(slot).then(
        () => this.#logger.info({ worker: slot.id, workerPid: slot.worker?.process.pid }, 'worker restarted'),
        (err: unknown) => this.#logger.error({ worker: slot.id, err: (err as Error).message }, 'worker restart failed'),
      )
    }, delayMs)
  }

  #send(worker: Worker, m: ToWorker): void {
    if (!worker.isConnected()) return
    try {
      worker.send(m)
    } catch (err) {
      // The channel closed in between; its exit handler takes care of the worker.
      this.#logger.debug({ err }, 'message to a worker lost')
    }
  }

  /** To every worker that has its start snapshot (a starting one gets the state with `start`). */
  #broadcast(m: ToWorker): void {
    for (const slot of this.#slots.values()) {
      if (slot.worker !== null && (slot.status === 'starting' || slot.status === 'ready')) this.#send(slot.worker, m)
    }
  }

  /** Asks every ready worker and waits up to `timeoutMs` for each answer; a silent one is left out. */
  async #ask<T extends FromWorker>(make: (id: number) => ToWorker, timeoutMs: number): Promise<Array<{ slot: Slot; answer: T | null }>> {
    const asks = [...this.#slots.values()]
      .filter((s) => s.status === 'ready' && s.worker !== null)
      .map((slot) => {
        const id = this.#nextRequest++
        return new Promise<{ slot: Slot; answer: T | null }>((resolve) => {
          const timer = setTimeout(() => {
            slot.waiting.delete(id)
            resolve({ slot, answer: null })
          }, timeoutMs)
          slot.waiting.set(id, (m) => {
            clearTimeout(timer)
            resolve({ slot, answer: m as T })
          })
          this.#send(slot.worker!, make(id))
        })
      })
    return Promise.all(asks)
  }

  async #collect(metrics: boolean): Promise<WorkerReport[]> {
    const answers = await this.#ask<Extract<FromWorker, { t: 'collected' }>>((id) => ({ t: 'collect', id, metrics }), COLLECT_TIMEOUT_MS)
    const reports: WorkerReport[] = []
    for (const { slot, answer } of answers) {
      if (answer === null || answer.t !== 'collected') this.#logger.warn({ worker: slot.id }, 'worker did not report its counts in time; left out of this answer')
      else reports.push({ worker: slot.id, services: answer.services, metrics: answer.metrics })
    }
    return reports
  }

  /**
   * Validated by the reloader already; applied by the primary first (a refusal there changes nothing
   * anywhere), then by every worker. New proxy addresses are checked (bound once) before anything.
   */
  reload(next: Config): Promise<ReloadResult> {
    const run = this.#reloading.then(() => this.#reload(next))
    this.#reloading = run.catch(() => undefined)
    return run
  }

  async #reload(next: Config): Promise<ReloadResult> {
    if (this.#stopping) throw new StartupError('reload', 'the sidecar is shutting down')
    const resolved = await resolveProxyPorts(next, { written: this.#written, resolved: this.#resolved })
    const result = await this.#sidecar.reload(resolved)
    this.#written = next
    this.#resolved = resolved
    const count = workerCount(next.workers)
    const config = perWorkerConfig(resolved, count)
    const changedCount = count !== this.#count
    this.#count = count
    // What the primary's rebuilt clusters learned while warming up, before the workers rebuild theirs.
    for (const c of this.#sidecar.clusters()) this.#broadcast({ t: 'endpoints', state: stateOf(c) })
    const answers = await this.#ask<Extract<FromWorker, { t: 'reloaded' }>>((id) => ({ t: 'reload', id, config }), RELOAD_WARM_TIMEOUT_MS + 10_000)
    for (const { slot, answer } of answers) {
      if (answer?.error === null) continue
      // The primary runs the new config: a worker that could not take it starts again with it.
      this.#logger.error({ worker: slot.id, error: answer?.error ?? 'no answer' }, 'a worker could not apply the reload; restarting it with the new config')
      slot.worker?.process.kill('SIGKILL')
    }
    if (changedCount) this.#scale(count)
    return result
  }

  /** Starts or stops workers to match `count` after a reload changed `workers`. */
  #scale(count: number): void {
    this.#logger.info({ from: this.#slots.size, to: count }, 'workers: changing the number of processes')
    for (let id = 1; id <= count; id++) {
      if (this.#slots.has(id)) continue
      this.#fork(this.#newSlot(id)).catch((err: unknown) => this.#logger.error({ worker: id, err: (err as Error).message }, 'worker start failed'))
    }
    for (const slot of [...this.#slots.values()]) {
      if (slot.id <= count) continue
      this.#slots.delete(slot.id)
      void this.#retireSlot(slot)
    }
  }

  /** Tells a slot's worker to drain and leave; no restart follows. */
  #retireSlot(slot: Slot): Promise<void> {
    slot.status = 'stopping'
    if (slot.restartTimer !== null) clearTimeout(slot.restartTimer)
    slot.restartTimer = null
    if (slot.worker !== null) this.#send(slot.worker, { t: 'stop' })
    return slot.exited
  }

  /** The primary's drain: every worker stops accepting, finishes its requests and exits. */
  #stopWorkers(): Promise<void> {
    return Promise.all([...this.#slots.values()].map((s) => this.#retireSlot(s))).then(() => undefined)
  }

  /**
   * `/readyz` turns 503 at once; the registration is removed; the workers drain (up to
   * `shutdownTimeout`, each on its own clock) and exit; then discovery and checks stop.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop()
    return this.#stopped
  }

  async #stop(): Promise<void> {
    this.#stopping = true
    for (const slot of this.#slots.values()) {
      if (slot.restartTimer !== null) clearTimeout(slot.restartTimer)
      slot.restartTimer = null
    }
    // Not started (a failed start): nothing to stop but the workers.
    if (this.#sidecar === undefined) await this.#stopWorkers()
    else await this.#sidecar.stop()
    const left = [...this.#slots.values()].filter((s) => s.worker !== null)
    if (left.length === 0) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(left.map((s) => s.exited)), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_GRACE_MS)))])
    clearTimeout(timer)
    for (const s of left) {
      if (s.worker !== null) {
        this.#logger.warn({ worker: s.id, workerPid: s.worker.process.pid }, 'worker still running after the shutdown timeout; killing it')
        s.worker.process.kill('SIGKILL')
      }
    }
  }
}
