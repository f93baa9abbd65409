import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { describe, it } from 'node:test'
import { DIRECT_WRITES, DirectWriter } from '../../src/proxy/fast/direct-write.ts'
import { until } from '../support/until.ts'

/** A connected pair on loopback: `ours` writes, `peer` is the other end, paused until told. */
async function pair(): Promise<{ ours: net.Socket; peer: net.Socket; close: () => Promise<void> }> {
  let peer: net.Socket | null = null
  const server = net.createServer((s) => {
    s.pause()
    peer = s
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const ours = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  // Never read: a reset must reach `ours` through a write, not through a read.
  ours.pause()
  ours.on('error', () => undefined)
  await new Promise<void>((r) => ours.once('connect', r))
  await until('the server accepted', () => peer !== null, 5000)
  return {
    ours,
    peer: peer!,
    close: async () => {
      ours.destroy()
      peer!.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

/** Everything `peer` receives until it ends, hashed. */
function received(peer: net.Socket): Promise<{ bytes: number; sha: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  return new Promise((resolve) => {
    peer.on('data', (d: Buffer) => {
      bytes += d.length
      hash.update(d)
    })
    peer.on('end', () => resolve({ bytes, sha: hash.digest('hex') }))
    peer.resume()
  })
}

const sha = (parts: readonly Buffer[]): string => createHash('sha256').update(Buffer.concat(parts)).digest('hex')

describe('DirectWriter (writes straight to the handle)', () => {
  it("finds the handle's write API on this Node (else every write pays for the Writable again)", () => {
    // Node is pinned (package.json); if an upgrade drops process.binding('stream_wrap') the lane
    // still works, through socket.write, but slower: this test says so before a benchmark does.
    assert.notEqual(DIRECT_WRITES, null)
  })

  it('writes a small buffer at once and leaves nothing queued', async () => {
    const { ours, peer, close } = await pair()
    try {
      let drained = 0
      const writer = new DirectWriter(ours, () => drained++)
      const got = received(peer)
      assert.equal(writer.write(Buffer.from('hello ')), true)
      assert.equal(writer.taken, true, 'the kernel took it whole: nothing holds the buffer')
      assert.equal(writer.write2(Buffer.from('wor'), Buffer.from('ld')), true)
      assert.equal(writer.taken, true)
      assert.equal(writer.queued, false)
      assert.equal(ours.writableLength, 0, 'nothing went through the Writable')
      ours.end()
      assert.deepEqual(await got, { bytes: 11, sha: sha([Buffer.from('hello world')]) })
      assert.equal(drained, 0)
    } finally {
      await close()
    }
  })

  it('keeps order and every byte when the kernel cannot take a write whole, with Writable writes between', async () => {
    const { ours, peer, close } = await pair()
    try {
      let drained = 0
      const writer = new DirectWriter(ours, () => drained++)
      const parts: Buffer[] = []
      // 8 MiB to a peer that does not read: far past the socket buffers, so libuv keeps part.
      const big = randomBytes(8 * 1024 * 1024)
      parts.push(big)
      assert.equal(writer.write(big), false)
      assert.equal(writer.taken, false, 'libuv holds part of it: its memory must not be reused (read-copy.ts)')
      assert.equal(writer.queued, true)
      assert.equal(writer.inFlight, 1)
      // A Writable write now queues behind the direct one in libuv.
      const viaWritable = randomBytes(1000)
      parts.push(viaWritable)
      ours.write(viaWritable)
      // Corked, the Writable keeps the next bytes itself, not yet given to the handle: a direct
      // write now would overtake them, so the writer must go through the Writable, behind them.
      const corked = randomBytes(2000)
      parts.push(corked)
      ours.cork()
      ours.write(corked)
      const behindCorked = randomBytes(500)
      parts.push(behindCorked)
      writer.write(behindCorked)
      assert.equal(writer.taken, false, 'the Writable holds it')
      ours.uncork()
      // The Writable still holds bytes, so these go through it too.
      const third = randomBytes(3000)
      const fourth = randomBytes(5000)
      parts.push(third, fourth)
      writer.write2(third, fourth)
      const last = randomBytes(70_000)
      parts.push(last)
      writer.write(last)
      // The Writable's last write went past its high-water mark: its 'drain' says when all is out
      // (the writer does not call onDrain while the Writable still holds bytes).
      let socketDrained = false
      ours.once('drain', () => (socketDrained = true))
      const got = received(peer)
      await until('everything was written', () => socketDrained && writer.inFlight === 0 && ours.writableLength === 0, 20_000)
      assert.equal(drained, 1, 'told when libuv finished the direct write')
      ours.end()
      const r = await got
      assert.equal(r.bytes, parts.reduce((n, p) => n + p.length, 0))
      assert.equal(r.sha, sha(parts), 'bytes arrived in the order written')
    } finally {
      await close()
    }
  })

  it('can write again while libuv still holds an earlier write: the new one queues behind it', async () => {
    const { ours, peer, close } = await pair()
    try {
      let drained = 0
      const writer = new DirectWriter(ours, () => drained++)
      const parts = [randomBytes(6 * 1024 * 1024), randomBytes(2 * 1024 * 1024), randomBytes(100)]
      assert.equal(writer.write(parts[0]!), false)
      assert.equal(writer.write(parts[1]!), false, 'queued behind the first')
      assert.equal(writer.write(parts[2]!), false)
      assert.equal(writer.inFlight, 3)
      const got = received(peer)
      await until('all three finished', () => writer.inFlight === 0, 20_000)
      assert.equal(drained, 1, 'told once, when the last finished')
      ours.end()
      assert.equal((await got).sha, sha(parts))
    } finally {
      await close()
    }
  })

  it('a write to a reset connection destroys the socket with the error, and returns false', async () => {
    const { ours, peer, close } = await pair()
    try {
      let closedWith: Error | undefined
      ours.on('close', () => undefined)
      ours.once('error', (e) => (closedWith = e))
      peer.resetAndDestroy()
      // Until the RST is in, writes go into the socket buffer; the first after it fails in the
      // handle's write, which must destroy the socket (and not throw, nor report success).
      let refused = false
      await until('a write failed', () => {
        if (ours.destroyed) return true
        refused = !new DirectWriter(ours, () => undefined).write(Buffer.from('x'))
        return refused
      }, 10_000)
      assert.equal(refused, true, 'the write that failed was a direct one')
      assert.equal(ours.destroyed, true)
      await until('its error was emitted', () => closedWith !== undefined, 5000)
      const error = closedWith as NodeJS.ErrnoException
      assert.equal(error.syscall, 'write')
      assert.match(error.code ?? '', /^(EPIPE|ECONNRESET)$/)
    } finally {
      await close()
    }
  })

  it('a socket destroyed while libuv holds a write: the write is dropped quietly, no drain', async () => {
    const { ours, close } = await pair()
    try {
      let drained = 0
      const writer = new DirectWriter(ours, () => drained++)
      assert.equal(writer.write(randomBytes(8 * 1024 * 1024)), false)
      ours.destroy()
      await until('libuv gave the write back', () => writer.inFlight === 0, 10_000)
      assert.equal(drained, 0)
    } finally {
      await close()
    }
  })
})
