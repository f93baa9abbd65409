import type { Host } from '../cluster/host.ts'
import { FastRandom } from './random.ts'
import type { Balancer, PickContext, Picker } from './types.ts'
import { EMPTY_PICKER, canTake, effectiveWeight } from './types.ts'

/** Up to this many hosts a pick scans them all; beyond, it compares two random ones. */
export const FULL_SCAN_MAX_HOSTS = 8

/**
 * Fewest in-flight requests relative to weight: a host's load is (inFlight + 1) / weight, as in
 * HAProxy's weighted leastconn, so a request goes where it adds the least relative load. Ties are
 * broken at random, so idle hosts share equally and a fleet of sidecars does not pile onto the
 * same host.
 *
 * Small sets are scanned in full. Larger ones use the power of two choices (Mitzenmacher): two
 * distinct random hosts, the less loaded wins. That keeps a pick O(1) whatever the set size, and
 * is known to be nearly as good as a full scan while avoiding the herd effect of every sidecar
 * choosing the same least-loaded host from the same stale counts.
 */
export class LeastConnectionsBalancer implements Balancer {
  rebuild(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER
    const weights = new Float64Array(hosts.length)
    for (let i = 0; i < hosts.length; i++) weights[i] = effectiveWeight(hosts[i]!, true)
    return new LeastConnectionsPicker(hosts.slice(), weights)
  }
}

class LeastConnectionsPicker implements Picker {
  readonly #hosts: readonly Host[]
  /** 1 / effective weight of each host: a multiply per comparison instead of a divide. */
  readonly #inverseWeight: Float64Array
  readonly #random = new FastRandom()

  constructor(hosts: readonly Host[], weights: Float64Array) {
    this.#hosts = hosts
    this.#inverseWeight = new Float64Array(hosts.length)
    for (let i = 0; i < hosts.length; i++) this.#inverseWeight[i] = weights[i]! > 0 ? 1 / weights[i]! : Number.POSITIVE_INFINITY
  }

  pick(context: PickContext): Host | null {
    const n = this.#hosts.length
    if (n <= FULL_SCAN_MAX_HOSTS) return this.#scan(context)
    const a = this.#random.below(n)
    let b = this.#random.below(n - 1)
    if (b >= a) b++
    const hostA = this.#hosts[a]!
    const hostB = this.#hosts[b]!
    const okA = canTake(hostA, context)
    const okB = canTake(hostB, context)
    if (okA && okB) {
      const loadA = (hostA.inFlight + 1) * this.#inverseWeight[a]!
      const loadB = (hostB.inFlight + 1) * this.#inverseWeight[b]!
      return loadA < loadB || (loadA === loadB && (this.#random.next() & 1) === 0) ? hostA : hostB
    }
    if (okA) return hostA
    if (okB) return hostB
    // Both were tried or full: fall back to a full scan rather than fail while others can take it.
    return this.#scan(context)
  }

  /** The least-loaded host that can take the request; among equals, each with the same chance. */
  #scan(context: PickContext): Host | null {
    const hosts = this.#hosts
    let best: Host | null = null
    let bestLoad = Number.POSITIVE_INFINITY
    let ties = 0
    for (let i = 0; i < hosts.length; i++) {
      const host = hosts[i]!
      if (!canTake(host, context)) continue
      const load = (host.inFlight + 1) * this.#inverseWeight[i]!
      if (load < bestLoad) {
        best = host
        bestLoad = load
        ties = 1
      } else if (load === bestLoad && this.#random.below(++ties) === 0) {
        // Reservoir sampling: the k-th equal host replaces the choice with probability 1/k.
        best = host
      }
    }
    return best
  }
}
