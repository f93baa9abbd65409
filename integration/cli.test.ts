import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { Agent } from 'undici'
import type { Upstream } from './helpers.ts'
import { CLI, echoHandler, send, startCli, startUpstream, waitFor, writeTempFile } from './helpers.ts'

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
