import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { Agent } from 'undici'
import { closedPort, send, waitFor } from './helpers.ts'

const START = path.join(import.meta.dirname, '..', 'examples', 'quickstart', 'start.ts')

describe('the quickstart (npm start)', () => {
  it('serves the demo service round-robin, prints where to send requests, and stops cleanly on SIGINT', async () => {
    const listen = `127.0.0.1:${await closedPort()}`
    const admin = `127.0.0.1:${await closedPort()}`
    const child = spawn(process.execPath, [START], { env: { ...process.env, OUTRIGGER_LISTEN: listen, OUTRIGGER_ADMIN: admin }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    let stdout = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const agent = new Agent()
    try {
      await waitFor('the quickstart banner', () => stderr.includes('Ctrl-C stops it.') || child.exitCode !== null, 20_000)
      assert.equal(child.exitCode, null, `the quickstart exited early:\n${stdout}\n${stderr}`)
      assert.ok(stderr.includes(`curl -H 'Host: hello' http://${listen}/`), stderr)
      const seen = new Set<string>()
      for (let i = 0; i < 3; i++) {
        const res = await send(agent, `http://${listen}/`, { headers: { host: 'hello' } })
        assert.equal(res.status, 200)
        seen.add((JSON.parse(res.body) as { instance: string }).instance)
      }
      assert.deepEqual([...seen].sort(), ['hello-1', 'hello-2', 'hello-3'])
      const routed = JSON.parse((await send(agent, `http://${listen}/hello/world`)).body) as { url: string }
      assert.equal(routed.url, '/world')
      child.kill('SIGINT')
      assert.equal(await exited, 0)
      await waitFor('the stop to be logged', () => stdout.includes('"msg":"outrigger stopped"'))
    } finally {
      await agent.close()
      child.kill('SIGKILL')
    }
  })
})
