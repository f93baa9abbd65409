import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import type { ActiveHealthCheckConfig } from '../../src/config/types.ts'
import { ActiveHealthChecker, INTERVAL_JITTER, PROBE_GRID_MS, probeEndpoint } from '../../src/health/active.ts'
import type { CheckVerdict, Probe } from '../../src/health/active.ts'

const logger = pino({ level: 'silent' })

/** The fake clock starts here: 12:01:07 UTC. */
const START_MS = Date.UTC(2025, 0, 1, 12, 1, 7)

/** With Math.random pinned to 0.5 the first probe runs 500 ms in, then one every 1000 ms exactly. */
const HTTP_CHECK: ActiveHealthCheckConfig = { type: 'http', path: '/health', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 3 }

interface ProbeCall {
  endpoint: string
  path: string
  /** Fake-clock ms since START_MS. */
  atMs: number
}

interface Harness {
  checker: ActiveHealthChecker
  /** Closes the checker once (the end of the test closes it too, unless this did). */
  close(): Promise<void>
  calls: ProbeCall[]
  /** What the next probe of an endpoint (`address:port`) returns; null (pass) when unset. Shifted per probe; the last entry sticks. */
  script: Map<string, Array<string | null>>
  checks: Array<[string, boolean]>
  stops: string[]
  /** Sets what Math.random returns from now on: one value, or a sequence whose last value sticks. */
  random(values: number | number[]): void
}

/**
 * An ActiveHealthChecker with a scripted fake probe, on fake setTimeout and Date (START_MS), with
 * Math.random pinned (0.5 unless changed). Closed when the test ends.
 */
function harness(t: TestContext, probe?: Probe): Harness {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: START_MS })
  let randoms: number[] = [0.5]
  t.mock.method(Math, 'random', () => (randoms.length > 1 ? randoms.shift()! : randoms[0]!))
  const calls: ProbeCall[] = []
  const script = new Map<string, Array<string | null>>()
  const checks: Array<[string, boolean]> = []
  const stops: string[] = []
  const scripted: Probe = (address, port, config) => {
    const endpoint = `${address}:${port}`
    calls.push({ endpoint, path: config.path, atMs: Date.now() - START_MS })
    const queue = script.get(endpoint)
    const result = queue === undefined || queue.length === 0 ? null : queue.length > 1 ? queue.shift()! : queue[0]!
    return Promise.resolve(result)
  }
  const checker = new ActiveHealthChecker(logger, {
    probe: probe ?? scripted,
    observer: {
      onCheck: (endpoint, passed) => checks.push([endpoint, passed]),
      onStop: (endpoint) => stops.push(endpoint),
    },
  })
  let closing: Promise<void> | null = null
  const close = (): Promise<void> => (closing ??= checker.close())
  t.after(close)
  const random = (values: number | number[]): void => {
    randoms = Array.isArray(values) ? [...values] : [values]
  }
  return { checker, close, calls, script, checks, stops, random }
}

/** Lets pending promise callbacks (the probe's result) run. setImmediate is not faked. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Advances the fake clock 1 ms at a time, letting each probe's result land before the next tick. */
async function advance(t: TestContext, ms: number): Promise<void> {
  await flush()
  for (let i = 0; i < ms; i++) {
    t.mock.timers.tick(1)
    await flush()
  }
}

/** Collects the verdicts a watcher receives. */
function recorder(): { verdicts: CheckVerdict[]; watcher: (v: CheckVerdict) => void } {
  const verdicts: CheckVerdict[] = []
  return { verdicts, watcher: (v) => verdicts.push(v) }
}

const UNHEALTHY_503 = (count: string, since: string): CheckVerdict => ({ healthy: false, reason: `${count} (HTTP 503) since ${since}` })

