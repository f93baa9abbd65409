import http from 'node:http'
import net from 'node:net'
import type { Logger } from 'pino'
import type { Host } from '../../cluster/host.ts'
import type { PickContext } from '../../balancer/types.ts'
import type { AttemptOutcome } from '../../observability/metrics.ts'
import { statusClass } from '../../observability/metrics.ts'
import type { LimitsConfig } from '../../config/types.ts'
import type { ErrorCode } from '../errors.ts'
import { ERROR_STATUS, errorBody, REASON } from '../errors.ts'
import type { RequestHeaderMap } from '../headers.ts'
import { headerMap, upstreamRequestHeaders } from '../headers.ts'
import type { CompiledHeaderRewrite } from '../header-rewrite.ts'
import { applyHeaderRewrite } from '../header-rewrite.ts'
import type { ServiceRuntime } from '../service-runtime.ts'
import type { AttemptRecord } from '../forwarder.ts'
import { IDEMPOTENT_METHODS } from '../forwarder.ts'
import { hashString } from '../../balancer/hash.ts'
import { rawHeaderValue } from '../hash-key.ts'
import type { RequestHead, ResponseHead } from './http1.ts'
import { CHUNKED_ERROR, ChunkedScanner, Framing, HEAD_END, parseRequestHead, parseResponseHead, responseHeadLength, responseHeaders, statusLine, writeRequestHead, writeResponseHead } from './http1.ts'
import type { UpstreamConn, UpstreamUser } from './upstream.ts'
import { copyRead, recycleRead } from './read-copy.ts'
import { READ_BUFFER_BYTES, UpstreamPool } from './upstream.ts'
import { DirectWriter } from './direct-write.ts'

/** Where a request goes, as the listener resolves it (see ProxyListener.resolveFast). */
export interface FastRoute {
  service: ServiceRuntime
  /** Path and query to send upstream. */
  path: string
  requestHeaders: CompiledHeaderRewrite | null
  responseHeaders: CompiledHeaderRewrite | null
}

/** What the lane needs from the listener that owns it. */
export interface LaneOwner {
  /** Routes a parsed head; null for no route. Reads the header map (`headersOf`) only when a route needs it. */
  resolveFast(head: RequestHead): FastRoute | null
  readonly accessLog: Logger | null
  readonly limits: LimitsConfig
  readonly keepAliveTimeoutMs: number
  readonly draining: boolean
  requestStarted(): void
  requestEnded(): void
  /** Gives the connection to node's HTTP server, with the bytes read and not yet used. */
  handoff(socket: net.Socket, pending: Buffer | null): void
}

/** Response heads beyond node's header size limit (16 KiB unless --max-http-header-size) are a 502, as undici's. */
const MAX_RESPONSE_HEAD_BYTES = http.maxHeaderSize
/** Request bodies up to this size that came with their head are copied behind it; larger ones go out beside it in one writev. */
const REQUEST_COALESCE_BYTES = 1024
/** Response bodies up to this size are copied behind their head, so both leave in one write. */
const COALESCE_BYTES = 16 * 1024
const EMPTY = Buffer.alloc(0)
/** Client bytes buffered beyond the request in progress (pipelining) before reading pauses. */
const MAX_PENDING_BYTES = 64 * 1024

const TIMEOUT_408 = 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'

/**
 * net's own hooks for reading a socket into a buffer of ours: the three symbols behind the public
 * `onread` option, and the handle's `useUserBuffer`. Node offers `onread` for sockets it connects,
 * not for those a server accepts, so the lane sets them on each accepted socket itself, as net's
 * constructor would have. null when this Node lacks them: the lane then reads by 'data' events.
 *
 * Why: a 'data' read costs an ArrayBuffer with its own malloc'd backing store, which V8 frees in the
 * next scavenge's pause (a third of it at half the max rate, `--trace-gc-nvp`'s
 * scavenge.sweep_array_buffers), and a trip through the Readable (push, 'data', a nextTick for
 * maybeReadMore). Read into one shared buffer, each read is copied out at its size, from node's
 * Buffer pool when small (docs/architecture.md, "The fast lane").
 */
interface UserReadHooks {
  readonly kBuffer: symbol
  readonly kBufferCb: symbol
  readonly kBufferGen: symbol
}

function findUserReadHooks(): UserReadHooks | null {
  const buffer = Buffer.alloc(1)
  const callback = (): boolean => true
  const probe = new net.Socket({ onread: { buffer, callback } }) as unknown as Record<symbol, unknown>
  let kBuffer: symbol | undefined
  let kBufferCb: symbol | undefined
  let kBufferGen: symbol | undefined
  for (const s of Object.getOwnPropertySymbols(probe)) {
    if (s.description === 'kBuffer' && probe[s] === buffer) kBuffer = s
    else if (s.description === 'kBufferCb' && probe[s] === callback) kBufferCb = s
    else if (s.description === 'kBufferGen' && probe[s] === null) kBufferGen = s
  }
  ;(probe as unknown as net.Socket).destroy()
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return null
  return { kBuffer, kBufferCb, kBufferGen }
}

/** null: read accepted sockets by 'data' events (`OUTRIGGER_CLIENT_READS=stream` forces it, for comparison). */
export const USER_READS: UserReadHooks | null = process.env.OUTRIGGER_CLIENT_READS === 'stream' ? null : findUserReadHooks()

/** Where every client connection's reads land; each read is copied out before the callback returns. */
const CLIENT_READ_BUFFER = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)

