/**
 * Registry faults under steady concurrent load: Consul and etcd killed and restarted, etcd
 * compacted past the watch. The last known endpoints stay in use throughout, so no request fails.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Etcd3 } from 'etcd3'
import type { Upstream } from '../helpers.ts'
import { startSidecar, startUpstream, waitFor } from '../helpers.ts'
import { startConsul, startEtcd } from '../registries/servers.ts'
import { Load, report } from './load.ts'

describe('registry faults under load', () => {
  it('Consul killed and restarted: no request fails, and a change after the restart is followed', async (t) => {
    const consul = await startConsul({ persistent: true })
    const ups: Upstream[] = [await startUpstream('a'), await startUpstream('b')]
    const registerUp = async (u: Upstream): Promise<void> => {
      const res = await fetch(`${consul.url}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ ID: `api-${u.name}`, Name: 'api', Address: '127.0.0.1', Port: u.port }) })
      assert.equal(res.status, 200)
    }
    const s = await startSidecar({ discovery: { consul: { url: consul.url, wait: '5s' } }, services: { api: { source: 'consul' } } })
    let load: Load | null = null
    let cleanupWatch = (): void => undefined
    const membership: string[] = []
    try {
      await registerUp(ups[0]!)
      await waitFor('a routed', () => s.sidecar.clusters()[0]!.hosts().length === 1, 15_000)
      load = new Load({ url: s.url, host: 'api', concurrency: 16 }).start()
      // Membership and health as the sidecar saw them, for the failure message: an empty or
      // unroutable set at some point would explain failed requests.
      const seen = membership
      const watch = setInterval(() => {
        const c = s.sidecar.clusters()[0]!
        const now = `${c.hosts().length} hosts, ${c.hosts().filter((h) => h.routable).length} routable, stale ${c.discovery.stale}, error ${c.discovery.error}`
        if (seen.at(-1) !== now) seen.push(`${new Date().toISOString()} ${now}`)
      }, 5)
      cleanupWatch = () => clearInterval(watch)
      await load.advance(200)
      await consul.stop()
      await waitFor('the service to turn stale', () => s.sidecar.clusters()[0]!.discovery.stale, 15_000)
      await load.advance(300)
      await consul.start()
      await waitFor('the re-register after the restart', () => registerUp(ups[1]!).then(() => true, () => false), 15_000)
      await waitFor('b followed after the restart', () => s.sidecar.clusters()[0]!.hosts().length === 2, 30_000)
      await waitFor('b to receive traffic', () => ups[1]!.hits > 10, 10_000)
      const fates = await load.stop()
      report(t, 'consul down and back', fates)
      assert.deepEqual(load.other(['200']), {}, `membership seen:\n${membership.join('\n')}`)
    } finally {
      cleanupWatch()
      await load?.stop()
      await s.stop()
      for (const u of ups) await u.close()
      await consul.destroy()
    }
  })

  it('etcd killed and restarted, then compacted past the watch: no request fails, changes are followed', async (t) => {
    const etcd = await startEtcd()
    const client = new Etcd3({ hosts: [etcd.url] })
    const ups: Upstream[] = [await startUpstream('a'), await startUpstream('b'), await startUpstream('c')]
    const s = await startSidecar({ discovery: { etcd: { endpoints: [etcd.url], prefix: '/services/' } }, services: { api: { source: 'etcd' } } })
    let load: Load | null = null
    try {
      await client.put('/services/api/a').value(ups[0]!.address)
      await waitFor('a routed', () => s.sidecar.clusters()[0]!.hosts().length === 1, 15_000)
      load = new Load({ url: s.url, host: 'api', concurrency: 16 }).start()
      await load.advance(200)
      await etcd.stop()
      await waitFor('the service to turn stale', () => s.sidecar.clusters()[0]!.discovery.stale, 15_000)
      await load.advance(300)
      await etcd.start()
      await waitFor('the put after the restart', () => client.put('/services/api/b').value(ups[1]!.address).then(() => true, () => false), 15_000)
      await waitFor('b followed after the restart', () => s.sidecar.clusters()[0]!.hosts().length === 2, 30_000)
      const restarted = { ...load.fates }

      // Revisions outside the prefix, compacted away under the watch, then a change inside it.
      for (let i = 0; i < 50; i++) await client.put(`/elsewhere/${i}`).value('x')
      const revision = (await client.put('/elsewhere/last').value('x')).header.revision
      await client.kv.compact({ revision, physical: true })
      await client.put('/services/api/c').value(ups[2]!.address)
      await waitFor('c followed after the compaction', () => s.sidecar.clusters()[0]!.hosts().length === 3, 30_000)
      await waitFor('c to receive traffic', () => ups[2]!.hits > 10, 10_000)
      const fates = await load.stop()
      report(t, 'etcd down and back', restarted)
      report(t, 'etcd down and back, then compacted', fates)
      assert.deepEqual(load.other(['200']), {})
    } finally {
      await load?.stop()
      await s.stop()
      client.close()
      for (const u of ups) await u.close()
      await etcd.destroy()
    }
  })
})
