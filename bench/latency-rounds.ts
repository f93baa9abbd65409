/**
 * One proxy, rounds of the fixed-rate load back to back or with idle gaps: for chasing the p99 of
 * the `latency` scenario (bench/README.md, "Latency at a fixed rate"), with the C client (built with
 * the machine's cc as `npm run bench` does).
 *
 *   node bench/latency-rounds.ts [--peer outrigger|haproxy|direct] [--rate 28000] [--rounds 3]
 *     [--seconds 5] [--warm 3] [--warm-max S] [--idle S] [--calibrate S] [--node-flags "--trace-gc"] [--timeline] [--shield] [--shield-load]
 *
 * `--warm-max S` first runs wrk at full speed for S seconds, as the comparison's warm-up does (a pool
 * of upstream connections and a heap shaped by the max rate) before the fixed-rate warm-up;
 * `--idle S` waits S seconds between rounds, as the comparison's rotation does (`--idle 5,70`: gaps of
 * 5 and 70 s in turn); `--shield` runs the proxy under SCHED_FIFO during each round (root only;
 * shieldProcessTree in lib/proc.ts), and `--shield-load` the client (priority 1) and, for the whole
 * run, the upstreams (priority 2: with both at 1, `direct`'s p99 was 41 ms and CPU 1 95% busy; with
 * the upstreams above the client, 0.05 to 0.1 ms); `--calibrate S` runs each round's load for S
 * seconds first and leaves it out, as the comparison does (default 0, so the first second on new
 * connections is measured); `--timeline` prints
 * the worst latency of every 250 ms and the client's own longest wait between wakeups (a stall of
 * the client, not of the proxy), with the client's start on CLOCK_MONOTONIC to line up with
 * stamps taken in the proxy (process.hrtime). Each round prints the client's percentiles and the proxy's
 * CPU µs per request (its utime + stime over the round). The proxy's log is kept for --node-flags
 * output such as --trace-gc.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { buildFixedRateClient, fetchTools, fixedRateArgs } from './lib/tools.ts'
import { shieldProcessTree } from './lib/proc.ts'
import { runWrk, wrkScript } from './lib/wrk.ts'
import { HOST_HEADER, startHaproxy, startOutrigger, startUpstreams } from './peers/peers.ts'

const { values: opts } = parseArgs({
  options: {
    peer: { type: 'string', default: 'outrigger' },
    rate: { type: 'string', default: '28000' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    warm: { type: 'string', default: '3' },
    'warm-max': { type: 'string', default: '0' },
    idle: { type: 'string', default: '0' },
    calibrate: { type: 'string', default: '0' },
    'node-flags': { type: 'string', default: '' },
    timeline: { type: 'boolean', default: false },
    shield: { type: 'boolean', default: false },
    'shield-load': { type: 'boolean', default: false },
  },
  strict: true,
})

const root = path.resolve(import.meta.dirname, '..')
const built = buildFixedRateClient()
if (built === null) throw new Error('latency-rounds needs the C fixed-rate client, and it could not be built')
const client: string = built
const found = fetchTools()
const dir = mkdtempSync(path.join(os.tmpdir(), 'latency-rounds-'))
const tools = { haproxy: found.haproxy, nginx: found.nginx, node: process.execPath, root, dir }
const up = await startUpstreams(tools, 1)
const flags = opts['node-flags'].split(' ').filter((x) => x !== '')
const proxy = opts.peer === 'haproxy' ? await startHaproxy(tools, 0, up) : opts.peer === 'outrigger' ? await startOutrigger(tools, 0, up, 'round-robin', flags) : null
const port = proxy?.port ?? up.ports[0]!
const pid = proxy?.pid ?? up.server.pid

/** utime + stime of `pid`, in clock ticks (10 ms). */
function ticks(): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return Number(fields[11]) + Number(fields[12])
}

function run(seconds: string, calibrate = '0'): { out: string; err: string } {
  const env = opts.timeline ? { ...process.env, FIXED_RATE_TIMELINE: '1' } : process.env
  const pinned = ['taskset', '-c', '1', client, ...fixedRateArgs(port, HOST_HEADER, opts.rate, seconds, 64, calibrate)]
  const [command, ...args] = opts['shield-load'] ? ['chrt', '-f', '1', ...pinned] : pinned
  const r = spawnSync(command!, args, { encoding: 'utf8', env })
  if (r.status !== 0) throw new Error(`fixed-rate exited with ${r.status}: ${r.stderr}`)
  return { out: r.stdout.trim(), err: r.stderr.trim() }
}

/** `--idle 5,70` alternates the gaps: the round after each gap is compared with the others. */
const idles = opts.idle.split(',').map(Number)

try {
  if (opts['shield-load'] && shieldProcessTree(up.server.pid, 2) === null) throw new Error('--shield-load: chrt was not permitted (needs root or CAP_SYS_NICE)')
  if (Number(opts['warm-max']) > 0) {
    const script = wrkScript(dir, 'small', { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: 0 })
    await runWrk(found.wrk, 1, script, port, 64, Number(opts['warm-max']))
  }
  run(opts.warm)
  for (let i = 0; i < Number(opts.rounds); i++) {
    if (i > 0) await sleep(idles[(i - 1) % idles.length]! * 1000)
    const before = ticks()
    const unshield = opts.shield && proxy !== null ? shieldProcessTree(proxy.pid) : null
    if (opts.shield && proxy !== null && unshield === null) throw new Error('--shield: chrt was not permitted (needs root or CAP_SYS_NICE)')
    let round: { out: string; err: string }
    try {
      round = run(opts.seconds, opts.calibrate)
    } finally {
      unshield?.()
    }
    const { out, err } = round
    const r = JSON.parse(out) as { completed: number; requests: number; latenciesUs: { p50: number; p99: number; p999: number; max: number } }
    const cpuUs = ((ticks() - before) * 10_000) / r.requests
    const l = r.latenciesUs
    console.log(`round ${i + 1}: p50 ${(l.p50 / 1000).toFixed(2)} ms  p99 ${(l.p99 / 1000).toFixed(2)} ms  p99.9 ${(l.p999 / 1000).toFixed(2)} ms  max ${(l.max / 1000).toFixed(2)} ms  CPU ${cpuUs.toFixed(1)} µs/req`)
    if (err !== '') console.log(err)
  }
} finally {
  await proxy?.stop()
  await up.server.stop()
}
console.log(`logs in ${dir}`)
