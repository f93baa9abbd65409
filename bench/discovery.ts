/**
 * How long a registry change takes to reach routing, and what following a large registry costs,
 * against real Consul and etcd servers (integration/registries) and a real `outrigger run` process.
 * Figures, never assertions: the summary marks a missed target MISSED, the exit code stays 0.
 *
 *   npm run bench:discovery                               # 100 changes; 1,000 services × 10 endpoints
 *   SERVICES=100 CHANGE_SECONDS=10 npm run bench:discovery
 *   REGISTRIES=etcd PHASES=latency npm run bench:discovery
 *
 * Phase 1, change → routing: one sidecar following one service `api`; CHANGES times, a new instance
 * is registered (Consul: agent register with a fresh ID and port; etcd: a new key under
 * /services/api/) and, once routed, removed again, so the set stays at one or two endpoints.
 * Changes are 50–150 ms apart (seeded PRNG), so they land at varied points of the adapter's cycle.
 *
 * Phase 2, scale: SERVICES services of ENDPOINTS instances each are loaded into the registry, then
 * a sidecar following all of them is started: time to /readyz 200, RSS after load and at the end
 * (/proc/PID/status), CPU % of one core while one change per second (add or remove an instance of
 * a random service) runs for CHANGE_SECONDS (/proc/PID/stat utime + stime over wall time), the
 * change → routing latency of those changes, and the sidecar's TCP connections to the registry
 * (its socket inodes in /proc/net/tcp). For Consul, a run against the agent's default
 * `limits.http_max_conns_per_client` comes first; if the sidecar cannot load everything there, a
 * second run against an agent started with that limit raised (`-hcl`) follows.
 *
 * How the change is timed. t0 = Date.now() just before the registry write is issued. t1 = the
 * `time` of the sidecar's own 'endpoints updated' log line for that service whose endpoint list
 * first includes (add) or omits (remove) the changed endpoint. ServiceCluster.setEndpoints logs
 * that line and rebuilds the picker in the same synchronous step, so no request can see the old
 * picker after that instant; pino takes the timestamp when the line is logged (its asynchronous
 * write does not move it). Both processes read the same system clock; both sides are truncated to
 * the millisecond, so each figure is within 1 ms. In phase 1 an independent observer also polls
 * `/api/services` every POLL_MS and records when the endpoint first (dis)appears there: it bounds
 * the log-based figure from above (poll − log = the HTTP round trip plus up to POLL_MS), and checks
 * that the log is not early. Phase 2 uses the log only (`/api/services` for 10,000 endpoints is
 * large, and polling it would be part of the CPU being measured).
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import type { ServiceView } from '../src/admin/services-view.ts'
import { closedPort, residentMemory, startCli } from '../integration/helpers.ts'
import type { RunningCli } from '../integration/helpers.ts'
import { registryBinaries, startConsul, startEtcd } from '../integration/registries/servers.ts'
import { percentile, printChecks } from './stats.ts'
import type { Check } from './stats.ts'
import { prng } from '../test/support/prng.ts'

const CHANGES = Number(process.env.CHANGES ?? 100)
const SERVICES = Number(process.env.SERVICES ?? 1000)
const ENDPOINTS = Number(process.env.ENDPOINTS ?? 10)
const CHANGE_SECONDS = Number(process.env.CHANGE_SECONDS ?? 30)
const LOAD_TIMEOUT_SECONDS = Number(process.env.LOAD_TIMEOUT_SECONDS ?? 30)
const REGISTRIES = (process.env.REGISTRIES ?? 'consul,etcd').split(',').map((s) => s.trim()) as RegistryKind[]
const PHASES = (process.env.PHASES ?? 'latency,scale').split(',').map((s) => s.trim())
const SEED = Number(process.env.SEED ?? 1)
/** Admin API poll interval of phase 1's cross-check; 0 turns the poller off. */
const POLL_MS = Number(process.env.POLL_MS ?? 2)
/** Parallel agent registrations while loading Consul. */
const CONSUL_CONCURRENCY = Number(process.env.CONSUL_CONCURRENCY ?? 50)
/** Puts per etcd transaction while loading (etcd's --max-txn-ops defaults to 128), and transactions in parallel. */
const ETCD_TXN_OPS = 100
const ETCD_CONCURRENCY = 4
/** The raised Consul limit for the second scale run: room for every blocking query and then some. */
const RAISED_HTTP_MAX_CONNS = Math.max(2000, 2 * SERVICES)
const GAP_MIN_MS = 50
const GAP_MAX_MS = 150
/** A change not routed within this long counts as lost (its latency is recorded as missing). */
const CHANGE_TIMEOUT_MS = 10_000
const SETTLE_MS = 2000

