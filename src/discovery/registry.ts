import type { Logger } from 'pino'
import type { DiscoveryConfig, ServiceConfig, SourceKind } from '../config/types.ts'
import type { DiscoveryAdapter } from './types.ts'
import { ConsulDiscovery } from './consul.ts'
import { EtcdDiscovery } from './etcd.ts'
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
  ['consul', (s, context) => new ConsulDiscovery(s, context.discovery.consul, context.logger)],
  ['etcd', (s, context) => new EtcdDiscovery(s, context.discovery.etcd, context.logger)],
])

/** Sources register themselves here by their config name. */
export function registerDiscovery(source: SourceKind, factory: DiscoveryFactory): void {
  factories.set(source, factory)
}

export function availableSources(): SourceKind[] {
  return [...factories.keys()]
}

/** Returns null when the source is not available in this build, so the caller can report it. */
export function createDiscovery(service: ServiceConfig, context: DiscoveryContext): DiscoveryAdapter | null {
  const factory = factories.get(service.source)
  return factory ? factory(service, context) : null
}
