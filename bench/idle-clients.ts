/**
 * Holds COUNT idle keep-alive connections to a proxy, for the memory figure of bench/compare.ts.
 *   node bench/idle-clients.ts HOST:PORT HOST_HEADER COUNT
 * Each connection sends one GET and reads its response (so the proxy has set up everything a served
 * connection holds), then stays open and silent. Prints `ready OPEN FAILED` once every connection
 * has answered, failed or waited 5 s for its answer; exits on SIGTERM or when stdin closes.
 */
import net from 'node:net'
import { ResponseReader } from './lib/http-reader.ts'

const [target, hostHeader, countArg] = process.argv.slice(2)
if (countArg === undefined) throw new Error('usage: idle-clients.ts HOST:PORT HOST_HEADER COUNT')
const host = target!.slice(0, target!.lastIndexOf(':'))
const port = Number(target!.slice(target!.lastIndexOf(':') + 1))
const COUNT = Number(countArg)
/** Connections opened at once: a burst of 10,000 SYNs overflows the listen backlog of some peers. */
const BATCH = 250
const ANSWER_TIMEOUT_MS = 5000

const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${hostHeader}\r\n\r\n`)
const sockets: net.Socket[] = []

function open(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    sockets.push(socket)
    // A proxy at its connection limit leaves the rest in its accept queue: give up on an answer
    // after ANSWER_TIMEOUT_MS but keep the connection open.
    const timer = setTimeout(() => resolve(false), ANSWER_TIMEOUT_MS)
    const reader = new ResponseReader((status) => {
      clearTimeout(timer)
      resolve(status === 200)
    })
    socket.on('data', (chunk: Buffer) => reader.push(chunk))
    socket.once('connect', () => socket.write(request))
    socket.on('error', () => resolve(false))
    socket.on('close', () => resolve(false))
  })
}

let ok = 0
let failed = 0
for (let i = 0; i < COUNT; i += BATCH) {
  const results = await Promise.all(Array.from({ length: Math.min(BATCH, COUNT - i) }, open))
  for (const r of results) if (r) ok++
  else failed++
}
process.stdout.write(`ready ${ok} ${failed}\n`)
const stop = (): void => {
  for (const s of sockets) s.destroy()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.resume()