const TARGET_P99_MS = 200

type RegistryKind = 'consul' | 'etcd'
const root = path.join(import.meta.dirname, '..')
const startedAt = performance.now()

// --- small helpers ------------------------------------------------------------------------------

const random = prng(SEED)

/** Nearest-rank percentile (p in 0–100) of the finite values; NaN when there are none. */
const int = (n: number): string => n.toLocaleString('en-US')
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–')
const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`
const seconds = (msValue: number): string => `${(msValue / 1000).toFixed(1)} s`
const pad = (s: string, width: number): string => s.padStart(width)

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())

/** utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may contain spaces: rest[0] is field 3.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

/** Percent of one core a process used between two samples. */
function cpuPercent(from: { ticks: number; atMs: number }, to: { ticks: number; atMs: number }): number {
  return (((to.ticks - from.ticks) / CLK_TCK) * 1000 * 100) / (to.atMs - from.atMs)
}
const cpuSample = (pid: number): { ticks: number; atMs: number } => ({ ticks: cpuTicks(pid), atMs: performance.now() })

/** Established IPv4 TCP connections of process `pid` to 127.0.0.1:`port` (its socket inodes in /proc/net/tcp). */
function connectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m !== null) inodes.add(m[1]!)
    } catch {
      // closed between readdir and readlink
    }
  }
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  let count = 0
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[2] === remote && f[3] === '01' && inodes.has(f[9] ?? '')) count++
  }
  return count
}

async function check2xx(res: { statusCode: number; body: { text(): Promise<string> } }, what: string): Promise<void> {
  const text = await res.body.text()
  if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`${what}: HTTP ${res.statusCode} ${text.slice(0, 200)}`)
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight. */
async function inParallel(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

// --- registries: a server, and how to write to it ------------------------------------------------

interface Server {
  url: string
  destroy(): Promise<void>
  output(): string
}

/** Writes to one registry. `add`/`remove` use a pool of two connections; `load` its own pool, closed afterwards. */
interface Registry {
  kind: RegistryKind
  /** How the server was started, for the tables. */
  label: string
  server: Server
  port: number
  add(service: string, id: string, port: number): Promise<void>
  remove(service: string, id: string): Promise<void>
  /** Registers `perService` instances (ids `0`…, ports 20000…) of each service. */
  load(services: readonly string[], perService: number): Promise<void>
  /** The sidecar's `discovery` section for this registry. */
  discovery(): Record<string, unknown>
  close(): Promise<void>
}

function consulRegistry(server: Server, label: string): Registry {
  const writes = new Pool(server.url, { connections: 2 })
  const register = async (pool: Pool, service: string, id: string, port: number): Promise<void> => {
    const body = JSON.stringify({ ID: `${service}-${id}`, Name: service, Address: '127.0.0.1', Port: port })
    await check2xx(await pool.request({ path: '/v1/agent/service/register', method: 'PUT', body }), `consul register ${service}-${id}`)
  }
  return {
    kind: 'consul',
    label,
    server,
    port: Number(new URL(server.url).port),
    add: (service, id, port) => register(writes, service, id, port),
    async remove(service, id) {
      await check2xx(await writes.request({ path: `/v1/agent/service/deregister/${service}-${id}`, method: 'PUT' }), `consul deregister ${service}-${id}`)
    },
    async load(services, perService) {
      const pool = new Pool(server.url, { connections: CONSUL_CONCURRENCY })
      try {
        await inParallel(services.length * perService, CONSUL_CONCURRENCY, (i) => register(pool, services[Math.floor(i / perService)]!, String(i % perService), 20_000 + (i % perService)))
      } finally {
        await pool.close()
      }
    },
    discovery: () => ({ consul: { url: server.url } }),
    close: () => (writes.closed ? Promise.resolve() : writes.close()),
  }
}

function etcdRegistry(server: Server): Registry {
  const writes = new Pool(server.url, { connections: 2 })
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  const key = (service: string, id: string): string => `/services/${service}/${id}`
  return {
    kind: 'etcd',
    label: 'etcd',
    server,
    port: Number(new URL(server.url).port),
    async add(service, id, port) {
      const body = JSON.stringify({ key: b64(key(service, id)), value: b64(`127.0.0.1:${port}`) })
      await check2xx(await writes.request({ path: '/v3/kv/put', method: 'POST', body }), `etcd put ${key(service, id)}`)
    },
    async remove(service, id) {
      const body = JSON.stringify({ key: b64(key(service, id)) })
      await check2xx(await writes.request({ path: '/v3/kv/deleterange', method: 'POST', body }), `etcd delete ${key(service, id)}`)
    },
    async load(services, perService) {
      const puts: Array<{ requestPut: { key: string; value: string } }> = []
      for (const service of services) {
        for (let i = 0; i < perService; i++) puts.push({ requestPut: { key: b64(key(service, String(i))), value: b64(`127.0.0.1:${20_000 + i}`) } })
      }
      const pool = new Pool(server.url, { connections: ETCD_CONCURRENCY })
      try {
        await inParallel(Math.ceil(puts.length / ETCD_TXN_OPS), ETCD_CONCURRENCY, async (b) => {
          const body = JSON.stringify({ success: puts.slice(b * ETCD_TXN_OPS, (b + 1) * ETCD_TXN_OPS) })
          await check2xx(await pool.request({ path: '/v3/kv/txn', method: 'POST', body }), 'etcd txn')
        })
      } finally {
        await pool.close()
      }
    },
    discovery: () => ({ etcd: { endpoints: [server.url] } }),
    close: () => (writes.closed ? Promise.resolve() : writes.close()),
  }
}

/**
 * A dev-mode Consul agent exactly as `startConsul()` starts one, plus `-hcl LIMITS`: the project's
 * helper takes no extra flags, and the per-client connection limit can only be set at start.
 */
async function startConsulWith(hcl: string): Promise<Server> {
  const bin = registryBinaries().consul
  const [http, serfLan, serfWan, serverPort] = [await closedPort(), await closedPort(), await closedPort(), await closedPort()]
  const url = `http://127.0.0.1:${http}`
  const args = ['agent', '-dev', '-client', '127.0.0.1', '-bind', '127.0.0.1', '-http-port', String(http), '-dns-port', '-1', '-grpc-port', '-1',
    '-serf-lan-port', String(serfLan), '-serf-wan-port', String(serfWan), '-server-port', String(serverPort), '-log-level', 'warn', '-hcl', hcl]
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (d: Buffer): void => void (output = (output + d.toString()).slice(-20_000))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const server: Server = {
    url,
    output: () => output,
    async destroy() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`consul ${args.join(' ')} exited with ${child.exitCode}:\n${output}`)
    try {
      const res = await fetch(`${url}/v1/status/leader`, { signal: AbortSignal.timeout(2000) })
      if (res.ok && (await res.text()).length > 4) return server
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await server.destroy()
      throw new Error(`consul did not answer at ${url} within 30 s:\n${output}`)
    }
    await sleep(100)
  }
}

