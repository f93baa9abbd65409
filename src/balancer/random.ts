/**
 * A per-picker xorshift32 generator. `Math.random()` returns a freshly allocated heap number on
 * every call in V8 (about 16 bytes), which is garbage on the data path; this keeps its state in an
 * Int32Array, so drawing a number allocates nothing. Seeded from `Math.random()` once, at rebuild:
 * every sidecar, and every picker, draws a different sequence.
 */
export class FastRandom {
  readonly #state = new Int32Array(1)

  constructor(seed = (Math.random() * 0x100000000) | 0) {
    this.#state[0] = seed === 0 ? 0x2545f491 : seed
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  next(): number {
    let x = this.#state[0]!
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#state[0] = x
    return x >>> 0
  }

  /** An integer in [0, n) for n ≥ 1 (multiply-shift: no division, bias below 2^-32 × n). */
  below(n: number): number {
    return Math.floor((this.next() * n) / 0x100000000)
  }
}