describe('ActiveHealthChecker thresholds', () => {
  it('unhealthyThreshold consecutive failures give exactly one unhealthy verdict, at the third', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', [null, 'HTTP 503'])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 500) // first probe passes
    assert.deepEqual(h.calls.map((c) => c.atMs), [500])
    await advance(t, 2000) // fails at 1500 and 2500
    assert.deepEqual(r.verdicts, [], 'two failures are below the threshold')
    await advance(t, 999)
    assert.deepEqual(r.verdicts, [])
    await advance(t, 1) // third failure at 3500
    assert.deepEqual(r.verdicts, [UNHEALTHY_503('3 consecutive failed checks', '12:01:08')])
    await advance(t, 5000)
    assert.equal(r.verdicts.length, 1, 'further failures repeat nothing')
    assert.equal(h.calls.length, 9)
    assert.deepEqual(h.checks.slice(0, 3), [
      ['127.0.0.1:8080', true],
      ['127.0.0.1:8080', false],
      ['127.0.0.1:8080', false],
    ])
  })

  it('a single failure between passes never flaps', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', [null, 'HTTP 503', null, 'HTTP 503', 'HTTP 503', null, 'timeout after 500 ms', null])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 10_000)
    assert.equal(h.calls.length, 10)
    assert.deepEqual(r.verdicts, [])
  })

  it('healthyThreshold consecutive passes make it healthy again; a failure in between starts over', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', [null, 'HTTP 503', 'HTTP 503', 'HTTP 503', null, 'HTTP 503', null, null])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 3500) // pass, then 3 failures: unhealthy at 3500
    assert.equal(r.verdicts.length, 1)
    await advance(t, 2000) // pass at 4500, failure at 5500
    assert.equal(r.verdicts.length, 1, 'one pass is below healthyThreshold')
    await advance(t, 1000) // pass at 6500
    assert.equal(r.verdicts.length, 1, 'the failure reset the passes')
    await advance(t, 1000) // pass at 7500
    assert.deepEqual(r.verdicts.at(-1), { healthy: true, reason: '' })
    assert.equal(r.verdicts.length, 2)
    await advance(t, 3000)
    assert.equal(r.verdicts.length, 2, 'passes repeat nothing')
  })

  it('a failing first probe makes it unhealthy at once; it needs healthyThreshold passes to return', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', ['HTTP 503', null])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 499)
    assert.deepEqual(r.verdicts, [], 'nobody probed yet: no verdict (counts as healthy)')
    await advance(t, 1)
    assert.deepEqual(r.verdicts, [UNHEALTHY_503('failed check', '12:01:07')])
    await advance(t, 1000)
    assert.equal(r.verdicts.length, 1)
    await advance(t, 1000)
    assert.deepEqual(r.verdicts, [UNHEALTHY_503('failed check', '12:01:07'), { healthy: true, reason: '' }])
  })

  it('a passing first probe gives no verdict: healthy is the default', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 3000)
    assert.equal(h.calls.length, 3)
    assert.deepEqual(r.verdicts, [])
  })

  it('unhealthyThreshold 1: one failure after passes is enough, worded "failed check"', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', [null, null, 'ECONNREFUSED'])
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, unhealthyThreshold: 1 }, r.watcher)
    await advance(t, 2500)
    assert.deepEqual(r.verdicts, [{ healthy: false, reason: 'failed check (ECONNREFUSED) since 12:01:09' }])
  })

  it('the reason names the last error and when the run of failures began', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.script.set('127.0.0.1:8080', [null, 'HTTP 503', 'HTTP 502', 'timeout after 500 ms'])
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, unhealthyThreshold: 3 }, r.watcher)
    await advance(t, 3500)
    assert.deepEqual(r.verdicts, [{ healthy: false, reason: '3 consecutive failed checks (timeout after 500 ms) since 12:01:08' }])
  })

  it('a probe that throws counts as a failure, worded with its message', async (t) => {
    const h = harness(t, () => Promise.reject(new Error('boom')))
    const r = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 500)
    assert.deepEqual(r.verdicts, [{ healthy: false, reason: 'failed check (boom) since 12:01:07' }])
    assert.deepEqual(h.checks, [['127.0.0.1:8080', false]])
    await advance(t, 1000)
    assert.equal(h.checks.length, 2, 'the loop goes on after a throwing probe')
  })
})

