/**
 * outrigger beside HAProxy, nginx, @fastify/http-proxy, http-proxy and no proxy at all, in one run
 * (issue 7). See bench/README.md for how to run it and how to read the figures.
 *
 *   npm run bench                                          # everything, 3 rounds of 5 s
 *   npm run bench -- --quick --only outrigger,haproxy --scenario small
 *   npm run bench -- --rounds 5 --duration 10 --scenario small,latency
 *
 * Placement on a 2-core machine: the proxy alone on CPU 0; the load generator (wrk, or this
 * directory's fixed-rate and idle clients) and the upstreams (one nginx process) share CPU 1. The
 * "direct" row is wrk straight to one upstream, i.e. what CPU 1 can deliver by itself: a proxy
 * whose core is not busy near 100% was held back by CPU 1, not by itself. CPU µs per request is
 * read from the proxy's own utime + stime (summed over its process tree: a primary and its workers),
 * so it holds when other work shares the machine.
 *
 * The `workers` scenario is the exception: outrigger with `workers: 1` and with `workers: 2`, each
 * allowed on CPUs 0 and 1 (WORKERS_CPUS), with the load generator and the upstreams still on CPU 1,
 * compared by requests per CPU-second of all of outrigger's processes (issue 7).
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { renderChart } from './lib/chart.ts'
import { cpuBusyPercent, cpuTicks, processMemory, processTreeCpuMicros, processTreeMemory } from './lib/proc.ts'
import { buildFixedRateClient, fetchTools, fixedRateArgs } from './lib/tools.ts'
import { runWrk, wrkScript } from './lib/wrk.ts'
import type { WrkLoad } from './lib/wrk.ts'
import { HAPROXY_MAX_CONNECTIONS, HOST_HEADER, POST_BODY_BYTES, STRATEGIES, startHaproxy, startNginx, startNodePeer, startOutrigger, startUpstreams } from './peers/peers.ts'
import type { RunningPeer, Strategy, Tools, Upstreams } from './peers/peers.ts'
import { median } from './stats.ts'

const PEERS = ['direct', 'outrigger', 'haproxy', 'nginx', 'fastify', 'http-proxy'] as const
type Peer = (typeof PEERS)[number]
const SCENARIOS = ['small', '64k', 'post', 'strategies', 'conns10k', 'latency', 'workers'] as const
type Scenario = (typeof SCENARIOS)[number]

const PROXY_CPU = 0
/** The upstreams' process: `direct`'s CPU time is spent on the load CPU, not the proxy CPU. */
let upstreamPid = -1
/** Leaves room below HAProxy's maxconn for the load's connections and the health checks. */
const HAPROXY_MAX_IDLE_CLIENTS = HAPROXY_MAX_CONNECTIONS - 90
const LOAD_CPU = 1
/** The workers scenario: both outriggers (1 and 2 workers) may use the proxy CPU and the load CPU. */
const WORKERS_CPUS = `${PROXY_CPU},${LOAD_CPU}`
/** The worker counts the workers scenario compares. */
const WORKER_COUNTS = [1, 2] as const
const benchDir = import.meta.dirname
const root = path.join(benchDir, '..')

// ---------------------------------------------------------------------------------------------
// Options

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '64' },
    idle: { type: 'string', default: '10000' },
    only: { type: 'string' },
    scenario: { type: 'string' },
    rate: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})

if (opts.help) {
  process.stdout.write(`Usage: npm run bench -- [options]
  --quick              1 round of 2 s, 1 s warm-up (a smoke test: the figures are rough)
  --rounds N           rounds per target (default 3); medians are reported
  --duration S         seconds per measurement (default 5)
  --warmup S           seconds of load before the first round (default 2)
  --connections N      wrk connections (default 64)
  --idle N             idle keep-alive clients in the conns10k scenario (default 10000)
  --only LIST          peers: ${PEERS.join(',')}
  --scenario LIST      scenarios: ${SCENARIOS.join(',')}
  --rate N             fixed rate of the latency scenario (default: half of outrigger's max)
  --no-save            print only; do not write bench/results/
`)
  process.exit(0)
}

function list<T extends string>(value: string | undefined, all: readonly T[], what: string): readonly T[] {
  if (value === undefined) return all
  const names = value.split(',').map((s) => s.trim())
  for (const n of names) if (!all.includes(n as T)) throw new Error(`unknown ${what} "${n}"; one of ${all.join(', ')}`)
  return all.filter((x) => names.includes(x))
}

