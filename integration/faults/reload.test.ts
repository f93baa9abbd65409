import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import { Load, report } from './load.ts'
import { startCli, startUpstream, waitFor, writeTempFile } from '../helpers.ts'

function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text)
  renameSync(`${file}.tmp`, file)
}

describe('fault: config reloads under load', () => {
  it('a broken config is refused while serving goes on; good ones add and remove services; no request fails', { timeout: 120_000 }, async (t) => {
    const upstreams = [await startUpstream('a1'), await startUpstream('a2'), await startUpstream('b')]
    const yaml = (extra: string): string =>
      `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nservices:\n  a:\n    source: static\n    endpoints: ["${upstreams[0]!.address}", "${upstreams[1]!.address}"]\n${extra}`
    const file = writeTempFile('outrigger.yaml', yaml(''))
    const cli = await startCli(file)
    const load = new Load({ url: `http://${cli.listen}`, host: 'a', concurrency: 24 }).start()
    try {
      await load.advance(300)
      // Broken: an unknown strategy for `a` and a service without endpoints.
      replaceFile(file, yaml(`    strategy: fastest\n  b:\n    source: static\n`))
      await waitFor('the refusal', () => cli.logs.some((l) => l.includes('config reload refused')), 30_000)
      await load.advance(300)
      // Good: `b` added, then `a` changed (least-connections), then `b` removed again.
      replaceFile(file, yaml(`  b:\n    source: static\n    endpoints: ["${upstreams[2]!.address}"]\n`))
      await waitFor('b added', () => cli.logs.some((l) => l.includes('"added":["b"]')), 30_000)
      await load.advance(300)
      replaceFile(file, yaml(`    strategy: least-connections\n`))
      await waitFor('a changed and b removed', () => cli.logs.some((l) => l.includes('"removed":["b"]')), 30_000)
      await load.advance(300)
    } finally {
      const fates = await load.stop()
      report(t, 'requests to a across four reloads', fates)
      const exited = new Promise((resolve) => cli.child.once('exit', resolve))
      cli.child.kill('SIGTERM')
      await exited
      await Promise.all(upstreams.map((u) => u.close()))
    }
    assert.deepEqual(load.other(['200']), {})
    const refusal = cli.logs.find((l) => l.includes('config reload refused'))!
    assert.match(refusal, /services\.a\.strategy: must be one of/)
    assert.match(refusal, /services\.b\.endpoints: is required for source static/)
  })
})
