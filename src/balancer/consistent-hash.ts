import type { Host } from '../cluster/host.ts'
import { random32, vnodeHash } from './hash.ts'
import type { Balancer, PickContext, Picker } from './types.ts'
import { EMPTY_PICKER, canTake, effectiveWeight } from './types.ts'

/** Virtual nodes per unit of weight while the ring is small: keeps each host's share within a few percent. */
export const MAX_VNODES_PER_WEIGHT = 512
/** The ring's size limit (entries): bounds memory and the rebuild time at 10,000 endpoints. */
export const MAX_RING_ENTRIES = 1 << 19
/** Ring entries pack `hash * 2^21 + host index` into a double (53 bits), so at most 2^21 hosts. */
const INDEX_BITS_FACTOR = 2 ** 21

/**
 * Consistent hashing on a ketama ring (Envoy's ring hash), weighted by virtual nodes.
 *
 * Each host gets `round(vnodesPerWeight × weight × slowStartFactor)` points, at positions that
 * depend only on its own `address:port` and the point's number. So a host's points never move
 * when other hosts come or go: removing a host moves exactly the keys that were on it (each to the
 * next point clockwise), adding one moves only the keys it takes. Unlike Envoy, whose points per
 * host are rescaled on every membership change, `vnodesPerWeight` changes only in powers of two,
 * with hysteresis, when the total weight would overflow the ring or leave it far too small; only
 * then do other keys move.
 *
 * A request's key hash is looked up by binary search (first point at or after the hash). When that
 * host cannot take the request (tried, full, or over the bounded load), the walk goes on clockwise
 * to the next distinct host: only the failed host's keys move, to the next endpoint. Requests
 * without a key land at a random point: spread by weight.
 *
 * Bounded load (Mirrokni et al., "Consistent Hashing with Bounded Loads"): with
 * `hashBalanceFactor` c, a host may take a request only while its in-flight count is below
 * ceil(c × (in-flight over the cluster + 1) / hosts), so no host exceeds c × average + 1.
 */
export class ConsistentHashBalancer implements Balancer {
  readonly #balanceFactor: number
  #vnodesPerWeight = MAX_VNODES_PER_WEIGHT

  /** `balanceFactor` > 1 turns bounded load on; 0 turns it off. */
  constructor(balanceFactor = 0) {
    if (balanceFactor !== 0 && !(balanceFactor > 1)) throw new RangeError('hashBalanceFactor must be greater than 1')
    this.#balanceFactor = balanceFactor
  }

  /** Current virtual nodes per unit of weight (for tests and benchmarks). */
  get vnodesPerWeight(): number {
    return this.#vnodesPerWeight
  }

  rebuild(hosts: readonly Host[]): Picker {
    const n = hosts.length
    if (n === 0) return EMPTY_PICKER
    if (n >= INDEX_BITS_FACTOR) throw new RangeError(`consistent hashing supports at most ${INDEX_BITS_FACTOR - 1} endpoints`)
    const weights = new Float64Array(n)
    let totalWeight = 0
    for (let i = 0; i < n; i++) totalWeight += weights[i] = effectiveWeight(hosts[i]!, true)
    let v = this.#vnodesPerWeight
    while (v > 1 && v * totalWeight > MAX_RING_ENTRIES) v >>= 1
    while (v < MAX_VNODES_PER_WEIGHT && 2 * v * totalWeight <= MAX_RING_ENTRIES / 4) v <<= 1
    this.#vnodesPerWeight = v

    const counts = new Int32Array(n)
    let total = 0
    for (let i = 0; i < n; i++) total += counts[i] = Math.max(1, Math.round(v * weights[i]!))
    // Sorting one Float64Array of packed (hash, index) pairs is several times faster than sorting
    // objects or an index permutation.
    const packed = new Float64Array(total)
    let k = 0
    for (let i = 0; i < n; i++) {
      const seed = hosts[i]!.hashSeed
      for (let j = 0; j < counts[i]!; j++) packed[k++] = vnodeHash(seed, j) * INDEX_BITS_FACTOR + i
    }
    packed.sort()
    const points = new Uint32Array(total)
    const owners = new Int32Array(total)
    for (let p = 0; p < total; p++) {
      const value = packed[p]!
      const hash = Math.floor(value / INDEX_BITS_FACTOR)
      points[p] = hash
      owners[p] = value - hash * INDEX_BITS_FACTOR
    }
    return new RingPicker(hosts.slice(), points, owners, this.#balanceFactor)
  }
}

class RingPicker implements Picker {
  readonly #hosts: readonly Host[]
  readonly #points: Uint32Array
  readonly #owners: Int32Array
  readonly #balanceFactor: number
  readonly #byToken = new Map<string, Host>()
  /** Per-pick marks of hosts already considered (generation stamps: no clearing per pick). */
  readonly #seen: Int32Array
  #stamp = 0

  constructor(hosts: readonly Host[], points: Uint32Array, owners: Int32Array, balanceFactor: number) {
    this.#hosts = hosts
    this.#points = points
    this.#owners = owners
    this.#balanceFactor = balanceFactor
    this.#seen = new Int32Array(hosts.length)
    for (const host of hosts) this.#byToken.set(host.stickyToken, host)
  }

  pick(context: PickContext): Host | null {
    const hosts = this.#hosts
    // The most a host may hold under bounded load; +Infinity when off.
    const capacity = this.#balanceFactor === 0 ? Number.POSITIVE_INFINITY : Math.ceil((this.#balanceFactor * (hosts[0]!.load.inFlight + 1)) / hosts.length)
    if (context.stickyToken !== null) {
      const pinned = this.#byToken.get(context.stickyToken)
      if (pinned !== undefined && pinned.inFlight < capacity && canTake(pinned, context)) return pinned
    }
    const points = this.#points
    const hash = context.hash >= 0 ? context.hash : random32()
    let lo = 0
    let hi = points.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! < hash) lo = mid + 1
      else hi = mid
    }
    if (this.#stamp === 0x7fffffff) {
      this.#seen.fill(0)
      this.#stamp = 0
    }
    const stamp = ++this.#stamp
    const seen = this.#seen
    const owners = this.#owners
    let index = lo === points.length ? 0 : lo
    let distinct = 0
    for (let step = 0; step < points.length; step++) {
      const owner = owners[index]!
      if (seen[owner] !== stamp) {
        seen[owner] = stamp
        const host = hosts[owner]!
        if (host.inFlight < capacity && canTake(host, context)) return host
        if (++distinct === hosts.length) return null
      }
      if (++index === points.length) index = 0
    }
    return null
  }
}