const ROUNDS = Number(opts.rounds ?? (opts.quick ? 1 : 3))
const SECONDS = Number(opts.duration ?? (opts.quick ? 2 : 5))
const WARMUP_SECONDS = Number(opts.warmup ?? (opts.quick ? 1 : 2))
/**
 * Seconds of each latency round that run on the round's connections before the measured part and
 * are left out of its figures, as wrk2's calibration period: a new client's 64 connections make the
 * proxy run its connection set-up paths, and the first second of each round measures that (and, in
 * outrigger, the JIT compiling them) rather than the steady state at the rate. bench/README.md,
 * "Latency at a fixed rate", gives both.
 */
const CALIBRATE_SECONDS = opts.quick ? 0.5 : 2
const CONNECTIONS = Number(opts.connections)
const IDLE_CLIENTS = Number(opts.idle)
const peers = list(opts.only, PEERS, 'peer')
const scenarios = list(opts.scenario, SCENARIOS, 'scenario')

// ---------------------------------------------------------------------------------------------
// Tools: Debian's haproxy, nginx and wrk (bench/peers/fetch.sh), bench's own npm dependencies.

/** `npm ci` in bench/peers/ when its node_modules is missing or older than its lockfile. */
function ensureBenchDependencies(): void {
  const peersDir = path.join(benchDir, 'peers')
  const installed = path.join(peersDir, 'node_modules', '.package-lock.json')
  const lock = path.join(peersDir, 'package-lock.json')
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs) return
  console.log('installing the Node peers (npm ci in bench/peers/)')
  const npm = process.env.npm_execpath
  const r = npm !== undefined && npm.endsWith('.js')
    ? spawnSync(process.execPath, [npm, 'ci', '--no-audit', '--no-fund'], { cwd: peersDir, stdio: 'inherit' })
    : spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: peersDir, stdio: 'inherit' })
  if (r.status !== 0) throw new Error('npm ci in bench/peers/ failed')
}

// ---------------------------------------------------------------------------------------------
// Targets

interface Target {
  /** Row label: the peer, and the strategy for outrigger's variants (`outrigger/weighted`). */
  label: string
  peer: Peer
  /** Idle clients it can hold beside a load of CONNECTIONS (HAProxy is capped by the fd limit). */
  maxClients?: number
  /** A CPU list wider than PROXY_CPU (the workers scenario): the target shares the load CPU, so
   * what else ran on the proxy CPU is not measured (`others` is NaN). */
  cpus?: string
  start(up: Upstreams): Promise<RunningPeer>
}

function target(peer: Peer, tools: Tools, strategy: Strategy = 'round-robin', labelStrategy = false): Target {
  const label = labelStrategy ? `${peer}/${strategy}` : peer
  switch (peer) {
    case 'direct':
      // wrk straight to the first upstream; its process is the upstreams' nginx.
      return { label, peer, start: (up) => Promise.resolve({ port: up.ports[0]!, pid: up.server.pid, stop: () => Promise.resolve() }) }
    case 'outrigger':
      return { label, peer, start: (up) => startOutrigger(tools, PROXY_CPU, up, strategy) }
    case 'haproxy':
      return { label, peer, maxClients: HAPROXY_MAX_IDLE_CLIENTS, start: (up) => startHaproxy(tools, PROXY_CPU, up) }
    case 'nginx':
      return { label, peer, start: (up) => startNginx(tools, PROXY_CPU, up) }
    case 'fastify':
      return { label, peer, start: (up) => startNodePeer(tools, PROXY_CPU, up, 'fastify-proxy') }
    case 'http-proxy':
      return { label, peer, start: (up) => startNodePeer(tools, PROXY_CPU, up, 'http-proxy') }
  }
}

/**
 * The workers scenario's targets, each on WORKERS_CPUS whatever its count, so both counts get the
 * same cores: outrigger with `workers: n`, and as references measured the same way, HAProxy with
 * `nbthread n` and nginx with `worker_processes n` (the question the target asks, whether a second
 * event loop costs more per request than it gains, is asked of them too).
 */
function workersTargets(tools: Tools): Target[] {
  const out: Target[] = []
  for (const n of WORKER_COUNTS) {
    if (peers.includes('outrigger')) out.push({ label: `outrigger/workers:${n}`, peer: 'outrigger', cpus: WORKERS_CPUS, start: (up) => startOutrigger(tools, WORKERS_CPUS, up, 'round-robin', [], n) })
    if (peers.includes('haproxy')) out.push({ label: `haproxy/nbthread:${n}`, peer: 'haproxy', cpus: WORKERS_CPUS, start: (up) => startHaproxy(tools, WORKERS_CPUS, up, n) })
    if (peers.includes('nginx')) out.push({ label: `nginx/worker_processes:${n}`, peer: 'nginx', cpus: WORKERS_CPUS, start: (up) => startNginx(tools, WORKERS_CPUS, up, n) })
  }
  return out
}

