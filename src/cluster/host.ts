import type { Dispatcher } from 'undici'
import type { Endpoint } from '../discovery/types.ts'
import { endpointKey } from '../discovery/types.ts'
import { hashString } from '../balancer/hash.ts'
import type { OutlierState } from '../health/outlier-state.ts'
import { newOutlierState } from '../health/outlier-state.ts'
import type { TlsDialer } from '../policies/tls.ts'
import type { UpstreamPool } from '../proxy/fast/upstream.ts'

/** In-flight requests over all hosts of one cluster: the average that bounded-load hashing needs. */
export interface ClusterLoad {
  inFlight: number
}

/**
 * Why a host may not be picked. Each subsystem owns one bit and sets or clears only that bit
 * (Envoy's health flags): the active checker owns FAILED_ACTIVE_CHECK, the outlier detector owns
 * EJECTED, the cluster owns DRAINING. SLOW_START does not block routing; it only shapes the share.
 */
export const HostFlag = {
  FAILED_ACTIVE_CHECK: 1 << 0,
  EJECTED: 1 << 1,
  DRAINING: 1 << 2,
  SLOW_START: 1 << 3,
} as const
export type HostFlagBit = (typeof HostFlag)[keyof typeof HostFlag]

/** Flags that take a host out of the picker (in panic mode, all but DRAINING are ignored). */
export const UNROUTABLE_FLAGS = HostFlag.FAILED_ACTIVE_CHECK | HostFlag.EJECTED | HostFlag.DRAINING

const FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [HostFlag.FAILED_ACTIVE_CHECK, 'failed_active_check'],
  [HostFlag.EJECTED, 'ejected'],
  [HostFlag.DRAINING, 'draining'],
  [HostFlag.SLOW_START, 'slow_start'],
]

export function flagNames(flags: number): string[] {
  const names: string[] = []
  for (const [bit, name] of FLAG_NAMES) if ((flags & bit) !== 0) names.push(name)
  return names
}

/**
 * One upstream instance of one service. The cluster keeps a single Host per `address:port` across
 * endpoint-set updates, so in-flight counts, health and history survive a new set.
 */
export class Host {
  readonly key: string
  readonly address: string
  readonly port: number
  weight: number
  meta: Readonly<Record<string, string>>
  /** Bitmask of HostFlag. */
  flags = 0
  /** Requests dispatched to this host and not yet finished. Maintained by the forwarder. */
  inFlight = 0
  /** Requests ever dispatched to this host. */
  requests = 0
  /** Human-readable reasons by flag bit, for `/api/services`. */
  readonly reasons = new Map<number, string>()
  /** When the host joined the cluster (ms since epoch); slow start ramps from here. */
  readonly addedAtMs: number
  /** The connection pool to this host; owned by the cluster, closed when the host leaves. */
  readonly dispatcher: Dispatcher
  /** The fast lane's connections to this host (src/proxy/fast), made on first use; closed with the host. */
  fastPool: UpstreamPool | null = null
  /** Max in-flight requests; beyond it the picker passes this host over. */
  readonly maxConcurrent: number
  /**
   * Share multiplier during slow start, in (0, 1]; 1 otherwise. Set by the cluster before each
   * rebuild; balancers multiply it into the weight they use.
   */
  slowStartFactor = 1
  /** Hash of `key`: where this host's virtual nodes sit on a hash ring. */
  readonly hashSeed: number
  /** This host's value for a sticky cookie (8 hex digits of `hashSeed`). */
  readonly stickyToken: string
  /** The cluster-wide in-flight count, shared by all hosts of the cluster. */
  readonly load: ClusterLoad
  /** Passive-health bookkeeping, owned by the service's OutlierDetector. */
  readonly outlier: OutlierState = newOutlierState()
  /** How this host is reached over TLS (its pool and its health probes); null for plain HTTP. */
  readonly tls: TlsDialer | null

  constructor(endpoint: Endpoint, dispatcher: Dispatcher, maxConcurrent: number, nowMs: number, load: ClusterLoad = { inFlight: 0 }, tls: TlsDialer | null = null) {
    this.key = endpointKey(endpoint.address, endpoint.port)
    this.address = endpoint.address
    this.port = endpoint.port
    this.weight = endpoint.weight
    this.meta = endpoint.meta
    this.dispatcher = dispatcher
    this.maxConcurrent = maxConcurrent
    this.addedAtMs = nowMs
    this.hashSeed = hashString(this.key)
    this.stickyToken = this.hashSeed.toString(16).padStart(8, '0')
    this.load = load
    this.tls = tls
  }

  /** A request starts on this host. */
  acquire(): void {
    this.inFlight++
    this.requests++
    this.load.inFlight++
  }

  /** A request on this host ended, however it ended. */
  release(): void {
    this.inFlight--
    this.load.inFlight--
    if (this.inFlight === 0 && this.#whenIdle !== null) {
      const resolve = this.#whenIdle
      this.#whenIdle = null
      resolve()
    }
  }

  #whenIdle: (() => void) | null = null
  #idle: Promise<void> | null = null

  /** Resolves once no request is in flight on this host (by either forwarding path). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    if (this.#whenIdle === null) this.#idle = new Promise<void>((resolve) => (this.#whenIdle = resolve))
    return this.#idle!
  }

  get routable(): boolean {
    return (this.flags & UNROUTABLE_FLAGS) === 0
  }

  /** Sets or clears one flag; returns true when that changed anything. */
  setFlag(bit: HostFlagBit, on: boolean, reason?: string): boolean {
    const before = this.flags
    if (on) {
      this.flags |= bit
      if (reason !== undefined) this.reasons.set(bit, reason)
    } else {
      this.flags &= ~bit
      this.reasons.delete(bit)
    }
    return before !== this.flags
  }
}
