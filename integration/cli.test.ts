import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { Agent } from 'undici'
import type { Upstream } from './helpers.ts'
import { CLI, closedPort, echoHandler, send, startCli, startUpstream, waitFor, writeTempFile } from './helpers.ts'

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('outrigger validate', () => {
  it('says ok with the number of services and exits 0', async () => {
    const file = writeTempFile('ok.yaml', 'services:\n  a:\n    source: static\n    endpoints: ["127.0.0.1:1"]\n  b:\n    source: static\n    endpoints: ["127.0.0.1:2"]\n')
    const r = await runCli(['validate', '-c', file])
    assert.equal(r.code, 0)
    assert.equal(r.stdout, 'ok: 2 services\n')
  })

  it('prints one line per problem with its path and exits 1', async () => {
    const file = writeTempFile('bad.yaml', 'services:\n  api:\n    source: static\n    strategy: fastest\n    endpoints: ["127.0.0.1:1"]\n')
    const r = await runCli(['validate', '-c', file])
    assert.equal(r.code, 1)
    assert.equal(r.stdout.trim(), 'services.api.strategy: must be one of round-robin, weighted, least-connections, consistent-hash')
  })

  it('reports every mistake of a file at once, one line each with its path, in document order', async () => {
    const r = await runCli(['validate', '-c', path.join(import.meta.dirname, 'fixtures', 'many-mistakes.yaml')])
    assert.equal(r.code, 1)
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'listen: port must be between 0 and 65535',
      'shutdownTimeout: must be a duration like 250ms, 5s or 1m',
      'accessLog: must be a boolean',
      'services.api.strategy: must be one of round-robin, weighted, least-connections, consistent-hash',
      'services.api.routes[0]: needs host or pathPrefix',
      'services.api.routes[0].stripPrefix: needs pathPrefix',
      'services.api.healthCheck.active.timeout: must be shorter than interval (1s)',
      'services.api.healthCheck.panicThreshold: must be at most 100',
      'services.api.timeouts.connect: must be a duration like 250ms, 5s or 1m',
      'services.api.retry.replayBodyLimit: must be a size like 64KiB or 1MiB',
      'services.legacy.endpoints[1].port: must be at least 1',
      'services.legacy.tags: only applies to source consul',
      'services.web.path: is required for source file',
      'services.bad name: service name must contain only letters, digits, ".", "_" and "-", and start with a letter or digit',
      'register.source: must be one of consul, etcd',
      'register: unknown field "colour"',
    ])
  })

  it('names a missing file', async () => {
    const r = await runCli(['validate', '-c', '/nonexistent/outrigger.yaml'])
    assert.equal(r.code, 1)
    assert.equal(r.stdout.trim(), 'cannot read config file /nonexistent/outrigger.yaml: no such file (ENOENT)')
  })

  it('takes the file from OUTRIGGER_CONFIG', async () => {
    const file = writeTempFile('env.json', JSON.stringify({ services: { x: { source: 'static', endpoints: ['127.0.0.1:9'] } } }))
    const r = await runCli(['validate'], { OUTRIGGER_CONFIG: file })
    assert.equal(r.code, 0)
    assert.equal(r.stdout, 'ok: 1 services\n')
  })
})

