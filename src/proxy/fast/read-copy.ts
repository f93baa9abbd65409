/**
 * The lane's copies of client reads, out of the shared read buffer: a large read's copy goes into
 * memory that the last large read's copy gave back, when nothing held on to that one.
 *
 * Why: every client read lands in one buffer shared by all connections (`readIntoShared` in lane.ts),
 * so its bytes are copied out at their size before the lane keeps anything. A copy under 4 KiB
 * comes from node's Buffer pool; a larger one (a POST's head and body in one read, the later reads
 * of a large body) was a new ArrayBuffer: 16 KiB per request at 45,000 POSTs a second is about
 * 740 MB/s of external memory for V8 to account and sweep. That ran fine until the process had
 * been idle a few seconds; from then on V8 kept starting incremental marking under the load and
 * finishing it in the pause (about 16 ms, every 0.3 to 2 s), the process grew by 40 MB, and the
 * POST scenario's p99 went from 2.5 to 6 to 12 ms (bench/README.md, "Large reads"). With the copy
 * in recycled memory that never starts.
 *
 * How it stays safe: one buffer is out at a time (`lent`); it comes back only through
 * `recycleRead`, which the lane calls where it knows that no one holds the chunk any more: the
 * kernel took the write whole (nothing of it waits in libuv or the Writable), the request cannot be
 * replayed, and no view of it was kept (pending bytes, a body kept for a replay, bytes sent once a
 * connection is up). Any chunk not given back is simply left to the garbage collector, as every
 * copy was before, and the next large read gets new memory. A chunk that is not the one out (a
 * small read, the shared read buffer itself, an older copy) is never taken back.
 */

/** From this size a read's copy is not taken from node's Buffer pool (Buffer.poolSize >>> 1). */
export const LARGE_READ_BYTES = 4096

let lent: ArrayBuffer | null = null
let spare: ArrayBuffer | null = null

/** `nread` bytes of `buffer`, copied into memory of their own that the caller may keep. */
export function copyRead(buffer: Buffer, nread: number): Buffer {
  let chunk: Buffer
  if (nread < LARGE_READ_BYTES) {
    chunk = Buffer.allocUnsafe(nread)
  } else {
    let memory = spare
    spare = null
    if (memory === null || memory.byteLength < nread) memory = Buffer.allocUnsafeSlow(nread).buffer
    lent = memory
    chunk = Buffer.from(memory, 0, nread)
  }
  buffer.copy(chunk, 0, 0, nread)
  return chunk
}

/**
 * Nothing holds `chunk` (or any view of its memory) any more: if it is the copy out, its memory
 * serves the next large read. Only the lane calls this, where it has checked every holder.
 */
export function recycleRead(chunk: Buffer): void {
  if (lent !== null && chunk.buffer === lent) {
    spare = lent
    lent = null
  }
}
