import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import type { Host } from '../cluster/host.ts'
import type { PickContext } from '../balancer/types.ts'
import type { AttemptOutcome } from '../observability/metrics.ts'
import { statusClass } from '../observability/metrics.ts'
import type { ErrorCode } from './errors.ts'
import { ERROR_STATUS, sendError } from './errors.ts'
import { downstreamResponseHeaders } from './headers.ts'
import type { CompiledHeaderRewrite } from './header-rewrite.ts'
import { applyHeaderRewrite } from './header-rewrite.ts'
import type { PendingRequest } from '../policies/circuit-breaker.ts'
import { Admission } from '../policies/circuit-breaker.ts'
import type { ResponseTap, ServiceRuntime } from './service-runtime.ts'
import { ReplayBody } from './replay-body.ts'

/** Methods whose repetition the client has agreed to (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])

/** undici error codes that mean the upstream took too long. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** Circuit-breaker states of a request: none configured or not holding one, waiting, holding a slot. */
const SLOT_NONE = 0
const SLOT_PENDING = 1
const SLOT_HELD = 2
type SlotState = typeof SLOT_NONE | typeof SLOT_PENDING | typeof SLOT_HELD

/** What the access log records of one attempt. */
export interface AttemptRecord {
  endpoint: string
  outcome: AttemptOutcome
}

export interface ForwardOptions {
  /** Path (with query) to send upstream, already rewritten by the route. */
  path: string
  /** Upstream headers, already rewritten (see headers.ts). */
  headers: string[]
  /** Whether the request has a body to stream (Content-Length > 0 or Transfer-Encoding). */
  hasBody: boolean
  /** The request's Content-Length, or -1 when it has none (chunked, or no body). */
  contentLength: number
  /** Consistent-hash key hash, -1 when none. */
  hash: number
  /** The request's sticky-cookie value, or null (see PickContext). */
  stickyToken: string | null
  /** Access-log sink, or null when the access log is off (then no attempt list is kept). */
  accessLog: Logger | null
  /** The matched route's response header rewrite, or null. */
  responseHeaders: CompiledHeaderRewrite | null
  /** The response cache's view of this request; null when the service has no cache. */
  tap: ResponseTap | null
}

/** What node's writeHead refuses in a reason phrase (its checkInvalidHeaderChar). */
const UNWRITABLE_REASON = /[^\t\x20-\x7e\x80-\xff]/

/**
 * One request's trip through the proxy: pick, dispatch on the host's undici pool, stream the
 * response back, and on a retryable failure pick again with the tried hosts excluded.
 *
 * The exchange is itself the undici dispatch handler, so one object per request carries all state
 * and no closures are created per attempt.
 *
 * Retry rules (the contract's forwarding promises):
 * - The connection could not be made (undici never called `onRequestStart`): nothing was sent, so
 *   any method is retried at once on another endpoint.
 * - The request was sent but no response byte arrived: retried only for idempotent methods or with
 *   the idempotency-key header, and only when its body, if any, can be sent again: it was read
 *   whole within `retry.replayBodyLimit` while streaming to the first attempt (ReplayBody).
 * - Once the response started, never.
 * Every retry needs an attempt left in `retry.attempts`; a retry after sending also needs the
 * service's retry budget (a connect failure did no work anywhere, so moving it costs none).
 */
export class Exchange implements Dispatcher.DispatchHandler, PendingRequest {
  readonly #req: IncomingMessage
  readonly #res: ServerResponse
  readonly #service: ServiceRuntime
  readonly #options: ForwardOptions
  readonly #context: PickContext
  readonly #startNs: bigint
  readonly #attempts: AttemptRecord[] | null
  #host: Host | null = null
  #controller: Dispatcher.DispatchController | null = null
  /** True once undici started writing the current attempt's request. */
  #sent = false
  /** True once response headers went to the client (or to the tap). */
  #responded = false
  /**
   * The response head, held until its first body byte or its end: node's ServerResponse sends a head
   * only then anyway, so holding it costs nothing on the wire, and a response whose body breaks
   * before its first byte (a chunk size that is not hex, a reset, a timeout) still gets an answer
   * (502 or 504, not retried) rather than a cut. `#heldHeaders` is null once the head is written,
   * and when the tap took the response.
   */
  #heldStatus = 0
  #heldMessage: string | undefined = undefined
  #heldHeaders: string[] | null = null
  #clientGone = false
  #done = false
  #attempt = 0
  #status = 0
  /** Where this request stands with the service's circuit breaker (see SLOT_*). */
  #slot: SlotState = SLOT_NONE
  /** Status of an answer the tap wrote itself (a revalidated stored response); 0 when none. */
  #tapAnswered = 0
  /** The body, remembered for a replay; null for bodiless requests and those that can never be retried once sent. */
  #replay: ReplayBody | null = null

