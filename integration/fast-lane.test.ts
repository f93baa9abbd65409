/**
 * The fast lane (src/proxy/fast/) on the wire: what a raw-socket proxy must get right that a
 * node:http one gets for free. Pipelining, a connection handed to node:http mid-stream, response
 * framings (chunked with trailers, close-delimited, HEAD, 204, 1xx), a reused upstream connection
 * the upstream closed, slowloris and oversized heads, client aborts. Real node:http and raw TCP
 * upstreams on loopback; raw client sockets where a polite client would hide the bytes.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { Agent, request } from 'undici'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { closedPort, startSidecar, startUpstream, waitFor } from './helpers.ts'
import { prng } from '../test/support/prng.ts'
import { DirectWriter } from '../src/proxy/fast/direct-write.ts'

/** A raw client connection that collects what the proxy sends. */
class RawClient {
  readonly socket: net.Socket
  text = ''
  closed = false

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('data', (c: Buffer) => (this.text += c.toString('latin1')))
    socket.on('close', () => (this.closed = true))
    socket.on('error', () => undefined)
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  send(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** Waits until `n` complete responses (status line to end of a Content-Length body) arrived. */
  async responses(n: number, timeoutMs = 10_000): Promise<Array<{ status: number; head: string; body: string }>> {
    let parsed: Array<{ status: number; head: string; body: string }> = []
    await waitFor(`${n} responses (got: ${JSON.stringify(this.text.slice(0, 400))})`, () => {
      parsed = parseResponses(this.text)
      return parsed.length >= n
    }, timeoutMs)
    return parsed
  }

  close(): void {
    this.socket.destroy()
  }
}

/** Splits Content-Length-framed responses; stops at the first incomplete one. */
function parseResponses(text: string): Array<{ status: number; head: string; body: string }> {
  const out: Array<{ status: number; head: string; body: string }> = []
  let pos = 0
  for (;;) {
    const end = text.indexOf('\r\n\r\n', pos)
    if (end === -1) return out
    const head = text.slice(pos, end)
    const status = Number(head.slice(9, 12))
    const m = /\r\ncontent-length: *(\d+)/i.exec(head)
    const length = m === null ? 0 : Number(m[1])
    if (text.length < end + 4 + length) return out
    out.push({ status, head, body: text.slice(end + 4, end + 4 + length) })
    pos = end + 4 + length
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Makes every `nth` DirectWriter write wait 10 to 40 ms before it is written, holding the caller's
 * buffer (not a copy), with later writes on that socket queued behind it, and `false` returned, as
 * libuv does with a write the kernel cannot take whole. Returns the undo, and a count of holds.
 */
function holdSomeWrites(nth: number): (() => void) & { held: () => number } {
  const proto = DirectWriter.prototype
  // Called with .call on a writer below.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const { write, write2 } = proto
  const queues = new WeakMap<DirectWriter, Buffer[][]>()
  let count = 0
  let held = 0
  const flush = (writer: DirectWriter): void => {
    const queue = queues.get(writer)!
    const chunks = queue.shift()!
    writer.inFlight--
    if (!writer.socket.destroyed) write.call(writer, Buffer.concat(chunks))
    if (queue.length > 0) return void setTimeout(() => flush(writer), 10 + (count % 4) * 10)
    queues.delete(writer)
    if (writer.inFlight === 0) writer.onDrain()
  }
  const hold = (writer: DirectWriter, chunks: Buffer[], direct: () => boolean): boolean => {
    const queue = queues.get(writer)
    if (queue === undefined && ++count % nth !== 0) return direct()
    held++
    writer.inFlight++
    if (queue !== undefined) queue.push(chunks)
    else {
      queues.set(writer, [chunks])
      setTimeout(() => flush(writer), 10 + (count % 4) * 10)
    }
    return false
  }
  proto.write = function (this: DirectWriter, data: Buffer) {
    return hold(this, [data], () => write.call(this, data))
  }
  proto.write2 = function (this: DirectWriter, a: Buffer, b: Buffer) {
    return hold(this, [a, b], () => write2.call(this, a, b))
  }
  return Object.assign(
    () => {
      proto.write = write
      proto.write2 = write2
    },
    { held: () => held },
  )
}

function portOf(url: string): number {
  return Number(new URL(url).port)
}

/** A raw TCP upstream that answers each connection with `respond`. */
async function rawUpstream(respond: (socket: net.Socket, request: string) => void): Promise<{ address: string; connections: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  const state = { connections: 0 }
  const server = net.createServer((socket) => {
    state.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => undefined)
    let buffered = ''
    socket.on('data', (c: Buffer) => {
      buffered += c.toString('latin1')
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      const req = buffered.slice(0, end + 4)
      buffered = buffered.slice(end + 4)
      respond(socket, req)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    address: `127.0.0.1:${port}`,
    get connections() {
      return state.connections
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('the fast lane on the wire', () => {
  let up: Upstream
  let sc: RunningSidecar
  let port: number
  let agent: Agent

  before(async () => {
    up = await startUpstream('a', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const url = req.url ?? '/'
        if (url === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' })
          res.write('hello ')
          res.write('world')
          res.addTrailers({ 'x-sum': '11' })
          res.end()
          return
        }
        if (url === '/204') {
          res.writeHead(204)
          res.end()
          return
        }
        if (url === '/hints') {
          res.writeEarlyHints({ link: '</style.css>; rel=preload' })
        }
        if (url === '/slow-stream') {
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.write('first ')
          return // never ends: the client gives up
        }
        const received = Buffer.concat(chunks)
        const body = JSON.stringify({ method: req.method, url, te: req.headers['transfer-encoding'] ?? null, bodyLength: received.length, sha: sha256(received) })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(req.method === 'HEAD' ? undefined : body)
      })
    })
    sc = await startSidecar({
      services: { api: { source: 'static', endpoints: [up.address], retry: { attempts: 1 } } },
      limits: { headersTimeout: '600ms', requestTimeout: '2s', maxHeaderSize: '4KiB' },
    })
    port = portOf(sc.url)
    agent = new Agent()
  })
  after(async () => {
    await agent.close()
    await sc.stop()
    await up.close()
  })

  it('answers pipelined requests in order on one connection, a POST body between them', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET /one HTTP/1.1\r\nHost: api\r\n\r\nPOST /two HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nHost: api\r\n\r\n')
      const rs = await c.responses(3)
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200])
      assert.deepEqual(rs.map((r) => JSON.parse(r.body) as { url: string; bodyLength: number }).map((b) => [b.url, b.bodyLength]), [['/one', 0], ['/two', 5], ['/three', 0]])
    } finally {
      c.close()
    }
  })

  it('reads heads that come a few bytes a read, pipelined and across request boundaries', async () => {
    // The lane searches only the bytes a read adds and gathers a head in a buffer with room to grow
    // (lane.ts, #next and #grow): the pieces must still make the same requests.
    const body = 'x'.repeat(300)
    const wire = Buffer.from(
      `GET /one HTTP/1.1\r\nHost: api\r\nX-Pad: ${'p'.repeat(700)}\r\n\r\n` +
        `POST /two HTTP/1.1\r\nHost: api\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        `GET /three HTTP/1.1\r\nHost: api\r\nX-A: a\r\n\r\n`,
      'latin1',
    )
    const random = prng(7)
    const c = await RawClient.connect(port)
    try {
      c.socket.setNoDelay(true)
      for (let i = 0; i < wire.length; ) {
        const n = 1 + Math.floor(random() * 7)
        c.send(wire.subarray(i, i + n))
        i += n
        await new Promise((r) => setImmediate(r))
      }
      const rs = await c.responses(3)
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200])
      const seen = rs.map((r) => JSON.parse(r.body) as { url: string; bodyLength: number; sha: string })
      assert.deepEqual(seen.map((b) => [b.url, b.bodyLength]), [['/one', 0], ['/two', body.length], ['/three', 0]])
      assert.equal(seen[1]!.sha, sha256(Buffer.from(body)))
    } finally {
      c.close()
    }
    // A bare LF, a bare CR or a NUL in a late piece sends the unfinished head to node, which
    // answers 400 at once (the lane would otherwise wait for the rest and answer 408 at the timeout).
    const refused: Array<[string, string]> = [['\n', 'X-B: b\r\n'], ['\r', 'X-B: b\r\n'], ['\x00', '\r\n']]
    for (const [late, next] of refused) {
      const bad = await RawClient.connect(port)
      try {
        bad.socket.setNoDelay(true)
        for (const piece of ['GET /bad HTTP/1.1\r\nHo', 'st: api\r\nX-A: a', late, next]) {
          bad.send(Buffer.from(piece, 'latin1'))
          await new Promise((r) => setImmediate(r))
        }
        await waitFor(`the 400 for ${JSON.stringify(late)}`, () => bad.text.startsWith('HTTP/1.1 400'))
      } finally {
        bad.close()
      }
    }
  })

  it('keeps Content-Length when Connection names it, so a body never reaches the upstream as requests of its own', async () => {
    // `Connection: content-length` asks a proxy to drop the line that frames the body it forwards:
    // the upstream would then read the body as requests on a pooled connection, answered to
    // whoever sends next (request smuggling). The line is kept, as Host is.
    const inner = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n'
    const c = await RawClient.connect(port)
    try {
      c.send(`POST /public HTTP/1.1\r\nHost: api\r\nConnection: content-length\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`)
      const [r] = await c.responses(1)
      assert.deepEqual(JSON.parse(r!.body), { method: 'POST', url: '/public', te: null, bodyLength: inner.length, sha: sha256(Buffer.from(inner)) })
      // Another client's request on the pooled upstream connection gets its own answer.
      const res = await request(`http://127.0.0.1:${port}/next`, { dispatcher: agent, headers: { host: 'api' } })
      assert.equal((JSON.parse(await res.body.text()) as { url: string }).url, '/next')
    } finally {
      c.close()
    }
  })

  it('answers thousands of pipelined requests it answers itself, one after another, without nesting a call per request', async () => {
    // Each 404 no_route is answered at once; the next pipelined request used to start under the
    // call that answered the last, so 1,700 of them in one write overflowed the stack and ended the
    // process. They start one per turn of the event loop now.
    const n = 3000
    const c = await RawClient.connect(port)
    try {
      c.send('GET /x HTTP/1.1\r\nHost: nowhere\r\n\r\n'.repeat(n))
      const rs = await c.responses(n, 20_000)
      assert.equal(rs.filter((r) => r.status === 404).length, n)
      const res = await request(`http://127.0.0.1:${port}/after`, { dispatcher: agent, headers: { host: 'api' } })
      assert.equal(res.statusCode, 200)
      await res.body.dump()
    } finally {
      c.close()
    }
  })

  it('streams a request body that arrives in pieces after its head', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('PUT /pieces HTTP/1.1\r\nHost: api\r\nContent-Length: 10\r\n\r\nabc')
      await new Promise((r) => setImmediate(r))
      c.send('defg')
      await new Promise((r) => setImmediate(r))
      c.send('hijGET /after HTTP/1.1\r\nHost: api\r\n\r\n')
      const rs = await c.responses(2)
      assert.deepEqual(rs.map((r) => (JSON.parse(r.body) as { bodyLength: number }).bodyLength), [10, 0])
    } finally {
      c.close()
    }
  })

