import type { ServiceConfig } from '../config/types.ts'
import type { Host } from '../cluster/host.ts'

/**
 * Per-request input to a picker. The forwarder allocates one per request and reuses it across
 * attempts, so `pick()` itself never allocates.
 */
export interface PickContext {
  /** Unsigned 32-bit hash of the request's key for consistent hashing; -1 when the request carries none. */
  hash: number
  /**
   * The request's sticky-cookie value (a host's `stickyToken`), or null. A consistent-hash picker
   * returns that host while it can take the request, and otherwise walks the ring from `hash`.
   */
  stickyToken: string | null
  /** Hosts this request already tried; a picker must not return them. Null on the first attempt. */
  tried: Host[] | null
}

/**
 * An immutable snapshot of the routable hosts, built by a balancer on every membership, weight or
 * health change. `pick()` allocates nothing and throws nothing; it returns null when no host can
 * take the request (none routable, all tried, or all at `maxConcurrent`).
 */
export interface Picker {
  pick(context: PickContext): Host | null
}

/**
 * One balancing strategy for one service. `rebuild` is called with the hosts that may be picked
 * (already filtered for health, or all of them in panic mode), never per request. A balancer may
 * keep state across rebuilds (a round-robin cursor, a hash ring cache).
 */
export interface Balancer {
  rebuild(hosts: readonly Host[]): Picker
}

export type BalancerFactory = (service: ServiceConfig) => Balancer

/**
 * The weight a strategy gives a host: its registry weight (or 1 where the strategy ignores
 * weights) times its slow-start factor.
 */
export function effectiveWeight(host: Host, useRegistryWeight: boolean): number {
  return (useRegistryWeight ? host.weight : 1) * host.slowStartFactor
}

/** True when `host` may take one more request in this context. Shared by every picker. */
export function canTake(host: Host, context: PickContext): boolean {
  return host.inFlight < host.maxConcurrent && (context.tried === null || !context.tried.includes(host))
}

/** The picker of an empty host set. */
export const EMPTY_PICKER: Picker = { pick: () => null }