describe('ActiveHealthChecker loops', () => {
  it('two watchers of the same endpoint and settings share one loop: one probe per interval, both told', async (t) => {
    const h = harness(t)
    const a = recorder()
    const b = recorder()
    h.script.set('127.0.0.1:8080', ['HTTP 503'])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, a.watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK }, b.watcher)
    assert.equal(h.checker.loopCount, 1)
    await advance(t, 3500)
    assert.deepEqual(h.calls.map((c) => c.atMs), [500, 1500, 2500, 3500])
    assert.equal(a.verdicts.length, 1)
    assert.deepEqual(b.verdicts, a.verdicts)
  })

  it('different endpoints or settings get loops of their own', async (t) => {
    const h = harness(t)
    const { watcher } = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, watcher)
    h.checker.watch('127.0.0.1', 8081, HTTP_CHECK, watcher)
    h.checker.watch('127.0.0.2', 8080, HTTP_CHECK, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, path: '/ready' }, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, type: 'tcp' }, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, intervalMs: 2000 }, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, timeoutMs: 250 }, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, healthyThreshold: 1 }, watcher)
    h.checker.watch('127.0.0.1', 8080, { ...HTTP_CHECK, unhealthyThreshold: 1 }, watcher)
    assert.equal(h.checker.loopCount, 9)
    await advance(t, 500)
    assert.equal(h.calls.length, 9)
    assert.deepEqual(h.calls.filter((c) => c.path === '/ready').length, 1)
  })

  it('the loop runs until its last watcher leaves; then no more probes, loopCount 0, onStop', async (t) => {
    const h = harness(t)
    const a = recorder()
    const b = recorder()
    const leaveA = h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, a.watcher)
    const leaveB = h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, b.watcher)
    await advance(t, 1500)
    assert.equal(h.calls.length, 2)
    leaveA()
    assert.equal(h.checker.loopCount, 1)
    assert.deepEqual(h.stops, [])
    h.script.set('127.0.0.1:8080', ['HTTP 503'])
    await advance(t, 3000)
    assert.equal(h.calls.length, 5, 'still probing for b')
    assert.equal(b.verdicts.length, 1)
    assert.deepEqual(a.verdicts, [], 'a left before the verdict')
    leaveB()
    assert.equal(h.checker.loopCount, 0)
    assert.deepEqual(h.stops, ['127.0.0.1:8080'])
    await advance(t, 5000)
    assert.equal(h.calls.length, 5, 'no probe after the last watcher left')
  })

  it('a result that lands after the last watcher left is dropped', async (t) => {
    const pending = Promise.withResolvers<string | null>()
    let probes = 0
    const h = harness(t, () => {
      probes++
      return pending.promise
    })
    const r = recorder()
    const leave = h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    await advance(t, 500)
    assert.equal(probes, 1)
    leave()
    pending.resolve('HTTP 503')
    await advance(t, 3000)
    assert.deepEqual(r.verdicts, [])
    assert.deepEqual(h.checks, [])
    assert.equal(probes, 1)
  })

  it('a watcher joining an unhealthy loop gets the verdict (asynchronously); one joining a healthy loop gets nothing', async (t) => {
    const h = harness(t)
    const first = recorder()
    h.script.set('127.0.0.1:8080', ['HTTP 503'])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, first.watcher)
    h.checker.watch('127.0.0.1', 9090, HTTP_CHECK, first.watcher)
    await advance(t, 500)
    assert.equal(first.verdicts.length, 1)

    const late = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, late.watcher)
    assert.deepEqual(late.verdicts, [], 'not called synchronously')
    await flush()
    assert.deepEqual(late.verdicts, first.verdicts)
    assert.equal(h.checker.loopCount, 2)

    const healthy = recorder()
    h.checker.watch('127.0.0.1', 9090, HTTP_CHECK, healthy.watcher)
    await flush()
    assert.deepEqual(healthy.verdicts, [])
  })

  it('close() stops every loop', async (t) => {
    const h = harness(t)
    const r = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, r.watcher)
    h.checker.watch('127.0.0.1', 8081, { ...HTTP_CHECK, type: 'tcp' }, r.watcher)
    await advance(t, 1500)
    assert.equal(h.calls.length, 4)
    await h.close()
    assert.equal(h.checker.loopCount, 0)
    h.script.set('127.0.0.1:8080', ['HTTP 503'])
    await advance(t, 5000)
    assert.equal(h.calls.length, 4)
    assert.deepEqual(r.verdicts, [])
  })

  it('calling a leave function twice does not stop another watcher’s loop', async (t) => {
    const h = harness(t)
    const leaveA = h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, () => undefined)
    leaveA()
    const b = recorder()
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, b.watcher)
    leaveA()
    assert.equal(h.checker.loopCount, 1, 'b still has its loop')
    assert.deepEqual(h.stops, ['127.0.0.1:8080'], 'onStop once, for the loop that really stopped')
    await h.close()
    await advance(t, 3000)
    assert.deepEqual(h.calls, [], 'close() stopped b’s loop')
  })

  it('close() may be called twice', async (t) => {
    const h = harness(t)
    await h.close()
    await h.checker.close()
  })
})