  it('keeps every request its own bytes while many connections read at once (one shared read buffer)', async () => {
    // Every client read lands in one buffer shared by all connections (lane.ts, readIntoShared)
    // and is copied out before the next: a pending head, a body held for a replay or for a slow
    // upstream write must never point into it. 24 connections send pipelined GETs and PUTs with
    // random bodies up to 96 KiB, cut at random places, some ending with a chunked request that
    // hands the connection to node:http; each answer must carry its own request's digest.
    const random = prng(7)
    const expected: string[][] = []
    const clients = await Promise.all(Array.from({ length: 24 }, () => RawClient.connect(port)))
    try {
      await Promise.all(
        clients.map(async (c, ci) => {
          const parts: Buffer[] = []
          const want: string[] = []
          for (let r = 0; r < 6; r++) {
            const path = `/c${ci}/r${r}`
            if (random() < 0.3) {
              parts.push(Buffer.from(`GET ${path} HTTP/1.1\r\nHost: api\r\n\r\n`, 'latin1'))
              want.push(`${path} ${sha256(Buffer.alloc(0))}`)
              continue
            }
            const body = Buffer.alloc(Math.floor(random() ** 3 * 96 * 1024))
            for (let i = 0; i < body.length; i++) body[i] = Math.floor(random() * 256)
            parts.push(Buffer.from(`PUT ${path} HTTP/1.1\r\nHost: api\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), body)
            want.push(`${path} ${sha256(body)}`)
          }
          if (ci % 4 === 0) {
            parts.push(Buffer.from(`POST /c${ci}/chunked HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, 'latin1'))
            want.push(`/c${ci}/chunked ${sha256(Buffer.from('hello'))}`)
          }
          expected[ci] = want
          const all = Buffer.concat(parts)
          for (let at = 0; at < all.length; ) {
            const n = 1 + Math.floor(random() * 20_000)
            c.send(all.subarray(at, at + n))
            at += n
            if (random() < 0.5) await new Promise((r) => setImmediate(r))
          }
        }),
      )
      for (let ci = 0; ci < clients.length; ci++) {
        const rs = await clients[ci]!.responses(expected[ci]!.length, 20_000)
        const got = rs.map((r) => {
          const b = JSON.parse(r.body) as { url: string; sha: string }
          return `${b.url} ${b.sha}`
        })
        assert.deepEqual(got, expected[ci], `connection ${ci}`)
      }
    } finally {
      for (const c of clients) c.close()
    }
  })

