import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { HttpProbe } from '../../src/health/http-probe.ts'

/** A raw TCP server answering each request with `responses[url]` (written in pieces), counting connections. */
async function rawServer(responses: Record<string, string[]>): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    let buffered = ''
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1')
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const url = buffered.slice(4, buffered.indexOf(' ', 4))
        buffered = buffered.slice(end + 4)
        const pieces = responses[url] ?? ['HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n']
        // Each piece in its own write, a tick apart: the parser must put them together.
        void (async () => {
          for (const piece of pieces) {
            if (piece === 'CLOSE') {
              socket.end()
              return
            }
            socket.write(piece)
            await new Promise((r) => setImmediate(r))
          }
        })()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('HttpProbe', () => {
  let server: Awaited<ReturnType<typeof rawServer>>
  before(async () => {
    server = await rawServer({
      '/length': ['HTTP/1.1 200 OK\r\ncontent-le', 'ngth: 11\r\n\r\nhello', ' world'],
      '/chunked': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', 'lo\r\n6\r\n world\r\n0\r\n', '\r\n'],
      '/trailers': ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-check: done\r\n\r\n'],
      '/no-content': ['HTTP/1.1 204 No Content\r\n\r\n'],
      '/continue': ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'],
      '/sick': ['HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nsick'],
      '/until-close': ['HTTP/1.0 200 OK\r\n\r\nall of it', 'CLOSE'],
      '/close-after': ['HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'],
      '/garbage': ['SSH-2.0-OpenSSH\r\n\r\n'],
      '/partial': ['HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nnot all'],
    })
  })
  after(() => server.close())

  it('reads status and body framed by content-length, chunks (with trailers), 204, 100-continue and connection close', async () => {
    for (const [path, expected] of [['/length', null], ['/chunked', null], ['/trailers', null], ['/no-content', null], ['/continue', null], ['/sick', 'HTTP 503'], ['/until-close', null], ['/close-after', null]] as const) {
      const probe = new HttpProbe('127.0.0.1', server.port, path, 'h')
      try {
        assert.equal(await probe.probe(1000), expected, path)
        // The connection is in step afterwards: a second probe on it gives the same answer.
        assert.equal(await probe.probe(1000), expected, `${path}, again`)
      } finally {
        probe.close()
      }
    }
  })

  it('keeps one connection across probes when the server allows it', async () => {
    const before = server.connections()
    const probe = new HttpProbe('127.0.0.1', server.port, '/chunked', 'h')
    try {
      for (let i = 0; i < 20; i++) assert.equal(await probe.probe(1000), null)
      assert.equal(server.connections() - before, 1)
    } finally {
      probe.close()
    }
  })

  it('fails what it cannot read, on time, and recovers on a new connection', async () => {
    const garbage = new HttpProbe('127.0.0.1', server.port, '/garbage', 'h')
    assert.equal(await garbage.probe(1000), 'not an HTTP/1.1 response')
    garbage.close()
    const partial = new HttpProbe('127.0.0.1', server.port, '/partial', 'h')
    assert.equal(await partial.probe(200), 'timeout after 200 ms')
    partial.close()
  })

  it('retries once on a fresh connection when the server closed the kept-alive one (its idle timeout)', async () => {
    const app = http.createServer((_req, res) => res.end('ok'))
    app.keepAliveTimeout = 50
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
    const probe = new HttpProbe('127.0.0.1', (app.address() as AddressInfo).port, '/', 'h')
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal(await probe.probe(1000), null)
        await new Promise((r) => setTimeout(r, 60 + (i % 2) * 5)) // past the idle timeout
      }
    } finally {
      probe.close()
      app.closeAllConnections()
      await new Promise<void>((resolve) => app.close(() => resolve()))
    }
  })

  it('reports a refused connection by its code', async () => {
    const spare = net.createServer()
    await new Promise<void>((resolve) => spare.listen(0, '127.0.0.1', resolve))
    const port = (spare.address() as AddressInfo).port
    await new Promise<void>((resolve) => spare.close(() => resolve()))
    const probe = new HttpProbe('127.0.0.1', port, '/', 'h')
    assert.equal(await probe.probe(1000), 'ECONNREFUSED')
    probe.close()
  })
})
