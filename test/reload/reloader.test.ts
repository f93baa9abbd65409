import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import type { Config } from '../../src/config/types.ts'
import { Metrics } from '../../src/observability/metrics.ts'
import { ConfigReloader } from '../../src/reload/reloader.ts'
import { until } from '../support/until.ts'
import type { Reloadable } from '../../src/reload/reloader.ts'
import { StartupError } from '../../src/sidecar.ts'
import type { ReloadResult } from '../../src/sidecar.ts'

const GOOD = 'services:\n  a:\n    source: static\n    endpoints: ["127.0.0.1:1"]\n'
const OTHER = 'services:\n  b:\n    source: static\n    endpoints: ["127.0.0.1:2"]\n'
const BAD = 'services:\n  a:\n    source: static\n    strategy: fastest\n    endpoints: ["127.0.0.1:1"]\n'

class FakeSidecar implements Reloadable {
  readonly metrics = new Metrics()
  readonly applied: Config[] = []
  entered = 0
  fail: Error | null = null
  /** Resolves the reload in progress (tests hold reloads to see them queue). */
  gate: Promise<void> = Promise.resolve()
  async reload(next: Config): Promise<ReloadResult> {
    this.entered++
    await this.gate
    if (this.fail !== null) throw this.fail
    this.applied.push(next)
    return { added: [], changed: [], removed: [], unchanged: next.services.map((s) => s.name) }
  }
}

async function gauge(metrics: Metrics, name: string): Promise<number | undefined> {
  const m = await metrics.registry.getSingleMetric(name)?.get()
  return m?.values[0]?.value
}

function setup(text: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'outrigger-reload-'))
  const file = path.join(dir, 'outrigger.yaml')
  writeFileSync(file, text)
  const lines: Array<{ level: number; msg: string; errors?: string[] }> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]) })
  const sidecar = new FakeSidecar()
  const reloader = new ConfigReloader(file, sidecar, logger, text, { debounceMs: 20 })
  return { file, sidecar, reloader, lines }
}

describe('ConfigReloader', () => {
  it('applies a valid file on request and counts the success', async () => {
    const { file, sidecar, reloader } = setup(GOOD)
    writeFileSync(file, OTHER)
    await reloader.request('SIGHUP')
    assert.deepEqual(sidecar.applied.map((c) => c.services.map((s) => s.name)), [['b']])
    assert.equal(await gauge(sidecar.metrics, 'outrigger_config_last_reload_successful'), 1)
  })

  it('refuses an invalid file with every problem, keeps the running config and says so in the metrics', async () => {
    const { file, sidecar, reloader, lines } = setup(GOOD)
    writeFileSync(file, BAD)
    await reloader.request('SIGHUP')
    assert.equal(sidecar.applied.length, 0)
    const refusal = lines.find((l) => l.msg.startsWith('config reload refused'))!
    assert.equal(refusal.level, 50)
    assert.deepEqual(refusal.errors, ['services.a.strategy: must be one of round-robin, weighted, least-connections, consistent-hash'])
    assert.equal(await gauge(sidecar.metrics, 'outrigger_config_last_reload_successful'), 0)
  })

  it('refuses a config the sidecar cannot apply', async () => {
    const { file, sidecar, reloader, lines } = setup(GOOD)
    sidecar.fail = new StartupError('listen', 'cannot listen on 127.0.0.1:1: EACCES')
    writeFileSync(file, OTHER)
    await reloader.request('SIGHUP')
    assert.deepEqual(lines.find((l) => l.msg.startsWith('config reload refused'))!.errors, ['listen: cannot listen on 127.0.0.1:1: EACCES'])
  })

  it('follows the file through a rename, ignoring other files and unchanged text', async () => {
    const { file, sidecar, reloader } = setup(GOOD)
    reloader.watchFile()
    try {
      writeFileSync(path.join(path.dirname(file), 'unrelated.txt'), 'x')
      writeFileSync(`${file}.tmp`, OTHER)
      renameSync(`${file}.tmp`, file)
      await until('the renamed file to be applied', () => sidecar.applied.length === 1)
      // The same text written again is not a reload.
      writeFileSync(file, OTHER)
      writeFileSync(`${file}.tmp`, GOOD)
      renameSync(`${file}.tmp`, file)
      await until('the second change', () => sidecar.applied.length === 2)
      assert.deepEqual(sidecar.applied.map((c) => c.services[0]!.name), ['b', 'a'])
    } finally {
      reloader.close()
    }
  })

  it('runs one reload at a time and collapses the requests that wait into one', async () => {
    const { file, sidecar, reloader } = setup(GOOD)
    let open!: () => void
    sidecar.gate = new Promise((resolve) => (open = resolve))
    writeFileSync(file, OTHER)
    const first = reloader.request('SIGHUP')
    void reloader.request('SIGHUP')
    void reloader.request('SIGHUP')
    assert.equal(sidecar.entered, 1, 'the others wait')
    open()
    await first
    await until('the collapsed second run', () => sidecar.applied.length === 2)
    await new Promise((r) => setImmediate(r))
    assert.equal(sidecar.entered, 2, 'two waiting requests made one more run')
  })
})