function targetsFor(scenario: Scenario, tools: Tools): Target[] {
  if (scenario === 'workers') return workersTargets(tools)
  if (scenario === 'strategies') {
    const out: Target[] = []
    if (peers.includes('outrigger')) for (const s of STRATEGIES) out.push(target('outrigger', tools, s, true))
    if (peers.includes('haproxy')) out.push(target('haproxy', tools))
    return out
  }
  if (scenario === 'conns10k') return peers.filter((p) => p !== 'direct').map((p) => target(p, tools))
  return peers.map((p) => target(p, tools))
}

const LOADS: Partial<Record<Scenario, WrkLoad>> = {
  small: { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 },
  '64k': { method: 'GET', path: '/64k', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 },
  post: { method: 'POST', path: '/post', host: HOST_HEADER, bodyBytes: POST_BODY_BYTES, hashKeys: 0 },
  strategies: { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 },
  conns10k: { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 },
  workers: { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 },
}
const HASHED_LOAD: WrkLoad = { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 1000 }

// ---------------------------------------------------------------------------------------------
// Measurements

/** One measurement of one target; latencies in ms; NaN where not measured. */
interface Sample {
  rps: number
  p50Ms: number
  p99Ms: number
  p999Ms: number
  errors: number
  /** utime + stime of the proxy's processes (its pid and descendants) per completed request. */
  cpuUsPerReq: number
  /** The proxy's CPU time over wall time: near 100, it was the bottleneck (above 100 with workers). */
  proxyCorePercent: number
  /** Busy percent of the proxy's CPU and of the load generator's CPU, whoever used them. */
  proxyCpuBusyPercent: number
  loadCpuBusyPercent: number
  /** Busy percent of the proxy's CPU not spent by the proxy: other work on the machine (for
   * `direct`, whose process is on the load CPU, all of it). High: the round was contended. NaN
   * for a target spread over CPUs (Target.cpus), whose share of the proxy CPU is unknown. */
  othersOnProxyCpuPercent: number
  /** conns10k: resident memory while holding the idle clients, and per client above the baseline. */
  idleRssMB?: number
  idleKiBPerConn?: number
  idleOpen?: number
  /** latency: the rate asked for. */
  rate?: number
}

interface TargetResult {
  label: string
  peer: Peer
  samples: Sample[]
  median: Sample
  /** VmHWM at the end of the scenario, summed over the proxy's processes (for `direct`: the
   * upstreams' nginx). */
  peakMB: number
}

interface ScenarioResult {
  name: Scenario
  description: string
  targets: TargetResult[]
}

/**
 * Runs a load and charges the proxy with the CPU time of `pid` and its descendants (a primary and
 * its node:cluster workers; a single process for every other peer). `aloneOnProxyCpu`: the proxy
 * may only run on PROXY_CPU, so the rest of that CPU's busy time is other work.
 */
async function measured(
  pid: number,
  aloneOnProxyCpu: boolean,
  run: () => Promise<{ requests: number; seconds: number; sample: Omit<Sample, 'cpuUsPerReq' | 'proxyCorePercent' | 'proxyCpuBusyPercent' | 'loadCpuBusyPercent' | 'othersOnProxyCpuPercent'> }>,
): Promise<Sample> {
  const cpu0 = processTreeCpuMicros(pid)
  const ticks0 = cpuTicks()
  const t0 = performance.now()
  const r = await run()
  const wallUs = (performance.now() - t0) * 1000
  const cpu = processTreeCpuMicros(pid) - cpu0
  const busy = cpuBusyPercent(ticks0, cpuTicks())
  const proxyCorePercent = (100 * cpu) / wallUs
  return {
    ...r.sample,
    cpuUsPerReq: r.requests > 0 ? cpu / r.requests : Number.NaN,
    proxyCorePercent,
    othersOnProxyCpuPercent: aloneOnProxyCpu ? Math.max(0, (busy[PROXY_CPU] ?? Number.NaN) - (pid === upstreamPid ? 0 : proxyCorePercent)) : Number.NaN,
    proxyCpuBusyPercent: busy[PROXY_CPU] ?? Number.NaN,
    loadCpuBusyPercent: busy[LOAD_CPU] ?? Number.NaN,
  }
}

