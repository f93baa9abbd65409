/**
 * CPU cost of active health checking: ENDPOINTS real HTTP endpoints probed every second, measured as
 * the user + system CPU time of this process over wall time (percent of one core). Target: under 5%
 * of one core for 1,000 endpoints at a 1 s interval. One row for `type: http`, one for `type: tcp`.
 *
 *   npm run bench:health                          # 1,000 endpoints, 3 windows of 10 s per row
 *   ENDPOINTS=500 WINDOWS=5 SECONDS=5 npm run bench:health
 *
 * The endpoints live in a child process (this same file, run with `endpoints N`): N node:http
 * servers on loopback port 0 that answer 200 on /health. Their CPU is not counted; the checker's
 * is. The script prints figures and never fails on a missed target: on a busy or shared machine
 * the number is noisy, so compare medians across runs on the same machine.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import type { ActiveHealthCheckConfig } from '../src/config/types.ts'
import { ActiveHealthChecker } from '../src/health/active.ts'
import { median } from './stats.ts'

const ENDPOINTS = Number(process.env.ENDPOINTS ?? 1000)
const WINDOWS = Number(process.env.WINDOWS ?? 3)
const SECONDS = Number(process.env.SECONDS ?? 10)
const WARMUP_SECONDS = Number(process.env.WARMUP_SECONDS ?? 3)
/** Percent of one core that active checking of 1,000 endpoints at 1 s may cost. */
const TARGET_CPU_PERCENT = 5

const HTTP_CHECK: ActiveHealthCheckConfig = { type: 'http', path: '/health', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 3 }
const TCP_CHECK: ActiveHealthCheckConfig = { ...HTTP_CHECK, type: 'tcp' }

/** Child mode: `count` HTTP servers on loopback port 0; prints their ports as one JSON line. */
async function serveEndpoints(count: number): Promise<void> {
  const ok = Buffer.from('ok\n')
  const handler: http.RequestListener = (req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': ok.length })
      res.end(ok)
    } else {
      res.writeHead(404, { 'content-length': 0 })
      res.end()
    }
  }
  const ports = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<number>((resolve, reject) => {
          const server = http.createServer(handler)
          server.once('error', reject)
          server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
        }),
    ),
  )
  process.stdout.write(`${JSON.stringify(ports)}\n`)
  // Leave with the parent: on SIGTERM, or when the parent's end of stdin closes.
  process.on('SIGTERM', () => process.exit(0))
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

/** Starts the endpoints child and resolves with it and its ports. */
function startEndpoints(count: number): Promise<{ child: ChildProcess; ports: number[] }> {
  const child = spawn(process.execPath, [import.meta.filename, 'endpoints', String(count)], { stdio: ['pipe', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout })
    lines.once('line', (line) => {
      const parsed: unknown = JSON.parse(line)
      if (!Array.isArray(parsed) || parsed.length !== count || !parsed.every((p) => typeof p === 'number')) {
        reject(new Error(`endpoints child printed ${line.slice(0, 80)}`))
        return
      }
      resolve({ child, ports: parsed })
    })
    child.once('exit', (code) => reject(new Error(`endpoints child exited with ${code}`)))
  })
}

interface Row {
  label: string
  cpuPercent: number[]
  /** The system (kernel) part of cpuPercent, per window. */
  systemPercent: number[]
  probesPerSecond: number[]
  failedProbes: number
  unhealthyVerdicts: number
  /** The reason of the first unhealthy verdict, warm-up included; '' when there was none. */
  firstReason: string
}

