import type { Host } from '../cluster/host.ts'
import { EdfPicker } from './edf.ts'
import type { Balancer, PickContext, Picker } from './types.ts'
import { EMPTY_PICKER, canTake, effectiveWeight } from './types.ts'

/**
 * Equal shares in a fixed cyclic order. The cursor starts at a random position per process, so a
 * fleet of sidecars does not hit the same upstream in lockstep, and survives rebuilds, so shares
 * stay exact across health changes. While a host is in slow start the shares are unequal, so the
 * picker is the weighted (EDF) one with weight 1 × the slow-start factor until the ramp ends.
 */
export class RoundRobinBalancer implements Balancer {
  readonly #cursor = { next: Math.floor(Math.random() * 0x7fffffff) }

  rebuild(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER
    let ramping = false
    for (const host of hosts) if (host.slowStartFactor < 1) ramping = true
    if (!ramping) return new RoundRobinPicker(hosts.slice(), this.#cursor)
    const weights = new Float64Array(hosts.length)
    for (let i = 0; i < hosts.length; i++) weights[i] = effectiveWeight(hosts[i]!, false)
    return new EdfPicker(hosts.slice(), weights)
  }
}

class RoundRobinPicker implements Picker {
  readonly #hosts: readonly Host[]
  readonly #cursor: { next: number }

  constructor(hosts: readonly Host[], cursor: { next: number }) {
    this.#hosts = hosts
    this.#cursor = cursor
  }

  pick(context: PickContext): Host | null {
    const hosts = this.#hosts
    const n = hosts.length
    for (let i = 0; i < n; i++) {
      const index = this.#cursor.next % n
      this.#cursor.next = index + 1
      const host = hosts[index]!
      if (canTake(host, context)) return host
    }
    return null
  }
}
