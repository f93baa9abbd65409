/**
 * A minimal HTTP/1.1 response reader for the benchmark's own clients (fixed-rate.ts,
 * idle-clients.ts): splits a keep-alive connection's byte stream into responses and reports each one
 * complete. It reads the status line, Content-Length and chunked framing, nothing else, so a client
 * costs little CPU beside the proxy it measures. Not a general parser: it trusts its peers.
 */

const CRLFCRLF = Buffer.from('\r\n\r\n')

export class ResponseReader {
  #buf: Buffer = Buffer.alloc(0)
  /** Body bytes still to skip (Content-Length), or -1 while reading chunks, or -2 between responses. */
  #remaining = -2
  #status = 0
  readonly #onResponse: (status: number) => void

  constructor(onResponse: (status: number) => void) {
    this.#onResponse = onResponse
  }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    for (;;) {
      if (this.#remaining === -2) {
        const end = this.#buf.indexOf(CRLFCRLF)
        if (end < 0) return
        const head = this.#buf.toString('latin1', 0, end)
        this.#buf = this.#buf.subarray(end + 4)
        this.#status = Number(head.slice(9, 12))
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
        if (length !== null) this.#remaining = Number(length[1])
        else if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) this.#remaining = -1
        else this.#remaining = 0
      }
      if (this.#remaining >= 0) {
        if (this.#buf.length < this.#remaining) {
          this.#remaining -= this.#buf.length
          this.#buf = Buffer.alloc(0)
          return
        }
        this.#buf = this.#buf.subarray(this.#remaining)
        this.#remaining = -2
        this.#onResponse(this.#status)
        continue
      }
      // Chunked: each chunk is `size CRLF data CRLF`; the last has size 0 and no trailers here.
      const lineEnd = this.#buf.indexOf('\r\n')
      if (lineEnd < 0) return
      const size = Number.parseInt(this.#buf.toString('latin1', 0, lineEnd), 16)
      if (size === 0) {
        if (this.#buf.length < lineEnd + 4) return
        this.#buf = this.#buf.subarray(lineEnd + 4)
        this.#remaining = -2
        this.#onResponse(this.#status)
        continue
      }
      if (this.#buf.length < lineEnd + 2 + size + 2) return
      this.#buf = this.#buf.subarray(lineEnd + 2 + size + 2)
    }
  }
}