  constructor(req: IncomingMessage, res: ServerResponse, service: ServiceRuntime, options: ForwardOptions) {
    this.#req = req
    this.#res = res
    this.#service = service
    this.#options = options
    this.#context = { hash: options.hash, stickyToken: options.stickyToken, tried: null }
    this.#startNs = process.hrtime.bigint()
    this.#attempts = options.accessLog === null ? null : []
  }

  start(): void {
    const o = this.#options
    const retry = this.#service.config.retry
    if (o.hasBody && retry.attempts > 0 && retry.replayBodyLimitBytes > 0 && o.contentLength <= retry.replayBodyLimitBytes && this.#isIdempotent()) {
      this.#replay = new ReplayBody(this.#req, retry.replayBodyLimitBytes)
    }
    this.#service.inFlight++
    this.#service.retryBudget.onRequest(this.#service.inFlight)
    this.#service.metrics.inFlight.inc()
    this.#res.once('close', this.#onClientClose)
    // A cache hit is answered before the breaker: it takes no upstream slot.
    const tap = this.#options.tap
    if (tap !== null) {
      const status = tap.answer(this.#res)
      if (status !== 0) return this.#finish(status)
    }
    const breaker = this.#service.circuitBreaker
    if (breaker !== null) {
      const admission = breaker.acquire(this)
      if (admission === Admission.PENDING) {
        this.#slot = SLOT_PENDING
        return
      }
      if (admission === Admission.REJECTED) {
        this.#fail('overloaded')
        return
      }
      this.#slot = SLOT_HELD
    }
    this.#dispatch()
  }

  /** The circuit breaker handed this waiting request a slot. */
  onSlot(): void {
    this.#slot = SLOT_HELD
    this.#dispatch()
  }

  /** The circuit breaker gave up on this waiting request. */
  onPendingTimeout(): void {
    this.#slot = SLOT_NONE
    this.#fail('overloaded')
  }

  #dispatch(): void {
    const service = this.#service
    const host = service.cluster.picker.pick(this.#context)
    if (host === null) {
      this.#fail(this.#attempt === 0 && service.cluster.hosts().some((h) => h.routable) ? 'overloaded' : this.#lastErrorOr('no_healthy_endpoint'))
      return
    }
    this.#host = host
    this.#sent = false
    this.#controller = null
    host.acquire()
    // undici would take the TLS server name from each request's Host header and reconnect when it
    // changes; a constant per host keeps connections. The TLS connector applies `tls.servername`.
    const options: Dispatcher.DispatchOptions & { servername: string } = {
      path: this.#options.path,
      method: this.#req.method!,
      headers: this.#options.headers,
      // undici writes async-iterable bodies with back-pressure (core/request.js isIterable,
      // client-h1.js writeIterable) though its dispatch types name only streams and buffers.
      body: this.#replay !== null ? (this.#replay.next() as Buffer) : this.#options.hasBody ? this.#req : null,
      servername: host.address,
    }
    host.dispatcher.dispatch(options, this)
  }

  /** After a failed attempt the answer is that failure, not "no endpoint". */
  #lastError: ErrorCode | null = null
  #lastErrorOr(code: ErrorCode): ErrorCode {
    return this.#lastError ?? code
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    this.#sent = true
    if (this.#clientGone) controller.abort(new Error('client went away'))
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, _headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.#controller = controller
    this.#status = statusCode
    const res = this.#res
    const raw = (controller as Dispatcher.DispatchController & { rawHeaders?: Buffer[] }).rawHeaders ?? []
    const headers = downstreamResponseHeaders(raw)
    if (this.#options.responseHeaders !== null) applyHeaderRewrite(headers, this.#options.responseHeaders)
    const sticky = this.#service.stickyCookie
    // Pin the client to the host that answered: when it had no cookie, or its host failed over.
    if (sticky !== null && this.#host !== null && this.#host.stickyToken !== this.#options.stickyToken) {
      headers.push('set-cookie', `${sticky.name}=${this.#host.stickyToken}; ${sticky.attributes}`)
    }
    this.#responded = true
    // undici takes reason phrases node's writeHead throws on (a control byte, or UTF-8 it decoded
    // past latin1); a reason means nothing to HTTP (RFC 9110 §15), so such a one gives way to the
    // status code's own.
    const reason = statusMessage !== undefined && UNWRITABLE_REASON.test(statusMessage) ? undefined : statusMessage
    if (this.#options.tap !== null) {
      if ((this.#tapAnswered = this.#options.tap.onResponseStart(statusCode, headers, res)) !== 0) return
      res.writeHead(statusCode, reason, headers)
      return
    }
    this.#heldStatus = statusCode
    this.#heldMessage = reason
    this.#heldHeaders = headers
  }

  #writeHeldHead(): void {
    const headers = this.#heldHeaders!
    // Cleared first: should writeHead throw, undici reports it to onResponseError, which must see
    // a response already begun (a cut), not a head still held.
    this.#heldHeaders = null
    this.#res.writeHead(this.#heldStatus, this.#heldMessage, headers)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#tapAnswered !== 0) return
    if (this.#heldHeaders !== null) this.#writeHeldHead()
    this.#options.tap?.onResponseData(chunk)
    if (!this.#res.write(chunk)) {
      controller.pause()
      this.#res.once('drain', this.#onDrain)
    }
  }

  onResponseEnd(): void {
    if (this.#heldHeaders !== null) this.#writeHeldHead()
    if (this.#tapAnswered === 0) {
      this.#res.end()
      this.#options.tap?.onResponseEnd()
    }
    this.#endAttempt(statusClass(this.#status))
    this.#finish(this.#tapAnswered === 0 ? this.#status : this.#tapAnswered)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#done) return
    const code = (error as { code?: string }).code ?? ''
    if (this.#clientGone) {
      this.#endAttempt('aborted')
      this.#finish(499)
      return
    }
    // The body broke before its first byte: nothing reached the client, so it gets an answer (502,
    // or 504 for a timeout) rather than a cut. Not a retry: the upstream's response had begun,
    // and the contract retries only before any response byte.
    const headCame = this.#heldHeaders !== null
    if (headCame) {
      this.#heldHeaders = null
      this.#responded = false
      this.#status = 0
    }
    if (this.#responded) {
      // Bytes already reached the client: the only honest signal left is a cut response.
      this.#endAttempt(TIMEOUT_CODES.has(code) ? 'timeout' : 'reset')
      this.#res.destroy(error)
      this.#finish(502)
      return
    }
    const host = this.#host
    let outcome: AttemptOutcome
    let retryable: boolean
    if (!this.#sent || (host?.tls != null && host.tls.rejectedAtHandshake(error))) {
      outcome = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'timeout' : 'connect_failed'
      this.#lastError = 'upstream_connect_failed'
      retryable = true
    } else if (TIMEOUT_CODES.has(code)) {
      // The upstream may still be working on it; a retry would double its load. Answer 504.
      outcome = 'timeout'
      this.#lastError = 'upstream_timeout'
      retryable = false
    } else {
      outcome = 'reset'
      this.#lastError = 'upstream_reset'
      retryable = !headCame && (this.#options.hasBody ? this.#replay !== null && this.#replay.replayable : this.#isIdempotent())
    }
    this.#endAttempt(outcome)
    // A connect failure moves the request, it does not repeat it: no upstream did any work for it,
    // so it is not charged to the retry budget, which caps retries that send a request again.
    if (retryable && host !== null && this.#attempt < this.#service.config.retry.attempts && (!this.#sent || this.#service.retryBudget.tryRetry())) {
      this.#attempt++
      ;(this.#context.tried ??= []).push(host)
      this.#service.metrics.retries.inc()
      this.#dispatch()
      return
    }
    this.#fail(this.#lastError)
  }

  onRequestUpgrade(): void {
    // Plain requests never ask for an upgrade; upgrades go through UpgradeExchange.
  }

  #isIdempotent(): boolean {
    return IDEMPOTENT_METHODS.has(this.#req.method!) || this.#req.headers[this.#service.config.retry.idempotencyKeyHeader] !== undefined
  }

  #endAttempt(outcome: AttemptOutcome): void {
    const host = this.#host
    if (host === null) return
    host.release()
    this.#service.metrics.attempt(host, outcome)
    this.#service.outlier?.record(host, outcome, this.#status)
    this.#attempts?.push({ endpoint: host.key, outcome })
    this.#host = null
  }

  #fail(code: ErrorCode): void {
    try {
      sendError(this.#res, code, this.#service.name, this.#options.tap?.errorHeaders)
    } finally {
      // Counted and its slot freed whatever the write did (a throw here is undici's to swallow).
      this.#finish(ERROR_STATUS[code])
    }
  }

  #finish(status: number): void {
    if (this.#done) return
    this.#done = true
    const service = this.#service
    service.inFlight--
    service.metrics.inFlight.dec()
    service.metrics.request(status)
    const seconds = Number(process.hrtime.bigint() - this.#startNs) / 1e9
    service.metrics.duration.observe(seconds)
    if (this.#attempts !== null) {
      this.#options.accessLog!.info({
        service: service.name,
        method: this.#req.method,
        path: this.#req.url,
        status,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        attempts: this.#attempts,
      })
    }
    if (this.#slot === SLOT_HELD) {
      // Last: the slot may go straight to a waiting request, which dispatches from inside this call.
      this.#slot = SLOT_NONE
      service.circuitBreaker!.release()
    }
  }

  readonly #onDrain = (): void => {
    this.#controller?.resume()
  }

  readonly #onClientClose = (): void => {
    if (this.#res.writableFinished || this.#done) return
    this.#clientGone = true
    if (this.#slot === SLOT_PENDING) {
      // Never dispatched: leave the queue and count the request as abandoned by its client.
      this.#slot = SLOT_NONE
      this.#service.circuitBreaker!.cancel(this)
      this.#finish(499)
      return
    }
    if (this.#controller !== null) this.#controller.abort(new Error('client went away'))
  }
}
