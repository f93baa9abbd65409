/**
 * Soak: `npm run soak [-- --minutes N --concurrency C --load F]` (default 10 minutes, 16 clients,
 * half capacity). It first measures capacity (10 s flat out), then paces the clients to `--load` of
 * it (0.5). A real
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

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '16' }, load: { type: 'string', default: '0.5' }, warmup: { type: 'string', default: '60' } } })
const minutes = Number(values.minutes)
const concurrency = Number(values.concurrency)
const share = Number(values.load)
const warmupS = Number(values.warmup)

const ups: Upstream[] = []
for (const name of ['a', 'b', 'c', 'd']) ups.push(await startUpstream(name))
const endpointsFile = writeTempFile('endpoints.yaml', ups.map((u) => `- ${u.address}`).join('\n'))
const config = writeTempFile('soak.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nservices:\n  svc:\n    source: file\n    path: ${endpointsFile}\n    healthCheck: { passive: { consecutiveFailures: 3 } }\n`)
const cli = await startCli(config)
const pid = cli.child.pid!
const handles = (): number => readdirSync(`/proc/${pid}/fd`).length

// Capacity: flat out for 10 s (these requests are not part of the soak's counts).
const probe = new Load({ url: `http://${cli.listen}`, host: 'svc', concurrency }).start()
await new Promise((r) => setTimeout(r, 10_000))
const capacity = probe.total / 10
await probe.stop()
// Each client waits so that all together send `share` of capacity (a little less: latency adds up).
const pauseMs = Math.max(0, Math.round((concurrency * 1000) / (capacity * share)))
const load = new Load({ url: `http://${cli.listen}`, host: 'svc', concurrency, pauseMs }).start()
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
console.log(`soak: ${minutes} min, ${concurrency} clients pausing ${pauseMs} ms (capacity ${capacity.toFixed(0)} req/s, aiming at ${(share * 100).toFixed(0)}%), pid ${pid}, config ${path.basename(config)}; start RSS ${(first.rss / 2 ** 20).toFixed(1)} MiB, ${first.handles} fds`)
let warm: { rss: number; handles: number } | null = null
console.log('elapsed_s  req/s   rss_MiB  fds  changes  fates')
while (Date.now() - started < minutes * 60_000) {
  await new Promise((r) => setTimeout(r, 10_000))
  if (warm === null && Date.now() - started >= warmupS * 1000) warm = { rss: residentMemory(pid).rss, handles: handles() }
  const rate = (load.total - lastTotal) / 10
  lastTotal = load.total
  console.log(`${String(Math.round((Date.now() - started) / 1000)).padStart(9)}  ${rate.toFixed(0).padStart(6)}  ${(residentMemory(pid).rss / 2 ** 20).toFixed(1).padStart(7)}  ${String(handles()).padStart(3)}  ${String(tick).padStart(7)}  ${fmtFates(load.fates)}`)
}
clearInterval(changes)
const fates = await load.stop()
const last = { rss: residentMemory(pid).rss, peak: residentMemory(pid).peak, handles: handles() }
console.log(`done: ${load.total} requests, ${tick} registry changes; fates ${fmtFates(fates)}`)
console.log(`RSS ${(first.rss / 2 ** 20).toFixed(1)} → ${(last.rss / 2 ** 20).toFixed(1)} MiB (peak ${(last.peak / 2 ** 20).toFixed(1)}), fds ${first.handles} → ${last.handles}`)
if (warm !== null) {
  console.log(`after the ${warmupS} s warm-up: RSS ${(warm.rss / 2 ** 20).toFixed(1)} → ${(last.rss / 2 ** 20).toFixed(1)} MiB (${(((last.rss - warm.rss) / warm.rss) * 100).toFixed(1)}%), fds ${warm.handles} → ${last.handles}`)
}
const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)))
cli.child.kill('SIGTERM')
console.log(`sidecar exited with ${await exited}`)
for (const u of ups) await u.close()
