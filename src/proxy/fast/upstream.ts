import net from 'node:net'
import { DirectWriter } from './direct-write.ts'
import { KEEP_ALIVE_MARGIN_MS } from './http1.ts'

/** What an upstream connection reports to the exchange using it. */
export interface UpstreamUser {
  /** The TCP connection is up (only for a new connection). */
  onUpstreamConnect(conn: UpstreamConn): void
  /**
   * The bytes read are `chunk[0, length)`: `chunk` is the connection's read buffer itself (stale
   * past `length`), valid only until this returns (see UpstreamConn). No view is made per read.
   */
  onUpstreamData(conn: UpstreamConn, chunk: Buffer, length: number): void
  /** The connection ended while in use. `error` is null for a clean end (FIN without error). */
  onUpstreamClose(conn: UpstreamConn, error: Error | null): void
  /** Nothing moved on the connection for the timeout it was given (see UpstreamPool). */
  onUpstreamTimeout(conn: UpstreamConn): void
  /** The socket's write buffer emptied (after a write that returned false). */
  onUpstreamDrain(conn: UpstreamConn): void
}

export interface UpstreamTimeouts {
  connectMs: number
  /** Until the response head (undici's headersTimeout). */
  requestMs: number
  /** Between body chunks, and how long an idle connection is kept (undici's bodyTimeout, keepAliveMaxTimeout). */
  idleMs: number
}

/** The most one read takes: node's own read size, so large bodies take as many reads as before. */
export const READ_BUFFER_BYTES = 64 * 1024

/**
 * One TCP connection to an upstream. Its listeners are bound once for its whole life and forward
 * to whichever exchange holds it, so a reused connection costs no closures.
 *
 * It reads into a buffer of its own (net's `onread`), not into a new one per read: a stream read
 * makes an ArrayBuffer with its own malloc'd backing store, and V8 frees those in the scavenge's
 * pause, on the event loop's thread with `--single-threaded` (about half of each 0.4 ms scavenge at
 * 28,000 req/s, `--trace-gc-nvp`'s sweep_array_buffers). The user is handed that buffer itself
 * and the count read (bytes past the count are earlier reads'), valid until the callback returns:
 * bytes kept past it must be copied, or `detach()` called so the next read goes to a new buffer
 * (lane.ts's #forward does one or the other).
 */
export class UpstreamConn {
  readonly socket: net.Socket
  readonly pool: UpstreamPool
  user: UpstreamUser | null = null
  connected = false
  /** How long the pool may keep it idle: idleMs, shortened by the upstream's Keep-Alive hint. */
  idleKeepMs: number
  #error: Error | null = null
  /**
   * The inactivity timeout in force (0: none), which the pool's sweep enforces: `activity` counts
   * reads, writes and re-arms; `#seen` is the count the sweep saw last and `#quietMs` how long it
   * has stayed the same since.
   */
  #limitMs = 0
  activity = 0
  #seen = -1
  #quietMs = 0
  /** Where the next read goes (see the class comment). */
  #readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
  /** Writes to the upstream (straight to the handle when it can); `write()` counts them as activity, other callers do it themselves. */
  readonly writer: DirectWriter

