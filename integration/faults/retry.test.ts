/**
 * Retry safety, counted at the upstreams: what was sent where, how many times.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { request } from 'undici'
import type { RunningSidecar, Upstream } from '../helpers.ts'
import { send } from '../helpers.ts'
import { MIN_RETRIES_PER_SECOND, MIN_RETRY_BURST } from '../../src/proxy/service-runtime.ts'
import { FaultScope, Load, report } from './load.ts'

/** Reads the whole request body, then calls `then` with its sha256. */
function readBody(req: IncomingMessage, then: (sha: string, bytes: number) => void): void {
  const h = createHash('sha256')
  let bytes = 0
  req.on('data', (c: Buffer) => {
    h.update(c)
    bytes += c.length
  })
  req.on('end', () => then(h.digest('hex'), bytes))
}

describe('retry safety', () => {
  const scope = new FaultScope()
  const { agent } = scope
  after(() => scope.close())
  const sidecar = (services: Record<string, unknown>): Promise<RunningSidecar> => scope.sidecar(services)
  const upstream = (name: string, handler: (req: IncomingMessage, res: ServerResponse, u: Upstream) => void): Promise<Upstream> => scope.upstream(name, handler)

  /**
   * Upstreams that reset a request (after reading it whole) the first time any of them sees its
   * `x-id`, and answer its sha256 after that. `seen` records, per id, which upstream got each attempt.
   */
  async function firstAttemptFails(names: string[]): Promise<{ ups: Upstream[]; seen: Map<string, string[]> }> {
    const seen = new Map<string, string[]>()
    const ups: Upstream[] = []
    for (const name of names) {
      ups.push(await upstream(name, (req, res, u) => {
        const id = String(req.headers['x-id'])
        readBody(req, (sha, bytes) => {
          const list = seen.get(id) ?? []
          list.push(u.name)
          seen.set(id, list)
          if (list.length === 1) req.socket.destroy()
          else res.end(JSON.stringify({ sha, bytes }))
        })
      }))
    }
    return { ups, seen }
  }

  it('a POST failing after it was sent is never sent twice; with the idempotency key it is, on another endpoint', async () => {
    const { ups, seen } = await firstAttemptFails(['a', 'b', 'c'])
    // Every keyed request needs a retry here: a budget of 100% lets each have one (the next test caps it).
    const s = await sidecar({ svc: { source: 'static', endpoints: ups.map((u) => u.address), retry: { budgetPercent: 100 } } })
    for (let i = 0; i < 30; i++) {
      const res = await send(agent, `${s.url}/`, { method: 'POST', headers: { host: 'svc', 'x-id': `plain-${i}` }, body: `body ${i}` })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-outrigger-error'], 'upstream_reset')
    }
    for (let i = 0; i < 30; i++) {
      const body = `body ${i}`
      const res = await send(agent, `${s.url}/`, { method: 'POST', headers: { host: 'svc', 'x-id': `keyed-${i}`, 'idempotency-key': `k${i}` }, body })
      assert.equal(res.status, 200, res.body)
      assert.equal((JSON.parse(res.body) as { sha: string }).sha, createHash('sha256').update(body).digest('hex'))
    }
    for (const [id, where] of seen) {
      if (id.startsWith('plain-')) assert.equal(where.length, 1, `${id} was sent ${where.length} times`)
      else {
        assert.equal(where.length, 2, `${id}: ${where.join(', ')}`)
        assert.notEqual(where[0], where[1], `${id} was retried on the endpoint that failed it`)
      }
    }
    assert.equal(seen.size, 60)
  })

  it('replays a body within replayBodyLimit (fixed length or chunked) after a post-send failure, and never one beyond it', async () => {
    const { ups, seen } = await firstAttemptFails(['a', 'b'])
    const s = await sidecar({ svc: { source: 'static', endpoints: ups.map((u) => u.address), retry: { replayBodyLimit: '64KiB' } } })
    const cases: Array<{ id: string; method: string; bytes: number; chunked: boolean; replayed: boolean }> = [
      { id: 'put-32k', method: 'PUT', bytes: 32 * 1024, chunked: false, replayed: true },
      { id: 'put-64k', method: 'PUT', bytes: 64 * 1024, chunked: false, replayed: true },
      { id: 'put-chunked-48k', method: 'PUT', bytes: 48 * 1024, chunked: true, replayed: true },
      { id: 'put-65k', method: 'PUT', bytes: 64 * 1024 + 1, chunked: false, replayed: false },
      { id: 'put-chunked-1m', method: 'PUT', bytes: 1024 * 1024, chunked: true, replayed: false },
      { id: 'post-32k', method: 'POST', bytes: 32 * 1024, chunked: false, replayed: false },
    ]
    for (const c of cases) {
      const body = randomBytes(c.bytes)
      // A chunked upload: several writes of unknown total length.
      const payload = c.chunked ? Readable.from([body.subarray(0, 1000), body.subarray(1000, 20_000), body.subarray(20_000)]) : body
      const res = await request(`${s.url}/`, { dispatcher: agent, method: c.method as 'PUT', headers: { host: 'svc', 'x-id': c.id }, body: payload })
      const text = await res.body.text()
      if (c.replayed) {
        assert.equal(res.statusCode, 200, `${c.id}: ${text}`)
        assert.deepEqual(JSON.parse(text), { sha: createHash('sha256').update(body).digest('hex'), bytes: c.bytes }, c.id)
        assert.equal(seen.get(c.id)!.length, 2, c.id)
      } else {
        assert.equal(res.statusCode, 502, c.id)
        assert.equal(seen.get(c.id)!.length, 1, `${c.id} was sent more than once`)
      }
    }
  })

  it('the retry budget caps the attempts reaching a fleet of which most resets every request', async (t) => {
    const good = await upstream('good', (req, res) => readBody(req, () => res.end('ok')))
    const bad: Upstream[] = []
    for (const name of ['b1', 'b2', 'b3', 'b4']) bad.push(await upstream(name, (req) => readBody(req, () => req.socket.destroy())))
    const s = await sidecar({ svc: { source: 'static', endpoints: [good, ...bad].map((u) => u.address), retry: { attempts: 2, budgetPercent: 20 } } })
    const started = Date.now()
    const load = new Load({ url: s.url, host: 'svc', concurrency: 16 }).start()
    await load.advance(2000)
    const fates = await load.stop()
    const seconds = (Date.now() - started) / 1000
    const attempts = good.hits + bad.reduce((n, u) => n + u.hits, 0)
    const requests = load.total
    report(t, `${requests} requests, ${attempts} attempts at the upstreams in ${seconds.toFixed(1)} s`, fates)
    assert.deepEqual(load.other(['200', '502 upstream_reset']), {})
    // Without a budget, 4 of 5 endpoints failing would make about 2.2 attempts per request.
    const bound = requests * 1.2 + 16 + MIN_RETRY_BURST + seconds * MIN_RETRIES_PER_SECOND
    assert.ok(attempts <= bound, `${attempts} attempts for ${requests} requests (bound ${bound.toFixed(0)})`)
    assert.ok(attempts > requests * 1.1, `retries happened within the budget (${attempts} attempts)`)
  })
})
