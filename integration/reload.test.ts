import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import path from 'node:path'
import { writeFileSync, renameSync } from 'node:fs'
import { Agent, request } from 'undici'
import { parseConfig } from '../src/config/load.ts'
import type { Config } from '../src/config/types.ts'
import { StartupError } from '../src/sidecar.ts'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { echoHandler, send, startCli, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'

/** Config documents as the tests write them; listeners on port 0 stay where they are across reloads. */
interface Echo {
  upstream: string
  url: string
}

function echo(body: string): Echo {
  return JSON.parse(body) as Echo
}

function configOf(running: RunningSidecar, doc: Record<string, unknown>): Config {
  const current = running.sidecar.config
  return parseConfig(JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', discovery: { stateDir: current.discovery.stateDir }, ...doc }), {
    format: 'json',
    baseDir: path.dirname(current.discovery.stateDir),
    env: {},
  })
}

/** `concurrency` clients requesting `host` in a loop until stopped; every answer's fate is counted. */
function load(url: string, host: string, concurrency: number): { done: number; failures: string[]; stop(): Promise<void> } {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 60_000 })
  const state = { done: 0, failures: [] as string[], running: true }
  const loops = Array.from({ length: concurrency }, async () => {
    while (state.running) {
      try {
        const r = await send(agent, `${url}/load`, { headers: { host } })
        if (r.status !== 200) state.failures.push(`${r.status} ${r.body}`)
      } catch (err) {
        state.failures.push(String(err))
      }
      state.done++
    }
  })
  return Object.assign(state, {
    stop: async () => {
      state.running = false
      await Promise.all(loops)
      await agent.close()
    },
  })
}

/** An echo upstream whose `/slow` answers only when `release()` is called. */
async function slowUpstream(name: string): Promise<Upstream & { held: number; release(): void }> {
  const waiting: Array<() => void> = []
  const upstream = (await startUpstream(name, (req, res, u) => {
    if (req.url === '/slow') {
      slow.held++
      waiting.push(() => echoHandler(req, res, u))
      return
    }
    echoHandler(req, res, u)
  })) as Upstream & { held: number; release(): void }
  const slow = upstream
  slow.held = 0
  slow.release = () => {
    for (const w of waiting.splice(0)) w()
  }
  return slow
}

function keepAliveLong(...upstreams: Upstream[]): void {
  for (const u of upstreams) u.server.keepAliveTimeout = 60_000
}

/** Counts upstream connections opened and closed, to show a reload left them alone. */
function connectionCounter(upstreams: Upstream[]): { opened: number; closed: number } {
  const counts = { opened: 0, closed: 0 }
  for (const u of upstreams) {
    u.server.on('connection', (socket: net.Socket) => {
      counts.opened++
      socket.on('close', () => counts.closed++)
    })
  }
  return counts
}

