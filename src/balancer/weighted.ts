import type { Host } from '../cluster/host.ts'
import { EdfPicker } from './edf.ts'
import type { Balancer, Picker } from './types.ts'
import { EMPTY_PICKER, effectiveWeight } from './types.ts'

/**
 * Shares proportional to endpoint weights (from the registry or the file), smoothly interleaved
 * by earliest-deadline-first scheduling (see edf.ts). Slow start scales a new host's weight.
 */
export class WeightedBalancer implements Balancer {
  rebuild(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER
    const weights = new Float64Array(hosts.length)
    for (let i = 0; i < hosts.length; i++) weights[i] = effectiveWeight(hosts[i]!, true)
    return new EdfPicker(hosts.slice(), weights)
  }
}