describe('ActiveHealthChecker timing', () => {
  it('the first probe runs at Math.random × min(interval, 1 s), rounded up to the probe grid', async (t) => {
    const h = harness(t)
    h.random(0)
    h.checker.watch('127.0.0.1', 1, HTTP_CHECK, () => undefined)
    h.random(0.999)
    h.checker.watch('127.0.0.1', 2, { ...HTTP_CHECK, intervalMs: 5000, timeoutMs: 1000 }, () => undefined)
    h.random(0.5)
    h.checker.watch('127.0.0.1', 3, { ...HTTP_CHECK, intervalMs: 400, timeoutMs: 100 }, () => undefined)
    await flush()
    t.mock.timers.tick(0)
    await flush()
    assert.deepEqual(h.calls.map((c) => [c.endpoint, c.atMs]), [['127.0.0.1:1', 0]])
    await advance(t, 1000)
    const firsts = new Map<string, number>()
    for (const c of h.calls) if (!firsts.has(c.endpoint)) firsts.set(c.endpoint, c.atMs)
    // 0.999 × 1 s = 999 ms, which starts in the grid slot at 1,000 ms.
    assert.deepEqual(Object.fromEntries(firsts), { '127.0.0.1:1': 0, '127.0.0.1:2': 1000, '127.0.0.1:3': 200 })
    for (const c of h.calls) assert.equal(c.atMs % PROBE_GRID_MS, 0, `probe at ${c.atMs} ms is on the grid`)
  })

  it('each interval is stretched or shrunk by Math.random, at most ±10%', async (t) => {
    assert.equal(INTERVAL_JITTER, 0.1)
    const h = harness(t)
    // First delay 0.5 × 1000; then one jitter draw per probe.
    h.random([0.5, 0, 0.25, 0.5, 0.75, 0.9999999, 0.5])
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, () => undefined)
    await advance(t, 500 + 900 + 950 + 1000 + 1050 + 1100)
    const at = h.calls.map((c) => c.atMs)
    const deltas = at.slice(1).map((x, i) => x - at[i]!)
    assert.deepEqual(deltas, [900, 950, 1000, 1050, 1100])
  })

  it('over many random draws every interval stays within ±10% and the jitter is actually used', async (t) => {
    const h = harness(t)
    // A fixed linear congruential sequence stands in for Math.random.
    let seed = 12345
    const draws: number[] = [0.5]
    for (let i = 0; i < 60; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      draws.push(seed / 2 ** 31)
    }
    h.random(draws)
    h.checker.watch('127.0.0.1', 8080, HTTP_CHECK, () => undefined)
    await advance(t, 40_000)
    const at = h.calls.map((c) => c.atMs)
    const deltas = at.slice(1).map((x, i) => x - at[i]!)
    assert.ok(deltas.length >= 35, `${deltas.length} intervals`)
    for (const d of deltas) assert.ok(d >= 900 && d <= 1100, `interval ${d} ms is outside 1000 ms ± 10%`)
    assert.ok(Math.min(...deltas) < 950 && Math.max(...deltas) > 1050, `jitter spread ${Math.min(...deltas)}..${Math.max(...deltas)}`)
  })
})

