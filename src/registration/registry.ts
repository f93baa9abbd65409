import type { Logger } from 'pino'
import type { DiscoveryConfig, RegisterConfig } from '../config/types.ts'
import { ConsulRegistrar } from './consul.ts'
import type { Registrar } from './types.ts'

export type RegistrarFactory = (config: RegisterConfig, discovery: DiscoveryConfig, logger: Logger) => Registrar

const factories = new Map<RegisterConfig['source'], RegistrarFactory>([
  ['consul', (c, d, logger) => new ConsulRegistrar(c, d.consul, logger)],
])

/** etcd's registrar (and etcd3 with it) loads only when used; see discovery/registry.ts. */
export async function loadRegistrar(source: RegisterConfig['source']): Promise<void> {
  if (source === 'etcd' && !factories.has('etcd')) {
    const { EtcdRegistrar } = await import('./etcd.ts')
    factories.set('etcd', (c, d, logger) => new EtcdRegistrar(c, d.etcd, logger))
  }
}

/** Registries register their registrar here by config name. */
export function registerRegistrar(source: RegisterConfig['source'], factory: RegistrarFactory): void {
  factories.set(source, factory)
}

/** Null when this build cannot register in that registry, so the caller can report it. */
export function createRegistrar(config: RegisterConfig, discovery: DiscoveryConfig, logger: Logger): Registrar | null {
  return factories.get(config.source)?.(config, discovery, logger) ?? null
}
