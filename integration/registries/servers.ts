/**
 * Real Consul and etcd servers for integration tests, on free loopback ports with temporary data
 * folders. The binaries come from `fetch.sh` (PATH, CONSUL_BIN / ETCD_BIN, or Debian's packages
 * unpacked into .cache/registries). A server that cannot start fails the test loudly.
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { closedPort, waitFor } from '../helpers.ts'

let binaries: { consul: string; etcd: string } | null = null

/** Paths of the consul and etcd binaries, fetching them once if needed. */
export function registryBinaries(): { consul: string; etcd: string } {
  if (binaries === null) {
    const out = execFileSync('bash', [path.join(import.meta.dirname, 'fetch.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 })
    const [consul, etcd] = out.trim().split('\n')
    if (consul === undefined || etcd === undefined) throw new Error(`fetch.sh printed no binaries: ${out}`)
    binaries = { consul, etcd }
  }
  return binaries
}

export interface RegistryServer {
  /** `http://127.0.0.1:PORT` of the HTTP (Consul) or client (etcd) API. */
  url: string
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); the data folder stays for `start()`. */
  stop(): Promise<void>
  /** Starts it again on the same ports and data folder (for outage tests). */
  start(): Promise<void>
  /** Stops it and removes its data. */
  destroy(): Promise<void>
  /** What it printed, for failure messages. */
  output(): string
}

function managed(spawnIt: () => ChildProcess, ready: () => Promise<boolean>, url: string, dataDir: string, what: string): RegistryServer {
  let child: ChildProcess | null = null
  let output = ''
  const server: RegistryServer = {
    url,
    output: () => output,
    async start() {
      child = spawnIt()
      const c = child
      c.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)))
      c.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)))
      try {
        await waitFor(`${what} to answer at ${url}`, async () => {
          if (c.exitCode !== null) throw new Error(`${what} exited with ${c.exitCode}:\n${output}`)
          return ready()
        }, 30_000)
      } catch (err) {
        c.kill('SIGKILL')
        throw err
      }
    },
    async stop() {
      const c = child
      child = null
      if (c === null || c.exitCode !== null) return
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()))
      c.kill('SIGTERM')
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
    async destroy() {
      await server.stop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
  return server
}

async function answers(url: string, check: (body: string) => boolean = () => true): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
    return res.ok && check(await res.text())
  } catch {
    return false
  }
}

/**
 * A Consul agent on free ports: in dev mode (in memory, fastest) by default; with `persistent`, a
 * single bootstrapped server with a data folder, whose catalog survives a restart as a real one's
 * does (for outage tests).
 */
export async function startConsul(options: { persistent?: boolean } = {}): Promise<RegistryServer> {
  const bin = registryBinaries().consul
  const [http, serfLan, serfWan, server] = [await closedPort(), await closedPort(), await closedPort(), await closedPort()]
  const dataDir = mkdtempSync(path.join(tmpdir(), 'outrigger-consul-'))
  const url = `http://127.0.0.1:${http}`
  const mode = options.persistent === true ? ['-server', '-bootstrap-expect', '1', '-data-dir', dataDir, '-ui=false'] : ['-dev']
  const args = ['agent', ...mode, '-client', '127.0.0.1', '-bind', '127.0.0.1', '-http-port', String(http), '-dns-port', '-1', '-grpc-port', '-1',
    '-serf-lan-port', String(serfLan), '-serf-wan-port', String(serfWan), '-server-port', String(server), '-log-level', 'warn']
  const s = managed(() => spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }), () => answers(`${url}/v1/status/leader`, (b) => b.length > 4), url, dataDir, 'consul')
  await s.start()
  return s
}

/** A single-member etcd on free ports with a temporary data folder. */
export async function startEtcd(): Promise<RegistryServer> {
  const bin = registryBinaries().etcd
  const [client, peer] = [await closedPort(), await closedPort()]
  const dataDir = mkdtempSync(path.join(tmpdir(), 'outrigger-etcd-'))
  const url = `http://127.0.0.1:${client}`
  const args = ['--name', 'outrigger-test', '--data-dir', dataDir, '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-cluster', `outrigger-test=http://127.0.0.1:${peer}`, '--log-level', 'warn']
  const s = managed(() => spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }), () => answers(`${url}/health`, (b) => b.includes('"health":"true"')), url, dataDir, 'etcd')
  await s.start()
  return s
}
