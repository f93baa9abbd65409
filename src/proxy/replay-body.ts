import type { IncomingMessage } from 'node:http'

/**
 * A request body streamed to the first attempt and remembered, up to `limit` bytes, so a request
 * that fails after it was sent can be replayed on another endpoint (the contract's
 * `retry.replayBodyLimit`). Used only for requests that may be retried after sending (idempotent,
 * or carrying the idempotency-key header) and that have a body; bodiless requests never pay for it.
 *
 * It is an async iterable, which undici writes with back-pressure (it awaits `drain` between
 * chunks), so the body still flows at the upstream's pace and is never read ahead. Chunks are kept
 * by reference (node hands each one over once), never copied, and dropped as soon as the body
 * proves larger than the limit.
 *
 * The client's stream is read with `destroyOnReturn: false`: undici ends its loop over a body
 * early when the upstream fails, and that must not destroy the client's request.
 */
export class ReplayBody implements AsyncIterable<Buffer> {
  readonly #req: IncomingMessage
  readonly #limit: number
  #chunks: Buffer[] | null = []
  #bytes = 0
  /** True once a first attempt started reading the client's body. */
  started = false
  /** True once the client's body was read to its end within the limit. */
  #complete = false
  #whole: Buffer | null = null

  constructor(req: IncomingMessage, limitBytes: number) {
    this.#req = req
    this.#limit = limitBytes
  }

  /** True when a new attempt can send the same body: untouched yet, or read whole within the limit. */
  get replayable(): boolean {
    return !this.started || this.#complete
  }

  /** The body for the next attempt: this (still unread), or the remembered bytes. */
  next(): AsyncIterable<Buffer> | Buffer {
    if (!this.started) return this
    this.#whole ??= this.#chunks!.length === 1 ? this.#chunks![0]! : Buffer.concat(this.#chunks!, this.#bytes)
    return this.#whole
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    this.started = true
    for await (const chunk of this.#req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      if (this.#chunks !== null) {
        this.#bytes += chunk.length
        if (this.#bytes > this.#limit) this.#chunks = null
        else this.#chunks.push(chunk)
      }
      yield chunk
    }
    this.#complete = this.#chunks !== null
  }
}