// --- the real probe, against real loopback servers ---------------------------------------------

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))
}

function closeServer(server: net.Server): Promise<void> {
  if (server instanceof http.Server) server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer()
  const port = await listen(server)
  await closeServer(server)
  return port
}

describe('probeEndpoint (real servers)', { timeout: 10_000 }, () => {
  let server: http.Server
  let port: number
  const seen: Array<{ method: string; url: string; userAgent: string }> = []

  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', userAgent: req.headers['user-agent'] ?? '' })
      if (req.url === '/hang') return // never answers
      if (req.url === '/stall') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('half a body') // and never the rest
        return
      }
      const status = req.url === '/health' ? 200 : req.url === '/moved' ? 301 : req.url === '/reset' ? 0 : 503
      if (status === 0) {
        req.socket.destroy()
        return
      }
      res.writeHead(status, { 'content-type': 'text/plain' })
      res.end('body')
    })
    port = await listen(server)
  })

  after(async () => {
    await closeServer(server)
  })

  const check = (path: string, timeoutMs = 1000): ActiveHealthCheckConfig => ({ ...HTTP_CHECK, path, timeoutMs, intervalMs: timeoutMs * 2 })

  it('HTTP 200 passes (null), with a GET of the path and the outrigger user agent', async () => {
    seen.length = 0
    assert.equal(await probeEndpoint('127.0.0.1', port, check('/health')), null)
    assert.deepEqual(seen, [{ method: 'GET', url: '/health', userAgent: 'outrigger-health-check' }])
  })

  it('HTTP 503 fails as "HTTP 503"', async () => {
    assert.equal(await probeEndpoint('127.0.0.1', port, check('/down')), 'HTTP 503')
  })

  it('a redirect is not a pass: "HTTP 301"', async () => {
    assert.equal(await probeEndpoint('127.0.0.1', port, check('/moved')), 'HTTP 301')
  })

  it('a server that never answers fails as "timeout after N ms", in about N ms', async () => {
    const start = performance.now()
    assert.equal(await probeEndpoint('127.0.0.1', port, check('/hang', 200)), 'timeout after 200 ms')
    const elapsed = performance.now() - start
    assert.ok(elapsed >= 150 && elapsed < 2000, `took ${elapsed.toFixed(0)} ms`)
  })

  it('a 200 whose body never ends fails as "timeout after N ms"', async () => {
    assert.equal(await probeEndpoint('127.0.0.1', port, check('/stall', 200)), 'timeout after 200 ms')
  })

  it('a connection closed before any answer fails with an error code', async () => {
    const result = await probeEndpoint('127.0.0.1', port, check('/reset'))
    assert.equal(typeof result, 'string')
    assert.notEqual(result, '')
  })

  it('a closed port fails as "ECONNREFUSED"', async () => {
    assert.equal(await probeEndpoint('127.0.0.1', await closedPort(), check('/health')), 'ECONNREFUSED')
  })

  it('tcp: a listening port passes (null)', async (t) => {
    const tcp = net.createServer((socket) => socket.end())
    const tcpPort = await listen(tcp)
    t.after(() => closeServer(tcp))
    assert.equal(await probeEndpoint('127.0.0.1', tcpPort, { ...HTTP_CHECK, type: 'tcp' }), null)
  })

  it('tcp: a closed port fails as "ECONNREFUSED"', async () => {
    assert.equal(await probeEndpoint('127.0.0.1', await closedPort(), { ...HTTP_CHECK, type: 'tcp' }), 'ECONNREFUSED')
  })

  it('the checker wires the real probe: a 503 endpoint turns unhealthy on its first probe', async (t) => {
    const checker = new ActiveHealthChecker(logger)
    t.after(() => checker.close())
    const verdict = await new Promise<CheckVerdict>((resolve) => {
      checker.watch('127.0.0.1', port, check('/down', 200), resolve)
    })
    assert.equal(verdict.healthy, false)
    assert.match(verdict.reason, /^failed check \(HTTP 503\) since \d\d:\d\d:\d\d$/)
  })
})
