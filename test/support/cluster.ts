import assert from 'node:assert/strict'
import type { Host } from '../../src/cluster/host.ts'
import type { ServiceCluster } from '../../src/cluster/service-cluster.ts'

/** The member of `cluster` on `port`; fails the test when there is none. */
export function hostAt(cluster: ServiceCluster, port: number): Host {
  const host = cluster.hosts().find((x) => x.port === port)
  assert.ok(host !== undefined, `no host on port ${port}`)
  return host
}
