/**
 * `workers: 2` with a real `outrigger run` process: a primary (registries, active checks, admin) and
 * two node:cluster workers sharing the proxy listener with SO_REUSEPORT. Which worker served a
 * request is read from the access log, whose lines carry the worker's pid.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { tmpdir } from 'node:os'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import type { RunningCli, Upstream } from './helpers.ts'
import { echoHandler, startCli, startUpstream, waitFor } from './helpers.ts'
import type { RegistryServer } from './registries/servers.ts'
import { startConsul } from './registries/servers.ts'

interface LogLine {
  msg?: string
  module?: string
  pid: number
  worker?: number
  pids?: number[]
  status?: number
  service?: string
  errors?: string[]
}

function lines(cli: RunningCli): LogLine[] {
  return cli.logs.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine]
    } catch {
      return []
    }
  })
}

function workerPids(cli: RunningCli): number[] {
  const started = lines(cli).find((l) => l.msg === 'outrigger started')
  assert.ok(started?.pids !== undefined && started.pids.length === 2, 'the start line names two worker pids')
  return started.pids
}

/** One GET on a fresh connection (so the kernel picks a worker for each), `Host: host`. */
function get(listen: string, host: string, pathName = '/'): Promise<{ status: number; body: string }> {
  const [h, p] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))]
  return new Promise((resolve, reject) => {
    const req = http.get({ host: h, port: p, path: pathName, headers: { host }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
}

async function getText(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.text() }
}

/** A counter's value from `/metrics` for the given labels (0 when absent). */
async function metric(admin: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = (await getText(`http://${admin}/metrics`)).body
  const family = parsePrometheusTextFormat(text).find((f) => f.name === name)
  const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
  return sample === undefined ? 0 : Number(sample.value)
}

interface EndpointView {
  port: number
  healthy: boolean
  flags: string[]
  requests: number
  inFlight: number
}

async function endpoints(admin: string, service: string): Promise<EndpointView[]> {
  const views = JSON.parse((await getText(`http://${admin}/api/services`)).body) as Array<{ name: string; endpoints: EndpointView[] }>
  return views.find((v) => v.name === service)!.endpoints
}

function configFile(doc: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-workers-'))
  const file = path.join(dir, 'outrigger.json')
  writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', workers: 2, accessLog: true, discovery: { stateDir: path.join(dir, 'state') }, ...doc }))
  return file
}

function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/status`)) return false
  // A zombie has exited (its sockets are closed); only its parent has not reaped it yet.
  return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
}

async function stopCli(cli: RunningCli): Promise<number | null> {
  if (cli.child.exitCode !== null) return cli.child.exitCode
  const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
  cli.child.kill('SIGTERM')
  return exited
}

/** Pids of the workers whose access-log lines for `service` appeared after line `from`. */
function servedBy(cli: RunningCli, service: string, from: number): Map<number, number> {
  const count = new Map<number, number>()
  for (const l of lines(cli).slice(from)) {
    if (l.module === 'access' && l.service === service) count.set(l.pid, (count.get(l.pid) ?? 0) + 1)
  }
  return count
}

describe('workers: 2', () => {
  let a: Upstream
  let b: Upstream
  /** Only `b` answers its health check with 503 while this is true. */
  let bSick = false
  let probes = 0
    let cli: RunningCli
  let pids: number[]

  before(async () => {
    const handler = (name: 'a' | 'b') => (req: http.IncomingMessage, res: http.ServerResponse, u: Upstream) => {
      if (req.url === '/health') {
        u.hits--
        if (name === 'a') {
          probes++
        }
        res.writeHead(name === 'b' && bSick ? 503 : 200).end()
        return
      }
      echoHandler(req, res, u)
    }
    a = await startUpstream('a', handler('a'))
    b = await startUpstream('b', handler('b'))
    cli = await startCli(
      configFile({
        services: {
          web: {
            source: 'static',
            endpoints: [a.address, b.address],
            healthCheck: { active: { type: 'http', path: '/health', interval: '500ms', timeout: '450ms', healthyThreshold: 1, unhealthyThreshold: 2 }, panicThreshold: 0 },
          },
        },
      }),
    )
    pids = workerPids(cli)
  })

  after(async () => {
    await stopCli(cli)
    await a.close()
    await b.close()
  })

  it('both workers serve; /metrics and /api/services sum their requests; discovery is counted once', async () => {
    const from = cli.logs.length
    const before = { requests: await metric(cli.admin, 'outrigger_requests_total', { service: 'web', code: '200' }), hits: a.hits + b.hits }
    const N = 200
    for (let i = 0; i < N; i += 10) {
      const batch = await Promise.all(Array.from({ length: 10 }, () => get(cli.listen, 'web')))
      for (const r of batch) assert.equal(r.status, 200, r.body)
    }
    await waitFor('an access-log line per request', () => [...servedBy(cli, 'web', from).values()].reduce((x, y) => x + y, 0) >= N)
    const served = servedBy(cli, 'web', from)
    assert.deepEqual([...served.keys()].sort(), [...pids].sort(), `requests by worker pid: ${JSON.stringify([...served])}`)
    assert.equal(a.hits + b.hits - before.hits, N)
    assert.equal((await metric(cli.admin, 'outrigger_requests_total', { service: 'web', code: '200' })) - before.requests, N)
    const views = await endpoints(cli.admin, 'web')
    assert.equal(views.reduce((x, e) => x + e.requests, 0), a.hits + b.hits)
    assert.equal(views.reduce((x, e) => x + e.inFlight, 0), 0)
    // One static set, delivered by the primary's adapter once; the workers' own counts are not added.
    assert.equal(await metric(cli.admin, 'outrigger_discovery_updates_total', { service: 'web' }), 1)
  })

  it('active checks run once, in the primary: the upstream sees one interval’s worth of probes, not two', async () => {
    await waitFor('probes', () => probes >= 3)
    const start = probes
    const t0 = Date.now()
    await waitFor('eight probes', () => probes - start >= 8, 30_000)
    const elapsedMs = Date.now() - t0
    const seen = probes - start
    // One loop at 500 ms ± 10% makes at most elapsed / 450 ms (+1 for the edges); two loops twice that.
    const oneLoopMax = Math.floor(elapsedMs / 450) + 1
    assert.ok(seen <= oneLoopMax, `${seen} probes in ${elapsedMs} ms: more than one loop (at most ${oneLoopMax})`)
    assert.equal(await metric(cli.admin, 'outrigger_health_checks_total', { endpoint: a.address, result: 'fail' }), 0)
  })

  it('an endpoint failing its active check stops receiving traffic in every worker', async () => {
    bSick = true
    try {
      await waitFor('b marked failed_active_check', async () => (await endpoints(cli.admin, 'web')).find((e) => e.port === b.port)?.flags.includes('failed_active_check') === true)
      assert.equal(await metric(cli.admin, 'outrigger_endpoints', { service: 'web', state: 'unhealthy' }), 1)
      // Verdicts reach the workers over IPC right after the primary's: give them that moment.
      const from = cli.logs.length
      const bBefore = b.hits
      for (let i = 0; i < 100; i += 10) {
        for (const r of await Promise.all(Array.from({ length: 10 }, () => get(cli.listen, 'web')))) {
          assert.equal(r.status, 200, r.body)
          assert.equal((JSON.parse(r.body) as { upstream: string }).upstream, 'a')
        }
      }
      assert.equal(b.hits, bBefore)
      await waitFor('the access log of those requests', () => [...servedBy(cli, 'web', from).values()].reduce((x, y) => x + y, 0) >= 100)
      assert.equal(servedBy(cli, 'web', from).size, 2, 'both workers served while b was unhealthy')
    } finally {
      bSick = false
    }
    await waitFor('b healthy again', async () => (await endpoints(cli.admin, 'web')).find((e) => e.port === b.port)?.healthy === true)
  })

  it('a worker killed with SIGKILL is restarted; serving goes on meanwhile', async () => {
    const victim = pids[0]!
    const survivor = pids[1]!
    process.kill(victim, 'SIGKILL')
    // Not the pid's zombie state: the main thread turns zombie while the process's other threads
    // still hold its files, listening socket included. The primary hears of the exit once all are gone.
    await waitFor('the primary to log the death', () => lines(cli).some((l) => l.msg === 'worker died; restarting it' && l.pid === cli.child.pid))
    assert.ok(!alive(victim))
    // Until the restart, the survivor takes every connection.
    for (let i = 0; i < 20; i++) assert.equal((await get(cli.listen, 'web')).status, 200)
    await waitFor('the restart to be logged', () => lines(cli).some((l) => l.msg === 'worker restarted'), 20_000)
    const restarted = lines(cli).find((l) => l.msg === 'worker restarted')!
    assert.ok(alive(cli.child.pid!), 'the primary lives on')
    // The new worker serves: keep sending until its pid shows up in the access log.
    const from = cli.logs.length
    let newPid: number | undefined
    await waitFor('the restarted worker to serve', async () => {
      assert.equal((await get(cli.listen, 'web')).status, 200)
      newPid = [...servedBy(cli, 'web', from).keys()].find((p) => p !== survivor)
      return newPid !== undefined
    }, 20_000)
    assert.notEqual(newPid, victim)
    assert.equal(restarted.pid, cli.child.pid)
    pids = [survivor, newPid!]
  })

  it('a reload reaches every worker; an invalid file is refused once, by the primary', async () => {
    const file = cli.child.spawnargs[cli.child.spawnargs.length - 1]!
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { services: { web: { endpoints: string[] } } }
    doc.services.web.endpoints = [a.address]
    // The primary watches the file (a SIGHUP as well would make a second reload of the same text).
    writeFileSync(file, JSON.stringify(doc))
    await waitFor('the reload', () => lines(cli).some((l) => l.msg === 'config reload applied'))
    const from = cli.logs.length
    for (let i = 0; i < 60; i += 10) {
      for (const r of await Promise.all(Array.from({ length: 10 }, () => get(cli.listen, 'web')))) assert.equal((JSON.parse(r.body) as { upstream: string }).upstream, 'a')
    }
    await waitFor('the access log', () => [...servedBy(cli, 'web', from).values()].reduce((x, y) => x + y, 0) >= 60)
    assert.equal(servedBy(cli, 'web', from).size, 2, 'both workers run the new config')

    writeFileSync(file, JSON.stringify({ ...doc, services: { web: { source: 'nowhere' } } }))
    await waitFor('the refusal', () => lines(cli).some((l) => l.msg?.startsWith('config reload refused') === true))
    // The workers never see a file: only the primary's reloader could log a refusal.
    const refusals = lines(cli).filter((l) => l.msg?.startsWith('config reload refused') === true)
    assert.equal(refusals.length, 1)
    assert.equal(refusals[0]!.pid, cli.child.pid)
    assert.equal((await get(cli.listen, 'web')).status, 200)
  })
})

describe('workers: 2, shutdown', () => {
  it('SIGTERM: /readyz 503 at once, in-flight requests finish, every process exits, the primary with 0', async () => {
    const held: Array<() => void> = []
    const up = await startUpstream('slow', (req, res, u) => {
      if (req.url === '/slow') held.push(() => echoHandler(req, res, u))
      else echoHandler(req, res, u)
    })
    const cli = await startCli(configFile({ shutdownTimeout: '20s', services: { web: { source: 'static', endpoints: [up.address] } } }))
    const pids = workerPids(cli)
    try {
      const slow = get(cli.listen, 'web', '/slow')
      await waitFor('the upstream to hold the request', () => held.length === 1)
      const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
      cli.child.kill('SIGTERM')
      await waitFor('/readyz 503', async () => (await getText(`http://${cli.admin}/readyz`).catch(() => ({ status: 0 }))).status === 503)
      for (const f of held) f()
      const r = await slow
      assert.equal(r.status, 200)
      assert.equal(await exited, 0)
      await waitFor('the workers to be gone', () => pids.every((p) => !alive(p)))
    } finally {
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL')
      await up.close()
    }
  })
})

