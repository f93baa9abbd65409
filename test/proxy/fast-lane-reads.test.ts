import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, it } from 'node:test'
import type { LaneOwner } from '../../src/proxy/fast/lane.ts'
import { FastLane, USER_READS } from '../../src/proxy/fast/lane.ts'
import { until } from '../support/until.ts'

/** An owner with no routes: every request is answered 404 by the lane itself. */
function owner(): LaneOwner {
  return {
    resolveFast: () => null,
    accessLog: null,
    limits: { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, maxHeaderSizeBytes: 16 * 1024 },
    keepAliveTimeoutMs: 5000,
    draining: false,
    requestStarted: () => undefined,
    requestEnded: () => undefined,
    handoff: (socket) => socket.destroy(),
  }
}

describe('client reads on the fast lane', () => {
  it("finds net's user-buffer hooks on this Node (else every read costs an ArrayBuffer again)", () => {
    // Node is pinned (package.json); if an upgrade renames the hooks the lane still works, by
    // 'data' events, but slower: this test says so before a benchmark does.
    assert.notEqual(USER_READS, null)
  })

  it('reads an accepted socket into the shared buffer, with no data listener, and answers', async () => {
    const lane = new FastLane(owner())
    let accepted: net.Socket | null = null
    const server = net.createServer((socket) => {
      accepted = socket
      lane.accept(socket)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    try {
      let text = ''
      client.on('data', (c: Buffer) => (text += c.toString('latin1')))
      // In two reads, the head split, then a second request pipelined behind the first.
      client.write('GET /a HTTP/1.1\r\nHo')
      await new Promise((r) => setTimeout(r, 20))
      client.write('st: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n')
      await until('two answers', () => text.split('HTTP/1.1 404').length - 1 >= 2, 5000)
      assert.equal(text.split('HTTP/1.1 404').length - 1, 2, text)
      assert.equal(accepted!.listenerCount('data'), 0)
    } finally {
      client.destroy()
      lane.closeAll()
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