  constructor(pool: UpstreamPool, host: string, port: number) {
    this.pool = pool
    this.idleKeepMs = pool.timeouts.idleMs
    this.socket = net.connect({ host, port, noDelay: true, onread: { buffer: this.#nextBuffer, callback: this.#onRead } })
    this.writer = new DirectWriter(this.socket, this.#onDrain)
    this.arm(pool.timeouts.connectMs)
    this.socket.on('connect', this.#onConnect)
    this.socket.on('error', this.#onError)
    this.socket.on('close', this.#onClose)
    this.socket.on('drain', this.#onDrain)
  }

  /** Starts an inactivity timeout of `ms` from now (as socket.setTimeout, without a timer per call). */
  arm(ms: number): void {
    this.#limitMs = ms
    this.activity++
  }

  /** The read being handled does not count as activity: the timeout in force keeps running. */
  uncountRead(): void {
    this.activity--
  }

  /** Writes to the upstream (counted as activity); false when its buffer is full. */
  write(data: Buffer): boolean {
    this.activity++
    return this.writer.write(data)
  }

  /** The pool's sweep, `elapsedMs` after the previous one: true when the timeout ran out. */
  quietFor(elapsedMs: number): boolean {
    if (this.#limitMs === 0) return false
    if (this.activity !== this.#seen) {
      this.#seen = this.activity
      this.#quietMs = 0
      return false
    }
    this.#quietMs += elapsedMs
    return this.#quietMs >= this.#limitMs
  }

  readonly #onConnect = (): void => {
    this.connected = true
    this.arm(this.pool.timeouts.requestMs)
    this.user?.onUpstreamConnect(this)
  }

  /** net asks after every read where the next one goes. */
  readonly #nextBuffer = (): Buffer => this.#readBuffer

  readonly #onRead = (nread: number, buffer: Buffer): boolean => {
    this.activity++
    const user = this.user
    // Bytes nobody asked for: the upstream broke the protocol; never reuse the connection.
    if (user === null) this.socket.destroy()
    else user.onUpstreamData(this, buffer, nread)
    return true // reading stops by socket.pause(), as for a 'data' listener
  }

  /** The last chunk's bytes are still referenced (a write the kernel did not take whole): read on into a new buffer. */
  detach(): void {
    this.#readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
  }

  readonly #onError = (error: Error): void => {
    this.#error = error
  }

  readonly #onClose = (): void => {
    this.#limitMs = 0
    this.pool.forget(this)
    const user = this.user
    this.user = null
    user?.onUpstreamClose(this, this.#error)
  }

  /** The timeout ran out (the pool's sweep): the exchange decides, an idle connection just closes. */
  timedOut(): void {
    this.#limitMs = 0
    const user = this.user
    if (user === null) this.socket.destroy()
    else user.onUpstreamTimeout(this)
  }

  readonly #onDrain = (): void => {
    this.activity++
    this.user?.onUpstreamDrain(this)
  }
}

/**
 * The fast lane's connections to one upstream endpoint: HTTP/1.1, one request at a time per
 * connection, idle ones reused last-in first-out so the warmest are used and the rest expire. The
 * picker already caps a host's requests in flight at `maxConcurrent`, which caps connections too.
 *
 * Timeouts are inactivity timeouts: `connectMs` while connecting, `requestMs` while waiting for
 * the response head (reads that do not finish it are not activity: see uncountRead), `idleMs`
 * between body chunks and while idle in the pool. One sweep per pool
 * enforces them, every eighth of the shortest (10 ms to 250 ms), so a timeout fires never early
 * and at most two sweep intervals late. Why not socket.setTimeout: it makes a timer and a bound function per
 * call (two or three calls a request) and re-inserts the timer on every read and write, about 3%
 * of the lane's CPU at 28,000 req/s; here a request costs a counter increment per event.
 */
export class UpstreamPool {
  readonly host: string
  readonly port: number
  readonly timeouts: UpstreamTimeouts
  readonly #idle: UpstreamConn[] = []
  readonly #all = new Set<UpstreamConn>()
  #closed = false
  readonly #sweepMs: number
  #sweep: NodeJS.Timeout | null = null
  #lastSweep = 0

  constructor(host: string, port: number, timeouts: UpstreamTimeouts) {
    this.host = host
    this.port = port
    this.timeouts = timeouts
    this.#sweepMs = Math.max(10, Math.min(250, Math.floor(Math.min(timeouts.connectMs, timeouts.requestMs, timeouts.idleMs) / 8)))
  }

  /** Connections open now, idle or in use. */
  get open(): number {
    return this.#all.size
  }

  get idle(): number {
    return this.#idle.length
  }

  /** An idle connection (connected) or a new one (connecting: wait for onUpstreamConnect). */
  acquire(user: UpstreamUser): UpstreamConn {
    const idle = this.#idle
    while (idle.length > 0) {
      const conn = idle.pop()!
      if (conn.socket.destroyed) continue
      conn.user = user
      conn.arm(this.timeouts.requestMs)
      return conn
    }
    const conn = new UpstreamConn(this, this.host, this.port)
    conn.user = user
    this.#all.add(conn)
    if (this.#sweep === null) {
      this.#lastSweep = performance.now()
      this.#sweep = setInterval(this.#check, this.#sweepMs)
      this.#sweep.unref()
    }
    return conn
  }

  /** The exchange is done with `conn`: kept for reuse when `reusable`, else closed. */
  release(conn: UpstreamConn, reusable: boolean, keepAliveHintMs: number): void {
    conn.user = null
    if (!reusable || this.#closed || conn.socket.destroyed) {
      conn.socket.destroy()
      return
    }
    // parseResponseHead closed a connection whose hint leaves nothing after the margin.
    if (keepAliveHintMs > KEEP_ALIVE_MARGIN_MS) conn.idleKeepMs = Math.min(this.timeouts.idleMs, keepAliveHintMs - KEEP_ALIVE_MARGIN_MS)
    conn.arm(conn.idleKeepMs)
    this.#idle.push(conn)
  }

  /** Called when a connection closed, wherever it was. */
  forget(conn: UpstreamConn): void {
    this.#all.delete(conn)
    const i = this.#idle.indexOf(conn)
    if (i !== -1) this.#idle.splice(i, 1)
    if (this.#all.size === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep)
      this.#sweep = null
    }
  }

  readonly #check = (): void => {
    const now = performance.now()
    const elapsed = now - this.#lastSweep
    this.#lastSweep = now
    for (const conn of this.#all) if (conn.quietFor(elapsed)) conn.timedOut()
  }

  /** No new connections are kept: idle ones close now, busy ones when their exchange ends. */
  close(): void {
    this.#closed = true
    for (const conn of this.#idle.splice(0)) conn.socket.destroy()
  }

  /** Closes every connection now, failing the requests on them (the end of a shutdown timeout). */
  destroy(): void {
    this.close()
    for (const conn of this.#all) conn.socket.destroy()
  }
}
