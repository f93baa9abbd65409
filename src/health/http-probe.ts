import net from 'node:net'
import type { TlsDialer } from '../policies/tls.ts'

/**
 * A minimal HTTP/1.1 client for health probes: one kept-alive connection per checked endpoint, a
 * request prepared once, and a parser that reads only what a probe needs (the status, and enough
 * framing to skip the body). A thousand endpoints probed every second make a general client's
 * per-request machinery the bulk of the checker's CPU; this does a write, a few `indexOf`s and a
 * timer per probe.
 *
 * Bodies are framed by Content-Length, chunked encoding, or the connection's close. Anything the
 * parser does not understand fails the probe and drops the connection; the next probe reconnects.
 * Never pipelines: one probe at a time per connection. A TLS endpoint is probed over TLS with the
 * service's certificates (`tls`), as Envoy's health checks use the cluster's transport socket, so a
 * bad certificate fails the check as it would fail traffic.
 */
export class HttpProbe {
  readonly #host: string
  readonly #port: number
  readonly #request: Buffer
  readonly #tls: TlsDialer | null
  #socket: net.Socket | null = null
  #pending: Pending | null = null

  constructor(address: string, port: number, path: string, hostHeader: string, tls: TlsDialer | null = null) {
    this.#host = address
    this.#port = port
    this.#tls = tls
    this.#request = Buffer.from(`GET ${path} HTTP/1.1\r\nhost: ${hostHeader}\r\nuser-agent: outrigger-health-check\r\naccept: */*\r\n\r\n`, 'latin1')
  }

  /** One probe: null for a 2xx within `timeoutMs`, otherwise what went wrong. */
  probe(timeoutMs: number): Promise<string | null> {
    if (this.#pending !== null) return Promise.resolve('previous probe still running')
    return new Promise((resolve) => {
      const pending: Pending = { resolve, status: 0, buffer: '', state: 'head', remaining: 0, reused: false, timer: setTimeout(() => this.#finish(`timeout after ${timeoutMs} ms`, true), timeoutMs) }
      this.#pending = pending
      this.#send(pending)
    })
  }

  /** Writes the request on the kept-alive connection, or on a new one. */
  #send(pending: Pending): void {
    const socket = this.#socket
    if (socket !== null && !socket.destroyed) {
      pending.reused = true
      socket.write(this.#request)
      return
    }
    pending.reused = false
    const s = this.#tls === null ? net.connect({ host: this.#host, port: this.#port, noDelay: true }) : this.#tls.dial(this.#host, this.#port)
    s.setEncoding('latin1')
    this.#socket = s
    s.on('data', (chunk: string) => this.#onData(s, chunk))
    s.on('error', (err: NodeJS.ErrnoException) => this.#onClose(s, err.code ?? err.message))
    s.on('close', () => this.#onClose(s, 'connection closed'))
    s.once(this.#tls === null ? 'connect' : 'secureConnect', () => s.write(this.#request))
  }

  close(): void {
    this.#socket?.destroy()
    this.#socket = null
    if (this.#pending !== null) this.#finish('closed', false)
  }

  #onClose(socket: net.Socket, why: string): void {
    if (socket !== this.#socket) return
    this.#socket = null
    const p = this.#pending
    if (p === null) return
    // A body framed by the connection's end is complete when it closes.
    if (p.state === 'until-close') this.#finish(verdict(p.status), false)
    // A kept-alive connection the server closed as we wrote (its idle timeout): not the
    // endpoint's fault. Try once more on a fresh connection.
    else if (p.reused && p.state === 'head' && p.buffer === '') this.#send(p)
    else this.#finish(why, false)
  }

  #onData(socket: net.Socket, chunk: string): void {
    const p = this.#pending
    if (p === null || socket !== this.#socket) {
      socket.destroy() // bytes nobody asked for: the connection is out of step
      return
    }
    p.buffer += chunk
    for (;;) {
      if (p.state === 'head') {
        const end = p.buffer.indexOf('\r\n\r\n')
        if (end === -1) {
          if (p.buffer.length > 65_536) this.#finish('response head too large', true)
          return
        }
        const head = p.buffer.slice(0, end)
        p.buffer = p.buffer.slice(end + 4)
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)
        if (status === null) return this.#finish('not an HTTP/1.1 response', true)
        p.status = Number(status[1])
        const lower = head.toLowerCase()
        p.close = /\r\nconnection:[^\r]*\bclose\b/.test(lower)
        if (p.status === 204 || p.status === 304 || (p.status >= 100 && p.status < 200)) {
          if (p.status === 100) continue // 100 Continue: the real answer follows
          p.state = 'done'
        } else if (/\r\ntransfer-encoding:[^\r]*\bchunked\b/.test(lower)) {
          p.state = 'chunk-size'
        } else {
          const length = /\r\ncontent-length:\s*(\d+)/.exec(lower)
          if (length !== null) {
            p.remaining = Number(length[1])
            p.state = 'body'
          } else {
            p.state = 'until-close'
          }
        }
      }
      if (p.state === 'body') {
        if (!skipRemaining(p)) return
        p.state = 'done'
      }
      if (p.state === 'chunk-size') {
        const eol = p.buffer.indexOf('\r\n')
        if (eol === -1) return
        const size = Number.parseInt(p.buffer.slice(0, eol), 16)
        if (!Number.isFinite(size) || size < 0) return this.#finish('bad chunked encoding', true)
        p.buffer = p.buffer.slice(eol + 2)
        if (size === 0) {
          p.state = 'trailers'
        } else {
          p.remaining = size + 2 // the chunk and its CRLF
          p.state = 'chunk'
        }
        continue
      }
      if (p.state === 'chunk') {
        if (!skipRemaining(p)) return
        p.state = 'chunk-size'
        continue
      }
      if (p.state === 'trailers') {
        if (p.buffer.startsWith('\r\n')) {
          p.buffer = p.buffer.slice(2)
          p.state = 'done'
        } else {
          const end = p.buffer.indexOf('\r\n\r\n')
          if (end === -1) return
          p.buffer = p.buffer.slice(end + 4)
          p.state = 'done'
        }
      }
      if (p.state === 'until-close') {
        p.buffer = ''
        return
      }
      if (p.state === 'done') {
        // Leftover bytes mean the peer is out of step: do not reuse the connection.
        this.#finish(verdict(p.status), p.close === true || p.buffer.length > 0)
        return
      }
    }
  }

  #finish(result: string | null, dropConnection: boolean): void {
    const p = this.#pending
    if (p === null) return
    this.#pending = null
    clearTimeout(p.timer)
    if (dropConnection) {
      this.#socket?.destroy()
      this.#socket = null
    }
    p.resolve(result)
  }
}

interface Pending {
  resolve: (result: string | null) => void
  status: number
  buffer: string
  state: 'head' | 'body' | 'chunk-size' | 'chunk' | 'trailers' | 'until-close' | 'done'
  remaining: number
  /** Sent on a connection kept from an earlier probe (so a failure before any byte is retried once). */
  reused: boolean
  timer: NodeJS.Timeout
  close?: boolean
}

/** Drops up to `remaining` buffered body bytes; true once all of them have arrived. */
function skipRemaining(p: Pending): boolean {
  const take = Math.min(p.remaining, p.buffer.length)
  p.remaining -= take
  p.buffer = p.buffer.slice(take)
  return p.remaining === 0
}

function verdict(status: number): string | null {
  return status >= 200 && status < 300 ? null : `HTTP ${status}`
}