/** The agent's effective `limits.http_max_conns_per_client`, as it reports it. */
async function consulConnLimit(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/agent/self`)
  const self = (await res.json()) as { DebugConfig?: { HTTPMaxConnsPerClient?: number } }
  return self.DebugConfig?.HTTPMaxConnsPerClient ?? Number.NaN
}

// --- the sidecar: a real process, and what its log says ------------------------------------------

interface LogEntry {
  level?: number
  time?: string
  msg?: string
  service?: string
  endpoints?: unknown
  err?: unknown
}

interface Waiter {
  service: string
  test: (endpoints: ReadonlySet<string>) => boolean
  resolve: (atMs: number | null) => void
  timer: NodeJS.Timeout
}

/** Reads the sidecar's JSON log as it comes: 'endpoints updated' lines resolve waiters; warnings are counted. */
class RoutingLog {
  readonly #waiters = new Set<Waiter>()
  /** Warning and error lines, `msg: err` (first 160 characters) → how many. */
  readonly problems = new Map<string, number>()

  constructor(stdout: Readable) {
    createInterface({ input: stdout }).on('line', (line) => this.#line(line))
  }

  /**
   * Resolves with the log time (ms since the epoch) of the first later 'endpoints updated' line of
   * `service` whose endpoints pass `test`, or with null after `timeoutMs`. Call it before the write.
   */
  next(service: string, test: (endpoints: ReadonlySet<string>) => boolean, timeoutMs = CHANGE_TIMEOUT_MS): Promise<number | null> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        service,
        test,
        resolve,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter)
          resolve(null)
        }, timeoutMs),
      }
      this.#waiters.add(waiter)
    })
  }

  #line(line: string): void {
    let entry: LogEntry
    try {
      entry = JSON.parse(line) as LogEntry
    } catch {
      return
    }
    if ((entry.level ?? 0) >= 40) {
      const key = `${entry.msg ?? '?'}${entry.err === undefined ? '' : `: ${typeof entry.err === 'string' ? entry.err : JSON.stringify(entry.err)}`}`.slice(0, 160)
      this.problems.set(key, (this.problems.get(key) ?? 0) + 1)
    }
    if (entry.msg !== 'endpoints updated' || entry.service === undefined || entry.time === undefined || !Array.isArray(entry.endpoints)) return
    const atMs = Date.parse(entry.time)
    const endpoints = new Set(entry.endpoints as string[])
    for (const w of this.#waiters) {
      if (w.service === entry.service && w.test(endpoints)) {
        this.#waiters.delete(w)
        clearTimeout(w.timer)
        w.resolve(atMs)
      }
    }
  }
}

interface Sidecar {
  cli: RunningCli
  pid: number
  log: RoutingLog
  adminUrl: string
  /** Wall time from spawning the process to its 'outrigger started' line. */
  startMs: number
  spawnedAt: number
  stop(): Promise<void>
}

/** Starts `outrigger run` on a config of `services` (name → service document) and `discovery`; `tag` names its files. */
async function startSidecar(dir: string, tag: string, discovery: Record<string, unknown>, services: Record<string, unknown>): Promise<Sidecar> {
  const file = path.join(dir, `outrigger-${tag}.json`)
  const doc = { listen: '127.0.0.1:0', admin: '127.0.0.1:0', discovery: { stateDir: path.join(dir, `state-${tag}`), ...discovery }, services }
  writeFileSync(file, JSON.stringify(doc))
  const spawnedAt = performance.now()
  const cli = await startCli(file)
  const startMs = performance.now() - spawnedAt
  const pid = cli.child.pid!
  const child: ChildProcess = cli.child
  return {
    cli,
    pid,
    log: new RoutingLog(cli.child.stdout!),
    adminUrl: `http://${cli.admin}`,
    startMs,
    spawnedAt,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** Polls /readyz every 50 ms until 200 or the deadline; the services still waiting at the end. */
async function waitReady(adminUrl: string, timeoutMs: number): Promise<{ ready: boolean; waiting: number }> {
  const deadline = performance.now() + timeoutMs
  let waiting = Number.NaN
  for (;;) {
    try {
      const res = await fetch(`${adminUrl}/readyz`)
      const body = (await res.json()) as { ready: boolean; waiting?: string[] }
      if (res.status === 200) return { ready: true, waiting: 0 }
      waiting = body.waiting?.length ?? Number.NaN
    } catch {
      // the admin listener answers from the start; a failure here is transient
    }
    if (performance.now() > deadline) return { ready: false, waiting }
    await sleep(50)
  }
}

async function services(adminUrl: string): Promise<ServiceView[]> {
  const res = await fetch(`${adminUrl}/api/services`)
  return (await res.json()) as ServiceView[]
}

/** Phase 1's independent observer: when each endpoint of `service` first appeared on, and vanished from, /api/services. */
class AdminPoller {
  readonly appeared = new Map<string, number>()
  readonly vanished = new Map<string, number>()
  readonly #pool: Pool
  readonly #service: string
  #present = new Set<string>()
  #running = true
  readonly #done: Promise<void>
  polls = 0

  constructor(adminUrl: string, service: string) {
    this.#pool = new Pool(adminUrl, { connections: 1 })
    this.#service = service
    this.#done = this.#loop()
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      const res = await this.#pool.request({ path: '/api/services', method: 'GET' })
      const views = (await res.body.json()) as ServiceView[]
      const now = Date.now()
      this.polls++
      const present = new Set<string>()
      for (const e of views.find((v) => v.name === this.#service)?.endpoints ?? []) present.add(`${e.address}:${e.port}`)
      for (const key of present) if (!this.#present.has(key) && !this.appeared.has(key)) this.appeared.set(key, now)
      for (const key of this.#present) if (!present.has(key) && !this.vanished.has(key)) this.vanished.set(key, now)
      this.#present = present
      await sleep(POLL_MS)
    }
  }

  async stop(): Promise<void> {
    this.#running = false
    await this.#done.catch(() => undefined)
    await this.#pool.close()
  }
}

// --- phase 1: change → routing with one service -----------------------------------------------------

interface LatencyResult {
  registry: string
  adds: number[]
  removes: number[]
  /** From the admin API poller: the same changes, seen from outside. */
  pollAdds: number[]
  pollRemoves: number[]
  polls: number
  lost: number
  rss: number
  problems: Map<string, number>
}

async function latencyPhase(dir: string, registry: Registry): Promise<LatencyResult> {
  const service = 'api'
  await registry.add(service, 'base', 39_999)
  const sidecar = await startSidecar(dir, `${registry.kind}-latency`, registry.discovery(), { [service]: { source: registry.kind } })
  try {
    const ready = await waitReady(sidecar.adminUrl, 15_000)
    if (!ready.ready) throw new Error(`the one-service sidecar did not become ready against ${registry.label}`)
    const poller = POLL_MS > 0 ? new AdminPoller(sidecar.adminUrl, service) : null
    const adds: number[] = []
    const removes: number[] = []
    const changes: Array<{ key: string; addT0: number; removeT0: number }> = []
    let lost = 0
    for (let i = 0; i < CHANGES; i++) {
      const id = `n${i}`
      const port = 40_000 + i
      const key = `127.0.0.1:${port}`

      const added = sidecar.log.next(service, (eps) => eps.has(key))
      const addT0 = Date.now()
      await registry.add(service, id, port)
      const addT1 = await added
      if (addT1 === null) lost++
      adds.push(addT1 === null ? Number.NaN : addT1 - addT0)
      await sleep(GAP_MIN_MS + random() * (GAP_MAX_MS - GAP_MIN_MS))

      const removed = sidecar.log.next(service, (eps) => !eps.has(key))
      const removeT0 = Date.now()
      await registry.remove(service, id)
      const removeT1 = await removed
      if (removeT1 === null) lost++
      removes.push(removeT1 === null ? Number.NaN : removeT1 - removeT0)
      changes.push({ key, addT0, removeT0 })
      await sleep(GAP_MIN_MS + random() * (GAP_MAX_MS - GAP_MIN_MS))
    }
    await sleep(50)
    await poller?.stop()
    const pollAdds = changes.map((c) => (poller?.appeared.get(c.key) ?? Number.NaN) - c.addT0)
    const pollRemoves = changes.map((c) => (poller?.vanished.get(c.key) ?? Number.NaN) - c.removeT0)
    return { registry: registry.label, adds, removes, pollAdds, pollRemoves, polls: poller?.polls ?? 0, lost, rss: residentMemory(sidecar.pid).rss, problems: sidecar.log.problems }
  } finally {
    await sidecar.stop()
    await registry.remove(service, 'base').catch(() => undefined)
  }
}

// --- phase 2: 1,000 services × 10 endpoints, one change per second ------------------------------

interface ScaleResult {
  registry: string
  /** The agent's per-client HTTP connection limit (Consul only). */
  connLimit: number | null
  registryLoadMs: number
  startMs: number
  /** Spawn → /readyz 200; null when it never came within LOAD_TIMEOUT_SECONDS. */
  readyMs: number | null
  waiting: number
  endpointsRouted: number
  servicesComplete: number
  loadCpuSeconds: number
  rssLoaded: number
  rssEnd: number
  rssPeak: number
  connections: number
  cpuPercent: number | null
  changes: number[]
  lost: number
  /** Consul only, when the load failed: could a fresh client still register with the agent? */
  starvation: string | null
  problems: Map<string, number>
  registryOutput: string[]
}

const serviceNames = (): string[] => Array.from({ length: SERVICES }, (_, i) => `svc-${String(i).padStart(4, '0')}`)
let scaleRuns = 0

/**
 * The same SERVICES × ENDPOINTS as `source: static`: what the clusters, hosts and their connection
 * pools cost without any discovery adapter, to tell the adapters' share of the RSS from the rest.
 */
async function staticBaseline(dir: string): Promise<{ readyMs: number | null; rss: number }> {
  const endpoints = Array.from({ length: ENDPOINTS }, (_, i) => `127.0.0.1:${20_000 + i}`)
  const sidecar = await startSidecar(dir, 'static', {}, Object.fromEntries(serviceNames().map((name) => [name, { source: 'static', endpoints }])))
  try {
    const ready = await waitReady(sidecar.adminUrl, LOAD_TIMEOUT_SECONDS * 1000)
    const readyMs = ready.ready ? performance.now() - sidecar.spawnedAt : null
    await sleep(SETTLE_MS)
    return { readyMs, rss: residentMemory(sidecar.pid).rss }
  } finally {
    await sidecar.stop()
  }
}

async function scalePhase(dir: string, registry: Registry): Promise<ScaleResult> {
  const names = serviceNames()
  const connLimit = registry.kind === 'consul' ? await consulConnLimit(registry.server.url) : null
  console.log(`  ${registry.label}: registering ${int(SERVICES * ENDPOINTS)} instances…`)
  const loadStart = performance.now()
  await registry.load(names, ENDPOINTS)
  const registryLoadMs = performance.now() - loadStart
  console.log(`  ${registry.label}: registered in ${seconds(registryLoadMs)}; starting the sidecar…`)

  const sidecar = await startSidecar(dir, `${registry.kind}-scale-${scaleRuns++}`, registry.discovery(), Object.fromEntries(names.map((name) => [name, { source: registry.kind }])))
  const result: ScaleResult = {
    registry: registry.label, connLimit, registryLoadMs, startMs: sidecar.startMs, readyMs: null, waiting: Number.NaN, endpointsRouted: 0, servicesComplete: 0,
    loadCpuSeconds: 0, rssLoaded: 0, rssEnd: 0, rssPeak: 0, connections: 0, cpuPercent: null, changes: [], lost: 0, starvation: null, problems: sidecar.log.problems, registryOutput: [],
  }
  try {
    const ready = await waitReady(sidecar.adminUrl, LOAD_TIMEOUT_SECONDS * 1000)
    if (ready.ready) result.readyMs = performance.now() - sidecar.spawnedAt
    result.waiting = ready.waiting
    result.loadCpuSeconds = cpuTicks(sidecar.pid) / CLK_TCK
    const views = await services(sidecar.adminUrl)
    for (const v of views) {
      result.endpointsRouted += v.endpoints.length
      if (v.endpoints.length >= ENDPOINTS) result.servicesComplete++
    }
    await sleep(SETTLE_MS)
    result.rssLoaded = residentMemory(sidecar.pid).rss
    result.connections = connectionsTo(sidecar.pid, registry.port)

    if (!ready.ready) {
      if (registry.kind === 'consul') {
        // With the sidecar holding its connections, can anyone else on this host still use the agent?
        const probe = new Pool(registry.server.url, { connections: 1 })
        try {
          await check2xx(await probe.request({ path: '/v1/agent/service/register', method: 'PUT', body: JSON.stringify({ ID: 'probe-1', Name: 'probe', Port: 1 }) }), 'register')
          result.starvation = 'a fresh client registered a service: OK'
        } catch (err) {
          result.starvation = `a fresh client's register failed: ${(err as Error).message}`
        } finally {
          await probe.destroy()
        }
      }
      return result
    }

    console.log(`  ${registry.label}: loaded in ${seconds(result.readyMs!)}; ${CHANGE_SECONDS} changes, one per second…`)
    const extras: Array<{ service: string; id: string; port: number }> = []
    const pending: Array<Promise<number>> = []
    let nextPort = 30_000
    const cpuFrom = cpuSample(sidecar.pid)
    const phaseStart = performance.now()
    for (let i = 0; i < CHANGE_SECONDS; i++) {
      const due = phaseStart + i * 1000
      const wait = due - performance.now()
      if (wait > 0) await sleep(wait)
      // Add or remove with equal odds, so the total stays near SERVICES × ENDPOINTS.
      if (extras.length > 0 && random() < 0.5) {
        const extra = extras.splice(Math.floor(random() * extras.length), 1)[0]!
        const key = `127.0.0.1:${extra.port}`
        const seen = sidecar.log.next(extra.service, (eps) => !eps.has(key))
        const t0 = Date.now()
        await registry.remove(extra.service, extra.id)
        pending.push(seen.then((t1) => (t1 === null ? Number.NaN : t1 - t0)))
      } else {
        const service = names[Math.floor(random() * names.length)]!
        const port = nextPort++
        const key = `127.0.0.1:${port}`
        const seen = sidecar.log.next(service, (eps) => eps.has(key))
        const t0 = Date.now()
        await registry.add(service, `x${port}`, port)
        extras.push({ service, id: `x${port}`, port })
        pending.push(seen.then((t1) => (t1 === null ? Number.NaN : t1 - t0)))
      }
    }
    const due = phaseStart + CHANGE_SECONDS * 1000
    if (due > performance.now()) await sleep(due - performance.now())
    const cpuTo = cpuSample(sidecar.pid)
    result.cpuPercent = cpuPercent(cpuFrom, cpuTo)
    result.changes = await Promise.all(pending)
    result.lost = result.changes.filter((x) => !Number.isFinite(x)).length
    const mem = residentMemory(sidecar.pid)
    result.rssEnd = mem.rss
    result.rssPeak = mem.peak
    // Leave the registry as loaded, for a later run against it.
    for (const extra of extras) await registry.remove(extra.service, extra.id)
    return result
  } finally {
    if (result.rssEnd === 0) {
      const mem = residentMemory(sidecar.pid)
      result.rssEnd = mem.rss
      result.rssPeak = mem.peak
    }
    await sidecar.stop()
    result.registryOutput = registry.server.output().split('\n').filter((l) => /limit|too many|429/i.test(l))
  }
}

// --- run -----------------------------------------------------------------------------------------

const cleanups: Array<() => Promise<unknown>> = []
async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()!().catch((err: unknown) => console.error(`cleanup: ${(err as Error).message}`))
}
process.once('SIGINT', () => void cleanUp().finally(() => process.exit(130)))

const dir = mkdtempSync(path.join(os.tmpdir(), 'outrigger-bench-discovery-'))
cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })))