describe('outrigger run', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  after(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it('serves, reports status, and on SIGTERM finishes in-flight requests then exits 0', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((r) => (release = r))
    const slow: Upstream = await startUpstream('slow', (req, res) => void gate.then(() => echoHandler(req, res, slow)))
    cleanup.push(() => slow.close())
    const file = writeTempFile('run.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nshutdownTimeout: 20s\nservices:\n  slow:\n    source: static\n    endpoints: ["${slow.address}"]\n`)
    const { child, listen, admin } = await startCli(file)
    cleanup.push(() => void child.kill('SIGKILL'))
    const agent = new Agent()
    cleanup.push(() => agent.close())

    await waitFor('readiness', async () => (await send(agent, `http://${admin}/readyz`)).status === 200)
    const status = await runCli(['status', '--admin', `http://${admin}`])
    assert.equal(status.code, 0)
    assert.match(status.stdout, /^SERVICE\s+STRATEGY\s+ENDPOINT/)
    assert.match(status.stdout, new RegExp(`slow\\s+round-robin\\s+${slow.address.replace(/\./g, '\\.')}\\s+1\\s+healthy`))

    const inFlight = [0, 1, 2].map(() => send(agent, `http://${listen}/`, { headers: { host: 'slow' } }))
    await waitFor('three requests at the upstream', () => slow.hits === 3)
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    child.kill('SIGTERM')
    await waitFor('readiness to turn off', async () => {
      try {
        return (await send(agent, `http://${admin}/readyz`)).status === 503
      } catch {
        return true // admin already closed: also not ready
      }
    })
    release()
    const results = await Promise.all(inFlight)
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200])
    assert.equal(await exited, 0)
  })

  it('refuses to start on an invalid config, naming the field', async () => {
    const file = writeTempFile('bad.yaml', 'listen: nowhere\nservices: {}\n')
    const r = await runCli(['run', '-c', file])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /listen: /)
  })
})

describe('outrigger usage and exit codes', () => {
  const noConfig = { OUTRIGGER_CONFIG: '' }

  for (const [args, first] of [
    [['--help'], /^outrigger: a load-balancing sidecar/],
    [['-h'], /^outrigger: a load-balancing sidecar/],
    [['help'], /^outrigger: a load-balancing sidecar/],
    [['run', '--help'], /^Usage: outrigger run -c FILE/],
    [['validate', '--help'], /^Usage: outrigger validate -c FILE/],
    [['status', '--help'], /^Usage: outrigger status \[--admin URL\]/],
    [['help', 'status'], /^Usage: outrigger status \[--admin URL\]/],
  ] as const) {
    it(`${args.join(' ')} prints usage with the exit codes on stdout and exits 0`, async () => {
      const r = await runCli([...args], noConfig)
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, first)
      assert.match(r.stdout, /Exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 {2}usage error/)
      assert.equal(r.stderr, '')
    })
  }

  it('--version prints the package version', async () => {
    const r = await runCli(['--version'])
    assert.equal(r.code, 0)
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/)
  })

  for (const [args, message, usage] of [
    [['frobnicate'], 'outrigger: unknown command "frobnicate"', /Usage:\n {2}outrigger run/],
    [['--frobnicate'], "outrigger: Unknown option '--frobnicate'", /Usage:\n {2}outrigger run/],
    [['status', '--config', 'x.yaml'], "outrigger: Unknown option '--config'", /^Usage: outrigger status/m],
    [['validate', '--admin', 'x'], "outrigger: Unknown option '--admin'", /^Usage: outrigger validate/m],
    [['validate', 'x.yaml'], "outrigger: Unexpected argument 'x.yaml'", /^Usage: outrigger validate/m],
    [['validate'], 'outrigger: no config file: pass -c FILE or set OUTRIGGER_CONFIG', /^Usage: outrigger validate/m],
    [['run'], 'outrigger: no config file: pass -c FILE or set OUTRIGGER_CONFIG', /^Usage: outrigger run/m],
    [['run', '-c'], "outrigger: Option '-c, --config <value>' argument missing", /^Usage: outrigger run/m],
    [['run', '-c', 'x.yaml', '--log-level', 'loud'], 'outrigger: --log-level must be one of trace, debug, info, warn, error, fatal, silent', /^Usage: outrigger run/m],
    [['status', '--admin', 'ftp://127.0.0.1:9901'], 'outrigger: --admin must be an http(s) URL or HOST:PORT, not "ftp://127.0.0.1:9901"', /^Usage: outrigger status/m],
    [['help', 'frobnicate'], 'outrigger: no help for "frobnicate"', /Usage:\n {2}outrigger run/],
  ] as const) {
    it(`${args.join(' ')}: usage error on stderr, exit 2`, async () => {
      const r = await runCli([...args], noConfig)
      assert.equal(r.code, 2, r.stderr)
      assert.equal(r.stdout, '')
      assert.ok(r.stderr.startsWith(message), r.stderr)
      assert.match(r.stderr, usage)
    })
  }
})

