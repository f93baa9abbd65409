import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Agent } from 'undici'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { send, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'

describe('file source', () => {
  let ups: Upstream[]
  let sc: RunningSidecar
  let agent: Agent
  let file: string

  before(async () => {
    ups = [await startUpstream('a'), await startUpstream('b')]
    file = writeTempFile('web.yaml', '[]\n')
    sc = await startSidecar({ services: { web: { source: 'file', path: file } } })
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    for (const u of ups) await u.close()
  })

  async function who(): Promise<string> {
    const res = await send(agent, `${sc.url}/`, { headers: { host: 'web' } })
    return res.status === 200 ? (JSON.parse(res.body) as { upstream: string }).upstream : `${res.status} ${String(res.headers['x-outrigger-error'])}`
  }

  it('answers 503 no_healthy_endpoint while the file lists no endpoint', async () => {
    await waitFor('first discovery result', () => sc.sidecar.clusters()[0]!.ready)
    const res = await send(agent, `${sc.url}/`, { headers: { host: 'web' } })
    assert.equal(res.status, 503)
    assert.equal(res.headers['x-outrigger-error'], 'no_healthy_endpoint')
    assert.deepEqual(JSON.parse(res.body), { error: 'no_healthy_endpoint', service: 'web' })
  })

  it('follows edits, including an atomic rename-and-replace', async () => {
    writeFileSync(file, `- "${ups[0]!.address}"\n`)
    await waitFor('upstream a to be routed', async () => (await who()) === 'a')
    const tmp = path.join(path.dirname(file), '.web.yaml.tmp')
    writeFileSync(tmp, `- { address: 127.0.0.1, port: ${ups[1]!.port}, weight: 2 }\n`)
    renameSync(tmp, file)
    await waitFor('upstream b to replace a', async () => (await who()) === 'b')
    assert.equal(sc.sidecar.clusters()[0]!.hosts()[0]!.weight, 2)
  })

  it('keeps the last good endpoints when the file turns invalid, and says why', async () => {
    writeFileSync(file, '- "not an endpoint"\n')
    await waitFor('the discovery error to be reported', () => sc.sidecar.clusters()[0]!.discovery.error !== null)
    assert.equal(await who(), 'b')
    const view = JSON.parse((await send(agent, `${sc.adminUrl}/api/services`)).body) as Array<{ stale: boolean; discovery: { error: string } }>
    assert.equal(view[0]!.stale, true)
    assert.match(view[0]!.discovery.error, /\[0\]: /)
    writeFileSync(file, `- "${ups[0]!.address}"\n`)
    await waitFor('recovery', async () => (await who()) === 'a')
    assert.equal(sc.sidecar.clusters()[0]!.discovery.stale, false)
  })
})