const bins = registryBinaries()
const version = (bin: string, args: string[]): string => execFileSync(bin, args, { encoding: 'utf8' }).split('\n')[0]!.trim()
console.log(`discovery: change → routing (${int(CHANGES)} additions + ${int(CHANGES)} removals, ${GAP_MIN_MS}–${GAP_MAX_MS} ms apart), then ${int(SERVICES)} services × ${int(ENDPOINTS)} endpoints with one change per second for ${CHANGE_SECONDS} s`)
console.log(`node ${process.version}, ${os.platform()} ${os.arch()}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? 'unknown CPU'}); ${version(bins.consul, ['version'])}; ${version(bins.etcd, ['--version'])}; seed ${SEED}`)
console.log('latency = sidecar log time of the first \'endpoints updated\' line with the change − time just before the registry write (same clock, ms)')

const latency: LatencyResult[] = []
const scale: ScaleResult[] = []
let baseline: { readyMs: number | null; rss: number } | null = null
try {
  if (PHASES.includes('scale')) {
    console.log(`\nstatic baseline: ${int(SERVICES)} services × ${int(ENDPOINTS)} static endpoints…`)
    baseline = await staticBaseline(dir)
  }
  for (const kind of REGISTRIES) {
    console.log(`\n${kind}:`)
    const server: Server = kind === 'consul' ? await startConsul() : await startEtcd()
    cleanups.push(() => server.destroy())
    const registry = kind === 'consul' ? consulRegistry(server, 'consul (default limits)') : etcdRegistry(server)
    cleanups.push(() => registry.close())
    if (PHASES.includes('latency')) {
      console.log(`  ${kind}: ${CHANGES} changes with one service…`)
      latency.push(await latencyPhase(dir, { ...registry, label: kind }))
    }
    if (!PHASES.includes('scale')) continue
    const first = await scalePhase(dir, registry)
    scale.push(first)
    if (kind === 'consul' && first.readyMs === null) {
      // Free the first agent's memory and ports before the second.
      await registry.close()
      await server.destroy()
      const hcl = `limits { http_max_conns_per_client = ${RAISED_HTTP_MAX_CONNS} }`
      console.log(`  the sidecar could not load everything through the default agent; again with -hcl '${hcl}'`)
      const raised = await startConsulWith(hcl)
      cleanups.push(() => raised.destroy())
      const raisedRegistry = consulRegistry(raised, `consul (http_max_conns_per_client = ${RAISED_HTTP_MAX_CONNS})`)
      cleanups.push(() => raisedRegistry.close())
      scale.push(await scalePhase(dir, raisedRegistry))
    }
  }
} finally {
  await cleanUp()
}

