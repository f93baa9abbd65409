import type { Host } from '../cluster/host.ts'
import type { Balancer, PickContext, Picker } from './types.ts'
import { EMPTY_PICKER, canTake } from './types.ts'

/**
 * Equal shares in a fixed cyclic order. The cursor starts at a random position per process, so a
 * fleet of sidecars does not hit the same upstream in lockstep, and survives rebuilds, so shares
 * stay exact across health changes.
 */
export class RoundRobinBalancer implements Balancer {
  readonly #cursor = { next: Math.floor(Math.random() * 0x7fffffff) }

  rebuild(hosts: readonly Host[]): Picker {
    return hosts.length === 0 ? EMPTY_PICKER : new RoundRobinPicker(hosts.slice(), this.#cursor)
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