describe('workers: 2 with Consul', () => {
  let consul: RegistryServer
  let proxy: http.Server
  let inFlight = 0
  let maxInFlight = 0
  let queries = 0

  before(async () => {
    consul = await startConsul()
    // A counting proxy in front of the agent: how many blocking queries are open at once.
    const target = new URL(consul.url)
    proxy = http.createServer((req, res) => {
      const watched = req.url?.startsWith('/v1/health/service/') === true
      if (watched) {
        queries++
        maxInFlight = Math.max(maxInFlight, ++inFlight)
      }
      const upstream = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
        r.on('end', () => {
          if (watched) inFlight--
        })
      })
      upstream.on('error', () => {
        if (watched) inFlight--
        res.destroy()
      })
      req.pipe(upstream)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  })

  after(async () => {
    proxy.closeAllConnections()
    proxy.close()
    await consul.destroy()
  })

  it('the registry sees one blocking query stream, not one per worker, and every worker routes from it', async () => {
    const up = await startUpstream('c')
    const res = await fetch(`${consul.url}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ ID: 'api-1', Name: 'api', Address: '127.0.0.1', Port: up.port }) })
    assert.equal(res.status, 200)
    const port = (proxy.address() as { port: number }).port
    const cli = await startCli(configFile({ discovery: { consul: { url: `http://127.0.0.1:${port}`, wait: '1s' } }, services: { api: { source: 'consul' } } }))
    try {
      await waitFor('ready', async () => (await getText(`http://${cli.admin}/readyz`)).status === 200)
      // Several blocking rounds (1 s each): one stream has at most one query open at any time.
      await waitFor('four queries', () => queries >= 4, 30_000)
      assert.equal(maxInFlight, 1, `${maxInFlight} blocking queries were open at once`)
      const from = cli.logs.length
      for (let i = 0; i < 60; i += 10) for (const r of await Promise.all(Array.from({ length: 10 }, () => get(cli.listen, 'api')))) assert.equal(r.status, 200, r.body)
      await waitFor('the access log', () => [...servedBy(cli, 'api', from).values()].reduce((x, y) => x + y, 0) >= 60)
      assert.equal(servedBy(cli, 'api', from).size, 2, 'both workers routed to the Consul endpoint')
    } finally {
      await stopCli(cli)
      await up.close()
    }
  })
})