function wrkSample(tools: { wrk: string }, script: string, port: number, connections: number, seconds: number, pid: number, aloneOnProxyCpu = true): Promise<Sample> {
  return measured(pid, aloneOnProxyCpu, async () => {
    const w = await runWrk(tools.wrk, LOAD_CPU, script, port, connections, seconds)
    return { requests: w.requests, seconds: w.seconds, sample: { rps: w.rps, p50Ms: w.p50Ms, p99Ms: w.p99Ms, p999Ms: w.p999Ms, errors: w.errors } }
  })
}

/** Runs `file` (a .ts of this folder) with Node 24 on the load CPU; resolves with its stdout. */
function runClient(file: string, args: readonly string[]): Promise<string> {
  return runProgram(process.execPath, [path.join(benchDir, file), ...args])
}

/** Runs a load generator on LOAD_CPU; resolves with its standard output. */
function runProgram(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', ['-c', String(LOAD_CPU), file, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${file} exited with ${code}`))))
  })
}

function fixedRateSample(port: number, rate: number, seconds: number, pid: number, calibrate = 0): Promise<Sample> {
  return measured(pid, true, async () => {
    const out = fixedRateBinary === null
      ? await runClient('fixed-rate.ts', [`127.0.0.1:${port}`, HOST_HEADER, '/', String(rate), String(seconds), String(CONNECTIONS), String(calibrate)])
      : await runProgram(fixedRateBinary, fixedRateArgs(port, HOST_HEADER, rate, seconds, CONNECTIONS, calibrate))
    const r = JSON.parse(out) as { completed: number; requests: number; errors: number; seconds: number; latenciesUs: { p50: number; p99: number; p999: number } }
    return {
      // The proxy's CPU time covers the calibration too: per request of the whole run.
      requests: r.requests,
      seconds: r.seconds,
      sample: { rps: r.completed / r.seconds, p50Ms: r.latenciesUs.p50 / 1000, p99Ms: r.latenciesUs.p99 / 1000, p999Ms: r.latenciesUs.p999 / 1000, errors: r.errors, rate },
    }
  })
}

/**
 * Opens `count` idle keep-alive connections and, while they are held, reads the proxy's RSS and
 * runs `whileHeld` (a normal load on other connections: do idle clients slow the proxy down?).
 */
async function withIdleClients(port: number, pid: number, count: number, whileHeld: () => Promise<Sample>): Promise<Sample> {
  const before = processMemory(pid).rssBytes
  const child = spawn('taskset', ['-c', String(LOAD_CPU), process.execPath, path.join(benchDir, 'idle-clients.ts'), `127.0.0.1:${port}`, HOST_HEADER, String(count)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve)
      child.once('exit', (code) => reject(new Error(`idle-clients exited with ${code}`)))
    })
    const [, open, failed] = line.split(' ').map(Number)
    if (failed! > 0) console.log(`    ${failed} of ${count} idle clients got no answer`)
    await sleep(1000) // let the proxy settle (lazy allocations, GC) before reading
    const during = processMemory(pid).rssBytes
    const sample = await whileHeld()
    return { ...sample, idleRssMB: during / 2 ** 20, idleKiBPerConn: (during - before) / 1024 / Math.max(1, open!), idleOpen: open! }
  } finally {
    child.stdin.end()
    child.kill('SIGTERM')
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
    await sleep(500) // let the proxy see the connections close
  }
}

function medianSample(samples: readonly Sample[]): Sample {
  const m = (k: keyof Sample): number => median(samples.map((s) => s[k] ?? Number.NaN))
  const out: Sample = {
    rps: m('rps'),
    p50Ms: m('p50Ms'),
    p99Ms: m('p99Ms'),
    p999Ms: m('p999Ms'),
    errors: samples.reduce((a, s) => a + s.errors, 0),
    cpuUsPerReq: m('cpuUsPerReq'),
    proxyCorePercent: m('proxyCorePercent'),
    proxyCpuBusyPercent: m('proxyCpuBusyPercent'),
    loadCpuBusyPercent: m('loadCpuBusyPercent'),
    othersOnProxyCpuPercent: m('othersOnProxyCpuPercent'),
  }
  if (samples[0]?.idleRssMB !== undefined) {
    out.idleRssMB = m('idleRssMB')
    out.idleKiBPerConn = m('idleKiBPerConn')
    out.idleOpen = m('idleOpen')
  }
  if (samples[0]?.rate !== undefined) out.rate = m('rate')
  return out
}

