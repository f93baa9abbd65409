/**
 * Shared parts for integration tests: real node:http upstreams on free loopback ports, an
 * in-process sidecar built from a real config document, and a raw-socket client for requests that
 * well-behaved clients refuse to send.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import net from 'node:net'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import type { Agent} from 'undici';
import { request as undiciRequest } from 'undici'
import { parseConfig } from '../src/config/load.ts'
import { Sidecar } from '../src/sidecar.ts'

export interface Upstream {
  name: string
  port: number
  address: string
  server: http.Server
  /** Requests received so far. */
  hits: number
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, upstream: Upstream) => void

/** Echoes who answered and what arrived, as JSON. */
export const echoHandler: Handler = (req, res, upstream) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = JSON.stringify({ upstream: upstream.name, method: req.method, url: req.url, rawHeaders: req.rawHeaders, bodyLength: Buffer.concat(chunks).length })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

export async function startUpstream(name: string, handler: Handler = echoHandler): Promise<Upstream> {
  const upstream = { name, hits: 0 } as Upstream
  const server = http.createServer((req, res) => {
    upstream.hits++
    handler(req, res, upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as net.AddressInfo
  upstream.server = server
  upstream.port = address.port
  upstream.address = `127.0.0.1:${address.port}`
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return upstream
}

/** A loopback port that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export interface RunningSidecar {
  sidecar: Sidecar
  /** `http://127.0.0.1:PORT` of the shared listener. */
  url: string
  adminUrl: string
  serviceUrl(name: string): string
  stop(): Promise<void>
}

/** A config document as users write it (contract keys), with listeners on free ports unless given. */
export async function startSidecar(doc: Record<string, unknown>): Promise<RunningSidecar> {
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-it-'))
  const config = parseConfig(JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', discovery: { stateDir: path.join(dir, 'state') }, ...doc }), {
    format: 'json',
    baseDir: dir,
    env: {},
  })
  const logger = pino({ level: process.env.OUTRIGGER_TEST_LOG ?? 'silent' })
  const sidecar = await Sidecar.start(config, logger)
  const a = sidecar.addresses
  return {
    sidecar,
    url: `http://127.0.0.1:${a.listen.port}`,
    adminUrl: `http://127.0.0.1:${a.admin.port}`,
    serviceUrl: (name) => `http://127.0.0.1:${a.services[name]!.port}`,
    stop: () => sidecar.stop(),
  }
}

/** Polls `check` until it returns true, failing with `what` after `timeoutMs`. Never a fixed sleep. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export function writeTempFile(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-it-'))
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

export interface SimpleResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request through undici (which, unlike fetch, lets a test set Host). */
export async function send(agent: Agent, url: string, options: { method?: string; headers?: Record<string, string | string[]> | string[]; body?: string | Buffer } = {}): Promise<SimpleResponse> {
  const res = await undiciRequest(url, {
    dispatcher: agent,
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
  })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

/** Writes raw bytes on a fresh connection and returns everything the server sends until it closes or `idleMs` passes. */
export function rawExchange(port: number, payload: string | Buffer, idleMs = 1500): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let timer: NodeJS.Timeout | undefined
    const done = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(done, idleMs)
    }
    socket.on('connect', () => {
      socket.write(payload)
      arm()
    })
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      arm()
    })
    socket.on('end', done)
    socket.on('close', done)
    socket.on('error', (err) => (chunks.length > 0 ? done() : reject(err)))
  })
}

/** The command line entry point, run from source (Node 24 strips the types). */
export const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts')

export interface RunningCli {
  child: ChildProcess
  /** `host:port` of the shared listener and of the admin API, from the start-up log line. */
  listen: string
  admin: string
  logs: string[]
}

/** Starts `outrigger run -c FILE` as a real process and resolves once its log says where it listens. */
export function startCli(configFile: string): Promise<RunningCli> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'run', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
    const logs: string[] = []
    let buffered = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`outrigger did not start within 15 s: ${logs.join('\n')}`))
    }, 15_000)
    child.stdout.on('data', (c: Buffer) => {
      buffered += c.toString()
      let nl: number
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        logs.push(line)
        const entry = JSON.parse(line) as { msg: string; listen?: string; admin?: string }
        if (entry.msg === 'outrigger started') {
          clearTimeout(timer)
          resolve({ child, listen: entry.listen!, admin: entry.admin!, logs })
        }
      }
    })
    child.stderr.on('data', (c: Buffer) => logs.push(c.toString()))
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`outrigger exited with ${code}: ${logs.join('\n')}`))
    })
  })
}

/** Resident memory of a process now and at its peak (Linux /proc), in bytes. */
export function residentMemory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), peak: kb('VmHWM') }
}