/** Reads `socket` into CLIENT_READ_BUFFER with `callback`; false when its handle cannot (then use 'data'). */
function readIntoShared(socket: net.Socket, callback: (nread: number, buffer: Buffer) => boolean): boolean {
  const hooks = USER_READS
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Uint8Array) => void } | null })._handle
  if (hooks === null || handle == null || typeof handle.useUserBuffer !== 'function') return false
  const slots = socket as unknown as Record<symbol, unknown>
  if (slots[hooks.kBuffer] !== null) return false
  slots[hooks.kBuffer] = CLIENT_READ_BUFFER
  slots[hooks.kBufferGen] = null
  slots[hooks.kBufferCb] = callback
  handle.useUserBuffer(CLIENT_READ_BUFFER)
  return true
}

// Client connection states.
const IDLE = 0 // between requests, nothing buffered
const HEAD = 1 // part of a request head received
const BUSY = 2 // a request is being forwarded
const GONE = 3 // closed, or handed to node

/**
 * The fast lane: HTTP/1.1 proxying on raw sockets for the requests that need nothing more, about
 * twice node:http + undici's throughput (bench/README.md). Each client connection starts here; a
 * request head outside the narrow subset http1.ts accepts (an upgrade, a chunked body, HTTP/1.0,
 * absolute-form, a malformed or oversized head), or one for a service with a response cache, a
 * circuit breaker or upstream TLS, hands the connection, with the bytes read so far, to node's
 * HTTP server and the full path (listener.ts, forwarder.ts) for the rest of its life. The lane
 * forwards at request boundaries only, so the handoff never splits a message.
 *
 * Why: node:http + undici spend most of a small request in objects (IncomingMessage,
 * ServerResponse, undici's Request, header maps) and in a write per piece. The lane parses heads
 * with a few string scans, writes each head with its body in one write, keeps no per-request timer
 * (one sweep per second checks every connection's deadlines), and frames bodies by counting.
 */
export class FastLane {
  readonly owner: LaneOwner
  readonly #conns = new Set<ClientConn>()
  #sweep: NodeJS.Timeout | null = null

  constructor(owner: LaneOwner) {
    this.owner = owner
  }

  readonly accept = (socket: net.Socket): void => {
    const conn = new ClientConn(this, socket)
    this.#conns.add(conn)
    if (this.#sweep === null) this.#startSweep()
  }

  forget(conn: ClientConn): void {
    this.#conns.delete(conn)
  }

  get connections(): number {
    return this.#conns.size
  }

  /** Closes idle connections now; busy ones close after their response (which says so). */
  drain(): void {
    for (const conn of this.#conns) conn.closeIfIdle()
  }

  closeAll(): void {
    for (const conn of this.#conns) conn.socket.destroy()
    this.#conns.clear()
    if (this.#sweep !== null) clearInterval(this.#sweep)
    this.#sweep = null
  }

  #startSweep(): void {
    const limits = this.owner.limits
    const every = Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)))
    this.#sweep = setInterval(this.#check, every)
    this.#sweep.unref()
  }

  /** Enforces every connection's deadlines: head (slowloris), whole request, keep-alive idle. */
  readonly #check = (): void => {
    if (this.#conns.size === 0) {
      clearInterval(this.#sweep!)
      this.#sweep = null
      return
    }
    const now = Date.now()
    const limits = this.owner.limits
    const keepAlive = this.owner.keepAliveTimeoutMs
    for (const conn of this.#conns) conn.checkDeadlines(now, limits, keepAlive)
  }
}

/** One client connection on the fast lane. */
export class ClientConn {
  readonly socket: net.Socket
  readonly lane: FastLane
  /** `::ffff:`-less remote address, read once. */
  readonly clientAddress: string
  state: number = IDLE
  /** Bytes read and not yet used: part of a head, or pipelined requests. */
  #pending: Buffer | null = null
  /** How many of `#pending`'s bytes were searched for a head's end without finding one (#next). */
  #headScanned = 0
  /** The buffer a head read in pieces is gathered in (#grow); null once the head is found. */
  #room: Buffer | null = null
  exchange: FastExchange | null = null
  /** When the current head started arriving / the current request started / the connection went idle. */
  #headStartMs = 0
  requestStartMs = 0
  #idleSinceMs: number
  /** Close once the current response is written (client asked, draining, or the framing needs it). */
  closeAfter = false
  #paused = false
  /** Turns of the loop left before a pipelined request starts (0: none queued); see exchangeDone. */
  #nextTurns = 0
  /** forwardedTail's last answer, and the Host it was for (a connection's requests mostly share one). */
  #tail: Buffer | null = null
  #tailHost = ''
  /** Reads land in the shared buffer (readIntoShared), not in 'data' events. */
  readonly #userReads: boolean
  /** Given to node's HTTP server (reads after that are pushed to its side). */
  #handedOff = false
  /** The lane's Buffer writes to the client (straight to the handle when it can). */
  readonly writer: DirectWriter