// --- report ------------------------------------------------------------------------------------------

const checks: Check[] = []

function latencyRow(label: string, xs: readonly number[]): string {
  const n = xs.filter(Number.isFinite).length
  const lost = xs.length - n
  return `  ${label.padEnd(42)}${pad(String(n), 5)}${pad(ms(percentile(xs, 50)), 8)}${pad(ms(percentile(xs, 90)), 8)}${pad(ms(percentile(xs, 99)), 8)}${pad(ms(percentile(xs, 100)), 8)}${lost > 0 ? `   ${lost} not routed within ${CHANGE_TIMEOUT_MS / 1000} s` : ''}`
}
const header = `  ${''.padEnd(42)}${pad('n', 5)}${pad('median', 8)}${pad('p90', 8)}${pad('p99', 8)}${pad('max', 8)}   (ms)`

function printProblems(problems: Map<string, number>): void {
  const top = [...problems.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4)
  for (const [what, count] of top) console.log(`      ${pad(int(count), 6)} × ${what}`)
}

if (latency.length > 0) {
  console.log(`\nchange → routing, one service, ${CHANGES} additions alternating with removals (nearest-rank percentiles):`)
  console.log(header)
  for (const r of latency) {
    console.log(latencyRow(`${r.registry}: add (sidecar log)`, r.adds))
    console.log(latencyRow(`${r.registry}: remove (sidecar log)`, r.removes))
    if (r.polls > 0) {
      console.log(latencyRow(`${r.registry}: add (/api/services, ${POLL_MS} ms poll)`, r.pollAdds))
      console.log(latencyRow(`${r.registry}: remove (/api/services poll)`, r.pollRemoves))
      const lag = [...r.pollAdds.map((p, i) => p - r.adds[i]!), ...r.pollRemoves.map((p, i) => p - r.removes[i]!)].filter(Number.isFinite)
      const early = lag.filter((x) => x < 0).length
      console.log(`    poll − log: median ${ms(percentile(lag, 50))} ms, max ${ms(percentile(lag, 100))} ms, ${early} of ${lag.length} changes seen by the poll before the log line (${int(r.polls)} polls); sidecar RSS ${mib(r.rss)}`)
    }
    if (r.problems.size > 0) printProblems(r.problems)
    const p99 = percentile(r.adds, 99)
    checks.push({ what: `${r.registry}: add → routing p99, 1 service`, target: `< ${TARGET_P99_MS} ms`, measured: `${ms(p99)} ms`, ok: p99 < TARGET_P99_MS && r.lost === 0 })
  }
}

