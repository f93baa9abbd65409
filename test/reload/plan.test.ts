import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/types.ts'
import { planReload, summarize } from '../../src/reload/plan.ts'

function config(doc: Record<string, unknown>): Config {
  return parseConfig(JSON.stringify(doc), { format: 'json', baseDir: '/tmp', env: {} })
}

const base = {
  services: {
    api: { source: 'consul', strategy: 'least-connections' },
    web: { source: 'static', endpoints: ['127.0.0.1:1'] },
    files: { source: 'file', path: './web.yaml' },
  },
}

function plan(prev: Record<string, unknown>, next: Record<string, unknown>) {
  const p = planReload(config(prev), config(next))
  return { ...p, byName: Object.fromEntries(p.services.map((s) => [s.name, s])) }
}

describe('planReload', () => {
  it('does nothing for an identical config', () => {
    const p = plan(base, structuredClone(base))
    assert.equal(p.noop, true)
    assert.deepEqual(summarize(p), { added: [], changed: [], removed: [], unchanged: ['api', 'web', 'files'] })
  })

  it('adds and removes services by name', () => {
    const next = { services: { api: base.services.api, web: base.services.web, extra: { source: 'static', endpoints: ['127.0.0.1:2'] } } }
    const p = plan(base, next)
    assert.deepEqual(summarize(p), { added: ['extra'], changed: [], removed: ['files'], unchanged: ['api', 'web'] })
  })

  it('keeps the cluster and the adapter when only routes change', () => {
    const next = structuredClone(base) as typeof base & { services: { api: Record<string, unknown> } }
    next.services.api.routes = [{ pathPrefix: '/api/' }]
    const s = plan(base, next).byName.api!
    assert.deepEqual(s, { name: 'api', kind: 'changed', rebuildCluster: false, restartDiscovery: false, reroute: true, relisten: false })
  })

  it('moves only the listener when only listen changes', () => {
    const next = structuredClone(base) as typeof base & { services: { web: Record<string, unknown> } }
    next.services.web.listen = '127.0.0.1:15009'
    assert.deepEqual(plan(base, next).byName.web, { name: 'web', kind: 'changed', rebuildCluster: false, restartDiscovery: false, reroute: false, relisten: true })
  })

  it('rebuilds the cluster but hands over the adapter when balancing settings change', () => {
    const next = structuredClone(base)
    next.services.api.strategy = 'round-robin'
    assert.deepEqual(plan(base, next).byName.api, { name: 'api', kind: 'changed', rebuildCluster: true, restartDiscovery: false, reroute: false, relisten: false })
  })

  it('restarts discovery when the selection changes (tags, static list, file)', () => {
    const tags = structuredClone(base) as typeof base & { services: { api: Record<string, unknown> } }
    tags.services.api.tags = ['v2']
    assert.equal(plan(base, tags).byName.api!.restartDiscovery, true)
    const list = structuredClone(base)
    list.services.web.endpoints = ['127.0.0.1:3']
    assert.equal(plan(base, list).byName.web!.restartDiscovery, true)
    const file = structuredClone(base)
    file.services.files.path = './other.yaml'
    assert.equal(plan(base, file).byName.files!.restartDiscovery, true)
  })

  it('restarts discovery of only the services of a registry whose connection settings change', () => {
    const next = { ...structuredClone(base), discovery: { consul: { url: 'http://127.0.0.1:8600' } } }
    const p = plan(base, next)
    assert.deepEqual(p.byName.api, { name: 'api', kind: 'changed', rebuildCluster: false, restartDiscovery: true, reroute: false, relisten: false })
    assert.equal(p.byName.web!.kind, 'unchanged')
    assert.equal(p.byName.files!.kind, 'unchanged')
  })

  it('notices the listeners, registration and state folder', () => {
    const next = { ...structuredClone(base), listen: '127.0.0.1:16001', admin: '127.0.0.1:9911', discovery: { stateDir: '/tmp/elsewhere' }, register: { source: 'etcd', serviceName: 'me', address: '127.0.0.1', port: 8080 } }
    const p = plan(base, next)
    assert.equal(p.relistenShared, true)
    assert.equal(p.relistenAdmin, true)
    assert.equal(p.restateDir, true)
    assert.equal(p.reregister, true)
    assert.equal(p.noop, false)
  })
})