  it('hands a connection to node:http mid-stream for a chunked request body, and both answers are right', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET /fast HTTP/1.1\r\nHost: api\r\n\r\n')
      await c.responses(1)
      c.send('POST /chunked-body HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
      const rs = await c.responses(2)
      const second = JSON.parse(rs[1]!.body) as { url: string; bodyLength: number; te: string | null }
      assert.equal(rs[1]!.status, 200)
      assert.equal(second.url, '/chunked-body')
      assert.equal(second.bodyLength, 5)
      // And the connection keeps working on node's side.
      c.send('GET /again HTTP/1.1\r\nHost: api\r\n\r\n')
      const again = await c.responses(3)
      assert.equal((JSON.parse(again[2]!.body) as { url: string }).url, '/again')
    } finally {
      c.close()
    }
  })

  it('leaves HTTP/1.0, absolute-form and Expect requests to node:http, which answers them', async () => {
    for (const head of ['GET /ten HTTP/1.0\r\nHost: api\r\n\r\n', 'GET http://api/abs HTTP/1.1\r\nHost: whatever\r\n\r\n', 'POST /expect HTTP/1.1\r\nHost: api\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi']) {
      const c = await RawClient.connect(port)
      try {
        c.send(head)
        await waitFor(`an answer to ${JSON.stringify(head)}`, () => /HTTP\/1\.1 200[^]*\r\n\r\n\{[^}]*\}/.test(c.text))
      } finally {
        c.close()
      }
    }
  })

  it('passes a chunked response with its trailer through, and keeps the connection', async () => {
    const res = await request(`${sc.url}/chunked`, { dispatcher: agent, headers: { host: 'api' } })
    assert.equal(res.statusCode, 200)
    assert.equal(await res.body.text(), 'hello world')
    assert.equal(res.trailers['x-sum'], '11')
    const next = await request(`${sc.url}/x`, { dispatcher: agent, headers: { host: 'api' } })
    assert.equal(next.statusCode, 200)
    await next.body.text()
  })

  it('answers HEAD and 204 without a body and keeps the connection in step', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('HEAD /h HTTP/1.1\r\nHost: api\r\n\r\nGET /204 HTTP/1.1\r\nHost: api\r\n\r\nGET /last HTTP/1.1\r\nHost: api\r\n\r\n')
      await waitFor('three answers', () => c.text.split('HTTP/1.1 ').length - 1 === 3 && c.text.endsWith('}'))
      const heads = c.text.split('HTTP/1.1 ').slice(1)
      assert.match(heads[0]!, /^200/)
      assert.match(heads[0]!, /content-length: \d+/i, 'HEAD keeps the length of the body it does not send')
      assert.match(heads[1]!, /^204/)
      assert.match(heads[2]!, /^200[^]*"url":"\/last"/)
    } finally {
      c.close()
    }
  })

  it('forwards 103 Early Hints before the response', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET /hints HTTP/1.1\r\nHost: api\r\n\r\n')
      await waitFor('the final response', () => c.text.includes('"url":"/hints"'))
      assert.match(c.text, /^HTTP\/1\.1 103 Early Hints\r\n[^]*link: <\/style\.css>; rel=preload[^]*HTTP\/1\.1 200 /i)
    } finally {
      c.close()
    }
  })

  it('answers 408 to a head that does not finish within headersTimeout', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET /slow HTTP/1.1\r\nHost: ap')
      await waitFor('408 and a closed connection', () => c.closed, 10_000)
      assert.match(c.text, /^HTTP\/1\.1 408 /)
    } finally {
      c.close()
    }
  })

  it('leaves an oversized head to node:http: 431', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send(`GET / HTTP/1.1\r\nHost: api\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n`)
      await waitFor('431', () => c.text.startsWith('HTTP/1.1 431'))
    } finally {
      c.close()
    }
  })

  it('closes after the response when the client says Connection: close', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET /bye HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n')
      await waitFor('the connection closed', () => c.closed)
      const [r] = parseResponses(c.text)
      assert.equal(r!.status, 200)
      assert.match(r!.head, /\r\nconnection: close/i)
    } finally {
      c.close()
    }
  })

  it('answers 404 no_route itself and 400 for garbage through node:http', async () => {
    const c = await RawClient.connect(port)
    try {
      c.send('GET / HTTP/1.1\r\nHost: nobody\r\n\r\n')
      const [r] = await c.responses(1)
      assert.equal(r!.status, 404)
      assert.match(r!.head, /x-outrigger-error: no_route/)
      assert.deepEqual(JSON.parse(r!.body), { error: 'no_route', service: null })
      c.send('GET / HTTP/1.1\r\nHost: api\r\nbad header\r\n\r\n')
      await waitFor('400', () => c.text.includes('HTTP/1.1 400'))
    } finally {
      c.close()
    }
  })

  it('a client that leaves mid-response frees the request: counted 499, in-flight back to 0', async () => {
    const c = await RawClient.connect(port)
    c.send('GET /slow-stream HTTP/1.1\r\nHost: api\r\n\r\n')
    await waitFor('the first bytes', () => c.text.includes('first'))
    c.close()
    await waitFor('the 499 in the metrics', async () => {
      const text = await (await fetch(`${sc.adminUrl}/metrics`)).text()
      return /outrigger_requests_total\{service="api",code="499"\} 1\b/.test(text) && /outrigger_in_flight_requests\{service="api"\} 0\b/.test(text)
    })
  })
})

