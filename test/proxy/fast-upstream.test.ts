import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { until } from '../support/until.ts'
import type { UpstreamConn, UpstreamUser } from '../../src/proxy/fast/upstream.ts'
import { UpstreamPool } from '../../src/proxy/fast/upstream.ts'

/** What an exchange saw of its connection. */
class Recorder implements UpstreamUser {
  connectedAt = -1
  timedOutAt = -1
  closed = false
  data = ''
  onUpstreamConnect(): void {
    this.connectedAt = performance.now()
  }
  onUpstreamData(_conn: UpstreamConn, chunk: Buffer, length: number): void {
    this.data += chunk.toString('latin1', 0, length)
  }
  onUpstreamClose(): void {
    this.closed = true
  }
  onUpstreamTimeout(conn: UpstreamConn): void {
    this.timedOutAt = performance.now()
    conn.socket.destroy()
  }
  onUpstreamDrain(): void {}
}

describe('UpstreamPool timeouts (the sweep instead of socket.setTimeout)', () => {
  // A server that accepts and says nothing, unless asked to drip: then a byte every 50 ms, 16 times.
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('data', (d) => {
      if (!d.toString('latin1').startsWith('drip')) return
      let n = 0
      const t = setInterval(() => {
        if (s.destroyed || n === 16) return clearInterval(t)
        s.write(String.fromCharCode(97 + n++))
      }, 50)
    })
  })
  let port = 0
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    port = (server.address() as net.AddressInfo).port
  })
  after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  })

  it('times a silent request out after requestMs, never before', async () => {
    const pool = new UpstreamPool('127.0.0.1', port, { connectMs: 2000, requestMs: 120, idleMs: 5000 })
    const user = new Recorder()
    pool.acquire(user)
    await until('the connection', () => user.connectedAt >= 0, 5000)
    await until('the timeout', () => user.timedOutAt >= 0, 5000)
    const waited = user.timedOutAt - user.connectedAt
    assert.ok(waited >= 120, `timed out after ${waited.toFixed(0)} ms, before requestMs`)
    await until('the pool to close it', () => pool.open === 0, 5000)
    pool.destroy()
  })

  it('counts reads as activity: a conversation outlasting requestMs does not time out', async () => {
    // A margin for a busy machine: the drips are 50 ms apart, the timeout 500 ms, the whole 800 ms.
    const pool = new UpstreamPool('127.0.0.1', port, { connectMs: 2000, requestMs: 500, idleMs: 5000 })
    const user = new Recorder()
    const conn = pool.acquire(user)
    await until('the connection', () => user.connectedAt >= 0, 5000)
    conn.write(Buffer.from('drip'))
    await until('all 16 drips or a timeout', () => user.data === 'abcdefghijklmnop' || user.timedOutAt >= 0, 5000)
    assert.equal(user.timedOutAt, -1, `timed out after reading ${JSON.stringify(user.data)}`)
    pool.destroy()
  })

  it('closes a connection idle in the pool after its keep time, and keeps it until then', async () => {
    const pool = new UpstreamPool('127.0.0.1', port, { connectMs: 2000, requestMs: 5000, idleMs: 150 })
    const user = new Recorder()
    const conn = pool.acquire(user)
    await until('the connection', () => user.connectedAt >= 0, 5000)
    const released = performance.now()
    pool.release(conn, true, -1)
    assert.equal(pool.idle, 1)
    await until('the pool to close it', () => pool.open === 0, 5000)
    const kept = performance.now() - released
    assert.ok(kept >= 150, `closed after ${kept.toFixed(0)} ms of the 150 ms keep time`)
    assert.equal(user.timedOutAt, -1, 'the exchange let go of it: not told')
    pool.destroy()
  })

  it('re-arms with each acquire: a reused connection gets a whole requestMs again', async () => {
    const pool = new UpstreamPool('127.0.0.1', port, { connectMs: 2000, requestMs: 150, idleMs: 5000 })
    const first = new Recorder()
    const conn = pool.acquire(first)
    await until('the connection', () => first.connectedAt >= 0, 5000)
    pool.release(conn, true, -1)
    await new Promise((r) => setTimeout(r, 120))
    const second = new Recorder()
    const acquiredAt = performance.now()
    assert.equal(pool.acquire(second), conn, 'the idle connection is reused')
    await until('the timeout', () => second.timedOutAt >= 0, 5000)
    const waited = second.timedOutAt - acquiredAt
    assert.ok(waited >= 150, `timed out ${waited.toFixed(0)} ms after the acquire`)
    pool.destroy()
  })
})