describe('reload', () => {
  const upstreams: Upstream[] = []
  let a: Upstream, b: Awaited<ReturnType<typeof slowUpstream>>, c: Upstream[], d: Upstream, e: Upstream
  let running: RunningSidecar
  const agent = new Agent({ keepAliveTimeout: 60_000 })

  const services = (): Record<string, unknown> => ({
    a: { source: 'static', endpoints: [a.address] },
    b: { source: 'static', endpoints: [b.address] },
    c: { source: 'static', endpoints: c.map((u) => u.address) },
  })

  before(async () => {
    a = await startUpstream('a')
    b = await slowUpstream('b')
    c = [await startUpstream('c1'), await startUpstream('c2'), await startUpstream('c3')]
    d = await startUpstream('d')
    e = await startUpstream('e')
    upstreams.push(a, b, ...c, d, e)
    keepAliveLong(...upstreams)
    running = await startSidecar({ services: services() })
  })

  after(async () => {
    await running.stop()
    await agent.close()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('adds a service and removes another while 200 concurrent requests to a third see no error and keep their connections', async (t) => {
    const conns = connectionCounter(c)
    const traffic = load(running.url, 'c', 200)
    await waitFor('load to warm up', () => traffic.done >= 1000, 30_000)
    const clusterBefore = running.sidecar.clusters().find((x) => x.name === 'c')
    const openedBefore = conns.opened
    const closedBefore = conns.closed
    // A slow request to the service being removed is in flight during the reload.
    const slow = send(agent, `${running.url}/slow`, { headers: { host: 'b' } })
    await waitFor('the slow request to reach b', () => b.held === 1)

    const next = { a: services().a, c: services().c, d: { source: 'static', endpoints: [d.address] } }
    const result = await running.sidecar.reload(configOf(running, { services: next }))
    assert.deepEqual(result, { added: ['d'], changed: [], removed: ['b'], unchanged: ['a', 'c'] })

    assert.equal((await send(agent, `${running.url}/`, { headers: { host: 'd' } })).status, 200)
    const gone = await send(agent, `${running.url}/`, { headers: { host: 'b' } })
    assert.equal(gone.status, 404)
    assert.equal(gone.headers['x-outrigger-error'], 'no_route')
    const doneAtReload = traffic.done
    await waitFor('more load after the reload', () => traffic.done >= doneAtReload + 1000, 30_000)

    b.release()
    const slowAnswer = await slow
    assert.equal(slowAnswer.status, 200, 'the in-flight request of the removed service finished')
    assert.equal(echo(slowAnswer.body).upstream, 'b')

    await traffic.stop()
    t.diagnostic(`requests to c: ${traffic.done}, failed: ${traffic.failures.length}; upstream connections of c opened/closed during the reload window: ${conns.opened - openedBefore}/${conns.closed - closedBefore}`)
    assert.deepEqual(traffic.failures.slice(0, 5), [])
    assert.equal(running.sidecar.clusters().find((x) => x.name === 'c'), clusterBefore, 'the unchanged service kept its cluster')
    assert.equal(conns.closed - closedBefore, 0, 'no upstream connection of the unchanged service was closed')
    assert.deepEqual(running.sidecar.clusters().map((x) => x.name).sort(), ['a', 'c', 'd'])
    // Put b back for the next tests.
    await running.sidecar.reload(configOf(running, { services: services() }))
  })

  it('rebuilds a changed service beside the old one: no error under load, in-flight requests finish', async (t) => {
    const traffic = load(running.url, 'c', 64)
    await waitFor('load to warm up', () => traffic.done >= 300, 30_000)
    const before = running.sidecar.clusters().find((x) => x.name === 'c')!
    // A slow request to c1 in flight through the old cluster.
    const slowC = await slowUpstream('c-slow')
    upstreams.push(slowC)
    const withSlow = { ...services(), s: { source: 'static', endpoints: [slowC.address] } }
    await running.sidecar.reload(configOf(running, { services: withSlow }))
    const slow = send(agent, `${running.url}/slow`, { headers: { host: 's' } })
    await waitFor('the slow request to arrive', () => slowC.held === 1)

    const changed = { ...withSlow, c: { source: 'static', endpoints: c.map((u) => u.address), strategy: 'least-connections' }, s: { source: 'static', endpoints: [slowC.address], retry: { attempts: 1 } } }
    const result = await running.sidecar.reload(configOf(running, { services: changed }))
    assert.deepEqual(result.changed.sort(), ['c', 's'])
    const rebuilt = running.sidecar.clusters().find((x) => x.name === 'c')!
    assert.notEqual(rebuilt, before)
    assert.equal(rebuilt.config.strategy, 'least-connections')
    assert.deepEqual(rebuilt.hosts().map((h) => h.key), c.map((u) => u.address), 'the new cluster starts with the old one\'s endpoints')

    const doneAtReload = traffic.done
    await waitFor('more load after the reload', () => traffic.done >= doneAtReload + 300, 30_000)
    slowC.release()
    assert.equal((await slow).status, 200)
    await traffic.stop()
    t.diagnostic(`requests to c: ${traffic.done}, failed: ${traffic.failures.length}`)
    assert.deepEqual(traffic.failures.slice(0, 5), [])
    await running.sidecar.reload(configOf(running, { services: services() }))
  })

  it('follows a new endpoint list under load: the endpoint that left drains, no request fails, its series go', async (t) => {
    const traffic = load(running.url, 'c', 64)
    await waitFor('load to warm up', () => traffic.done >= 300, 30_000)
    const next = { ...services(), c: { source: 'static', endpoints: [c[0]!.address, c[1]!.address] } }
    const result = await running.sidecar.reload(configOf(running, { services: next }))
    assert.deepEqual(result.changed, ['c'])
    const hitsAtReload = c[2]!.hits
    const doneAtReload = traffic.done
    await waitFor('more load after the reload', () => traffic.done >= doneAtReload + 500, 30_000)
    await traffic.stop()
    t.diagnostic(`requests to c: ${traffic.done}, failed: ${traffic.failures.length}; c3 hits after the reload: ${c[2]!.hits - hitsAtReload}`)
    assert.deepEqual(traffic.failures.slice(0, 5), [])
    // At most the requests already in flight at the swap reach the endpoint that left.
    assert.ok(c[2]!.hits - hitsAtReload <= 64, `c3 got ${c[2]!.hits - hitsAtReload} requests after it left`)
    const metricsText = async (): Promise<string> => (await request(`${running.adminUrl}/metrics`)).body.text()
    await waitFor('the series of the endpoint that left to go', async () => !(await metricsText()).includes(`endpoint="${c[2]!.address}"`), 30_000)
    await running.sidecar.reload(configOf(running, { services: services() }))
  })

  it('changes only routes without rebuilding the service', async () => {
    const before = running.sidecar.clusters().find((x) => x.name === 'a')!
    const next = { ...services(), a: { source: 'static', endpoints: [a.address], routes: [{ pathPrefix: '/a/', stripPrefix: true }] } }
    const result = await running.sidecar.reload(configOf(running, { services: next }))
    assert.deepEqual(result.changed, ['a'])
    assert.equal(running.sidecar.clusters().find((x) => x.name === 'a'), before)
    const r = await send(agent, `${running.url}/a/x`)
    assert.equal(r.status, 200)
    assert.equal(echo(r.body).url, '/x')
    // With routes, the implicit Host route is gone.
    assert.equal((await send(agent, `${running.url}/x`, { headers: { host: 'a' } })).status, 404)
    await running.sidecar.reload(configOf(running, { services: services() }))
  })

  it('binds, moves and releases dedicated listeners', async () => {
    const withE = { ...services(), e: { source: 'static', endpoints: [e.address], listen: '127.0.0.1:0' } }
    await running.sidecar.reload(configOf(running, { services: withE }))
    const first = running.sidecar.addresses.services.e!
    assert.equal(echo((await send(agent, `http://127.0.0.1:${first.port}/`)).body).upstream, 'e')

    const port = await freePort()
    await running.sidecar.reload(configOf(running, { services: { ...withE, e: { source: 'static', endpoints: [e.address], listen: `127.0.0.1:${port}` } } }))
    assert.equal(running.sidecar.addresses.services.e!.port, port)
    assert.equal(echo((await send(agent, `http://127.0.0.1:${port}/`)).body).upstream, 'e')
    await waitFor('the old dedicated port to close', async () => !(await accepts(first.port)))

    await running.sidecar.reload(configOf(running, { services: services() }))
    assert.equal(running.sidecar.addresses.services.e, undefined)
    await waitFor('the dedicated port to close', async () => !(await accepts(port)))
  })

  it('refuses a config it cannot apply (a port in use) and changes nothing', async () => {
    const blocker = net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const taken = (blocker.address() as net.AddressInfo).port
    try {
      const next = { ...services(), d: { source: 'static', endpoints: [d.address] }, e: { source: 'static', endpoints: [e.address], listen: `127.0.0.1:${taken}` } }
      await assert.rejects(running.sidecar.reload(configOf(running, { services: next })), (err: unknown) => {
        assert.ok(err instanceof StartupError)
        assert.match(err.message, new RegExp(`^services\\.e\\.listen: cannot listen on 127\\.0\\.0\\.1:${taken}`))
        return true
      })
      assert.deepEqual(running.sidecar.clusters().map((x) => x.name).sort(), ['a', 'b', 'c'])
      assert.equal((await send(agent, `${running.url}/`, { headers: { host: 'd' } })).status, 404)
      assert.equal((await send(agent, `${running.url}/`, { headers: { host: 'a' } })).status, 200)
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()))
    }
  })
})

