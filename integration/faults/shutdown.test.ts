/**
 * SIGTERM under load on a real `outrigger run` process: every request the sidecar accepted is
 * answered (counted at the upstream: each request that reached it came back 200), and it exits 0.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { echoHandler, startCli, startUpstream, writeTempFile } from '../helpers.ts'
import type { Upstream } from '../helpers.ts'
import { Load, report } from './load.ts'

describe('SIGTERM under load', () => {
  it('finishes every accepted request, refuses new connections, exits 0', async (t) => {
    // Each answer takes 30 ms, so many requests are in flight when the signal lands.
    const slow: Upstream = await startUpstream('slow', (req, res) => void setTimeout(() => echoHandler(req, res, slow), 30))
    const file = writeTempFile('sigterm.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nshutdownTimeout: 20s\nservices:\n  slow:\n    source: static\n    endpoints: ["${slow.address}"]\n`)
    const cli = await startCli(file)
    const load = new Load({ url: `http://${cli.listen}`, host: 'slow', concurrency: 24 }).start()
    try {
      await load.advance(300)
      const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
      const hitsAtSignal = slow.hits
      cli.child.kill('SIGTERM')
      assert.equal(await exited, 0)
      const fates = await load.stop()
      report(t, `SIGTERM after ${hitsAtSignal} requests`, fates)
      // Every request that reached the upstream through the sidecar came back whole.
      assert.equal(fates['200'], slow.hits)
      // The others were never accepted: refused connections, or a kept-alive connection closed
      // by the server as the client reused it (the race every HTTP/1.1 server has).
      assert.deepEqual(load.other(['200', 'error ECONNREFUSED', 'error UND_ERR_SOCKET', 'error ECONNRESET']), {})
    } finally {
      await load.stop()
      cli.child.kill('SIGKILL')
      await slow.close()
    }
  })
})