describe('the fast lane against upstreams that misbehave', () => {
  const cleanup: Array<() => Promise<void>> = []
  after(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it('delimits a response without length by the upstream closing, and says connection: close', async () => {
    const up = await rawUpstream((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it until the end'))
    const sc = await startSidecar({ services: { raw: { source: 'static', endpoints: [up.address] } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      c.send('GET / HTTP/1.1\r\nHost: raw\r\n\r\n')
      await waitFor('the client connection closed', () => c.closed)
      assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/)
      assert.match(c.text, /\r\nconnection: close\r\n/i)
      assert.ok(c.text.endsWith('\r\n\r\nall of it until the end'), c.text)
    } finally {
      c.close()
    }
  })

  it('passes every byte of large responses to a client that stops reading, and a head that arrives in two reads', async () => {
    // The lane reads each upstream connection into one buffer it reuses (UpstreamConn): bytes the
    // client's socket has not taken must not be overwritten by the next read, and a head split
    // across reads must be kept as a copy. A patterned body in 8 KiB writes, one per turn, checked
    // byte for byte once the paused client reads again; two responses on the one connection.
    // More than loopback's socket buffers hold (tcp_wmem's 4 MiB each way, and the client's receive
    // window), so the proxy must queue writes and then stop reading the upstream.
    const size = 12 * 1024 * 1024
    const body = Buffer.alloc(size)
    for (let i = 0; i < size; i++) body[i] = (i * 31 + (i >>> 9)) & 0xff
    let upSocket: net.Socket | null = null
    const up = await rawUpstream((socket) => {
      upSocket = socket
      socket.write('HTTP/1.1 200 OK\r\ncontent-')
      setTimeout(() => {
        socket.write(`length: ${size}\r\n\r\n`)
        let at = 0
        const next = (): void => {
          if (socket.destroyed || at >= size) return
          socket.write(body.subarray(at, at + 8192))
          at += 8192
          setImmediate(next)
        }
        next()
      }, 20)
    })
    const sc = await startSidecar({ services: { big: { source: 'static', endpoints: [up.address] } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      c.socket.pause()
      c.send('GET /1 HTTP/1.1\r\nHost: big\r\n\r\nGET /2 HTTP/1.1\r\nHost: big\r\n\r\n')
      // The proxy stopped reading the upstream: the client's socket is full and writes queued.
      await waitFor('the upstream backed up', () => upSocket !== null && upSocket.writableLength > 0)
      c.socket.resume()
      const rs = await c.responses(2, 30_000)
      const expected = body.toString('latin1')
      for (const [i, r] of rs.entries()) {
        assert.equal(r.status, 200)
        assert.equal(r.body.length, size)
        assert.ok(r.body === expected, `response ${i + 1}: first differing byte at ${[...r.body].findIndex((ch, k) => ch !== expected[k])}`)
      }
    } finally {
      c.close()
    }
  })

  it("reads a head split across reads from its own bytes, not from the buffer's stale ones", async () => {
    // Each upstream connection reads into one buffer, handed over whole with the count read
    // (UpstreamConn): past that count are the previous reads' bytes. Here they are blank lines
    // (a body of CRLFs), and the next head arrives in two reads, the first without its blank line.
    const blank = Buffer.alloc(60_000, '\r\n')
    const up = await rawUpstream((socket, request) => {
      if (request.startsWith('GET /1 ')) {
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${blank.length}\r\n\r\n`)
        setTimeout(() => socket.write(blank), 20)
        return
      }
      socket.write('HTTP/1.1 200 OK\r\ncontent-')
      setTimeout(() => socket.write('length: 5\r\n\r\nhello'), 20)
    })
    const sc = await startSidecar({ services: { stale: { source: 'static', endpoints: [up.address] } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      c.send('GET /1 HTTP/1.1\r\nHost: stale\r\n\r\n')
      const [first] = await c.responses(1)
      assert.equal(first!.body.length, blank.length)
      c.send('GET /2 HTTP/1.1\r\nHost: stale\r\n\r\n')
      const rs = await c.responses(2)
      assert.equal(rs[1]!.status, 200)
      assert.equal(rs[1]!.body, 'hello')
      assert.equal(up.connections, 1, 'both on one upstream connection, so one read buffer')
    } finally {
      c.close()
    }
  })

  it('keeps each response its own bytes when writes wait and the upstream connection moves on', async () => {
    // A write the kernel cannot take whole stays in libuv, pointing at its bytes, until the
    // client reads (direct-write.ts). Such a write may carry a response's last bytes: the exchange
    // ends, its upstream connection goes back to the pool and reads the next response into the
    // same buffer, so those bytes must not point into it (lane.ts #forward, UpstreamConn.detach).
    // Loopback's socket buffers take megabytes, so here the writer holds every third write itself,
    // by reference, for 10 to 40 ms, as libuv would: 12 clients ask one upstream for bodies of 20 to
    // 400 KiB, each filled from its own seed, over a pool that serves them all in turn.
    const body = (seed: number, size: number): Buffer => {
      const b = Buffer.allocUnsafe(size)
      for (let i = 0; i < size; i++) b[i] = (i * 131 + seed * 7 + (i >>> 11) * seed) & 0xff
      return b
    }
    const up = await rawUpstream((socket, request) => {
      const m = /^GET \/(\d+)\/(\d+) /.exec(request)!
      const b = body(Number(m[1]), Number(m[2]))
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${b.length}\r\n\r\n`, 'latin1'), b]))
    })
    const sc = await startSidecar({ services: { slow: { source: 'static', endpoints: [up.address] } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const random = prng(11)
    const clients = await Promise.all(Array.from({ length: 12 }, () => RawClient.connect(portOf(sc.url))))
    const restore = holdSomeWrites(3)
    try {
      await Promise.all(
        clients.map(async (c, ci) => {
          for (let r = 0; r < 8; r++) {
            const seed = ci * 100 + r + 1
            const size = 20 * 1024 + Math.floor(random() * 380 * 1024)
            const before = c.text.length
            c.send(`GET /${seed}/${size} HTTP/1.1\r\nHost: slow\r\n\r\n`)
            await waitFor(`client ${ci} response ${r}`, () => parseResponses(c.text.slice(before)).length === 1, 30_000)
            const got = parseResponses(c.text.slice(before))[0]!
            assert.equal(got.status, 200)
            assert.equal(sha256(Buffer.from(got.body, 'latin1')), sha256(body(seed, size)), `client ${ci} response ${r} (${size} bytes)`)
          }
        }),
      )
      assert.ok(restore.held() > 100, `writes held: ${restore.held()}`)
    } finally {
      restore()
      for (const c of clients) c.close()
    }
  })

  it('retries a GET whose reused upstream connection was closed, and every request succeeds', async () => {
    // Answers with keep-alive implied, then closes each connection just after: the next request
    // may find it dead. GETs are retried (idempotent, nothing was answered).
    const up = await rawUpstream((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
      setImmediate(() => socket.destroy())
    })
    const sc = await startSidecar({ services: { flaky: { source: 'static', endpoints: [up.address], retry: { attempts: 2 } } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const agent = new Agent()
    cleanup.push(() => agent.close())
    for (let i = 0; i < 50; i++) {
      const res = await request(`${sc.url}/`, { dispatcher: agent, headers: { host: 'flaky' } })
      assert.equal(res.statusCode, 200, `request ${i}`)
      assert.equal(await res.body.text(), 'ok')
    }
    assert.ok(up.connections >= 50, `each request had a fresh upstream connection (${up.connections})`)
  })

  it('sends a pipelined POST on a live upstream connection, not on the one whose FIN came behind the last response', async () => {
    // The upstream closes after each response without saying so, its FIN right behind the bytes.
    // A POST pipelined behind a GET must not go out on that connection: it would be reset, and a
    // POST is never retried, so the client would get a 502 for a request no upstream refused.
    // The upstream shares this process's loop, so the order is fixed: `end()` writes the bytes at
    // once and sends the FIN at the start of the loop's next turn, before the poll in which the
    // sidecar reads the response; the FIN is then in the socket behind the bytes, as when a remote
    // upstream's FIN comes with its last segment. Started in the same turn, the POST got 502 20 of 20.
    const heads: string[] = []
    const up = await rawUpstream((socket, head) => {
      heads.push(head.slice(0, head.indexOf('\r\n')))
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
    })
    const sc = await startSidecar({ services: { closing: { source: 'static', endpoints: [up.address], retry: { attempts: 2 } } } })
    cleanup.push(() => up.close(), () => sc.stop())
    for (let i = 0; i < 20; i++) {
      const c = await RawClient.connect(portOf(sc.url))
      try {
        c.send(`GET /${i} HTTP/1.1\r\nHost: closing\r\n\r\nPOST /${i} HTTP/1.1\r\nHost: closing\r\nContent-Length: 2\r\n\r\nhi`)
        const rs = await c.responses(2)
        assert.deepEqual(rs.map((r) => `${r.status} ${r.body}`), ['200 ok', '200 ok'], `round ${i}: ${rs[1]!.head}`)
      } finally {
        c.close()
      }
    }
    assert.equal(heads.filter((h) => h.startsWith('POST')).length, 20, 'each POST reached the upstream once')
  })

  it('answers 502 upstream_reset to a malformed response, without retrying a POST', async () => {
    const up = await rawUpstream((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok'))
    const sc = await startSidecar({ services: { bad: { source: 'static', endpoints: [up.address], retry: { attempts: 2 } } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      c.send('POST / HTTP/1.1\r\nHost: bad\r\nContent-Length: 2\r\n\r\nhi')
      const [r] = await c.responses(1)
      assert.equal(r!.status, 502)
      assert.match(r!.head, /x-outrigger-error: upstream_reset/)
      assert.equal(up.connections, 1, 'a POST is not repeated')
    } finally {
      c.close()
    }
  })

  /** Two raw upstreams that answer by path from `answers`, counting the requests each path got. */
  async function pathUpstreams(answers: Record<string, (socket: net.Socket) => void>): Promise<{ addresses: string[]; seen: Map<string, number> }> {
    const seen = new Map<string, number>()
    const respond = (socket: net.Socket, req: string): void => {
      const path = req.slice(req.indexOf(' ') + 1, req.indexOf(' ', req.indexOf(' ') + 1))
      seen.set(path, (seen.get(path) ?? 0) + 1)
      answers[path]!(socket)
    }
    const ups = [await rawUpstream(respond), await rawUpstream(respond)]
    cleanup.push(...ups.map((u) => () => u.close()))
    return { addresses: ups.map((u) => u.address), seen }
  }

  /** One request on a connection of its own; its response, within 10 s. */
  async function askOnce(port: number, host: string, path: string): Promise<{ status: number; head: string; body: string }> {
    const c = await RawClient.connect(port)
    try {
      c.send(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
      const [r] = await c.responses(1, 10_000)
      return r!
    } finally {
      c.close()
    }
  }

  it('answers 502 at once to a response head with bytes llhttp refuses or a bad first chunk, and skips empty lines before a status line', async () => {
    // A head with bare-LF line ends never shows a CRLFCRLF: waiting for one would answer 504 at the
    // request timeout (a minute here; the test's wait is 10 s). llhttp refuses it at once, and
    // skips CR and LF bytes before a status line, in a read of their own or not. A chunk size that
    // is not hex, in the head's read, comes before the head is written: a 502, not a cut, and not
    // a retry (the response had begun); a malformed head is retried, as a reset before any response.
    const { addresses, seen } = await pathUpstreams({
      '/bare-lf': (socket) => socket.write('HTTP/1.1 200 OK\nContent-Length: 2\n\nok'),
      '/control': (socket) => socket.write('HTTP/1.1 200 OK\r\nX-A: a\u0001b\r\n'),
      '/chunk-size': (socket) => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n'),
      '/leading': (socket) => {
        socket.write('\r\n')
        setTimeout(() => socket.write('\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 20)
      },
      '/cr-then-head': (socket) => {
        socket.write('\n\rHTTP/1.1 200 OK\r\n')
        setTimeout(() => socket.write('Content-Length: 2\r\n\r\nok'), 20)
      },
    })
    const sc = await startSidecar({
      services: { odd: { source: 'static', endpoints: addresses, retry: { attempts: 1 } } },
      limits: { requestTimeout: '60s' },
    })
    cleanup.push(() => sc.stop())
    const table: ReadonlyArray<[path: string, status: number, upstreamRequests: number]> = [
      ['/bare-lf', 502, 2],
      ['/control', 502, 2],
      ['/chunk-size', 502, 1],
      ['/leading', 200, 1],
      ['/cr-then-head', 200, 1],
    ]
    for (const [path, status, upstreamRequests] of table) {
      const r = await askOnce(portOf(sc.url), 'odd', path)
      assert.equal(r.status, status, `${path}: ${r.head}`)
      if (status === 502) assert.match(r.head, /x-outrigger-error: upstream_reset/)
      else assert.equal(r.body, 'ok')
      assert.equal(seen.get(path), upstreamRequests, `${path}: requests the upstreams got`)
    }
  })

  it('times the wait for a response head from the request: a head that trickles in, or empty lines without end, get 504', async () => {
    // Each read restarts an inactivity timeout; the wait for the head must not restart with reads
    // that do not finish it, or an upstream writing a byte a second holds the request for ever.
    const timers = new Set<NodeJS.Timeout>()
    const trickle = (socket: net.Socket, first: string, each: string): void => {
      socket.write(first)
      const timer = setInterval(() => (socket.destroyed ? clearInterval(timer) : socket.write(each)), 150)
      timers.add(timer)
      socket.on('close', () => clearInterval(timer))
    }
    const { addresses } = await pathUpstreams({
      '/crlf': (socket) => trickle(socket, '\r\n', '\r\n'),
      '/fields': (socket) => trickle(socket, 'HTTP/1.1 200 OK\r\n', 'X-A: b\r\n'),
    })
    const sc = await startSidecar({
      services: { slow: { source: 'static', endpoints: [addresses[0]!], retry: { attempts: 0 }, timeouts: { request: '1s' } } },
    })
    cleanup.push(
      () => sc.stop(),
      () => {
        for (const t of timers) clearInterval(t)
        return Promise.resolve()
      },
    )
    for (const path of ['/crlf', '/fields']) {
      const r = await askOnce(portOf(sc.url), 'slow', path)
      assert.equal(r.status, 504, `${path}: ${r.head}`)
      assert.match(r.head, /x-outrigger-error: upstream_timeout/)
    }
  })

  it('on the node:http path (a circuit breaker), forwards a reason phrase node cannot write with its status\'s own, and answers a bad first chunk with 502', async () => {
    // undici reads reasons node's writeHead refuses (a control byte, UTF-8): the response must
    // still come, and the request must end (its breaker slot freed, so the next one is let in).
    const { addresses, seen } = await pathUpstreams({
      '/control-reason': (socket) => socket.write('HTTP/1.1 200 O\u0001K\r\nContent-Length: 2\r\n\r\nok'),
      '/utf8-reason': (socket) => socket.write(Buffer.concat([Buffer.from('HTTP/1.1 404 '), Buffer.from('Не найдено'), Buffer.from('\r\nContent-Length: 2\r\n\r\nno')])),
      '/chunk-size': (socket) => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n'),
      '/fine': (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
    })
    const sc = await startSidecar({
      services: { guarded: { source: 'static', endpoints: addresses, retry: { attempts: 1 }, circuitBreaker: { maxRequests: 1, maxPending: 0 } } },
    })
    cleanup.push(() => sc.stop())
    const table: ReadonlyArray<[path: string, status: number, head: RegExp, body: string]> = [
      ['/control-reason', 200, /^HTTP\/1\.1 200 OK\r\n/, 'ok'],
      ['/fine', 200, /^HTTP\/1\.1 200 OK\r\n/, 'ok'],
      ['/utf8-reason', 404, /^HTTP\/1\.1 404 Not Found\r\n/, 'no'],
      ['/chunk-size', 502, /x-outrigger-error: upstream_reset/, '{"error":"upstream_reset","service":"guarded"}'],
      ['/fine', 200, /^HTTP\/1\.1 200 OK\r\n/, 'ok'],
    ]
    for (const [path, status, head, body] of table) {
      const r = await askOnce(portOf(sc.url), 'guarded', path)
      assert.equal(r.status, status, `${path}: ${r.head}`)
      assert.match(r.head, head, path)
      assert.equal(r.body, body, path)
    }
    assert.equal(seen.get('/chunk-size'), 1, 'a response that had begun is not retried')
  })

  it('moves a request off an endpoint that refuses connections, whatever the method', async () => {
    const good = await startUpstream('good')
    const dead = await closedPort()
    const sc = await startSidecar({ services: { mixed: { source: 'static', endpoints: [`127.0.0.1:${dead}`, good.address], retry: { attempts: 1 } } } })
    cleanup.push(() => good.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      // Bodies that came with their head: small ones are copied behind it, larger ones written beside it (lane.ts, #send).
      const sizes = [3, 3000, 3, 3000]
      for (const n of sizes) c.send(`POST /p HTTP/1.1\r\nHost: mixed\r\nContent-Length: ${n}\r\n\r\n${'x'.repeat(n)}`)
      const rs = await c.responses(4)
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200])
      assert.deepEqual(rs.map((r) => (JSON.parse(r.body) as { bodyLength: number }).bodyLength), sizes)
    } finally {
      c.close()
    }
  })

  it('closes the client connection after a response that came before the whole request body, so the rest is never read as a request', async () => {
    // The upstream answers as soon as it has a head (a 401 or 413 before reading an upload is
    // usual). The client's body then arrives after the response, and here it looks like a request:
    // reading it as the connection's next one would forward a request the client never made.
    const heads: string[] = []
    const up = await rawUpstream((socket, head) => {
      heads.push(head)
      socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno')
    })
    const sc = await startSidecar({ services: { early: { source: 'static', endpoints: [up.address] } } })
    cleanup.push(() => up.close(), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    try {
      const inner = 'GET /never-sent HTTP/1.1\r\nHost: early\r\n\r\n'
      c.send(`POST /upload HTTP/1.1\r\nHost: early\r\nContent-Length: ${inner.length + 5}\r\n\r\nhello`)
      const [r] = await c.responses(1)
      assert.equal(r!.status, 413)
      assert.match(r!.head, /\r\nconnection: close$/m)
      c.send(inner)
      await waitFor('the client connection closed', () => c.closed)
      assert.deepEqual(heads.map((h) => h.slice(0, h.indexOf('\r\n'))), ['POST /upload HTTP/1.1'])
      assert.equal(parseResponses(c.text).length, 1)
    } finally {
      c.close()
    }
  })

  it('starts each request on a connection afresh, whatever the last one did', async () => {
    // A sticky pin, a retry, an error answer must not carry over to the connection's next request:
    // a request after a pinned one is pinned anew, a request after a retried one may retry again,
    // a request after a 502 is answered by an upstream. (Per-request state lives in each request's
    // FastExchange; this holds any attempt to keep state per connection, such as reusing the object.)
    const ups = [await startUpstream('s1'), await startUpstream('s2'), await startUpstream('s3')]
    const dead = await closedPort()
    const sc = await startSidecar({
      services: {
        st: { source: 'static', strategy: 'consistent-hash', hashKey: 'cookie:route', stickyCookie: { ttl: '1h' }, endpoints: ups.map((u) => u.address) },
        mixed: { source: 'static', endpoints: [`127.0.0.1:${dead}`, ups[0]!.address], retry: { attempts: 1 } },
        down: { source: 'static', endpoints: [`127.0.0.1:${dead}`], retry: { attempts: 0 } },
      },
    })
    cleanup.push(...ups.map((u) => () => u.close()), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    let answered = 0
    const ask = async (host: string, extra = ''): Promise<{ status: number; head: string; body: string }> => {
      c.send(`GET /${answered} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`)
      const rs = await c.responses(++answered)
      return rs[answered - 1]!
    }
    try {
      const first = await ask('st')
      const token = /\r\nset-cookie: route=([0-9a-f]{8});/.exec(first.head)?.[1]
      assert.ok(token !== undefined, first.head)
      for (let i = 0; i < 12; i++) {
        const pinned = await ask('st', `Cookie: route=${token}\r\n`)
        assert.equal(pinned.status, 200)
        assert.doesNotMatch(pinned.head, /set-cookie/i, 'a pinned client gets no new cookie')
        const fresh = await ask('st')
        assert.match(fresh.head, /\r\nset-cookie: route=[0-9a-f]{8};/, `request ${answered}: no cookie, so a new pin`)
        // Round-robin over a refusing endpoint and a live one: every second request is retried.
        for (let j = 0; j < 2; j++) assert.equal((await ask('mixed')).status, 200, `request ${answered}`)
        const refused = await ask('down')
        assert.ok(refused.status === 502 || refused.status === 503, refused.head) // 503 once the endpoint is ejected
        assert.equal((await ask('nowhere')).status, 404)
        assert.equal((await ask('mixed')).status, 200, `request ${answered}, after a ${refused.status}`)
      }
    } finally {
      c.close()
    }
  })

  it('routes on a repeated header as node reads it: first line for User-Agent, joined for others, an array for Set-Cookie', async () => {
    // node's req.headers keeps the first of repeated User-Agent (and Authorization, Content-Type...)
    // lines, gathers Set-Cookie in an array and joins the rest; a route matches that value, so a
    // request is routed the same whichever path reads its head.
    const ups = [await startUpstream('canary'), await startUpstream('tenant'), await startUpstream('stable')]
    const sc = await startSidecar({
      services: {
        canary: { source: 'static', endpoints: [ups[0]!.address], routes: [{ host: 'app', headers: { 'user-agent': 'canary' } }, { host: 'app', headers: { 'set-cookie': 'b' } }] },
        tenant: { source: 'static', endpoints: [ups[1]!.address], routes: [{ host: 'app', headers: { 'x-tenant': 'a, b' } }] },
        stable: { source: 'static', endpoints: [ups[2]!.address], routes: [{ host: 'app' }] },
      },
    })
    cleanup.push(...ups.map((u) => () => u.close()), () => sc.stop())
    const c = await RawClient.connect(portOf(sc.url))
    const table: ReadonlyArray<[lines: string, expected: string]> = [
      ['User-Agent: canary\r\nUser-Agent: other\r\n', 'canary'],
      ['User-Agent: other\r\nuser-agent: canary\r\n', 'stable'],
      ['X-Tenant: a\r\nx-tenant: b\r\n', 'tenant'],
      ['X-Tenant: a, b\r\n', 'tenant'],
      ['Set-Cookie: a\r\nSet-Cookie: b\r\n', 'canary'],
      ['', 'stable'],
    ]
    try {
      for (const [i, [lines, expected]] of table.entries()) {
        c.send(`GET /${i} HTTP/1.1\r\nHost: app\r\n${lines}\r\n`)
        const res = (await c.responses(i + 1))[i]!
        assert.equal(res.status, 200, res.head)
        assert.equal((JSON.parse(res.body) as { upstream: string }).upstream, expected, JSON.stringify(lines))
      }
    } finally {
      c.close()
    }
  })
})

describe('the fast lane reuses the memory of large reads only when nothing holds it', () => {
  it("keeps a slow upstream's request body its own while other requests' large reads go through", async () => {
    // A large read's copy is reused for the next large read once the lane knows nothing holds it
    // (read-copy.ts): written whole, not kept for a replay, no view left. Here one POST of 4 MiB
    // goes to an upstream that does not read yet, so its chunks wait in libuv or the Writable, and
    // meanwhile 24 POSTs of 40 KiB go to another upstream on another connection. Had any waiting
    // chunk's memory been reused, the slow upstream would get some of the other bodies' bytes.
    let release!: () => void
    const released = new Promise<void>((r) => (release = r))
    const slowBody = createHash('sha256')
    let slowBytes = 0
    const slow = net.createServer((s) => {
      s.pause()
      s.on('error', () => undefined)
      void released.then(() => {
        let head = ''
        let expected = -1
        s.on('data', (d: Buffer) => {
          let body = d
          if (expected < 0) {
            head += d.toString('latin1')
            const end = head.indexOf('\r\n\r\n')
            if (end === -1) return
            expected = Number(/content-length: *(\d+)/i.exec(head.slice(0, end))![1])
            body = d.subarray(d.length - (head.length - end - 4))
          }
          slowBody.update(body)
          slowBytes += body.length
          if (slowBytes === expected) {
            const answer = JSON.stringify({ bytes: slowBytes, sha: slowBody.digest('hex') })
            s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${answer.length}\r\nConnection: close\r\n\r\n${answer}`)
          }
        })
        s.resume()
      })
    })
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
    const fast = await startUpstream('fast', (req, res) => {
      const hash = createHash('sha256')
      let bytes = 0
      req.on('data', (c: Buffer) => {
        hash.update(c)
        bytes += c.length
      })
      req.on('end', () => {
        const answer = JSON.stringify({ bytes, sha: hash.digest('hex') })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length })
        res.end(answer)
      })
    })
    const sc = await startSidecar({
      services: {
        slow: { source: 'static', endpoints: [`127.0.0.1:${(slow.address() as net.AddressInfo).port}`], timeouts: { request: '30s' } },
        fast: { source: 'static', endpoints: [fast.address] },
      },
    })
    const port = portOf(sc.url)
    const random = prng(11)
    const bytes = (n: number): Buffer => {
      const b = Buffer.allocUnsafe(n)
      for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256)
      return b
    }
    const big = bytes(4 * 1024 * 1024)
    const first = await RawClient.connect(port)
    const second = await RawClient.connect(port)
    try {
      first.send(Buffer.concat([Buffer.from(`POST /big HTTP/1.1\r\nHost: slow\r\nContent-Length: ${big.length}\r\n\r\n`, 'latin1'), big]))
      // The lane has sent what the kernel takes and holds the rest (the client paused behind it).
      await waitFor('the first request to back up', () => first.socket.writableLength > 0 || first.socket.bytesWritten < big.length)
      const want: string[] = []
      for (let r = 0; r < 24; r++) {
        const body = bytes(40 * 1024)
        want.push(JSON.stringify({ bytes: body.length, sha: sha256(body) }))
        second.send(Buffer.concat([Buffer.from(`POST /r${r} HTTP/1.1\r\nHost: fast\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), body]))
        await second.responses(r + 1)
      }
      assert.deepEqual((await second.responses(24)).map((r) => r.body), want)
      release()
      const [answer] = await first.responses(1, 30_000)
      assert.equal(answer!.status, 200)
      assert.deepEqual(JSON.parse(answer!.body), { bytes: big.length, sha: sha256(big) }, 'the slow upstream got the first request body, every byte its own')
    } finally {
      release()
      first.close()
      second.close()
      await sc.stop()
      await fast.close()
      await new Promise<void>((r) => slow.close(() => r()))
    }
  })
})
