import type { Host } from '../cluster/host.ts'
import type { PickContext, Picker } from './types.ts'
import { canTake } from './types.ts'

/** Fractional part of the golden ratio: successive multiples are as evenly spread as possible. */
const GOLDEN_RATIO_FRACTION = 0.6180339887498949

/**
 * Earliest-deadline-first weighted scheduling (Envoy's EDF scheduler, also known as stride
 * scheduling). Each host has a period of 1/weight and a deadline; a pick takes the host with the
 * earliest deadline and moves its deadline one period on. Over any stretch every host gets its
 * weight's share within two picks, and picks interleave smoothly: weights 5:1:1 give
 * a a b a c a a ..., never a burst of five to one host.
 *
 * Start deadlines are spread within one period by the golden ratio from a random origin: random
 * per process, so a fleet of sidecars does not move in step, yet never bunched, so two light hosts
 * do not fall due together and leave a long run of the heavy one between them.
 * A binary min-heap of host indices keeps a pick O(log n); hosts skipped because they are tried or
 * full go to a preallocated scratch list and back into the heap, so a pick allocates nothing.
 * A skipped host keeps its turn but not a backlog: its deadline may lag the chosen host's by one
 * period at most. A retry that skips a host for one pick costs it nothing (shares stay exact), but
 * a host that was full for a long stretch is first in line when it frees up and then takes its
 * normal share, instead of every turn it missed in a burst (which would pin it at
 * `maxConcurrent` long after an overload ended).
 */
export class EdfPicker implements Picker {
  readonly #hosts: readonly Host[]
  readonly #period: Float64Array
  readonly #deadline: Float64Array
  /** Heap of host indices ordered by deadline; always holds every host between picks. */
  readonly #heap: Int32Array
  readonly #skipped: Int32Array
  #size: number

  /** `weights[i]` is the share of `hosts[i]`; hosts with a weight of 0 or less are left out. */
  constructor(hosts: readonly Host[], weights: ArrayLike<number>) {
    const n = hosts.length
    this.#hosts = hosts
    this.#period = new Float64Array(n)
    this.#deadline = new Float64Array(n)
    this.#heap = new Int32Array(n)
    this.#skipped = new Int32Array(n)
    this.#size = 0
    let phase = Math.random()
    for (let i = 0; i < n; i++) {
      const w = weights[i]!
      if (!(w > 0)) continue
      phase = (phase + GOLDEN_RATIO_FRACTION) % 1
      this.#period[i] = 1 / w
      this.#deadline[i] = phase / w
      this.#push(i)
    }
  }

  pick(context: PickContext): Host | null {
    const hosts = this.#hosts
    let skipped = 0
    let chosen: Host | null = null
    while (this.#size > 0) {
      const i = this.#heap[0]!
      const host = hosts[i]!
      if (canTake(host, context)) {
        const now = this.#deadline[i]!
        this.#deadline[i] = now + this.#period[i]!
        this.#siftDown(0)
        for (let k = 0; k < skipped; k++) {
          const j = this.#skipped[k]!
          const floor = now - this.#period[j]!
          if (this.#deadline[j]! < floor) this.#deadline[j] = floor
        }
        chosen = host
        break
      }
      // Not now: set it aside with its deadline unchanged, so it keeps its turn.
      this.#skipped[skipped++] = this.#popTop()
    }
    for (let k = 0; k < skipped; k++) this.#push(this.#skipped[k]!)
    return chosen
  }

  #push(i: number): void {
    const heap = this.#heap
    const deadline = this.#deadline
    let pos = this.#size++
    while (pos > 0) {
      const parent = (pos - 1) >> 1
      const p = heap[parent]!
      if (deadline[p]! <= deadline[i]!) break
      heap[pos] = p
      pos = parent
    }
    heap[pos] = i
  }

  #popTop(): number {
    const heap = this.#heap
    const top = heap[0]!
    this.#size--
    if (this.#size > 0) {
      heap[0] = heap[this.#size]!
      this.#siftDown(0)
    }
    return top
  }

  #siftDown(pos: number): void {
    const heap = this.#heap
    const deadline = this.#deadline
    const size = this.#size
    const i = heap[pos]!
    for (;;) {
      let child = 2 * pos + 1
      if (child >= size) break
      const right = child + 1
      if (right < size && deadline[heap[right]!]! < deadline[heap[child]!]!) child = right
      if (deadline[heap[child]!]! >= deadline[i]!) break
      heap[pos] = heap[child]!
      pos = child
    }
    heap[pos] = i
  }
}
