/**
 * Upstream faults under steady concurrent load: every request's fate is counted and printed, and
 * each test states exactly which fates the fault may cause. A `hang` (no answer within 15 s) or a
 * client-side error is never allowed: the sidecar must always answer or cut a started response.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RunningSidecar, Upstream } from '../helpers.ts'
import { send, waitFor } from '../helpers.ts'
import { FaultScope, Load, report } from './load.ts'

/** A raw TCP upstream that answers every connection with `answer` (for answers node:http would refuse to send). */
async function rawUpstream(answer: (socket: net.Socket, n: number) => void): Promise<{ address: string; hits: () => number; close(): Promise<void> }> {
  let hits = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    // Answer once the request head has arrived, as a real (broken) server would.
    socket.once('data', () => answer(socket, hits++))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    address: `127.0.0.1:${port}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('upstream faults under load', () => {
  const scope = new FaultScope()
  const { agent, cleanup } = scope
  after(() => scope.close())
  const sidecar = (services: Record<string, unknown>): Promise<RunningSidecar> => scope.sidecar(services)
  const upstream = (name: string, handler?: (req: IncomingMessage, res: ServerResponse, u: Upstream) => void): Promise<Upstream> => scope.upstream(name, handler)

  it('an upstream killed mid-run fails no GET', async (t) => {
    const ups = [await upstream('a'), await upstream('b'), await upstream('c')]
    const s = await sidecar({ svc: { source: 'static', endpoints: ups.map((u) => u.address), healthCheck: { passive: { consecutiveFailures: 3 } } } })
    const load = new Load({ url: s.url, host: 'svc', concurrency: 24 }).start()
    await load.advance(300)
    await ups[1]!.close()
    const killedAt = load.total
    await load.advance(1500)
    const fates = await load.stop()
    report(t, `killed b after ${killedAt} requests`, fates)
    assert.deepEqual(load.other(['200']), {})
    assert.ok(s.sidecar.clusters()[0]!.hosts().find((h) => h.port === ups[1]!.port)!.flags !== 0, 'the dead endpoint is ejected')
  })

  it('an upstream that accepts and never answers gives 504 after timeouts.request; the others are unaffected', async (t) => {
    const silent = await upstream('silent', () => undefined)
    const [a, b] = [await upstream('a'), await upstream('b')]
    const s = await sidecar({ svc: { source: 'static', endpoints: [silent.address, a.address, b.address], timeouts: { request: '400ms' } } })
    const load = new Load({ url: s.url, host: 'svc', concurrency: 24 }).start()
    await load.until('504 upstream_timeout')
    await load.advance(600)
    const fates = await load.stop()
    report(t, 'one silent upstream of three', fates)
    assert.deepEqual(load.other(['200', '504 upstream_timeout']), {})
    // Every request that reached the silent upstream timed out once (never retried); every other one succeeded.
    assert.equal(fates['504 upstream_timeout'], silent.hits)
    assert.equal(fates['200'], a.hits + b.hits)
  })

  it('upstreams answering garbage give 502, ones closing mid-response give a cut response; never a hang, and other services keep being served', async (t) => {
    const GARBAGE = [
      'SPDY/9 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\nhello world!!',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n',
      'HTTP/1.1 abc\r\n\r\n',
      '\u0000\u0001\u0002\u0003 binary noise \r\n\r\n',
      'HTTP/1.1 200 OK\r\nX-Bad\u0007Header: x\r\nContent-Length: 0\r\n\r\n',
    ]
    const garbage = await rawUpstream((socket, n) => socket.end(GARBAGE[n % GARBAGE.length]!))
    cleanup.push(() => garbage.close())
    const cutter = await rawUpstream((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
      socket.write('x'.repeat(1000), () => socket.destroy())
    })
    cleanup.push(() => cutter.close())
    const closer = await rawUpstream((socket) => socket.destroy())
    cleanup.push(() => closer.close())
    const good = await upstream('good')
    const s = await sidecar({
      garbage: { source: 'static', endpoints: [garbage.address] },
      cut: { source: 'static', endpoints: [cutter.address] },
      closed: { source: 'static', endpoints: [closer.address] },
      good: { source: 'static', endpoints: [good.address] },
    })
    const loads = {
      garbage: new Load({ url: s.url, host: 'garbage', concurrency: 6 }).start(),
      cut: new Load({ url: s.url, host: 'cut', concurrency: 6 }).start(),
      closed: new Load({ url: s.url, host: 'closed', concurrency: 6 }).start(),
      good: new Load({ url: s.url, host: 'good', concurrency: 6 }).start(),
    }
    await Promise.all(Object.values(loads).map((l) => l.advance(300)))
    for (const [name, load] of Object.entries(loads)) report(t, name, await load.stop())
    // Garbage in the head is a 502; garbage in a chunked body comes after the head was accepted,
    // so the client's connection is cut (before node flushed the head, the client sees no status).
    assert.deepEqual(loads.garbage.other(['502 upstream_reset', '200 cut', 'error UND_ERR_SOCKET']), {})
    assert.ok((loads.garbage.fates['502 upstream_reset'] ?? 0) > 0)
    assert.deepEqual(loads.cut.other(['200 cut']), {})
    assert.deepEqual(loads.closed.other(['502 upstream_reset']), {})
    assert.deepEqual(loads.good.other(['200']), {})
    assert.ok(garbage.hits() >= GARBAGE.length, 'every kind of garbage was served')
    // The sidecar is still healthy afterwards.
    assert.equal((await send(agent, `${s.adminUrl}/healthz`)).status, 200)
  })

  it('all upstreams gone: clear 502s, then recovery when they return on the same ports', async (t) => {
    const ups = [await upstream('a'), await upstream('b')]
    const ports = ups.map((u) => u.port)
    const s = await sidecar({ svc: { source: 'static', endpoints: ups.map((u) => u.address), healthCheck: { active: { type: 'tcp', interval: '200ms', timeout: '100ms' } } } })
    const load = new Load({ url: s.url, host: 'svc', concurrency: 16 }).start()
    await load.advance(200)
    for (const u of ups) await u.close()
    await load.until('502 upstream_connect_failed')
    await load.advance(300)
    const during = { ...load.fates }
    // Back on the same ports (as a restarted instance would be).
    const back = [await upstream('a2'), await upstream('b2')]
    for (const [i, u] of back.entries()) {
      await new Promise<void>((resolve) => u.server.close(() => resolve()))
      await new Promise<void>((resolve) => u.server.listen(ports[i], '127.0.0.1', resolve))
    }
    await waitFor('traffic to reach the returned upstreams', () => back.every((u) => u.hits > 20), 15_000)
    const fates = await load.stop()
    report(t, 'up, all gone', during)
    report(t, 'up, all gone, back', fates)
    // upstream_reset: a request caught on an upstream as it closed, whose retry found none.
    assert.deepEqual(load.other(['200', '502 upstream_connect_failed', '502 upstream_reset', '503 no_healthy_endpoint']), {})
    assert.ok((fates['200'] ?? 0) > (during['200'] ?? 0), 'served again after the upstreams returned')
  })

  it('a client aborting mid-upload or mid-download cancels the upstream request and leaks no socket or timer', async (t) => {
    let uploadsSeen = 0
    let uploadsCut = 0
    let uploadsCompleted = 0
    let downloadsCut = 0
    const up = await upstream('up', (req, res) => {
      if (req.method === 'POST') {
        uploadsSeen++
        let complete = false
        req.on('end', () => {
          complete = true
          uploadsCompleted++
          res.end('ok')
        })
        req.resume()
        req.on('close', () => {
          if (!complete) uploadsCut++
        })
        return
      }
      if (req.url === '/warm') return void res.end('warm')
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024)), 5)
      res.on('close', () => {
        clearInterval(timer)
        if (!res.writableFinished) downloadsCut++
      })
    })
    const s = await sidecar({ abort: { source: 'static', endpoints: [up.address] } })
    const port = Number(new URL(s.url).port)
    // A warm-up request leaves one kept-alive connection in the pool, as the steady state has.
    assert.equal((await send(agent, `${s.url}/warm`, { headers: { host: 'abort' } })).status, 200)
    const host = s.sidecar.clusters()[0]!.hosts()[0]!
    const resources = (): Record<string, number> => {
      const counts: Record<string, number> = {}
      for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
      return counts
    }
    const before = resources()

    const N = 20
    const abortOne = (payload: string, abortWhen: (received: number) => boolean, sendAll: boolean): Promise<void> =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1')
        let received = 0
        socket.on('error', () => undefined)
        socket.on('close', () => resolve())
        socket.on('connect', () => {
          socket.write(payload)
          // Mid-upload: part of a declared 1 MiB body, then the client goes away.
          if (!sendAll) socket.write(Buffer.alloc(64 * 1024), () => setImmediate(() => socket.destroy()))
        })
        socket.on('data', (c: Buffer) => {
          received += c.length
          if (abortWhen(received)) socket.destroy()
        })
      })
    const uploads = Array.from({ length: N }, () => abortOne('POST /u HTTP/1.1\r\nHost: abort\r\nContent-Length: 1048576\r\n\r\n', () => false, false))
    // Mid-download: once 64 KiB of an endless body arrived.
    const downloads = Array.from({ length: N }, () => abortOne('GET /d HTTP/1.1\r\nHost: abort\r\n\r\n', (n) => n > 64 * 1024, true))
    await Promise.all([...uploads, ...downloads])
    // An upload whose client left while the upstream connection was still being made is never
    // sent at all (the fast lane); every one that reached the upstream must be cut there.
    await waitFor('every upstream request to be cancelled', () => uploadsCut === uploadsSeen && downloadsCut === N, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${uploadsCut} of ${uploadsSeen} uploads seen and ${downloadsCut} of ${N} downloads cut`)
    })
    await waitFor('in-flight to return to 0', () => host.inFlight === 0)
    assert.equal(uploadsCompleted, 0, 'no upload reached its end at the upstream')
    let after: Record<string, number> = {}
    await waitFor('sockets and timers to return to their count before', () => {
      after = resources()
      return Object.entries(after).every(([k, v]) => v <= (before[k] ?? 0))
    }, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}: before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`)
    })
    t.diagnostic(`${N} uploads (${uploadsSeen} reached the upstream) and ${N} downloads aborted; resources before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`)
    // And the sidecar still serves.
    assert.equal((await send(agent, `${s.url}/warm`, { headers: { host: 'abort' } })).status, 200)
  })
})