/**
 * Starts every target of the scenario (each on the proxy CPU, idle while another is measured),
 * warms each up, then runs the rounds with the targets' order rotated every round, so a slow spell
 * of the machine does not always land on the same target. Each target moves one place later every
 * round (the last one first), so between two of its rounds it waits as many rounds as there are
 * targets, or none: the same idle spell for all (about 72 s in the latency scenario, where the
 * saturated Node peers' rounds take 17 s). Rotated the other way, the target that moved from first
 * to last waited about 110 s and the others 48, and outrigger's round after that long wait was its
 * worst in most runs (bench/README.md, "Latency at a fixed rate"). With `fresh`, each measurement
 * gets a newly started process and no warm-up instead (memory figures that no earlier load has
 * inflated).
 */
async function runScenario(
  name: Scenario,
  description: string,
  targets: readonly Target[],
  up: Upstreams,
  measure: (t: Target, p: RunningPeer) => Promise<Sample>,
  warm: (p: RunningPeer) => Promise<void>,
  fresh = false,
): Promise<ScenarioResult> {
  console.log(`\n== ${name}: ${description}`)
  const running: (RunningPeer | null)[] = targets.map(() => null)
  const peaks: number[][] = targets.map(() => [])
  try {
    if (!fresh) {
      for (let i = 0; i < targets.length; i++) running[i] = await targets[i]!.start(up)
      for (const p of running) await warm(p!)
    }
    const samples: Sample[][] = targets.map(() => [])
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < targets.length; k++) {
        const i = (k - (round % targets.length) + targets.length) % targets.length
        const p = running[i] ?? (await targets[i]!.start(up))
        const s = await measure(targets[i]!, p)
        if (fresh) {
          peaks[i]!.push(processTreeMemory(p.pid).hwmBytes / 2 ** 20)
          await p.stop()
        }
        samples[i]!.push(s)
        console.log(
          `  round ${round + 1} ${targets[i]!.label.padEnd(28)} ${s.rps.toFixed(0).padStart(7)} req/s  p99 ${s.p99Ms.toFixed(2)} ms  ${s.cpuUsPerReq.toFixed(1)} µs/req  core ${s.proxyCorePercent.toFixed(0)}%  ${targets[i]!.cpus === undefined ? `others on cpu${PROXY_CPU} ${f(s.othersOnProxyCpuPercent)}%` : `cpu${PROXY_CPU} ${f(s.proxyCpuBusyPercent)}%`}  cpu${LOAD_CPU} ${s.loadCpuBusyPercent.toFixed(0)}%${s.errors > 0 ? `  errors ${s.errors}` : ''}${s.idleRssMB !== undefined ? `  idle RSS ${s.idleRssMB.toFixed(1)} MB` : ''}`,
        )
      }
    }
    return {
      name,
      description,
      targets: targets.map((t, i) => ({
        label: t.label,
        peer: t.peer,
        samples: samples[i]!,
        median: medianSample(samples[i]!),
        peakMB: fresh ? median(peaks[i]!) : processTreeMemory(running[i]!.pid).hwmBytes / 2 ** 20,
      })),
    }
  } finally {
    for (const p of running) await p?.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function f(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits)
}

/** The lowest p99 over the rounds: other work on the machine only ever adds latency. */
function bestP99(t: TargetResult): number {
  return Math.min(...t.samples.map((s) => s.p99Ms))
}