if (scale.length > 0) {
  const row = (label: string, value: string): void => console.log(`    ${label.padEnd(44)}${value}`)
  console.log(`\n${int(SERVICES)} services × ${int(ENDPOINTS)} endpoints, then one change per second for ${CHANGE_SECONDS} s:`)
  if (baseline !== null) {
    console.log('  static (no registry, no discovery adapter: the clusters, hosts and pools alone)')
    row('sidecar: spawn → /readyz 200', baseline.readyMs === null ? 'never' : seconds(baseline.readyMs))
    row(`RSS after load (+${SETTLE_MS / 1000} s)`, mib(baseline.rss))
  }
  for (const r of scale) {
    console.log(`  ${r.registry}`)
    if (r.connLimit !== null) row('agent limits.http_max_conns_per_client', `${int(r.connLimit)} (from /v1/agent/self)`)
    const how = r.registry.startsWith('consul') ? `${CONSUL_CONCURRENCY} parallel agent registrations` : `transactions of ${ETCD_TXN_OPS} puts, ${ETCD_CONCURRENCY} in parallel`
    row(`registry loaded with ${int(SERVICES * ENDPOINTS)} instances`, `${seconds(r.registryLoadMs)} (${how})`)
    row("sidecar: spawn → 'outrigger started'", seconds(r.startMs))
    row('sidecar: spawn → /readyz 200', r.readyMs === null ? `NEVER within ${LOAD_TIMEOUT_SECONDS} s: ${int(r.waiting)} of ${int(SERVICES)} services still waiting` : seconds(r.readyMs))
    row('endpoints routed after load', `${int(r.endpointsRouted)} of ${int(SERVICES * ENDPOINTS)} (${int(r.servicesComplete)} services complete); CPU ${r.loadCpuSeconds.toFixed(1)} s so far`)
    row('TCP connections sidecar → registry', int(r.connections))
    // Against the baseline only when everything loaded: a partial load is not the same workload.
    const overBaseline = baseline === null || r.readyMs === null ? '' : ` (static baseline + ${mib(r.rssLoaded - baseline.rss)})`
    row(`RSS after load (+${SETTLE_MS / 1000} s)`, `${mib(r.rssLoaded)}${overBaseline}`)
    if (r.cpuPercent !== null) {
      row('RSS at the end (peak)', `${mib(r.rssEnd)} (${mib(r.rssPeak)})`)
      row('CPU during the change phase', `${r.cpuPercent.toFixed(1)}% of one core (utime+stime over ${CHANGE_SECONDS} s, CLK_TCK ${CLK_TCK})`)
      console.log(header.replace('  ', '    '))
      console.log(latencyRow('  change → routing (sidecar log)', r.changes))
    }
    if (r.starvation !== null) console.log(`    while this sidecar runs, ${r.starvation}`)
    if (r.problems.size > 0) {
      console.log(`    sidecar warnings (top ${Math.min(4, r.problems.size)} of ${r.problems.size} kinds):`)
      printProblems(r.problems)
    }
    if (r.registryOutput.length > 0) console.log(`    registry log: ${r.registryOutput.length} lines about limits, e.g. ${r.registryOutput[0]!.trim().slice(0, 200)}`)

    checks.push({ what: `${r.registry}: all ${int(SERVICES)} services ready`, target: `< ${LOAD_TIMEOUT_SECONDS} s`, measured: r.readyMs === null ? `${int(SERVICES - r.waiting)} ready` : seconds(r.readyMs), ok: r.readyMs !== null })
    if (r.cpuPercent !== null) {
      const p99 = percentile(r.changes, 99)
      checks.push({ what: `${r.registry}: change → routing p99 at scale (n=${r.changes.length})`, target: `< ${TARGET_P99_MS} ms`, measured: `${ms(p99)} ms`, ok: p99 < TARGET_P99_MS && r.lost === 0 })
    }
  }
}

if (checks.length > 0) printChecks(checks)
console.log(`\ntotal ${seconds(performance.now() - startedAt)} (${path.relative(root, import.meta.filename)})`)
