/**
 * Where outrigger's bytes go per request: V8's sampling heap profiler over a window of fixed-rate
 * load, counting the objects the GC has already collected too (lib/alloc-sampler.ts), so the
 * figure is bytes allocated, which sets how often the scavenger stops the event loop. Unlike time,
 * bytes per request barely move with the machine's noise, so two builds can be compared on a busy
 * machine.
 *
 *   node bench/alloc-profile.ts [--rate 9000] [--seconds 5] [--top 25] [--interval 512] [--strategy round-robin]
 *
 * Same setup as the latency scenario of `npm run bench`: three upstreams in one nginx on CPU 1,
 * outrigger as a real `outrigger run` of the built CLI on CPU 0, and the C fixed-rate client on
 * CPU 1 with 64 connections. Prints the bytes allocated per request (the sampled total over the
 * requests completed in the window) and the top allocation sites, by bytes per request, with the
 * frame that called each (the site alone is often a Node internal such as FastBuffer).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { buildFixedRateClient, fetchTools, fixedRateArgs } from './lib/tools.ts'
import { HOST_HEADER, STRATEGIES, startOutrigger, startUpstreams } from './peers/peers.ts'
import type { Strategy } from './peers/peers.ts'

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '9000' },
    seconds: { type: 'string', default: '5' },
    top: { type: 'string', default: '25' },
    interval: { type: 'string', default: '512' },
    strategy: { type: 'string', default: 'round-robin' },
  },
  strict: true,
})
const strategy = opts.strategy as Strategy
if (!STRATEGIES.includes(strategy)) throw new Error(`--strategy: one of ${STRATEGIES.join(', ')}`)

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface Node { callFrame: CallFrame; selfSize: number; children: Node[] }

const root = path.resolve(import.meta.dirname, '..')
const built = buildFixedRateClient()
if (built === null) throw new Error('alloc-profile needs the C fixed-rate client, and it could not be built')
const client: string = built
const found = fetchTools()
const dir = mkdtempSync(path.join(os.tmpdir(), 'alloc-profile-'))
const out = path.join(dir, 'alloc.heapprofile')
process.env.ALLOC_SAMPLER_OUT = out
process.env.ALLOC_SAMPLER_INTERVAL = opts.interval
const tools = { haproxy: found.haproxy, nginx: found.nginx, node: process.execPath, root, dir }
const up = await startUpstreams(tools, 1)
const proxy = await startOutrigger(tools, 0, up, strategy, ['--import', path.join(import.meta.dirname, 'lib', 'alloc-sampler.ts')])

function load(seconds: string): { requests: number } {
  const r = spawnSync('taskset', ['-c', '1', client, ...fixedRateArgs(proxy.port, HOST_HEADER, opts.rate, seconds, 64, 0)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`fixed-rate exited with ${r.status}: ${r.stderr}`)
  return JSON.parse(r.stdout) as { requests: number }
}

let profile: { head: Node }
let requests: number
try {
  load('3') // warm: the JIT, the upstream pool
  process.kill(proxy.pid, 'SIGUSR2')
  await sleep(200)
  requests = load(opts.seconds).requests
  process.kill(proxy.pid, 'SIGUSR2')
  // The sampler writes the file in one call; poll until it parses (or time out loudly).
  const deadline = Date.now() + 30_000
  let read: { head: Node } | null = null
  while (read === null) {
    if (Date.now() > deadline) throw new Error(`alloc-profile: no profile at ${out} after 30 s`)
    await sleep(200)
    try {
      read = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as { head: Node }) : null
    } catch {
      read = null
    }
  }
  profile = read
} finally {
  await proxy.stop()
  await up.server.stop()
}

const frame = (f: CallFrame): string => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`
const sites = new Map<string, number>()
let total = 0
function walk(node: Node, parent: string): void {
  if (node.selfSize > 0) {
    total += node.selfSize
    const key = `${frame(node.callFrame)}  <  ${parent}`
    sites.set(key, (sites.get(key) ?? 0) + node.selfSize)
  }
  for (const child of node.children) walk(child, frame(node.callFrame))
}
walk(profile.head, '')
console.log(`outrigger (${strategy}) at ${opts.rate} req/s: ${requests} requests in the window, ${(total / requests).toFixed(0)} bytes allocated per request (sampled every ${opts.interval} bytes)`)
for (const [site, bytes] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, Number(opts.top))) {
  console.log(`${(bytes / requests).toFixed(1).padStart(8)} B/req  ${site}`)
}