function table(s: ScenarioResult): string {
  const by = (peer: Peer): TargetResult | undefined => s.targets.find((t) => t.label === peer)
  const haproxy = by('haproxy')
  const fastify = by('fastify')
  const direct = by('direct')
  const latency = s.name === 'latency'
  const idle = s.name === 'conns10k'
  const cols = ['target', latency ? 'rate' : '', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', latency ? '+p99 ms' : '', latency ? 'best +p99' : '', 'CPU µs/req', 'req/core-s', 'core %', `others cpu${PROXY_CPU} %`, `cpu${LOAD_CPU} %`, 'peak MB', idle ? 'idle conns' : '', idle ? 'idle MB' : '', idle ? 'KiB/conn' : '', 'req/s ×HAProxy', 'req/s ×fastify', 'CPU ×HAProxy', 'errors'].filter((c) => c !== '')
  const rows = s.targets.map((t) => {
    const m = t.median
    const cells: string[] = [t.label]
    if (latency) cells.push(f(m.rate))
    cells.push(f(m.rps), f(m.p50Ms, 2), f(m.p99Ms, 2), f(m.p999Ms, 2))
    if (latency) {
      cells.push(direct === undefined || t === direct ? '–' : f(m.p99Ms - direct.median.p99Ms, 2))
      cells.push(direct === undefined || t === direct ? '–' : f(bestP99(t) - bestP99(direct), 2))
    }
    cells.push(f(m.cpuUsPerReq, 1), f(1e6 / m.cpuUsPerReq), f(m.proxyCorePercent), f(m.othersOnProxyCpuPercent), f(m.loadCpuBusyPercent), f(t.peakMB, 1))
    if (idle) cells.push(f(m.idleOpen), f(m.idleRssMB, 1), f(m.idleKiBPerConn, 2))
    cells.push(
      haproxy === undefined ? '–' : f(m.rps / haproxy.median.rps, 2),
      fastify === undefined ? '–' : f(m.rps / fastify.median.rps, 2),
      haproxy === undefined ? '–' : f(m.cpuUsPerReq / haproxy.median.cpuUsPerReq, 2),
      String(m.errors),
    )
    return cells
  })
  const widths = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [`${s.name}: ${s.description}`, line(cols), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

/** The figures issue 7 sets targets for, stated beside the targets (printed, never asserted). */
function targetsSummary(results: readonly ScenarioResult[]): string[] {
  const get = (scenario: Scenario, label: string): TargetResult | undefined => results.find((r) => r.name === scenario)?.targets.find((t) => t.label === label)
  const out: string[] = []
  const o = get('small', 'outrigger')
  const h = get('small', 'haproxy')
  const fy = get('small', 'fastify')
  const check = (ok: boolean): string => (ok ? 'meets' : 'misses')
  if (o !== undefined) out.push(`outrigger small responses: ${f(o.median.rps)} req/s on one core (target ≥ 30000: ${check(o.median.rps >= 30_000)})`)
  if (o !== undefined && fy !== undefined) out.push(`  ×@fastify/http-proxy: ${f(o.median.rps / fy.median.rps, 2)} (target ≥ 2.5: ${check(o.median.rps / fy.median.rps >= 2.5)})`)
  if (o !== undefined && h !== undefined) {
    out.push(`  ×HAProxy: ${f(o.median.rps / h.median.rps, 2)} (target ≥ 0.35: ${check(o.median.rps / h.median.rps >= 0.35)})`)
    const r = o.median.cpuUsPerReq / h.median.cpuUsPerReq
    out.push(`  on a core of its own at that CPU cost: ${f(1e6 / o.median.cpuUsPerReq)} req/s (1e6 / CPU µs per request; ×HAProxy ${f(h.median.cpuUsPerReq / o.median.cpuUsPerReq, 2)})`)
    out.push(`  CPU µs/req ${f(o.median.cpuUsPerReq, 1)} vs HAProxy ${f(h.median.cpuUsPerReq, 1)}: ×${f(r, 2)} (target ≤ 2.5: ${check(r <= 2.5)})`)
  }
  const lo = get('latency', 'outrigger')
  const ld = get('latency', 'direct')
  if (lo !== undefined && ld !== undefined) {
    const added = lo.median.p99Ms - ld.median.p99Ms
    const best = bestP99(lo) - bestP99(ld)
    out.push(`outrigger p99 added at ${f(lo.median.rate)} req/s: median ${f(added, 2)} ms, quietest round ${f(best, 2)} ms (target < 1 ms: ${check(added < 1)})`)
  }
  const w1 = get('workers', 'outrigger/workers:1')
  const w2 = get('workers', 'outrigger/workers:2')
  if (w1 !== undefined && w2 !== undefined) {
    // Requests per CPU-second = 1e6 / CPU µs per request, CPU summed over the primary and its workers.
    const perCpuS1 = 1e6 / w1.median.cpuUsPerReq
    const perCpuS2 = 1e6 / w2.median.cpuUsPerReq
    const r = perCpuS2 / perCpuS1
    out.push(`outrigger workers: 2 vs 1: ${f(perCpuS2)} vs ${f(perCpuS1)} requests per CPU-second, ×${f(r, 2)} (target ≥ 1: ${check(r >= 1)})`)
    out.push(`  req/s ${f(w2.median.rps)} vs ${f(w1.median.rps)} (×${f(w2.median.rps / w1.median.rps, 2)}), both on CPUs ${WORKERS_CPUS} beside the load on CPU ${LOAD_CPU}`)
  }
  // The same question asked of the peers in the same run: does their second thread or process pay here?
  for (const [peer, key] of [['HAProxy', 'haproxy/nbthread'], ['nginx', 'nginx/worker_processes']] as const) {
    const p1 = get('workers', `${key}:1`)
    const p2 = get('workers', `${key}:2`)
    if (p1 === undefined || p2 === undefined) continue
    out.push(`  reference, ${peer} ${key.split('/')[1]} 2 vs 1: ${f(1e6 / p2.median.cpuUsPerReq)} vs ${f(1e6 / p1.median.cpuUsPerReq)} requests per CPU-second, ×${f(p1.median.cpuUsPerReq / p2.median.cpuUsPerReq, 2)}`)
  }
  const io = get('conns10k', 'outrigger')
  if (io?.median.idleRssMB !== undefined) out.push(`outrigger RSS holding ${f(io.median.idleOpen)} idle keep-alive clients: ${f(io.median.idleRssMB, 1)} MB (target < 150 MB: ${check(io.median.idleRssMB < 150)})`)
  return out
}

// ---------------------------------------------------------------------------------------------
// Main

if (os.availableParallelism() < 2) throw new Error('the comparison needs 2 CPUs: the proxy on one, the load generator on the other')
const found = fetchTools()
if (peers.includes('fastify') || peers.includes('http-proxy')) ensureBenchDependencies()
const fixedRateBinary = scenarios.includes('latency') && process.env.BENCH_NODE_CLIENT !== '1' ? buildFixedRateClient() : null
const dir = mkdtempSync(path.join(os.tmpdir(), 'outrigger-compare-'))
const tools: Tools = { haproxy: found.haproxy, nginx: found.nginx, node: process.execPath, root, dir }
const upstreamCpu = os.availableParallelism() >= 3 ? 2 : LOAD_CPU
const startedAt = new Date()
const loadAverageBefore = os.loadavg()
console.log(`outrigger comparison: ${ROUNDS} round(s) of ${SECONDS} s, ${CONNECTIONS} connections; proxy on CPU ${PROXY_CPU}, load on CPU ${LOAD_CPU}, upstreams on CPU ${upstreamCpu}`)
console.log(`load average ${loadAverageBefore.map((x) => x.toFixed(2)).join(' ')}; temporary files in ${dir}`)

const up = await startUpstreams(tools, upstreamCpu)
upstreamPid = up.server.pid
const results: ScenarioResult[] = []
let outriggerMaxRps: number | undefined
try {
  const scripts = new Map<Scenario | 'hashed', string>()
  for (const [name, load] of Object.entries(LOADS)) scripts.set(name as Scenario, wrkScript(dir, name, load))
  scripts.set('hashed', wrkScript(dir, 'hashed', HASHED_LOAD))
  const warmWith = (script: string, connections = CONNECTIONS) => async (p: RunningPeer) => {
    await runWrk(found.wrk, LOAD_CPU, script, p.port, connections, WARMUP_SECONDS)
  }

  const describe: Record<Scenario, string> = {
    small: `GET of ${20} bytes, ${CONNECTIONS} keep-alive connections`,
    '64k': `GET of 64 KiB, ${CONNECTIONS} keep-alive connections`,
    post: `POST of 16 KiB answered with 3 bytes, ${CONNECTIONS} keep-alive connections`,
    strategies: `outrigger's strategies, small GETs (consistent-hash on header x-user, 1,000 values), ${CONNECTIONS} connections`,
    conns10k: `RSS of a fresh process holding ${IDLE_CLIENTS} idle keep-alive clients (HAProxy: ${HAPROXY_MAX_IDLE_CLIENTS}), then small GETs on ${CONNECTIONS} more connections meanwhile (no warm-up)`,
    latency: 'fixed-rate GETs (half of outrigger\'s max), latency from each request\'s due time',
    workers: `outrigger with workers: 1 and workers: 2 (HAProxy nbthread, nginx worker_processes), each on CPUs ${WORKERS_CPUS} (the load's CPU too), small GETs, ${CONNECTIONS} connections; CPU of all the target's processes`,
  }

  for (const name of scenarios) {
    const targets = targetsFor(name, tools)
    if (targets.length === 0) continue
    if (name === 'latency') {
      let rate = opts.rate === undefined ? undefined : Number(opts.rate)
      if (rate === undefined && outriggerMaxRps === undefined) {
        console.log('\n(latency: measuring outrigger\'s max rate first)')
        const p = await target('outrigger', tools).start(up)
        try {
          await warmWith(scripts.get('small')!)(p)
          outriggerMaxRps = (await runWrk(found.wrk, LOAD_CPU, scripts.get('small')!, p.port, CONNECTIONS, SECONDS)).rps
        } finally {
          await p.stop()
        }
      }
      rate = Math.round(rate ?? outriggerMaxRps! / 2)
      describe.latency = `fixed rate of ${rate} req/s (${opts.rate === undefined ? 'half of outrigger\'s max' : '--rate'}), small GETs over ${CONNECTIONS} connections, latency from each request's due time, after ${CALIBRATE_SECONDS} s of calibration on the same connections`
      // Warmed at full speed, then at the fixed rate itself: a long-running proxy's steady state
      // is what the rounds measure, not the JIT settling on the new load's paths (seen as one
      // round of several ms of p99 right after the switch). Every target gets the same.
      const warmLatency = async (p: RunningPeer): Promise<void> => {
        await warmWith(scripts.get('small')!)(p)
        await fixedRateSample(p.port, rate, WARMUP_SECONDS, p.pid)
      }
      results.push(await runScenario(name, describe.latency, targets, up, (_t, p) => fixedRateSample(p.port, rate, SECONDS, p.pid, CALIBRATE_SECONDS), warmLatency))
    } else if (name === 'conns10k') {
      const script = scripts.get('conns10k')!
      results.push(
        await runScenario(
          name,
          describe.conns10k,
          targets,
          up,
          (t, p) => withIdleClients(p.port, p.pid, Math.min(IDLE_CLIENTS, t.maxClients ?? IDLE_CLIENTS), () => wrkSample(found, script, p.port, CONNECTIONS, SECONDS, p.pid)),
          warmWith(script),
          true,
        ),
      )
    } else {
      const script = scripts.get(name)!
      const hashed = scripts.get('hashed')!
      const scriptFor = (t: Target): string => (t.label === 'outrigger/consistent-hash' ? hashed : script)
      const r = await runScenario(name, describe[name], targets, up, (t, p) => wrkSample(found, scriptFor(t), p.port, CONNECTIONS, SECONDS, p.pid, t.cpus === undefined), warmWith(script))
      results.push(r)
      if (name === 'small') outriggerMaxRps = r.targets.find((t) => t.label === 'outrigger')?.median.rps
    }
  }
} finally {
  await up.server.stop()
}

const loadAverageAfter = os.loadavg()
console.log(`\nMedians of ${ROUNDS} round(s) of ${SECONDS} s. core % = the proxy's CPU time (its processes) over wall time (near 100: the proxy was the bottleneck; up to 200 in workers, on two CPUs shared with the load); cpu${LOAD_CPU} % = how busy the load generator's CPU was (near 100: the load side was).`)
console.log(`Load average before ${loadAverageBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadAverageAfter.map((x) => x.toFixed(2)).join(' ')}.\n`)
for (const r of results) console.log(`${table(r)}\n`)
const summary = targetsSummary(results)
if (summary.length > 0) console.log(`Issue 7 targets (figures, not assertions):\n${summary.map((l) => `  ${l}`).join('\n')}\n`)

if (!opts['no-save']) {
  const resultsDir = path.join(benchDir, 'results')
  mkdirSync(resultsDir, { recursive: true })
  const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')
  const json = path.join(resultsDir, `${stamp}.json`)
  const svg = path.join(resultsDir, `${stamp}.svg`)
  writeFileSync(
    json,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        machine: { cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model, kernel: os.release(), loadAverageBefore, loadAverageAfter },
        versions: { node: process.version, peers: found.versions.split('\n') },
        options: { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, latencyCalibrateSeconds: CALIBRATE_SECONDS, connections: CONNECTIONS, idleClients: IDLE_CLIENTS, proxyCpu: PROXY_CPU, loadCpu: LOAD_CPU, upstreamCpu, workersCpus: WORKERS_CPUS, quick: opts.quick },
        scenarios: results,
        targets: summary,
      },
      null,
      2,
    )}\n`,
  )
  writeFileSync(
    svg,
    renderChart(
      `outrigger and peers, one core each${results.some((r) => r.name === 'workers') ? ` (workers: CPUs ${WORKERS_CPUS})` : ''} (${startedAt.toISOString().slice(0, 16)}Z, medians of ${ROUNDS} × ${SECONDS} s)`,
      results.map((r) => ({ scenario: r.name === 'latency' ? `${r.name} (rate-limited: req/s is the rate)` : r.name, rows: r.targets.map((t) => ({ label: t.label, rps: t.median.rps, cpuUsPerReq: t.median.cpuUsPerReq })) })),
    ),
  )
  console.log(`wrote ${path.relative(root, json)} and ${path.relative(root, svg)}`)
}
rmSync(dir, { recursive: true, force: true })
