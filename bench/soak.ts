/**
 * Soak: `npm run soak [-- --minutes N --concurrency C]` (default 10 minutes, 16 clients). A real
 * `outrigger run` process forwards steady load to four upstreams of a `file` source whose endpoint
 * list is rewritten every second (one endpoint leaves or comes back each time). Every 10 s it
 * prints the request fates, the sidecar's RSS and its open handles (/proc/PID/fd); at the end, the
 * totals and the growth. Not part of CI: figures to read, nothing asserted.
 */
import { parseArgs } from 'node:util'
import { readdirSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Load } from '../integration/faults/load.ts'
import { residentMemory, startCli, startUpstream, writeTempFile } from '../integration/helpers.ts'
import type { Upstream } from '../integration/helpers.ts'

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '16' } } })
const minutes = Number(values.minutes)
const concurrency = Number(values.concurrency)

const ups: Upstream[] = []
for (const name of ['a', 'b', 'c', 'd']) ups.push(await startUpstream(name))
const endpointsFile = writeTempFile('endpoints.yaml', ups.map((u) => `- ${u.address}`).join('\n'))
const config = writeTempFile('soak.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nservices:\n  svc:\n    source: file\n    path: ${endpointsFile}\n    healthCheck: { passive: { consecutiveFailures: 3 } }\n`)
const cli = await startCli(config)
const pid = cli.child.pid!
const handles = (): number => readdirSync(`/proc/${pid}/fd`).length

const load = new Load({ url: `http://${cli.listen}`, host: 'svc', concurrency }).start()
let tick = 0
// One registry change per second: endpoint `tick % 4` leaves, the previous one comes back.
const changes = setInterval(() => {
  tick++
  const out = ups.filter((_, i) => i !== tick % ups.length)
  const tmp = `${endpointsFile}.tmp`
  writeFileSync(tmp, out.map((u) => `- ${u.address}`).join('\n'))
  renameSync(tmp, endpointsFile)
}, 1000)

const started = Date.now()
const first = { rss: residentMemory(pid).rss, handles: handles() }
let lastTotal = 0
const fmtFates = (f: Record<string, number>): string => Object.entries(f).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(', ')
console.log(`soak: ${minutes} min, ${concurrency} clients, pid ${pid}, config ${path.basename(config)}; start RSS ${(first.rss / 2 ** 20).toFixed(1)} MiB, ${first.handles} fds`)
console.log('elapsed_s  req/s   rss_MiB  fds  changes  fates')
while (Date.now() - started < minutes * 60_000) {
  await new Promise((r) => setTimeout(r, 10_000))
  const rate = (load.total - lastTotal) / 10
  lastTotal = load.total
  console.log(`${String(Math.round((Date.now() - started) / 1000)).padStart(9)}  ${rate.toFixed(0).padStart(6)}  ${(residentMemory(pid).rss / 2 ** 20).toFixed(1).padStart(7)}  ${String(handles()).padStart(3)}  ${String(tick).padStart(7)}  ${fmtFates(load.fates)}`)
}
clearInterval(changes)
const fates = await load.stop()
const last = { rss: residentMemory(pid).rss, peak: residentMemory(pid).peak, handles: handles() }
console.log(`done: ${load.total} requests, ${tick} registry changes; fates ${fmtFates(fates)}`)
console.log(`RSS ${(first.rss / 2 ** 20).toFixed(1)} → ${(last.rss / 2 ** 20).toFixed(1)} MiB (peak ${(last.peak / 2 ** 20).toFixed(1)}), fds ${first.handles} → ${last.handles}`)
const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
cli.child.kill('SIGTERM')
console.log(`sidecar exited with ${await exited}`)
for (const u of ups) await u.close()
