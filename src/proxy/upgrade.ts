import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { PickContext } from '../balancer/types.ts'
import type { Host } from '../cluster/host.ts'
import { ERROR_STATUS, writeRawError } from './errors.ts'
import { downstreamResponseHeaders } from './headers.ts'
import type { ServiceRuntime } from './service-runtime.ts'

/**
 * An `Upgrade` request (WebSocket and friends): forwarded like any request, and when the upstream
 * answers 101 the two sockets are joined byte for byte. Connect failures are retried on another
 * endpoint like plain requests; nothing else is (the handshake may have had effects).
 */
export class UpgradeExchange implements Dispatcher.DispatchHandler {
  readonly #req: IncomingMessage
  readonly #socket: Duplex
  readonly #head: Buffer
  readonly #service: ServiceRuntime
  readonly #path: string
  readonly #headers: string[]
  readonly #protocol: string
  readonly #context: PickContext
  #host: Host | null = null
  #sent = false
  #attempt = 0
  #done = false
  #status = 0

  constructor(req: IncomingMessage, socket: Duplex, head: Buffer, service: ServiceRuntime, path: string, headers: string[], hash: number, stickyToken: string | null) {
    this.#req = req
    this.#socket = socket
    this.#head = head
    this.#service = service
    this.#path = path
    this.#headers = headers
    this.#protocol = req.headers.upgrade ?? 'websocket'
    this.#context = { hash, stickyToken, tried: null }
    socket.on('error', () => socket.destroy())
  }

  start(): void {
    this.#service.inFlight++
    this.#dispatch()
  }

  #dispatch(): void {
    const host = this.#service.cluster.picker.pick(this.#context)
    if (host === null) {
      this.#fail(this.#attempt === 0 ? 'no_healthy_endpoint' : 'upstream_connect_failed')
      return
    }
    this.#host = host
    this.#sent = false
    host.acquire()
    // undici writes `connection: upgrade` and `upgrade: <protocol>` itself and refuses them in headers.
    const options: Dispatcher.DispatchOptions & { servername: string } = { path: this.#path, method: this.#req.method!, headers: this.#headers, upgrade: this.#protocol, body: null, servername: host.address }
    host.dispatcher.dispatch(options, this)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#sent = true
    if (this.#socket.destroyed) controller.abort(new Error('client went away'))
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, upstream: Duplex): void {
    this.#status = statusCode
    this.#endAttempt()
    const client = this.#socket
    if (client.destroyed) {
      upstream.destroy()
      this.#finish()
      return
    }
    const raw = (controller as Dispatcher.DispatchController & { rawHeaders?: Buffer[] }).rawHeaders ?? []
    // The upstream's own Connection/Upgrade headers are hop-by-hop; write the pair for this hop.
    const headers = downstreamResponseHeaders(raw)
    let head = `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${this.#protocol}\r\n`
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`
    client.write(`${head}\r\n`)
    if (this.#head.length > 0) upstream.write(this.#head)
    const close = (): void => {
      client.destroy()
      upstream.destroy()
    }
    upstream.on('error', close)
    client.on('error', close)
    upstream.on('close', close)
    client.on('close', close)
    upstream.pipe(client)
    client.pipe(upstream)
    this.#finish()
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    // The upstream declined the upgrade and answered normally: relay the answer, then close.
    this.#status = statusCode
    const raw = (_controller as Dispatcher.DispatchController & { rawHeaders?: Buffer[] }).rawHeaders ?? []
    const headers = downstreamResponseHeaders(raw)
    let head = `HTTP/1.1 ${statusCode} ${statusMessage ?? ''}\r\n`
    for (let i = 0; i < headers.length; i += 2) {
      const lower = headers[i]!.toLowerCase()
      if (lower === 'content-length') continue
      head += `${headers[i]}: ${headers[i + 1]}\r\n`
    }
    this.#socket.write(`${head}connection: close\r\n\r\n`)
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#socket.write(chunk)
  }

  onResponseEnd(): void {
    this.#socket.end()
    this.#endAttempt()
    this.#finish()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#done) return
    const host = this.#host
    this.#endAttempt()
    if (this.#status !== 0) {
      this.#socket.destroy()
      this.#finish()
      return
    }
    if (!this.#sent && host !== null && this.#attempt < this.#service.config.retry.attempts && !this.#socket.destroyed) {
      this.#attempt++
      ;(this.#context.tried ??= []).push(host)
      this.#service.metrics.retries.inc()
      this.#dispatch()
      return
    }
    const code = (error as { code?: string }).code
    this.#fail(!this.#sent ? 'upstream_connect_failed' : code === 'UND_ERR_HEADERS_TIMEOUT' ? 'upstream_timeout' : 'upstream_reset')
  }

  #endAttempt(): void {
    if (this.#host !== null) {
      this.#host.release()
      this.#host = null
    }
  }

  #fail(code: 'no_healthy_endpoint' | 'upstream_connect_failed' | 'upstream_reset' | 'upstream_timeout'): void {
    writeRawError(this.#socket, ERROR_STATUS[code], code, this.#service.name)
    this.#status = ERROR_STATUS[code]
    this.#finish()
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#service.inFlight--
    this.#service.metrics.request(this.#status)
  }
}
