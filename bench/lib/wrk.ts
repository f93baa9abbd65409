/** Runs wrk (closed loop, one thread, pinned) with a Lua script that prints its summary as JSON. */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'

export interface WrkLoad {
  method: 'GET' | 'POST'
  path: string
  host: string
  /** Bytes of request body (POST), 0 for none. */
  bodyBytes: number
  /** Set a header `x-user` cycling over this many values (consistent hashing), 0 for none. */
  hashKeys: number
}

export interface WrkResult {
  requests: number
  seconds: number
  rps: number
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers. */
  errors: number
  p50Ms: number
  p99Ms: number
  p999Ms: number
}

const MARK = 'WRK-JSON '

/** Writes the Lua script for `load` into `dir`; returns its path. */
export function wrkScript(dir: string, name: string, load: WrkLoad): string {
  const lines = [`wrk.method = "${load.method}"`, `wrk.path = "${load.path}"`, `wrk.headers["Host"] = "${load.host}"`]
  if (load.bodyBytes > 0) {
    lines.push(`wrk.body = string.rep("x", ${load.bodyBytes})`, `wrk.headers["Content-Type"] = "application/octet-stream"`)
  }
  if (load.hashKeys > 0) {
    // Requests formatted once per thread; request() only hands them out, so wrk stays cheap.
    lines.push(
      'local reqs = {}',
      'local n = 0',
      `init = function(args) for i = 1, ${load.hashKeys} do wrk.headers["x-user"] = "user-" .. i; reqs[i] = wrk.format() end end`,
      `request = function() n = n % ${load.hashKeys} + 1; return reqs[n] end`,
    )
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format('${MARK}{"requests":%d,"us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\\n',`,
    '    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,',
    '    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))',
    'end',
  )
  const file = path.join(dir, `${name}.lua`)
  writeFileSync(file, `${lines.join('\n')}\n`)
  return file
}

/** Runs wrk on CPU `cpu` against 127.0.0.1:`port` for `seconds` with `connections`. */
export function runWrk(wrk: string, cpu: number, script: string, port: number, connections: number, seconds: number): Promise<WrkResult> {
  const args = ['-c', String(cpu), wrk, '-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, `http://127.0.0.1:${port}`]
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith(MARK))
      if (line === undefined) return reject(new Error(`wrk exited with ${code} and no summary:\n${out}`))
      const r = JSON.parse(line.slice(MARK.length)) as { requests: number; us: number; errors: number; p50: number; p99: number; p999: number }
      const s = r.us / 1e6
      resolve({ requests: r.requests, seconds: s, rps: r.requests / s, errors: r.errors, p50Ms: r.p50 / 1000, p99Ms: r.p99 / 1000, p999Ms: r.p999 / 1000 })
    })
  })
}
