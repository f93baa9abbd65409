/**
 * The registry examples (`npm run example:consul`, `npm run example:etcd`) run as a newcomer runs
 * them: the script starts a real registry, the demo instances and a real `outrigger run`; the test
 * follows the printed instructions (requests, then removing an instance from the registry with the
 * printed command), then presses Ctrl-C and expects everything to stop cleanly.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { Agent } from 'undici'
import { closedPort, send, waitFor } from './helpers.ts'
import { registryBinaries } from './registries/servers.ts'

const EXAMPLES = path.join(import.meta.dirname, '..', 'examples')

interface Case {
  name: string
  /** The printed command that removes hello-2 from the registry, as a fetch. */
  removal: RegExp
  toRequest(match: RegExpExecArray): { url: string; init: RequestInit }
}

const cases: Case[] = [
  {
    name: 'consul',
    removal: /curl -X PUT (http:\/\/127\.0\.0\.1:\d+\/v1\/agent\/service\/deregister\/hello-2)/,
    toRequest: (m) => ({ url: m[1]!, init: { method: 'PUT' } }),
  },
  {
    name: 'etcd',
    removal: /curl -X POST (http:\/\/127\.0\.0\.1:\d+\/v3\/kv\/deleterange) -d '([^']+)'/,
    toRequest: (m) => ({ url: m[1]!, init: { method: 'POST', body: m[2]! } }),
  },
]

describe('the registry examples', () => {
  for (const c of cases) {
    it(`npm run example:${c.name}: routes over three instances from ${c.name}, follows a removal, stops on Ctrl-C`, async () => {
      registryBinaries() // fetch once here, outside the example's own deadline
      const listen = `127.0.0.1:${await closedPort()}`
      const admin = `127.0.0.1:${await closedPort()}`
      const child = spawn(process.execPath, [path.join(EXAMPLES, c.name, 'start.ts')], {
        env: { ...process.env, OUTRIGGER_LISTEN: listen, OUTRIGGER_ADMIN: admin },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stderr = ''
      let stdout = ''
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      const agent = new Agent()
      try {
        await waitFor('the example banner', () => stderr.includes('Ctrl-C stops it.') || child.exitCode !== null, 60_000)
        assert.equal(child.exitCode, null, `the example exited early:\n${stdout}\n${stderr}`)
        assert.ok(stderr.includes(`-H 'Host: hello' http://${listen}/`), stderr)

        const who = async (): Promise<string> => {
          const res = await send(agent, `http://${listen}/`, { headers: { host: 'hello' } })
          assert.equal(res.status, 200, res.body)
          return (JSON.parse(res.body) as { instance: string }).instance
        }
        const seen = new Set<string>()
        for (let i = 0; i < 8; i++) seen.add(await who())
        assert.deepEqual([...seen].sort(), ['hello-1', 'hello-2', 'hello-3'])
        const routed = JSON.parse((await send(agent, `http://${listen}/hello/world`)).body) as { url: string }
        assert.equal(routed.url, '/world')

        const m = c.removal.exec(stderr)
        assert.ok(m !== null, `the banner prints how to remove hello-2:\n${stderr}`)
        const { url, init } = c.toRequest(m)
        assert.ok((await fetch(url, init)).ok)
        const registry = new URL(url).origin
        // Once outrigger has the new set, hello-2 gets nothing more.
        await waitFor('outrigger to drop hello-2', async () => {
          const services = (await (await fetch(`http://${admin}/api/services`)).json()) as { name: string; endpoints: unknown[] }[]
          return services.find((s) => s.name === 'hello')?.endpoints.length === 2
        }, 20_000)
        for (let i = 0; i < 6; i++) assert.notEqual(await who(), 'hello-2')

        child.kill('SIGINT')
        assert.equal(await exited, 0, `${stdout}\n${stderr}`)
        assert.ok(stdout.includes('"msg":"outrigger stopped"'), stdout)
        await assert.rejects(fetch(registry, { signal: AbortSignal.timeout(2000) }), `${c.name} is stopped with the example`)
      } finally {
        await agent.close()
        // After a failure: Ctrl-C first, so the example stops its registry and outrigger (they run
        // in their own process groups and would outlive a SIGKILL of the script).
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT')
          await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000).unref())])
          child.kill('SIGKILL')
        }
        child.stdout.destroy()
        child.stderr.destroy()
      }
    })
  }
})