  constructor(lane: FastLane, socket: net.Socket) {
    this.lane = lane
    this.socket = socket
    const remote = socket.remoteAddress
    this.clientAddress = remote === undefined ? 'unknown' : remote.startsWith('::ffff:') ? remote.slice(7) : remote
    this.#idleSinceMs = Date.now()
    this.writer = new DirectWriter(socket, this.#onDrain)
    this.#userReads = readIntoShared(socket, this.#onRead)
    if (!this.#userReads) socket.on('data', this.#onData)
    socket.on('error', noop)
    socket.on('close', this.#onClose)
    socket.on('drain', this.#onDrain)
    socket.on('end', this.#onEnd)
  }

  /**
   * The lines the proxy adds to a request it forwards, and the blank line: X-Forwarded-For (the
   * client's own list, if it sent one, then this client), X-Forwarded-Proto and X-Forwarded-Host.
   * Made once per connection and Host, unless the client sent an X-Forwarded-For.
   */
  forwardedTail(head: RequestHead): Buffer {
    if (head.forwardedFor !== '') return forwardedLines(`${head.forwardedFor}, ${this.clientAddress}`, head.host)
    if (this.#tail === null || this.#tailHost !== head.host) {
      this.#tail = forwardedLines(this.clientAddress, head.host)
      this.#tailHost = head.host
    }
    return this.#tail
  }

  closeIfIdle(): void {
    if (this.state === IDLE || this.state === HEAD) this.socket.destroy()
    else this.closeAfter = true
  }

  checkDeadlines(now: number, limits: LimitsConfig, keepAliveMs: number): void {
    switch (this.state) {
      case IDLE:
        if (now - this.#idleSinceMs > keepAliveMs) this.socket.destroy()
        return
      case HEAD:
        if (now - this.#headStartMs > limits.headersTimeoutMs) this.#timeout408()
        return
      case BUSY: {
        const ex = this.exchange
        // Only while the client still owes request bytes; the response has its own timeouts.
        if (ex !== null && ex.bodyRemaining > 0 && now - this.requestStartMs > limits.requestTimeoutMs) {
          if (ex.responded) this.socket.destroy()
          else this.#timeout408()
        }
      }
    }
  }

  #timeout408(): void {
    if (!this.socket.destroyed) this.socket.end(TIMEOUT_408)
    this.socket.destroySoon()
  }

  /**
   * A read into the shared buffer: its bytes are copied out at their size, so nothing the lane keeps
   * (pending bytes, a request's raw head, body chunks held for a replay or a slow write) points
   * into it. After a handoff the copy goes to node's side as net would have pushed it.
   */
  readonly #onRead = (nread: number, buffer: Buffer): boolean => {
    if (this.state === GONE && !this.#handedOff) return true
    const chunk = copyRead(buffer, nread)
    // false stops reading until node's side reads again (net's _read starts it), as for a push of net's own.
    if (this.#handedOff) return this.socket.push(chunk)
    this.#onData(chunk)
    return true // reading stops by socket.pause(), as for a 'data' listener
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.state === BUSY) {
      const ex = this.exchange!
      if (ex.bodyRemaining > 0) {
        const used = ex.onClientBody(chunk)
        if (used === chunk.length) return
        chunk = chunk.subarray(used)
      }
      this.#pending = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk])
      if (this.#pending.length > MAX_PENDING_BYTES && !this.#paused) {
        this.#paused = true
        this.socket.pause()
      }
      return
    }
    if (this.state === GONE) return
    this.#pending = this.#pending === null ? chunk : this.#grow(this.#pending, chunk)
    this.#next()
  }

  /**
   * `pending` (a head not yet whole) then `chunk`: in the room behind `pending` when it is the start
   * of a buffer of ours with room left, else in a new one twice the size. A head that comes a few
   * bytes a read is then copied about twice in all, not once per read.
   */
  #grow(pending: Buffer, chunk: Buffer): Buffer {
    const length = pending.length + chunk.length
    const room = this.#room
    // Only `pending` views this buffer's bytes up to its length, and nothing views those after it:
    // what the lane hands on (a request's raw head) is cut from a `pending`, and the room is dropped
    // as soon as a head is found.
    if (room !== null && pending.buffer === room.buffer && pending.byteOffset === room.byteOffset && length <= room.length) {
      chunk.copy(room, pending.length)
      return room.subarray(0, length)
    }
    const grown = Buffer.allocUnsafe(Math.max(2 * length, 4096))
    pending.copy(grown, 0)
    chunk.copy(grown, pending.length)
    this.#room = grown
    return grown.subarray(0, length)
  }

  /** Whether bytes the connection keeps (pending, or the room they grow in) are views of `memory`. */
  holds(memory: ArrayBufferLike): boolean {
    return (this.#pending !== null && this.#pending.buffer === memory) || (this.#room !== null && this.#room.buffer === memory)
  }

  /** Starts the next request from the buffered bytes, if a whole head is there. */
  #next(): void {
    const pending = this.#pending
    if (pending === null) return
    const maxHead = this.lane.owner.limits.maxHeaderSizeBytes
    // Only the bytes not searched yet (and the three before them, for an end split across reads):
    // a head that comes a few bytes a read must cost what it would in one, not a search per read.
    const scanned = this.#headScanned
    const end = pending.indexOf(HEAD_END, scanned > 3 ? scanned - 3 : 0)
    if (end === -1) {
      // Too long, or bytes node refuses at once (a bare LF, which would never give a CRLFCRLF, a
      // bare CR, a control byte): node's to answer, now rather than at the headers timeout.
      if (pending.length > maxHead || hasRefusedByte(pending, scanned, pending.length)) return this.#handoff()
      this.#headScanned = pending.length
      if (this.state === IDLE) {
        this.state = HEAD
        this.#headStartMs = Date.now()
      }
      return
    }
    const headLength = end + 4
    if (headLength > maxHead) return this.#handoff()
    const head = parseRequestHead(pending.toString('latin1', 0, headLength))
    if (head === null) return this.#handoff()
    const owner = this.lane.owner
    const route = owner.resolveFast(head)
    if (route !== null && !fastEligible(route.service)) return this.#handoff()
    // From here the request is the lane's.
    const bodyInBuffer = Math.min(head.contentLength, pending.length - headLength)
    const used = headLength + bodyInBuffer
    this.#pending = used === pending.length ? null : pending.subarray(used)
    this.#headScanned = 0
    this.#room = null
    this.state = BUSY
    this.requestStartMs = Date.now()
    if (head.close || owner.draining) this.closeAfter = true
    owner.requestStarted()
    const ex = new FastExchange(this, head, route, used === pending.length ? pending : pending.subarray(0, used), headLength)
    this.exchange = ex
    ex.start()
  }

  #handoff(): void {
    const pending = this.#pending
    this.#pending = null
    this.#room = null
    this.state = GONE
    this.lane.forget(this)
    const socket = this.socket
    if (this.#userReads) this.#handedOff = true
    else socket.off('data', this.#onData)
    socket.off('error', noop)
    socket.off('close', this.#onClose)
    socket.off('drain', this.#onDrain)
    socket.off('end', this.#onEnd)
    if (this.#paused) socket.resume()
    this.lane.owner.handoff(socket, pending)
  }

  /** A request the lane took turns out to need the full path (a TLS endpoint): only before anything was sent. */
  handBack(raw: Buffer): void {
    this.exchange = null
    this.lane.owner.requestEnded()
    this.#pending = this.#pending === null ? raw : Buffer.concat([raw, this.#pending])
    this.#headScanned = 0
    this.#room = null
    this.#handoff()
  }

  /** Writes to the client; false when its buffer is full (then wait for onClientDrain). */
  write(data: Buffer | string): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.writer.write(data)
  }

  /** The exchange is over: the response was written whole (or the connection is being cut). */
  exchangeDone(): void {
    this.exchange = null
    this.lane.owner.requestEnded()
    if (this.state === GONE) return
    if (this.closeAfter || this.lane.owner.draining) {
      this.state = GONE
      this.socket.end()
      return
    }
    this.state = IDLE
    this.#idleSinceMs = Date.now()
    if (this.#paused) {
      this.#paused = false
      this.socket.resume()
    }
    // A pipelined request starts two turns of the loop later, never under this call: a run of
    // requests the lane answers itself (404 no_route, 429) would otherwise nest a call deeper each,
    // to a stack overflow that ends the process. Two turns, not one, because an upstream that closes
    // after a response without saying so has its FIN right behind the bytes just read, and libuv
    // reads that FIN in the next poll phase, after this turn's immediates: started at once, a
    // pipelined POST would take the dying connection from the pool, be reset, and (not idempotent)
    // get a 502. After the next poll the connection has left the pool. Only pipelined bytes wait.
    if (this.#pending !== null && this.#nextTurns === 0) {
      this.#nextTurns = 2
      setImmediate(this.#nextLater)
    }
  }

  readonly #nextLater = (): void => {
    if (--this.#nextTurns > 0) {
      setImmediate(this.#nextLater) // runs in the next turn's check phase, after its poll
      return
    }
    // A read since may have started it already (then the state is no longer IDLE).
    if (this.state === IDLE && this.#pending !== null) this.#next()
  }

  readonly #onDrain = (): void => {
    this.exchange?.onClientDrain()
  }

  /**
   * The client half-closed. The server socket allows half-open connections (node's HTTP server
   * needs them), so end our side too; a request in progress is abandoned, as node:http does.
   */
  readonly #onEnd = (): void => {
    this.#onClose()
    this.socket.end()
  }

  /** The client is gone (closed, or half-closed): a request in progress is abandoned. */
  readonly #onClose = (): void => {
    const previous = this.state
    this.state = GONE
    this.lane.forget(this)
    if (previous === BUSY) this.exchange?.onClientGone()
  }
}

function noop(): void {}

/** X-Forwarded-For `forwardedFor`, X-Forwarded-Proto http, X-Forwarded-Host `host`, then the blank line. */
function forwardedLines(forwardedFor: string, host: string): Buffer {
  return Buffer.from(`x-forwarded-for: ${forwardedFor}\r\nx-forwarded-proto: http\r\nx-forwarded-host: ${host}\r\n\r\n`, 'latin1')
}

/**
 * A byte of an unfinished head, from `from` on, that node's parser refuses wherever it stands: a LF
 * not after a CR, a CR not before a LF (a CR that is the last byte yet is judged when the next read
 * comes: `from` then starts one before it), a control byte other than tab, or DEL; up to `end`.
 * The byte before `from` is still read, unless the head starts at `from` (`headStart`: the bytes
 * before it, such as the empty lines skipped before a status line, are not the head's). Only heads
 * that take more than one read, or are malformed, come here. llhttp refuses the same bytes in a
 * response head, so the upstream side asks this too.
 */
function hasRefusedByte(buf: Buffer, from: number, end: number, headStart = 0): boolean {
  const start = from > headStart && buf[from - 1] === 13 ? from - 1 : from
  for (let i = start; i < end; i++) {
    const c = buf[i]!
    if (c >= 32 && c !== 127) continue
    if (c === 9) continue
    if (c === 10 && i > headStart && buf[i - 1] === 13) continue
    if (c === 13 && (i + 1 === end || buf[i + 1] === 10)) continue
    return true
  }
  return false
}

/** The lane's share of the contract: services without a cache, a circuit breaker or TLS to the upstream. */
function fastEligible(service: ServiceRuntime): boolean {
  return service.cache === null && service.circuitBreaker === null && service.config.tls === undefined
}

let mappedHead: RequestHead | null = null
let mappedHeaders: RequestHeaderMap = {}

/**
 * `head`'s header map (see headerMap), built at most once per request: routing and the hash key
 * both read it, synchronously, for the same head, so remembering the last one is enough.
 */
export function headersOf(head: RequestHead): RequestHeaderMap {
  if (mappedHead !== head) {
    mappedHeaders = headerMap(head.headers)
    mappedHead = head
  }
  return mappedHeaders
}

/** A message head: the start line, `name: value` lines, `extra` (whole lines) and the blank line. */
function serialize(startLine: string, headers: readonly string[], extra = ''): string {
  let s = `${startLine}\r\n`
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`
  return `${s}${extra}\r\n`
}

/**
 * One request on the fast lane: the same promises as forwarder.ts's Exchange (pick, retry at once
 * after a connect failure, retry idempotent requests whose body we still hold after a reset before
 * any response byte, never once the response started; the retry budget; metrics and the access
 * log), on raw sockets.
 */
export class FastExchange implements UpstreamUser, PickContext {
  readonly #client: ClientConn
  readonly #head: RequestHead
  readonly #route: FastRoute | null
  /** The request as received so far: its head and the body bytes that came with it. */
  #raw: Buffer
  readonly #headLength: number
  readonly #startMs: number
  /** Request body bytes the client has yet to send. */
  bodyRemaining: number
  /** Body bytes after those in `#raw`, kept for a replay (null when it cannot be replayed). */
  #bodyChunks: Buffer[] | null = null
  /** Body bytes received while no attempt had sent the request yet. */
  #unsent: Buffer[] | null = null
  /** Some attempt sent the request (so a retry must replay the whole body). */
  #everSent = false
  #upstreamHead: Buffer = EMPTY
  // PickContext, for the picker: the exchange is its own context (one object fewer per request).
  hash = -1
  stickyToken: string | null = null
  tried: Host[] | null = null
  #host: Host | null = null
  #conn: UpstreamConn | null = null
  #attempt = 0
  #sent = false
  /** Bytes of the response went to the client. */
  responded = false
  #done = false
  #status = 0
  #lastError: ErrorCode | null = null
  #attempts: AttemptRecord[] | null = null
  // Response parsing.
  #respHead: ResponseHead | null = null
  #headBuf: Buffer | null = null
  #remaining = 0
  #chunked: ChunkedScanner | null = null
  /** The upstream connection can serve another request after this one. */
  #reusable = true
  #upstreamPaused = false
  #clientPaused = false

  constructor(client: ClientConn, head: RequestHead, route: FastRoute | null, raw: Buffer, headLength: number) {
    this.#client = client
    this.#head = head
    this.#route = route
    this.#raw = raw
    this.#headLength = headLength
    this.#startMs = performance.now()
    this.bodyRemaining = head.contentLength - (raw.length - headLength)
  }

  start(): void {
    const route = this.#route
    if (route === null) {
      this.#answerError('no_route', null, '')
      return
    }
    const service = route.service
    if (service.rateLimit !== null) {
      const retryAfter = service.rateLimit.take()
      if (retryAfter !== 0) {
        this.#answerError('rate_limited', service, `retry-after: ${retryAfter}\r\n`)
        return
      }
    }
    const head = this.#head
    const client = this.#client
    if (route.requestHeaders === null) {
      // The usual case: the received bytes less the dropped lines, then the proxy's own lines.
      this.#upstreamHead = writeRequestHead(head, this.#raw, route.path, client.forwardedTail(head))
    } else {
      const headers = upstreamRequestHeaders(head.headers, client.clientAddress, 'http', null).headers
      applyHeaderRewrite(headers, route.requestHeaders)
      this.#upstreamHead = Buffer.from(serialize(`${head.method} ${route.path} HTTP/1.1`, headers), 'latin1')
    }
    const hashKey = service.hashKey
    if (hashKey !== null) {
      const key = hashKey.headerName !== null ? rawHeaderValue(head.headers, hashKey.headerName) : hashKey(headersOf(head), route.path, client.clientAddress)
      if (key !== null && key !== '') {
        this.hash = hashString(key)
        if (service.stickyCookie !== null) this.stickyToken = key
      }
    }
    const retry = service.config.retry
    if (head.contentLength > 0 && retry.attempts > 0 && head.contentLength <= retry.replayBodyLimitBytes && this.#isIdempotent(service)) this.#bodyChunks = []
    if (this.#client.lane.owner.accessLog !== null) this.#attempts = []
    service.inFlight++
    service.retryBudget.onRequest(service.inFlight)
    service.metrics.inFlight.inc()
    this.#dispatch()
  }

  #isIdempotent(service: ServiceRuntime): boolean {
    if (IDEMPOTENT_METHODS.has(this.#head.method)) return true
    return rawHeaderValue(this.#head.headers, service.config.retry.idempotencyKeyHeader) !== null
  }

  #dispatch(): void {
    const service = this.#route!.service
    const host = service.cluster.picker.pick(this)
    if (host === null) {
      const code: ErrorCode = this.#lastError ?? (this.#attempt === 0 && service.cluster.hosts().some((h) => h.routable) ? 'overloaded' : 'no_healthy_endpoint')
      this.#fail(code)
      return
    }
    if (host.tls !== null) {
      // An endpoint discovery marked `scheme: https`: the full path speaks TLS. Nothing was sent yet.
      if (this.#attempt === 0) {
        service.inFlight--
        service.metrics.inFlight.dec()
        this.#done = true
        this.#client.handBack(this.#raw)
        return
      }
      this.#fail(this.#lastError ?? 'upstream_connect_failed')
      return
    }
    this.#host = host
    this.#sent = false
    host.acquire()
    const pool = (host.fastPool ??= new UpstreamPool(host.address, host.port, service.config.timeouts))
    const conn = pool.acquire(this)
    this.#conn = conn
    if (conn.connected) this.#send(conn)
  }

  onUpstreamConnect(conn: UpstreamConn): void {
    if (conn === this.#conn) this.#send(conn)
  }

  #send(conn: UpstreamConn): void {
    const head = this.#upstreamHead
    const raw = this.#raw
    const bodyInRaw = raw.length - this.#headLength
    // After an attempt that sent the request, a replay sends the whole body kept; otherwise what
    // arrived while connecting (nothing of it was sent anywhere).
    const later = this.#everSent ? this.#bodyChunks : this.#unsent
    this.#sent = true
    this.#everSent = true
    this.#unsent = null
    const socket = conn.socket
    conn.activity++
    let ok: boolean
    if (later !== null && later.length > 0) {
      socket.cork()
      socket.write(head)
      if (bodyInRaw > 0) socket.write(raw.subarray(this.#headLength))
      for (let i = 0; i < later.length - 1; i++) socket.write(later[i]!)
      ok = socket.write(later[later.length - 1]!)
      socket.uncork()
    } else if (bodyInRaw === 0) {
      ok = conn.writer.write(head)
    } else if (bodyInRaw > REQUEST_COALESCE_BYTES) {
      // `raw` is ours (a copy of the read): written beside the head, not copied again.
      ok = conn.writer.write2(head, raw.subarray(this.#headLength))
      if (conn.writer.taken) this.#releaseRaw()
    } else {
      const out = Buffer.allocUnsafe(head.length + bodyInRaw)
      head.copy(out, 0)
      raw.copy(out, head.length, this.#headLength)
      ok = conn.writer.write(out)
      this.#releaseRaw()
    }
    if (!ok && this.bodyRemaining > 0) this.#pauseClient()
  }

  /**
   * The request's bytes have gone (or been copied) whole: if it can never be sent again (a body
   * not kept for a replay; a request without a body is not released, see below) and the client
   * keeps no view of them, the read's copy serves the next large read (read-copy.ts). `#raw` is
   * emptied, so nothing can read those bytes after that. A request without a body may be retried
   * after it was sent, from `#raw`'s head: it keeps them.
   */
  #releaseRaw(): void {
    if (this.#head.contentLength === 0 || !this.#release(this.#raw)) return
    this.#raw = EMPTY
  }

  /**
   * `chunk` was written whole or copied: unless the body is kept for a replay or the client keeps a
   * view of its memory, that memory serves the next large read (read-copy.ts). True when given back.
   */
  #release(chunk: Buffer): boolean {
    if (this.#bodyChunks !== null || this.#client.holds(chunk.buffer)) return false
    recycleRead(chunk)
    return true
  }

  /** Request body bytes from the client; returns how many belong to this request. */
  onClientBody(chunk: Buffer): number {
    const take = Math.min(chunk.length, this.bodyRemaining)
    const part = take === chunk.length ? chunk : chunk.subarray(0, take)
    this.bodyRemaining -= take
    if (this.#done) return take
    if (this.#bodyChunks !== null) this.#bodyChunks.push(part)
    const conn = this.#conn
    if (conn !== null && this.#sent) {
      if (!conn.write(part)) this.#pauseClient()
      // Taken whole, and all of the chunk (none of it left for the client's pending bytes).
      else if (conn.writer.taken && take === chunk.length) this.#release(chunk)
    } else {
      // Connecting (or between attempts): sent once a connection is up.
      ;(this.#unsent ??= []).push(part)
    }
    return take
  }

  #pauseClient(): void {
    if (this.#clientPaused) return
    this.#clientPaused = true
    this.#client.socket.pause()
  }

  onUpstreamDrain(): void {
    if (this.#clientPaused) {
      this.#clientPaused = false
      this.#client.socket.resume()
    }
  }

  onClientDrain(): void {
    if (this.#upstreamPaused) {
      this.#upstreamPaused = false
      this.#conn?.socket.resume()
    }
  }

  onUpstreamData(conn: UpstreamConn, chunk: Buffer, length: number): void {
    if (conn !== this.#conn || this.#done) return
    let start = 0
    if (this.#respHead === null) {
      let buf = chunk
      let bufEnd = length
      // Bytes of this head already checked for refused ones (those held from earlier reads).
      let checked = 0
      if (this.#headBuf !== null) {
        checked = this.#headBuf.length
        buf = Buffer.concat([this.#headBuf, chunk.subarray(0, length)])
        bufEnd = buf.length
      }
      for (;;) {
        // Empty lines before a status line are skipped, as llhttp does (none are held: a held head
        // has begun).
        if (start >= checked) while (start < bufEnd && (buf[start] === 13 || buf[start] === 10)) start++
        // `buf` may run past its bytes (the read buffer, stale beyond `bufEnd`): a match must end inside.
        let end = buf.indexOf(HEAD_END, start)
        if (end + 4 > bufEnd) end = -1
        if (end === -1) {
          // Too long, or bytes llhttp refuses (a bare LF, which would never give a CRLFCRLF, a bare
          // CR, a control byte): a malformed response now, as the slow path has it, not a 504 later.
          if (bufEnd - start > MAX_RESPONSE_HEAD_BYTES || hasRefusedByte(buf, Math.max(start, checked), bufEnd, start)) return this.#upstreamFailed('reset')
          // A read that does not finish the head does not restart the wait for it, which runs from
          // the request's last write, as undici's headersTimeout does: a head that trickles in (or
          // empty lines before it, which are never held) cannot hold the request past the timeout.
          conn.uncountRead()
          // `chunk` is the connection's read buffer: what is kept must be a copy.
          if (start < bufEnd) this.#headBuf = buf === chunk ? Buffer.from(chunk.subarray(start, bufEnd)) : buf.subarray(start)
          else this.#headBuf = null
          return
        }
        if (end - start > MAX_RESPONSE_HEAD_BYTES) return this.#upstreamFailed('reset')
        const head = parseResponseHead(buf.toString('latin1', start, end + 4), this.#head.method === 'HEAD')
        if (head === null || head.status === 101) return this.#upstreamFailed('reset')
        if (head.status < 200) {
          // 1xx (103 Early Hints...): passed to the client as is; the real response follows.
          this.responded = true
          this.#forward(null, buf.subarray(start, end + 4))
          start = end + 4
          continue
        }
        this.#headBuf = null
        this.#respHead = head
        start = end + 4
        this.#startResponse(head, buf, start, bufEnd)
        return
      }
    }
    this.#body(chunk, 0, length)
  }

  /** The response head is in; `buf` holds its body's first bytes from `bodyStart` to `bufEnd`. */
  #startResponse(head: ResponseHead, buf: Buffer, bodyStart: number, bufEnd: number): void {
    const conn = this.#conn!
    this.#status = head.status
    const respondedBefore = this.responded // true only after a 1xx passed to the client
    this.responded = true
    if (head.close) this.#reusable = false
    const client = this.#client
    if (this.bodyRemaining > 0) {
      // Answered before the whole request body came: neither connection can carry another request.
      // The upstream's is closed after the response; so is the client's (`connection: close`, as
      // Envoy does), or the rest of the body, arriving after the response, would be read as the
      // connection's next request, a request the client never made.
      this.#reusable = false
      client.closeAfter = true
    }
    if (head.framing !== Framing.NONE) conn.arm(conn.pool.timeouts.idleMs) // between body chunks
    if (head.framing === Framing.CLOSE) client.closeAfter = true
    const route = this.#route!
    const service = route.service
    const sticky = service.stickyCookie
    const host = this.#host!
    // Field lines the lane adds; the upstream's own ones (less the hop-by-hop) pass as received.
    let extra = ''
    if (sticky !== null && host.stickyToken !== this.stickyToken) extra += `set-cookie: ${sticky.name}=${host.stickyToken}; ${sticky.attributes}\r\n`
    // The codings as the upstream gave them (`chunked` as a rule; `gzip, chunked` stays that): the body goes on as it came.
    if (head.transferCodings !== '') extra += head.transferCodings === 'chunked' ? 'transfer-encoding: chunked\r\n' : `transfer-encoding: ${head.transferCodings}\r\n`
    if (client.closeAfter || client.lane.owner.draining) {
      client.closeAfter = true
      extra += 'connection: close\r\n'
    }
    // How much of this buffer is body, and does the body end in it?
    let bodyEnd = bufEnd
    let complete = false
    switch (head.framing) {
      case Framing.NONE:
        bodyEnd = bodyStart
        complete = true
        break
      case Framing.LENGTH:
        if (bufEnd - bodyStart >= head.contentLength) {
          bodyEnd = bodyStart + head.contentLength
          complete = true
        } else {
          this.#remaining = head.contentLength - (bufEnd - bodyStart)
        }
        break
      case Framing.CHUNKED: {
        const scanner = (this.#chunked = new ChunkedScanner())
        const at = scanner.scan(buf, bodyStart, bufEnd)
        if (at === CHUNKED_ERROR) {
          // Malformed framing in the body's first bytes: the head is not written yet, so the client
          // gets a 502 rather than a cut (after a 1xx passed, only the cut is left). Not a retry:
          // the response had begun, and the contract retries only before any response byte.
          this.responded = respondedBefore
          this.#reusable = false
          return this.#upstreamFailed('malformed')
        }
        if (at !== -1) {
          bodyEnd = at
          complete = true
        }
        break
      }
    }
    if (bodyEnd < bufEnd) this.#reusable = false // bytes past the response: not HTTP we understand
    const bodyLength = bodyEnd - bodyStart
    const coalesce = bodyLength <= COALESCE_BYTES ? bodyLength : 0
    let out: Buffer
    if (route.responseHeaders === null) {
      // The usual case: the head's bytes as received, less its hop-by-hop lines, plus `extra`.
      out = Buffer.allocUnsafe(responseHeadLength(head, extra) + coalesce)
      writeResponseHead(head, buf, bodyStart - head.text.length, extra, out, 0)
    } else {
      const headers = responseHeaders(head)
      applyHeaderRewrite(headers, route.responseHeaders)
      const text = serialize(statusLine(head), headers, extra)
      out = Buffer.allocUnsafe(text.length + coalesce)
      out.write(text, 0, 'latin1')
    }
    let ok: boolean
    if (bodyLength === 0) {
      ok = client.write(out)
    } else if (coalesce > 0) {
      buf.copy(out, out.length - coalesce, bodyStart, bodyEnd)
      ok = client.write(out)
    } else {
      ok = this.#forward(out, buf.subarray(bodyStart, bodyEnd))
    }
    if (complete) return this.#complete()
    if (!ok) this.#pauseUpstream()
  }

  /** Body bytes `chunk[start, length)` (the rest of `chunk` is not this read's). */
  #body(chunk: Buffer, start: number, length: number): void {
    const head = this.#respHead!
    let end = length
    let complete = false
    if (head.framing === Framing.LENGTH) {
      if (end - start >= this.#remaining) {
        end = start + this.#remaining
        complete = true
      }
      this.#remaining -= end - start
    } else if (head.framing === Framing.CHUNKED) {
      const at = this.#chunked!.scan(chunk, start, end)
      if (at === CHUNKED_ERROR) return this.#cut('reset')
      if (at !== -1) {
        end = at
        complete = true
      }
    }
    if (end < length) this.#reusable = false
    const ok = this.#forward(null, chunk.subarray(start, end))
    if (complete) return this.#complete()
    if (!ok) this.#pauseUpstream()
  }

  /**
   * Writes `head` (a buffer of ours, or null) and then `bytes`, a view of the upstream connection's
   * read buffer, to the client; false when its buffer is full. The connection reads its next chunk
   * into the same buffer (UpstreamConn), so `bytes` must not stay referenced by a write the kernel
   * has not taken: when the client's socket already holds unsent bytes the write would be queued,
   * so it gets a copy; otherwise it is written as is and, if the kernel took only part of it, the
   * connection moves to a new read buffer. In the usual case (the client keeps up) nothing is copied.
   */
  #forward(head: Buffer | null, bytes: Buffer): boolean {
    const writer = this.#client.writer
    const queued = writer.queued
    const data = queued ? Buffer.from(bytes) : bytes
    const ok = head === null ? writer.write(data) : writer.write2(head, data)
    if (!queued && writer.queued) this.#conn?.detach()
    return ok
  }

  #pauseUpstream(): void {
    if (this.#upstreamPaused) return
    this.#upstreamPaused = true
    this.#conn!.socket.pause()
  }

  /** The whole response reached the client's socket. */
  #complete(): void {
    const conn = this.#conn!
    this.#conn = null
    if (this.#upstreamPaused) {
      this.#upstreamPaused = false
      conn.socket.resume()
    }
    conn.pool.release(conn, this.#reusable && this.bodyRemaining === 0, this.#respHead!.keepAliveMs)
    this.#endAttempt(statusClass(this.#status))
    this.#finish(this.#status)
  }

  onUpstreamClose(conn: UpstreamConn, error: Error | null): void {
    if (conn !== this.#conn || this.#done) return
    this.#conn = null
    const head = this.#respHead
    if (error === null && head !== null && head.framing === Framing.CLOSE) {
      // The body ran until the upstream closed: that was its end.
      this.#endAttempt(statusClass(this.#status))
      this.#finish(this.#status)
      return
    }
    this.#upstreamFailed(this.#sent ? 'reset' : 'connect_failed')
  }

  onUpstreamTimeout(conn: UpstreamConn): void {
    if (conn !== this.#conn || this.#done) return
    this.#conn = null
    conn.user = null
    conn.socket.destroy()
    this.#upstreamFailed(this.#sent ? 'timeout' : 'connect_timeout')
  }

  /**
   * The attempt failed: retry on another endpoint when the promises allow, else answer or cut.
   * `malformed` is a reset that is never retried: a response that had begun but cannot be forwarded.
   */
  #upstreamFailed(kind: 'reset' | 'malformed' | 'timeout' | 'connect_failed' | 'connect_timeout'): void {
    const conn = this.#conn
    if (conn !== null) {
      this.#conn = null
      conn.user = null
      conn.socket.destroy()
    }
    if (this.responded) return this.#cut(kind === 'timeout' ? 'timeout' : 'reset')
    const service = this.#route!.service
    let outcome: AttemptOutcome
    let retryable: boolean
    if (kind === 'connect_failed' || kind === 'connect_timeout') {
      outcome = kind === 'connect_timeout' ? 'timeout' : 'connect_failed'
      this.#lastError = 'upstream_connect_failed'
      retryable = true
    } else if (kind === 'timeout') {
      this.#lastError = 'upstream_timeout'
      outcome = 'timeout'
      retryable = false
    } else {
      outcome = 'reset'
      this.#lastError = 'upstream_reset'
      retryable = kind === 'malformed' ? false : this.#head.contentLength > 0 ? this.#bodyChunks !== null && this.bodyRemaining === 0 && this.#isIdempotent(service) : this.#isIdempotent(service)
    }
    const host = this.#host
    this.#endAttempt(outcome)
    const sentBefore = this.#sent
    if (retryable && host !== null && this.#attempt < service.config.retry.attempts && (!sentBefore || service.retryBudget.tryRetry())) {
      this.#attempt++
      ;(this.tried ??= []).push(host)
      service.metrics.retries.inc()
      this.#respHead = null
      this.#headBuf = null
      this.#reusable = true
      this.#dispatch()
      return
    }
    this.#fail(this.#lastError)
  }

  /** The response started and cannot be finished: the client sees a cut connection. */
  #cut(outcome: AttemptOutcome): void {
    const conn = this.#conn
    if (conn !== null) {
      this.#conn = null
      conn.user = null
      conn.socket.destroy()
    }
    this.#endAttempt(outcome)
    this.#client.closeAfter = true
    this.#client.socket.destroy()
    this.#finish(502)
  }

  /** The client went away mid-exchange. */
  onClientGone(): void {
    if (this.#done) return
    const conn = this.#conn
    if (conn !== null) {
      this.#conn = null
      conn.user = null
      conn.socket.destroy()
      this.#endAttempt('aborted')
    }
    this.#finish(499)
  }

  #endAttempt(outcome: AttemptOutcome): void {
    const host = this.#host
    if (host === null) return
    this.#host = null
    host.release()
    const service = this.#route!.service
    service.metrics.attempt(host, outcome)
    service.outlier?.record(host, outcome, this.#status)
    this.#attempts?.push({ endpoint: host.key, outcome })
  }

  #fail(code: ErrorCode): void {
    const service = this.#route!.service
    this.#writeError(code, service.name, '')
    this.#finish(ERROR_STATUS[code])
  }

  /** An answer before any service work (no route, rate limited): counted, logged, no in-flight. */
  #answerError(code: ErrorCode, service: ServiceRuntime | null, extra: string): void {
    this.#writeError(code, service?.name ?? null, extra)
    const status = ERROR_STATUS[code]
    if (service !== null) service.metrics.request(status)
    this.#done = true
    this.#log(service, status)
    this.#client.exchangeDone()
  }

  #writeError(code: ErrorCode, service: string | null, extra: string): void {
    const client = this.#client
    // The client may still be sending a body we will not read: the connection cannot be reused.
    if (this.bodyRemaining > 0) client.closeAfter = true
    const body = errorBody(code, service)
    const status = ERROR_STATUS[code]
    client.write(
      `HTTP/1.1 ${status} ${REASON[status]}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nx-outrigger-error: ${code}\r\n${extra}${client.closeAfter || client.lane.owner.draining ? 'connection: close\r\n' : ''}\r\n${body}`,
    )
  }

  #finish(status: number): void {
    if (this.#done) return
    this.#done = true
    const service = this.#route!.service
    service.inFlight--
    service.metrics.inFlight.dec()
    service.metrics.request(status)
    service.metrics.duration.observe((performance.now() - this.#startMs) / 1000)
    this.#log(service, status)
    if (this.#clientPaused) {
      this.#clientPaused = false
      this.#client.socket.resume()
    }
    this.#client.exchangeDone()
  }

  #log(service: ServiceRuntime | null, status: number): void {
    const log = this.#client.lane.owner.accessLog
    if (log === null) return
    log.info({
      service: service?.name ?? null,
      method: this.#head.method,
      path: this.#head.target,
      status,
      durationMs: Math.round((performance.now() - this.#startMs) * 1000) / 1000,
      attempts: this.#attempts ?? [],
    })
  }
}

