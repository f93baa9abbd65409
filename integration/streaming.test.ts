import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import type { RunningCli, Upstream } from './helpers.ts'
import { residentMemory, startCli, startUpstream, waitFor, writeTempFile } from './helpers.ts'

const MB = 1024 * 1024
const TOTAL = 100 * MB
/**
 * Bodies for the back-pressure tests. Loopback TCP buffers autotune up to tcp_rmem + tcp_wmem per
 * socket (32 MiB + 4 MiB here), so two hops can hold about 70 MiB in the kernel alone: a stalled
 * path must be judged against a body much larger than that, and by the sidecar's own memory.
 */
const STALL_TOTAL = 256 * MB
const STALL_PULL_LIMIT = 128 * MB
const STALL_RSS_GROWTH_LIMIT = 48 * MB
const CHUNK = randomBytes(64 * 1024)

/** `total` bytes in 64 KiB chunks, generated as read (never held whole); `progress` counts what was pulled. */
function body(total: number, progress = { bytes: 0, lastPullMs: 0 }): Readable {
  return Readable.from((function* () {
    while (progress.bytes < total) {
      progress.bytes += CHUNK.length
      progress.lastPullMs = Date.now()
      yield CHUNK
    }
  })())
}

/** True once a producer has not been pulled for 500 ms: back-pressure has reached it. */
function stalled(progress: { bytes: number; lastPullMs: number }): boolean {
  return progress.bytes > 0 && Date.now() - progress.lastPullMs > 500
}

describe('streaming through a real outrigger process', () => {
  let big: Upstream
  let cli: RunningCli
  let agent: Agent
  /** Set by a test to hold uploads at the upstream (it reads nothing until released). */
  let holdUpload: Promise<void> | null = null
  let downloadProgress = { bytes: 0, lastPullMs: 0 }
  let downloadTotal = TOTAL

  before(async () => {
    big = await startUpstream('big', (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'POST') {
        let n = 0
        const read = (): void => {
          req.on('data', (c: Buffer) => (n += c.length))
          req.on('end', () => res.end(String(n)))
        }
        if (holdUpload === null) read()
        else void holdUpload.then(read)
        return
      }
      res.writeHead(200, { 'content-length': downloadTotal })
      body(downloadTotal, downloadProgress).pipe(res)
    })
    cli = await startCli(writeTempFile('big.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nservices:\n  big:\n    source: static\n    endpoints: ["${big.address}"]\n`))
    agent = new Agent()
  })
  after(async () => {
    // destroy, not close: after a failed test a response body may be left unread.
    await agent.destroy()
    cli.child.kill('SIGKILL')
    await big.close()
  })

  it('moves a 100 MB upload and a 100 MB download with memory far below that', async () => {
    const baseline = residentMemory(cli.child.pid!).rss
    const up = await request(`http://${cli.listen}/up`, { dispatcher: agent, method: 'POST', headers: { host: 'big', 'content-length': String(TOTAL) }, body: body(TOTAL) })
    assert.equal(up.statusCode, 200)
    assert.equal(await up.body.text(), String(TOTAL))
    downloadProgress = { bytes: 0, lastPullMs: 0 }
    const down = await request(`http://${cli.listen}/down`, { dispatcher: agent, headers: { host: 'big' } })
    let received = 0
    for await (const c of down.body) received += (c as Buffer).length
    assert.equal(received, TOTAL)
    // RSS includes garbage V8 has not collected yet: it lets up to 64 MB of external (Buffer)
    // memory pile up before a GC. Holding either body would add its full 100 MB on top of that;
    // the back-pressure tests below prove the streaming exactly.
    const growthMB = (residentMemory(cli.child.pid!).peak - baseline) / MB
    assert.ok(growthMB < 100, `the sidecar's peak memory grew by ${growthMB.toFixed(1)} MB`)
  })

  it('propagates back-pressure on uploads: a stalled upstream stalls the client', async (t) => {
    let release: () => void = () => undefined
    holdUpload = new Promise<void>((r) => (release = r))
    const progress = { bytes: 0, lastPullMs: 0 }
    try {
      const baseline = residentMemory(cli.child.pid!).rss
      const pending = request(`http://${cli.listen}/up`, { dispatcher: agent, method: 'POST', headers: { host: 'big', 'content-length': String(STALL_TOTAL) }, body: body(STALL_TOTAL, progress) })
      await waitFor('the client upload to stall', () => stalled(progress), 30_000)
      assert.ok(progress.bytes < STALL_PULL_LIMIT, `the client could push ${(progress.bytes / MB).toFixed(1)} MB into a stalled path`)
      const growth = residentMemory(cli.child.pid!).rss - baseline
      t.diagnostic(`stalled after ${(progress.bytes / MB).toFixed(1)} MB pulled; sidecar RSS grew ${(growth / MB).toFixed(1)} MB`)
      assert.ok(growth < STALL_RSS_GROWTH_LIMIT, `the sidecar grew by ${(growth / MB).toFixed(1)} MB while the upload stalled`)
      release()
      const up = await pending
      assert.equal(await up.body.text(), String(STALL_TOTAL))
    } finally {
      holdUpload = null
      release()
    }
  })

  it('propagates back-pressure on downloads: a client that stops reading stalls the upstream', async (t) => {
    downloadProgress = { bytes: 0, lastPullMs: 0 }
    downloadTotal = STALL_TOTAL
    const baseline = residentMemory(cli.child.pid!).rss
    const down = await request(`http://${cli.listen}/down`, { dispatcher: agent, headers: { host: 'big' } })
    try {
      await waitFor('the upstream download to stall', () => stalled(downloadProgress), 30_000)
      assert.ok(downloadProgress.bytes < STALL_PULL_LIMIT, `the upstream could push ${(downloadProgress.bytes / MB).toFixed(1)} MB at a client that reads nothing`)
      const growth = residentMemory(cli.child.pid!).rss - baseline
      t.diagnostic(`stalled after ${(downloadProgress.bytes / MB).toFixed(1)} MB pulled; sidecar RSS grew ${(growth / MB).toFixed(1)} MB`)
      assert.ok(growth < STALL_RSS_GROWTH_LIMIT, `the sidecar grew by ${(growth / MB).toFixed(1)} MB while the download stalled`)
      let received = 0
      for await (const c of down.body) received += (c as Buffer).length
      assert.equal(received, STALL_TOTAL)
    } finally {
      downloadTotal = TOTAL
      down.body.destroy()
    }
  })
})
