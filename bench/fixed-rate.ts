/**
 * Open-loop load at a fixed rate, wrk2-style, for the latency comparison of bench/compare.ts.
 *   node bench/fixed-rate.ts HOST:PORT HOST_HEADER PATH RATE SECONDS CONNECTIONS
 * Prints one JSON line: {sent, completed, requests, errors, seconds, latenciesUs: {p50, p99, p999, max}}.
 * An optional seventh argument, CALIBRATE seconds, runs the load first and leaves it out of the
 * figures, as clients/fixed-rate.c does (its header says how).
 *
 * Why not wrk or autocannon: Debian's wrk is not wrk2 (it has no fixed rate), and a closed-loop
 * client measures latency only of the requests the server let it send (coordinated omission).
 * autocannon's `overallRate` paces in one-second buckets and times from the actual send. Here request
 * i is due at start + i / RATE and its latency runs from that due time, so a stall of the server is
 * charged to every request it delayed, queued ones included. Pacing: between turns of the event loop
 * the client sleeps on Atomics.wait for at most 100 µs (Node's timers have 1 ms granularity, which
 * would send bursts of RATE/1000 requests at once and add up to 1 ms to every latency). The same
 * ~0.1 ms resolution applies to every target, so differences between targets are what to read.
 * Requests are plain bytes on node:net sockets and responses are only framed (lib/http-reader.ts),
 * so the client stays cheap.
 */
import net from 'node:net'
import { ResponseReader } from './lib/http-reader.ts'

const [target, hostHeader, urlPath, rateArg, secondsArg, connectionsArg, calibrateArg] = process.argv.slice(2)
if (connectionsArg === undefined) throw new Error('usage: fixed-rate.ts HOST:PORT HOST_HEADER PATH RATE SECONDS CONNECTIONS [CALIBRATE]')
const [host, port] = [target!.slice(0, target!.lastIndexOf(':')), Number(target!.slice(target!.lastIndexOf(':') + 1))]
const RATE = Number(rateArg)
const SECONDS = Number(secondsArg)
const CONNECTIONS = Number(connectionsArg)
const CALIBRATE = Number(calibrateArg ?? 0)
const MAX_SLEEP_MS = 0.1

const request = Buffer.from(`GET ${urlPath} HTTP/1.1\r\nHost: ${hostHeader}\r\n\r\n`)
const total = Math.round(RATE * (CALIBRATE + SECONDS))
const latenciesUs = new Float64Array(total)
const sleeper = new Int32Array(new SharedArrayBuffer(4))

interface Conn {
  socket: net.Socket
  /** Due time (ms, performance.now) of the request in flight on it, or -1 when idle. */
  due: number
}

let start = 0
/** performance.now() where the measured part starts (after the calibration). */
let t0 = 0
let sent = 0
let measuredSent = 0
let completed = 0
let requests = 0
let errors = 0
const idle: Conn[] = []

function connect(): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true })
    const conn: Conn = { socket, due: -1 }
    const reader = new ResponseReader((status) => {
      const now = performance.now()
      if (status < 200 || status >= 400) errors++
      else {
        requests++
        if (conn.due >= t0) latenciesUs[completed++] = (now - conn.due) * 1000
      }
      conn.due = -1
      idle.push(conn)
    })
    socket.on('data', (chunk: Buffer) => reader.push(chunk))
    socket.once('connect', () => resolve(conn))
    socket.once('error', (err) => {
      errors++
      reject(err)
    })
  })
}

function tick(): void {
  const now = performance.now()
  const dueCount = Math.min(total, Math.floor((now - start) * (RATE / 1000)) + 1)
  while (sent < dueCount && idle.length > 0) {
    const conn = idle.pop()!
    conn.due = start + (sent * 1000) / RATE
    sent++
    if (conn.due >= t0) measuredSent++
    conn.socket.write(request)
  }
  if (sent >= total && idle.length === CONNECTIONS) return finish()
  if (performance.now() - t0 > SECONDS * 1000 + 10_000) return finish() // stuck requests: give up
  const next = start + (sent * 1000) / RATE
  const wait = Math.min(MAX_SLEEP_MS, next - performance.now())
  if (wait > 0) Atomics.wait(sleeper, 0, 0, wait)
  setImmediate(tick)
}

function finish(): void {
  const s = latenciesUs.subarray(0, completed).sort()
  const at = (p: number): number => (s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!)
  const seconds = (performance.now() - t0) / 1000
  process.stdout.write(`${JSON.stringify({ sent: measuredSent, completed, requests, errors, seconds, latenciesUs: { p50: at(50), p99: at(99), p999: at(99.9), max: at(100) } })}\n`)
  for (const c of idle) c.socket.destroy()
  process.exit(0)
}

for (const conn of await Promise.all(Array.from({ length: CONNECTIONS }, connect))) idle.push(conn)
start = performance.now()
t0 = start + CALIBRATE * 1000
tick()
