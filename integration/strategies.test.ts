import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { Agent } from 'undici'
import type { Upstream } from './helpers.ts'
import { echoHandler, send, startSidecar, startUpstream, waitFor, writeTempFile } from './helpers.ts'

/** Starts `names.length` echo upstreams; the caller closes them. */
async function upstreams(...names: string[]): Promise<Upstream[]> {
  const out: Upstream[] = []
  for (const name of names) out.push(await startUpstream(name))
  return out
}

function who(body: string): string {
  return (JSON.parse(body) as { upstream: string }).upstream
}

describe('each strategy through the sidecar, with real upstreams', () => {
  it('weighted: 600 requests split 100/200/300 over weights 1/2/3', async () => {
    const ups = await upstreams('w1', 'w2', 'w3')
    const s = await startSidecar({
      services: { w: { source: 'static', strategy: 'weighted', endpoints: ups.map((u, i) => ({ address: '127.0.0.1', port: u.port, weight: i + 1 })) } },
    })
    const agent = new Agent()
    try {
      for (let i = 0; i < 600; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'w' } })).status, 200)
      // Earliest-deadline scheduling is exact to within one pick per host over any stretch.
      for (const [i, u] of ups.entries()) assert.ok(Math.abs(u.hits - 100 * (i + 1)) <= 1, `${u.name} got ${u.hits}`)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })

  it('least-connections: a slow upstream gets clearly less under concurrency', async () => {
    const fast = await startUpstream('fast')
    const slow: Upstream = await startUpstream('slow', (req, res) => void setTimeout(() => echoHandler(req, res, slow), 100))
    const s = await startSidecar({ services: { lc: { source: 'static', strategy: 'least-connections', endpoints: [fast.address, slow.address] } } })
    const agent = new Agent({ connections: 16 })
    try {
      let sent = 0
      const worker = async (): Promise<void> => {
        while (sent < 300) {
          sent++
          assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'lc' } })).status, 200)
        }
      }
      await Promise.all(Array.from({ length: 8 }, worker))
      assert.ok(slow.hits * 5 < fast.hits, `slow ${slow.hits} vs fast ${fast.hits}`)
    } finally {
      await agent.close()
      await s.stop()
      await fast.close()
      await slow.close()
    }
  })

  it('consistent-hash on a header: a key sticks to one upstream; when it dies only its keys move', async () => {
    const ups = await upstreams('h1', 'h2', 'h3', 'h4')
    const s = await startSidecar({ services: { ch: { source: 'static', strategy: 'consistent-hash', hashKey: 'header:x-user', endpoints: ups.map((u) => u.address) } } })
    const agent = new Agent()
    try {
      const users = Array.from({ length: 40 }, (_, i) => `user-${i}`)
      const home = new Map<string, string>()
      for (const user of users) {
        for (let i = 0; i < 3; i++) {
          const res = await send(agent, `${s.url}/`, { headers: { host: 'ch', 'x-user': user } })
          assert.equal(res.status, 200)
          const name = who(res.body)
          if (i === 0) home.set(user, name)
          else assert.equal(name, home.get(user), `${user} moved`)
        }
      }
      assert.ok(new Set(home.values()).size >= 3, 'keys spread over the upstreams')
      // Kill the home of user-0: its users fail over (connect refused → next host on the ring), nobody else moves.
      const victim = ups.find((u) => u.name === home.get('user-0'))!
      await victim.close()
      const after = new Map<string, string>()
      for (const user of users) {
        const res = await send(agent, `${s.url}/`, { headers: { host: 'ch', 'x-user': user } })
        assert.equal(res.status, 200, `${user}: ${res.body}`)
        after.set(user, who(res.body))
      }
      for (const user of users) {
        if (home.get(user) === victim.name) assert.notEqual(after.get(user), victim.name)
        else assert.equal(after.get(user), home.get(user), `${user} moved although its upstream is alive`)
      }
      // Failed-over keys are spread by the ring, and stable while the failure lasts.
      for (const user of users) {
        const res = await send(agent, `${s.url}/`, { headers: { host: 'ch', 'x-user': user } })
        assert.equal(who(res.body), after.get(user))
      }
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })

  it('consistent-hash with a sticky cookie: set when missing, followed, re-pinned when its upstream dies', async () => {
    const ups = await upstreams('s1', 's2', 's3')
    const s = await startSidecar({
      services: { st: { source: 'static', strategy: 'consistent-hash', hashKey: 'cookie:route', stickyCookie: { ttl: '1h' }, endpoints: ups.map((u) => u.address) } },
    })
    const agent = new Agent()
    try {
      const first = await send(agent, `${s.url}/`, { headers: { host: 'st' } })
      assert.equal(first.status, 200)
      const setCookie = String(first.headers['set-cookie'])
      const m = /^route=([0-9a-f]{8}); Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/.exec(setCookie)
      assert.ok(m !== null, `set-cookie: ${setCookie}`)
      const pinned = who(first.body)
      for (let i = 0; i < 10; i++) {
        const res = await send(agent, `${s.url}/`, { headers: { host: 'st', cookie: `other=1; route=${m[1]}` } })
        assert.equal(who(res.body), pinned)
        assert.equal(res.headers['set-cookie'], undefined, 'a client already pinned gets no new cookie')
      }
      // Fresh clients are spread, not all pinned to one upstream.
      const spread = new Set<string>()
      for (let i = 0; i < 30; i++) spread.add(who((await send(agent, `${s.url}/`, { headers: { host: 'st' } })).body))
      assert.ok(spread.size >= 2, `fresh clients went to ${[...spread].join(', ')}`)

      await ups.find((u) => u.name === pinned)!.close()
      const moved = await send(agent, `${s.url}/`, { headers: { host: 'st', cookie: `route=${m[1]}` } })
      assert.equal(moved.status, 200)
      assert.notEqual(who(moved.body), pinned)
      const repin = /^route=([0-9a-f]{8});/.exec(String(moved.headers['set-cookie']))
      assert.ok(repin !== null && repin[1] !== m[1], `re-pinned with ${String(moved.headers['set-cookie'])}`)
      const again = await send(agent, `${s.url}/`, { headers: { host: 'st', cookie: `route=${repin[1]}` } })
      assert.equal(who(again.body), who(moved.body))
      assert.equal(again.headers['set-cookie'], undefined)
    } finally {
      await agent.close()
      await s.stop()
      for (const u of ups) await u.close()
    }
  })

  it('slow start: an upstream that joins gets a small share at first and an equal share after the window', async () => {
    const [old, fresh] = await upstreams('old', 'fresh')
    const file = writeTempFile('ss.yaml', `- "${old!.address}"\n`)
    // A long window: during the measurement the newcomer stays near its 10% starting share.
    const s = await startSidecar({ services: { ss: { source: 'file', path: file, slowStart: { window: '60s' } } } })
    const agent = new Agent()
    try {
      await waitFor('the first endpoint set', () => s.sidecar.clusters()[0]!.ready)
      writeFileSync(file, `- "${old!.address}"\n- "${fresh!.address}"\n`)
      await waitFor('the newcomer to join', () => s.sidecar.clusters()[0]!.hosts().length === 2)
      const view = JSON.parse((await send(agent, `${s.adminUrl}/api/services`)).body) as Array<{ endpoints: Array<{ port: number; flags: string[] }> }>
      assert.deepEqual(view[0]!.endpoints.find((e) => e.port === fresh!.port)!.flags, ['slow_start'])
      for (let i = 0; i < 110; i++) assert.equal((await send(agent, `${s.url}/`, { headers: { host: 'ss' } })).status, 200)
      assert.ok(fresh!.hits <= 25, `the newcomer got ${fresh!.hits} of 110 requests at the start of its ramp`)
      assert.ok(fresh!.hits >= 1, 'the newcomer gets some traffic from the start')
    } finally {
      await agent.close()
      await s.stop()
    }

    // A short window: once it ends, shares are equal again (round-robin, exact).
    const file2 = writeTempFile('ss2.yaml', `- "${old!.address}"\n`)
    const s2 = await startSidecar({ services: { ss: { source: 'file', path: file2, slowStart: { window: '500ms' } } } })
    const agent2 = new Agent()
    try {
      await waitFor('the first endpoint set', () => s2.sidecar.clusters()[0]!.ready)
      writeFileSync(file2, `- "${old!.address}"\n- "${fresh!.address}"\n`)
      await waitFor('the newcomer to join', () => s2.sidecar.clusters()[0]!.hosts().length === 2)
      await waitFor('the ramp to end', () => s2.sidecar.clusters()[0]!.hosts().every((h) => h.flags === 0 && h.slowStartFactor === 1))
      const before = { old: old!.hits, fresh: fresh!.hits }
      for (let i = 0; i < 100; i++) await send(agent2, `${s2.url}/`, { headers: { host: 'ss' } })
      assert.equal(old!.hits - before.old, 50)
      assert.equal(fresh!.hits - before.fresh, 50)
    } finally {
      await agent2.close()
      await s2.stop()
      await old!.close()
      await fresh!.close()
    }
  })
})
