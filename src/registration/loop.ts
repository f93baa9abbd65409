import type { Logger } from 'pino'

/** How often a registration is verified (and put back if the registry lost it). */
export const VERIFY_INTERVAL_MS = 10_000
/** Backoff between failed attempts (jittered, doubling). */
export const RETRY_MIN_MS = 500
export const RETRY_MAX_MS = 10_000

/**
 * The schedule every registrar shares: run `ensure` at once, then every VERIFY_INTERVAL_MS while
 * it succeeds; after a failure, again after a jittered, doubling backoff (the first failure of a
 * streak is logged, the rest are not). `ensure` makes the registration true in the registry,
 * whatever state it finds. The timer never keeps the process alive.
 */
export class RegistrationLoop {
  readonly #what: string
  readonly #logger: Logger
  readonly #ensure: () => Promise<void>
  readonly #onFailure: () => void
  #timer: NodeJS.Timeout | null = null
  #stopped = false
  #failures = 0

  /** `onFailure` runs after each failed attempt (e.g. to forget a lease that may be gone). */
  constructor(what: string, logger: Logger, ensure: () => Promise<void>, onFailure: () => void = () => undefined) {
    this.#what = what
    this.#logger = logger
    this.#ensure = ensure
    this.#onFailure = onFailure
  }

  get stopped(): boolean {
    return this.#stopped
  }

  start(): void {
    this.#schedule(0)
  }

  /** Runs `ensure` now, replacing the pending run (e.g. when a lease was lost). */
  now(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#schedule(0)
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.#run()
    }, delayMs)
    this.#timer.unref()
  }

  async #run(): Promise<void> {
    try {
      await this.#ensure()
      this.#failures = 0
      this.#schedule(VERIFY_INTERVAL_MS)
    } catch (err) {
      if (this.#stopped) return
      if (this.#failures++ === 0) this.#logger.warn({ err: (err as Error).message }, `cannot register in ${this.#what}; retrying`)
      this.#onFailure()
      const backoff = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.#failures, 10))
      this.#schedule(backoff * (0.5 + Math.random()))
    }
  }
}
