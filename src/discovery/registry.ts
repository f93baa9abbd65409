import type { Logger } from 'pino'
import type { DiscoveryConfig, ServiceConfig, SourceKind } from '../config/types.ts'
import type { DiscoveryAdapter } from './types.ts'
import { FileDiscovery } from './file.ts'
import { StaticDiscovery } from './static.ts'

/** What an adapter factory gets besides its service: how to reach the registries, and a logger. */
export interface DiscoveryContext {
  discovery: DiscoveryConfig
  logger: Logger
}

export type DiscoveryFactory = (service: ServiceConfig, context: DiscoveryContext) => DiscoveryAdapter

const factories = new Map<SourceKind, DiscoveryFactory>([
  ['static', (s) => new StaticDiscovery(s)],
  ['file', (s, context) => new FileDiscovery(s, context.logger)],
])

/**
 * Registry clients load only when a service uses them (`loadSources`): etcd3 (with grpc-js) adds
 * about 37 MB to the resident size and the consul package about 13 MB, which a sidecar reading
 * neither should not carry (issue 7's 10,000-idle-connections memory target).
 */
const loaders = new Map<SourceKind, () => Promise<DiscoveryFactory>>([
  ['consul', async () => {
    const { ConsulDiscovery } = await import('./consul.ts')
    return (s, context) => new ConsulDiscovery(s, context.discovery.consul, context.logger)
  }],
  ['etcd', async () => {
    const { EtcdDiscovery } = await import('./etcd.ts')
    return (s, context) => new EtcdDiscovery(s, context.discovery.etcd, context.logger)
  }],
])

/** Loads the adapters of these sources that are not loaded yet (before `createDiscovery`). */
export async function loadSources(sources: Iterable<SourceKind>): Promise<void> {
  for (const source of new Set(sources)) {
    const load = loaders.get(source)
    if (load !== undefined && !factories.has(source)) factories.set(source, await load())
  }
}

/** Sources register themselves here by their config name. */
export function registerDiscovery(source: SourceKind, factory: DiscoveryFactory): void {
  factories.set(source, factory)
}

export function availableSources(): SourceKind[] {
  return [...new Set([...factories.keys(), ...loaders.keys()])]
}

/** Returns null when the source is not available in this build, so the caller can report it. */
export function createDiscovery(service: ServiceConfig, context: DiscoveryContext): DiscoveryAdapter | null {
  const factory = factories.get(service.source)
  return factory ? factory(service, context) : null
}