describe('outrigger status', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  after(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it('exits 1 with a clear message when nothing listens at the admin address', async () => {
    const port = await closedPort()
    const r = await runCli(['status', '--admin', `127.0.0.1:${port}`])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, new RegExp(`^outrigger: cannot read the admin API at http://127\\.0\\.0\\.1:${port}/api/services: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\n`))
    assert.match(r.stderr, /pass --admin URL/)
  })

  it('exits 1 when the address answers but is not an outrigger admin API', async () => {
    const other = await startUpstream('not-outrigger', (req, res) => {
      if (req.url === '/api/services') res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}')
      else res.writeHead(404).end()
    })
    cleanup.push(() => other.close())
    const notAList = await runCli(['status', '--admin', `http://${other.address}`])
    assert.equal(notAList.code, 1)
    assert.match(notAList.stderr, /did not answer with a list of services/)
    const notFound = await runCli(['status', '--admin', `http://${other.address}/elsewhere/`])
    assert.equal(notFound.code, 1)
    assert.match(notFound.stderr, new RegExp(`at http://${other.address.replace(/\./g, '\\.')}/elsewhere/api/services: it answered HTTP 404`))
  })

  it('prints an aligned table from a running sidecar, with flags and reasons of an unhealthy endpoint, and exits 0', async () => {
    const good = await startUpstream('good')
    const sick = await startUpstream('sick', (req, res, u) => (req.url === '/health' ? res.writeHead(503, { 'content-length': '0' }).end() : echoHandler(req, res, u)))
    cleanup.push(() => good.close(), () => sick.close())
    const file = writeTempFile(
      'status.yaml',
      [
        'listen: 127.0.0.1:0',
        'admin: 127.0.0.1:0',
        'services:',
        '  api:',
        '    source: static',
        '    strategy: weighted',
        `    endpoints: ["${good.address}", { address: 127.0.0.1, port: ${sick.port}, weight: 3 }]`,
        '    healthCheck:',
        '      active: { type: http, path: /health, interval: 1s, timeout: 900ms, healthyThreshold: 1, unhealthyThreshold: 1 }',
        '      panicThreshold: 0',
        '',
      ].join('\n'),
    )
    const { child, admin } = await startCli(file)
    cleanup.push(() => void child.kill('SIGKILL'))
    const agent = new Agent()
    cleanup.push(() => agent.close())
    await waitFor('the sick endpoint to be marked unhealthy', async () => {
      const services = JSON.parse((await send(agent, `http://${admin}/api/services`)).body) as Array<{ endpoints: Array<{ port: number; healthy: boolean }> }>
      return services[0]?.endpoints.some((e) => e.port === sick.port && !e.healthy) === true
    }, 20_000)

    const r = await runCli(['status', '--admin', admin])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    const rows = r.stdout.split('\n')
    assert.match(rows[0]!, /^SERVICE +STRATEGY +ENDPOINT +WEIGHT +HEALTH +FLAGS +IN-FLIGHT +REQUESTS +WHY$/)
    const esc = (s: string): string => s.replace(/\./g, '\\.')
    const goodRow = rows.find((l) => l.includes(good.address))
    const sickRow = rows.find((l) => l.includes(sick.address))
    assert.match(goodRow ?? '', new RegExp(`^api +weighted +${esc(good.address)} +1 +healthy +- +0 +\\d+$`))
    assert.match(sickRow ?? '', new RegExp(`^api +weighted +${esc(sick.address)} +3 +unhealthy +failed_active_check +0 +\\d+ +failed check \\(HTTP 503\\) since \\d\\d:\\d\\d:\\d\\d$`))
    // Aligned: every column starts at the same offset on every row.
    for (const heading of ['ENDPOINT', 'HEALTH', 'FLAGS']) {
      const at = rows[0]!.indexOf(heading)
      assert.equal(goodRow!.slice(at - 2, at), '  ', `${heading} column`)
      assert.notEqual(goodRow![at], ' ', `${heading} column`)
      assert.notEqual(sickRow![at], ' ', `${heading} column`)
    }
    assert.equal(rows.at(-2), '1 service, 1/2 endpoints healthy')
  })
})