describe('reload of a real outrigger process', () => {
  it('follows its config file, refuses a broken one while serving on, and reloads on SIGHUP', { timeout: 120_000 }, async (t) => {
    const one = await startUpstream('one')
    const two = await startUpstream('two')
    const agent = new Agent()
    const yaml = (services: string): string => `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nservices:\n${services}`
    const file = writeTempFile('outrigger.yaml', yaml(`  one:\n    source: static\n    endpoints: ["${one.address}"]\n`))
    const cli = await startCli(file)
    const url = `http://${cli.listen}`
    const metric = async (name: string): Promise<string> => {
      const text = await (await request(`http://${cli.admin}/metrics`)).body.text()
      return new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 'absent'
    }
    try {
      assert.equal((await send(agent, `${url}/`, { headers: { host: 'one' } })).status, 200)

      // The file changes (written whole, then renamed over, as editors and ConfigMaps do): `two` appears.
      replaceFile(file, yaml(`  one:\n    source: static\n    endpoints: ["${one.address}"]\n  two:\n    source: static\n    endpoints: ["${two.address}"]\n`))
      await waitFor('service two to be routable', async () => (await send(agent, `${url}/`, { headers: { host: 'two' } })).status === 200, 30_000)
      assert.equal(await metric('outrigger_config_reloads_total\\{result="success"\\}'), '1')

      // A broken file: refused with its errors, and everything keeps serving.
      replaceFile(file, yaml(`  one:\n    source: static\n    strategy: fastest\n    endpoints: ["${one.address}"]\n`))
      await waitFor('the refusal to be logged', () => cli.logs.some((l) => l.includes('config reload refused')), 30_000)
      const refusal = JSON.parse(cli.logs.find((l) => l.includes('config reload refused'))!) as { level: number; errors: string[] }
      assert.equal(refusal.level, 50)
      assert.deepEqual(refusal.errors, ['services.one.strategy: must be one of round-robin, weighted, least-connections, consistent-hash'])
      assert.equal(await metric('outrigger_config_last_reload_successful'), '0')
      assert.equal(await metric('outrigger_config_reloads_total\\{result="failure"\\}'), '1')
      assert.equal((await send(agent, `${url}/`, { headers: { host: 'one' } })).status, 200)
      assert.equal((await send(agent, `${url}/`, { headers: { host: 'two' } })).status, 200)

      // Fixed, but `two` removed this time; then SIGHUP reloads the same file once more.
      replaceFile(file, yaml(`  one:\n    source: static\n    endpoints: ["${one.address}"]\n`))
      await waitFor('service two to be gone', async () => (await send(agent, `${url}/`, { headers: { host: 'two' } })).status === 404, 30_000)
      assert.equal(await metric('outrigger_config_last_reload_successful'), '1')
      cli.child.kill('SIGHUP')
      await waitFor('the SIGHUP reload', async () => (await metric('outrigger_config_reloads_total\\{result="success"\\}')) === '3', 30_000)
      assert.equal((await send(agent, `${url}/`, { headers: { host: 'one' } })).status, 200)
      t.diagnostic(`reload log lines: ${cli.logs.filter((l) => l.includes('reload')).length}`)
    } finally {
      const exited = new Promise((resolve) => cli.child.once('exit', resolve))
      cli.child.kill('SIGTERM')
      await exited
      await agent.close()
      await one.close()
      await two.close()
    }
  })
})

function replaceFile(file: string, text: string): void {
  const tmp = `${file}.tmp`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

