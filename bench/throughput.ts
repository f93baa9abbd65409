/**
 * Requests per second through outrigger, beside the same upstream reached directly, measured in the
 * same run. The upstream and outrigger each run in their own process; the load generator (undici,
 * keep-alive, CONNECTIONS concurrent loops) runs here. Several rounds; medians are printed.
 *
 *   npm run bench                     # defaults: 3 rounds of 5 s, 64 connections
 *   ROUNDS=5 SECONDS=10 CONNECTIONS=32 npm run bench
 *   POLICIES=1 npm run bench          # with circuit breaker, rate limit and header rewrites on (never refusing)
 *   WORKERS=2 npm run bench           # outrigger with `workers: 2` (a primary and two proxy processes)
 *
 * On a 2-core machine the load generator competes with the proxy for CPU, so absolute figures are
 * lower than with wrk on a separate core; the ratio is what to compare across changes.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { Agent, request } from 'undici'
import { median } from './stats.ts'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const SECONDS = Number(process.env.SECONDS ?? 5)
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64)
const root = path.join(import.meta.dirname, '..')

/** Starts a process and resolves with the first line matching `pattern` on its stdout. */
function startProcess(args: string[], pattern: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout })
    lines.on('line', (line) => {
      const m = pattern.exec(line)
      if (m !== null) resolve({ child, match: m })
    })
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
}

/** Runs CONNECTIONS request loops against `url` for `seconds`; returns requests per second. */
async function load(url: string, host: string, seconds: number): Promise<{ rps: number; errors: number }> {
  const agent = new Agent({ connections: CONNECTIONS, pipelining: 1 })
  const deadline = performance.now() + seconds * 1000
  let done = 0
  let errors = 0
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      try {
        const res = await request(url, { dispatcher: agent, headers: { host } })
        await res.body.dump()
        if (res.statusCode === 200) done++
        else errors++
      } catch {
        errors++
      }
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: CONNECTIONS }, loop))
  const elapsed = (performance.now() - start) / 1000
  await agent.close()
  return { rps: done / elapsed, errors }
}

const upstream = await startProcess([path.join(import.meta.dirname, 'upstream.ts')], /^(\d+)$/)
const upstreamPort = upstream.match[1]!
const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-bench-'))
const config = path.join(dir, 'outrigger.yaml')
// POLICIES=1: the same service with every traffic policy on but never refusing, to price their hooks.
const policies = process.env.POLICIES === '1'
  ? '    circuitBreaker: { maxRequests: 100000, maxPending: 100 }\n    rateLimit: { requestsPerSecond: 1000000000, burst: 1000000 }\n' +
    '    routes:\n      - host: up\n        requestHeaders: { set: { x-env: prod }, remove: [x-debug] }\n        responseHeaders: { set: { x-served-by: outrigger } }\n'
  : ''
const workers = process.env.WORKERS === undefined ? '' : `workers: ${process.env.WORKERS}\n`
writeFileSync(config, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${workers}services:\n  up:\n    source: static\n    endpoints: ["127.0.0.1:${upstreamPort}"]\n${policies}`)
const proxy = await startProcess([path.join(root, 'src', 'cli.ts'), 'run', '-c', config], /"listen":"([^"]+)".*"msg":"outrigger started"/)
const proxyAddr = proxy.match[1]!

try {
  const direct: number[] = []
  const through: number[] = []
  // Warm both paths (JIT, connection pools) before measuring.
  await load(`http://127.0.0.1:${upstreamPort}/`, 'up', 1)
  await load(`http://${proxyAddr}/`, 'up', 1)
  for (let round = 1; round <= ROUNDS; round++) {
    const d = await load(`http://127.0.0.1:${upstreamPort}/`, 'up', SECONDS)
    const o = await load(`http://${proxyAddr}/`, 'up', SECONDS)
    direct.push(d.rps)
    through.push(o.rps)
    console.log(`round ${round}: direct ${d.rps.toFixed(0)} req/s, outrigger ${o.rps.toFixed(0)} req/s (errors ${d.errors}/${o.errors})`)
  }
  const md = median(direct)
  const mo = median(through)
  console.log(`\nmedian of ${ROUNDS} rounds, ${SECONDS}s each, ${CONNECTIONS} connections, small responses:`)
  console.log(`  direct to upstream   ${md.toFixed(0).padStart(8)} req/s`)
  console.log(`  through outrigger    ${mo.toFixed(0).padStart(8)} req/s   (${((mo / md) * 100).toFixed(1)}% of direct)`)
} finally {
  proxy.child.kill('SIGTERM')
  upstream.child.kill('SIGTERM')
}
