import type { Strategy } from '../config/types.ts'
import type { BalancerFactory } from './types.ts'
import { ConsistentHashBalancer } from './consistent-hash.ts'
import { LeastConnectionsBalancer } from './least-connections.ts'
import { RoundRobinBalancer } from './round-robin.ts'
import { WeightedBalancer } from './weighted.ts'

const factories = new Map<Strategy, BalancerFactory>([
  ['round-robin', () => new RoundRobinBalancer()],
  ['weighted', () => new WeightedBalancer()],
  ['least-connections', () => new LeastConnectionsBalancer()],
  ['consistent-hash', (service) => new ConsistentHashBalancer(service.hashBalanceFactor ?? 0)],
])

/** Strategies register themselves here by their config name. */
export function registerBalancer(strategy: Strategy, factory: BalancerFactory): void {
  factories.set(strategy, factory)
}

export function balancerFactory(strategy: Strategy): BalancerFactory | undefined {
  return factories.get(strategy)
}

export function availableStrategies(): Strategy[] {
  return [...factories.keys()]
}
