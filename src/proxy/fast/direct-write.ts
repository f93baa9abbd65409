import type net from 'node:net'
import { getSystemErrorName } from 'node:util'

/**
 * Buffers written straight to a socket's libuv handle, not through net.Socket's Writable.
 *
 * Why: a `socket.write` of one Buffer runs the Writable's state machine (a new WriteWrap object
 * with six properties, the write callback's bookkeeping, and a `process.nextTick` for `afterWrite`
 * after every synchronous write), about 230 bytes and a trip through the tick queue per write. The
 * lane writes twice per request (the request to the upstream, the response to the client), and in
 * the usual case the kernel takes each write whole at once. Here such a write is one call into the
 * handle with a request object that is used again: libuv only takes the object for a write it
 * could not finish at once, and then the next write gets a new one (bench/alloc-profile.ts: bytes
 * allocated per request, docs/architecture.md "Writes skip the Writable").
 *
 * How it stays correct beside the Writable (which the lane still uses for rare writes, and node's
 * HTTP server after a handoff): libuv writes a handle's requests in the order they were made, and
 * a write made while earlier ones are queued queues behind them. So a direct write is made only
 * when the Writable holds nothing (`writableLength === 0`: it may have bytes it has not yet given
 * to the handle); otherwise the write goes through the Writable, behind its bytes. The Writable
 * never needs the reverse: whatever it gives the handle queues behind our bytes in libuv. Ending the
 * socket shuts its write side down after libuv's queue (uv_shutdown waits for queued writes).
 *
 * The handle's API is Node's own (`process.binding('stream_wrap')`, which Node still exposes for
 * addons and tools): if a Node release takes it away, DIRECT_WRITES is null and every write goes
 * through `socket.write` as before. `OUTRIGGER_WRITES=stream` forces that, for comparison; the
 * lane's wire tests run both ways, and a unit test fails on the pinned Node if the API is missing.
 */

interface WriteReq {
  oncomplete: (this: WriteReq, status: number) => void
  /** While libuv holds the request: the bytes it points into, kept alive, and who to tell. */
  buffer: Buffer | Buffer[] | null
  writer: DirectWriter | null
}

interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number
  writev(req: WriteReq, chunks: readonly Uint8Array[], allBuffers: true): number
}

interface StreamWrapBinding {
  readonly WriteWrap: new () => WriteReq
  /** Written by every handle write: [kLastWriteWasAsync] is 1 when libuv kept part of the bytes. */
  readonly streamBaseState: Int32Array
  readonly kLastWriteWasAsync: number
}

function findBinding(): StreamWrapBinding | null {
  if (process.env.OUTRIGGER_WRITES === 'stream') return null
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap')
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = binding
    if (typeof WriteWrap !== 'function' || !(streamBaseState instanceof Int32Array) || typeof kLastWriteWasAsync !== 'number') return null
    return { WriteWrap, streamBaseState, kLastWriteWasAsync }
  } catch {
    return null
  }
}

/** null: every write goes through `socket.write` (this Node lacks the API, or `OUTRIGGER_WRITES=stream`). */
export const DIRECT_WRITES: StreamWrapBinding | null = findBinding()
const STATE = DIRECT_WRITES?.streamBaseState ?? new Int32Array(1)
const ASYNC = DIRECT_WRITES?.kLastWriteWasAsync ?? 0

function newReq(): WriteReq {
  const req = new DIRECT_WRITES!.WriteWrap()
  req.oncomplete = onComplete
  req.buffer = null
  req.writer = null
  return req
}

/** The request for the next direct write: libuv has not taken it (every finished write leaves it free). */
let spare: WriteReq | null = DIRECT_WRITES === null ? null : newReq()

/** libuv finished (or, the socket closing, cancelled) a write it had kept part of. */
function onComplete(this: WriteReq, status: number): void {
  const writer = this.writer!
  this.writer = null
  this.buffer = null
  writer.inFlight--
  if (status < 0) {
    writer.socket.destroy(writeError(status))
    return
  }
  // Told whenever libuv is done, even if the Writable holds bytes: its own 'drain' follows only if
  // one of its writes returned false, and the handlers only resume a side that is paused.
  if (writer.inFlight === 0) writer.onDrain()
}

function writeError(status: number): Error {
  const error = new Error(`write ${getSystemErrorName(status)}`) as NodeJS.ErrnoException
  error.errno = status
  error.code = getSystemErrorName(status)
  error.syscall = 'write'
  return error
}

/** One socket's writes (see the module comment). */
export class DirectWriter {
  readonly socket: net.Socket
  /** Called when libuv has written every direct write it held (after a write that returned false). */
  readonly onDrain: () => void
  /** Direct writes libuv still holds part of. */
  inFlight = 0
  /**
   * The last write went straight to the handle and the kernel took every byte: nothing holds the
   * buffers written (false when libuv or the Writable kept them, or the write failed).
   */
  taken = false

  constructor(socket: net.Socket, onDrain: () => void) {
    this.socket = socket
    this.onDrain = onDrain
  }

  /**
   * Bytes written, or queued behind earlier ones, not to be touched until written: true when
   * the kernel took them all; false when some wait in libuv or the Writable (`onDrain`, or the
   * socket's 'drain', follows) or the socket failed (it is destroyed).
   */
  write(data: Buffer): boolean {
    const handle = this.#direct()
    this.taken = false
    if (handle === null) return this.socket.write(data)
    const req = spare!
    return this.#after(req, handle.writeBuffer(req, data), data)
  }

  /** `first` then `second`, in one system call when the kernel takes both (as write). */
  write2(first: Buffer, second: Buffer): boolean {
    const handle = this.#direct()
    this.taken = false
    if (handle === null) {
      const socket = this.socket
      socket.cork()
      socket.write(first)
      const ok = socket.write(second)
      socket.uncork()
      return ok
    }
    const req = spare!
    const chunks = [first, second]
    return this.#after(req, handle.writev(req, chunks, true), chunks)
  }

  /** The handle, when a direct write may be made now (see the module comment); else null: use the Writable. */
  #direct(): StreamHandle | null {
    const socket = this.socket
    if (spare === null || socket.writableLength > 0 || socket.connecting || socket.destroyed) return null
    return (socket as unknown as { _handle: StreamHandle | null })._handle
  }

  #after(req: WriteReq, err: number, data: Buffer | Buffer[]): boolean {
    if (err !== 0) {
      // The request may have been given to libuv and taken back: it is not used again.
      spare = newReq()
      this.socket.destroy(writeError(err))
      return false
    }
    if (STATE[ASYNC] === 0) {
      this.taken = true
      return true
    }
    // libuv kept the rest of the bytes, and this request with them: the next write gets another.
    spare = newReq()
    req.buffer = data
    req.writer = this
    this.inFlight++
    return false
  }

  /** Bytes written and not yet taken by the kernel, here or in the Writable: a new write would queue. */
  get queued(): boolean {
    return this.inFlight > 0 || this.socket.writableLength > 0
  }
}