/** Watches every port with `config`, warms up, then measures WINDOWS windows of SECONDS each. */
async function measure(label: string, ports: readonly number[], config: ActiveHealthCheckConfig): Promise<Row> {
  let probes = 0
  let failed = 0
  let unhealthy = 0
  let firstReason = ''
  const checker = new ActiveHealthChecker(pino({ level: 'silent' }), {
    observer: {
      onCheck: (_endpoint, passed) => {
        probes++
        if (!passed) failed++
      },
    },
  })
  const leaves = ports.map((port) =>
    checker.watch('127.0.0.1', port, config, (verdict) => {
      if (verdict.healthy) return
      unhealthy++
      if (firstReason === '') firstReason = `127.0.0.1:${port}: ${verdict.reason}`
    }),
  )
  const row: Row = { label, cpuPercent: [], systemPercent: [], probesPerSecond: [], failedProbes: 0, unhealthyVerdicts: 0, firstReason: '' }
  try {
    await sleep(WARMUP_SECONDS * 1000)
    const failedBefore = failed
    const unhealthyBefore = unhealthy
    for (let i = 0; i < WINDOWS; i++) {
      const cpuStart = process.cpuUsage()
      const wallStart = performance.now()
      const probesStart = probes
      await sleep(SECONDS * 1000)
      const cpu = process.cpuUsage(cpuStart)
      const wallMs = performance.now() - wallStart
      row.cpuPercent.push(((cpu.user + cpu.system) / 1000 / wallMs) * 100)
      row.systemPercent.push((cpu.system / 1000 / wallMs) * 100)
      row.probesPerSecond.push((probes - probesStart) / (wallMs / 1000))
    }
    row.failedProbes = failed - failedBefore
    row.unhealthyVerdicts = unhealthy - unhealthyBefore
    row.firstReason = firstReason
  } finally {
    for (const leave of leaves) leave()
    await checker.close()
  }
  return row
}

function printRow(row: Row): void {
  const cpu = median(row.cpuPercent)
  const verdict = cpu < TARGET_CPU_PERCENT ? 'PASS' : 'MISSED'
  console.log(
    [
      row.label.padEnd(6),
      `${cpu.toFixed(2)}%`.padStart(8),
      `${median(row.systemPercent).toFixed(2)}%`.padStart(8),
      row.cpuPercent
        .map((x) => x.toFixed(2))
        .join(' / ')
        .padEnd(22),
      median(row.probesPerSecond).toFixed(0).padStart(9),
      median(row.cpuPercent.map((x, i) => (x * 10_000) / (row.probesPerSecond[i] ?? Number.NaN))).toFixed(0).padStart(10),
      String(row.failedProbes).padStart(8),
      String(row.unhealthyVerdicts).padStart(10),
      `  ${verdict} (target < ${TARGET_CPU_PERCENT}%)`,
    ].join(' '),
  )
  if (row.firstReason !== '') console.log(`       first unhealthy verdict: ${row.firstReason} (figures with failing probes do not measure real checks)`)
}

async function main(): Promise<void> {
  const { child, ports } = await startEndpoints(ENDPOINTS)
  try {
    console.log(
      `active health checks: ${ENDPOINTS} endpoints, interval ${HTTP_CHECK.intervalMs} ms, timeout ${HTTP_CHECK.timeoutMs} ms; ` +
        `${WINDOWS} windows of ${SECONDS} s after ${WARMUP_SECONDS} s warm-up; node ${process.version}, ${os.availableParallelism()} CPUs, load ${os
          .loadavg()
          .map((x) => x.toFixed(2))
          .join(' ')}`,
    )
    console.log('CPU is this process only (user + system, % of one core; sys = the kernel part); the endpoints run in a child process.')
    console.log('µs/probe = CPU time per probe; failed = failed probes and unhealthy = unhealthy verdicts while measuring (both should be 0).')
    console.log(`${'check'.padEnd(6)} ${'CPU med'.padStart(8)} ${'sys med'.padStart(8)} ${'CPU per window'.padEnd(22)} ${'probes/s'.padStart(9)} ${'µs/probe'.padStart(10)} ${'failed'.padStart(8)} ${'unhealthy'.padStart(10)}`)
    printRow(await measure('http', ports, HTTP_CHECK))
    printRow(await measure('tcp', ports, TCP_CHECK))
  } finally {
    child.stdin?.end()
    child.kill('SIGTERM')
  }
}

if (process.argv[2] === 'endpoints') await serveEndpoints(Number(process.argv[3] ?? ENDPOINTS))
else await main()
