/**
 * Shared parts of the registry examples (`npm run example:consul`, `npm run example:etcd`): demo
 * upstream instances, a real `outrigger run` from source, and one Ctrl-C that stops everything in
 * order (outrigger drains first, then the instances, then the registry).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { registryBinaries } from '../integration/registries/servers.ts'

const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts')

export interface DemoInstance {
  name: string
  port: number
  close(): Promise<void>
}

/**
 * Starts one small HTTP server per name on a free loopback port. Each answers JSON saying which
 * instance it is, and `/health` with 200 (what the registry's check and outrigger's probes call).
 */
export async function startInstances(names: readonly string[]): Promise<DemoInstance[]> {
  const out: DemoInstance[] = []
  for (const name of names) {
    const server = http.createServer((req, res) => {
      const body = req.url === '/health' ? 'ok\n' : JSON.stringify({ instance: name, method: req.method, url: req.url, host: req.headers.host }) + '\n'
      res.writeHead(200, { 'content-type': req.url === '/health' ? 'text/plain' : 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    out.push({
      name,
      port: (server.address() as net.AddressInfo).port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        }),
    })
  }
  return out
}

/** `preferred` (`host:port`) when that port is free, else the same host on a free port. */
export async function freeAddress(preferred: string): Promise<string> {
  const colon = preferred.lastIndexOf(':')
  const host = preferred.slice(0, colon)
  for (const port of [Number(preferred.slice(colon + 1)), 0]) {
    const server = net.createServer()
    const got = await new Promise<number | null>((resolve) => {
      server.once('error', () => resolve(null))
      server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port))
    })
    if (got !== null) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      return `${host}:${got}`
    }
  }
  throw new Error(`no free port on ${host}`)
}

export interface Registry {
  /** `http://127.0.0.1:PORT` of Consul's HTTP API or etcd's client API. */
  url: string
  /** Stops it (SIGTERM, SIGKILL after 5 s) and removes its data folder. */
  stop(): Promise<void>
}

/**
 * A throwaway Consul agent (dev mode) or single-member etcd on free loopback ports, with the
 * binaries the integration tests use (integration/registries/fetch.sh: PATH, CONSUL_BIN / ETCD_BIN,
 * or Debian's packages unpacked into .cache/registries/). Like outrigger, it gets its own process
 * group, so Ctrl-C does not stop it before outrigger has drained.
 */
export async function startRegistry(kind: 'consul' | 'etcd'): Promise<Registry> {
  const bin = registryBinaries()[kind]
  const port = async (): Promise<string> => (await freeAddress('127.0.0.1:0')).split(':')[1]!
  const dataDir = mkdtempSync(path.join(tmpdir(), `outrigger-example-${kind}-`))
  const [api, p2, p3, p4] = [await port(), await port(), await port(), await port()]
  const url = `http://127.0.0.1:${api}`
  const args =
    kind === 'consul'
      ? ['agent', '-dev', '-client', '127.0.0.1', '-bind', '127.0.0.1', '-http-port', api, '-dns-port', '-1', '-grpc-port', '-1',
          '-serf-lan-port', p2, '-serf-wan-port', p3, '-server-port', p4, '-log-level', 'warn']
      : ['--name', 'example', '--data-dir', dataDir, '--listen-client-urls', url, '--advertise-client-urls', url,
          '--listen-peer-urls', `http://127.0.0.1:${p2}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${p2}`,
          '--initial-cluster', `example=http://127.0.0.1:${p2}`, '--log-level', 'warn']
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  process.once('exit', () => child.kill('SIGKILL'))
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)))
  child.stderr.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)))
  const probe = kind === 'consul' ? `${url}/v1/status/leader` : `${url}/health`
  const ready = await pollUntil(child, 30_000, async () => {
    const res = await fetch(probe, { signal: AbortSignal.timeout(2000) })
    const body = await res.text()
    return res.ok && (kind === 'consul' ? body.length > 4 : body.includes('"health":"true"'))
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dataDir, { recursive: true, force: true })
  }
  if (!ready) {
    await stop()
    throw new Error(`${kind} did not start at ${url}:\n${output}`)
  }
  return { url, stop }
}

/**
 * Runs `outrigger run -c CONFIG` from source; its JSON logs go to this process's stdout. It gets its
 * own process group, so a terminal's Ctrl-C reaches it once, forwarded by `stopTogether`: a second
 * SIGINT would kill it before it drained. Should this process die, it takes outrigger with it.
 */
export function runOutrigger(config: string, env: NodeJS.ProcessEnv): ChildProcess {
  const pretty = process.stdout.isTTY ? ['--pretty'] : []
  const child = spawn(process.execPath, [CLI, 'run', '-c', config, ...pretty], { env, stdio: ['ignore', 'inherit', 'inherit'], detached: true })
  process.once('exit', () => child.kill('SIGKILL'))
  return child
}

/** Polls `check` every 100 ms until it is true (→ true) or `timeoutMs` passes or `child` exits (→ false). */
export async function pollUntil(child: ChildProcess, timeoutMs: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    try {
      if (await check()) return true
    } catch {
      // not answering yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

interface ServiceView {
  name: string
  endpoints: { address: string; port: number; healthy: boolean }[]
}

/** True once outrigger is ready and routes `service` to `count` healthy endpoints. */
export async function routesTo(admin: string, service: string, count: number): Promise<boolean> {
  if (!(await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(2000) })).ok) return false
  const services = (await (await fetch(`http://${admin}/api/services`, { signal: AbortSignal.timeout(2000) })).json()) as ServiceView[]
  const s = services.find((x) => x.name === service)
  return s !== undefined && s.endpoints.filter((e) => e.healthy).length === count
}

/**
 * One Ctrl-C (or SIGTERM) stops outrigger with the same signal, so it drains; when it has exited,
 * `cleanup` stops the instances and the registry, and this process exits with outrigger's code.
 * The registry may also receive the terminal's SIGINT itself; cleanup copes with that.
 */
export function stopTogether(child: ChildProcess, cleanup: () => Promise<void>): void {
  let exiting = false
  child.once('exit', (code) => {
    exiting = true
    cleanup().then(
      () => process.exit(code ?? 1),
      (err: unknown) => {
        process.stderr.write(`cleanup failed: ${String(err)}\n`)
        process.exit(1)
      },
    )
  })
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (!exiting) child.kill(sig)
    })
  }
}

/**
 * The part both registry examples share: runs outrigger beside the registry and the instances,
 * stops all three together on Ctrl-C, and prints `instructions()` once outrigger routes to every
 * instance (or says it did not, within 30 s).
 */
export async function runBeside(config: string, env: NodeJS.ProcessEnv, admin: string, instances: readonly DemoInstance[], registry: Registry, instructions: () => string[]): Promise<void> {
  const child = runOutrigger(config, env)
  stopTogether(child, async () => {
    await Promise.all(instances.map((i) => i.close()))
    await registry.stop()
  })
  if (await pollUntil(child, 30_000, () => routesTo(admin, 'hello', instances.length))) {
    process.stderr.write(['', ...instructions(), 'Ctrl-C stops it.', ''].join('\n') + '\n')
  } else if (child.exitCode === null) {
    process.stderr.write(`outrigger did not route to all ${instances.length} instances within 30 s; see its log above.\n`)
  }
}
