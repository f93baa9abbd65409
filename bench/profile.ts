/**
 * A CPU profile of outrigger under the comparison's small-response load, and its top functions by
 * self time: where the optimisation work should look first.
 *
 *   npm run bench:profile                       # 10 s of wrk, top 15
 *   npm run bench:profile -- --duration 20 --top 30 --strategy least-connections
 *
 * Same setup as `npm run bench` (bench/compare.ts): three upstreams in one nginx on CPU 1, outrigger
 * as a real `outrigger run` process with the comparison's config on CPU 0, started with
 * `--cpu-prof`, wrk (64 connections) on CPU 1. The profile is written when outrigger exits on
 * SIGTERM; its path is printed (open it in Chrome DevTools or speedscope for the call tree).
 */
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fetchTools } from './lib/tools.ts'
import { runWrk, wrkScript } from './lib/wrk.ts'
import { HOST_HEADER, STRATEGIES, startOutrigger, startUpstreams } from './peers/peers.ts'
import type { Strategy } from './peers/peers.ts'

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    top: { type: 'string', default: '15' },
    strategy: { type: 'string', default: 'round-robin' },
  },
  strict: true,
})
const strategy = opts.strategy as Strategy
if (!STRATEGIES.includes(strategy)) throw new Error(`--strategy: one of ${STRATEGIES.join(', ')}`)

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** Self time per function (name, file and line), in microseconds, largest first. */
export function selfTimes(profile: Profile): { name: string; where: string; us: number }[] {
  const byNode = new Map<number, number>()
  // timeDeltas[i] is the time before sample i; charge it to the sample's node (the usual reading).
  for (let i = 0; i < profile.samples.length; i++) byNode.set(profile.samples[i]!, (byNode.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0))
  const byFunction = new Map<string, { name: string; where: string; us: number }>()
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0
    if (us === 0) continue
    const f = node.callFrame
    const file = f.url === '' ? '' : f.url.replace(/^file:\/\//, '').replace(`${path.join(import.meta.dirname, '..')}/`, '')
    const where = file === '' ? '' : `${file}:${f.lineNumber + 1}`
    const key = `${f.functionName}@${where}`
    const entry = byFunction.get(key) ?? { name: f.functionName === '' ? '(anonymous)' : f.functionName, where, us: 0 }
    entry.us += us
    byFunction.set(key, entry)
  }
  return [...byFunction.values()].sort((a, b) => b.us - a.us)
}

const found = fetchTools()
const dir = mkdtempSync(path.join(os.tmpdir(), 'outrigger-profile-'))
const tools = { haproxy: found.haproxy, nginx: found.nginx, node: process.execPath, root: path.join(import.meta.dirname, '..'), dir }
const profileDir = path.join(dir, 'profile')

const up = await startUpstreams(tools, 1)
try {
  const proxy = await startOutrigger(tools, 0, up, strategy, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
  const script = wrkScript(dir, 'small', { method: 'GET', path: '/', host: HOST_HEADER, bodyBytes: 0, hashKeys: strategy === 'consistent-hash' ? 1000 : 0 })
  const r = await runWrk(found.wrk, 1, script, proxy.port, Number(opts.connections), Number(opts.duration))
  await proxy.stop()
  console.log(`outrigger (${strategy}): ${r.rps.toFixed(0)} req/s over ${r.seconds.toFixed(1)} s, p99 ${r.p99Ms.toFixed(2)} ms, ${r.errors} errors; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
} finally {
  await up.server.stop()
}

const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'))
if (file === undefined) throw new Error(`no profile written in ${profileDir}`)
const profile = JSON.parse(readFileSync(path.join(profileDir, file), 'utf8')) as Profile
const rows = selfTimes(profile)
const total = rows.reduce((a, r) => a + r.us, 0)
console.log(`\nprofile: ${path.join(profileDir, file)}\ntop ${opts.top} functions by self time (of ${(total / 1e6).toFixed(2)} s sampled, start-up included):`)
for (const r of rows.slice(0, Number(opts.top))) console.log(`${((100 * r.us) / total).toFixed(1).padStart(5)}%  ${(r.us / 1000).toFixed(0).padStart(6)} ms  ${r.name}  ${r.where}`)
