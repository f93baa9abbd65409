/**
 * The cost of one `pick()` and of one picker rebuild, for every strategy at 10 to 10,000
 * endpoints, and a check that picks allocate nothing: no garbage collection during a million of
 * them. Figures, never assertions: the summary marks a missed target MISSED, the exit code stays 0.
 *
 *   npm run bench:pick                           # every strategy
 *   npm run bench:pick -- consistent-hash        # only the rows whose name starts with this
 *   RUNS=11 PICKS=2000000 npm run bench:pick
 *
 * Each strategy runs in its own process (this file again, with `--child`): in one process the
 * timing loop's `pick()` call site would see every picker class, go megamorphic, and slow down the
 * strategies measured after the first. The children always get `--expose-gc` and a small young
 * generation (SEMI_SPACE_MB).
 *
 * Contexts are the forwarder's: `{ hash: -1, stickyToken: null, tried: null }`, except that
 * consistent-hash rows get the hash of a distinct request key per pick, hashed before timing
 * (hashing the key is the listener's job, not the picker's). Weights are 1 to 5 and every host
 * has 0 to 3 requests in flight, so least-connections and bounded-load hashing see neither all
 * ties nor idle hosts only. The timing loop allocates nothing: one reused context, and a running
 * checksum of the picked ports so the JIT cannot drop the calls.
 */
import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { PerformanceObserver } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Dispatcher } from 'undici'
import { ConsistentHashBalancer } from '../src/balancer/consistent-hash.ts'
import { hashString, mix32 } from '../src/balancer/hash.ts'
import { LeastConnectionsBalancer } from '../src/balancer/least-connections.ts'
import { RoundRobinBalancer } from '../src/balancer/round-robin.ts'
import type { Balancer, PickContext, Picker } from '../src/balancer/types.ts'
import { WeightedBalancer } from '../src/balancer/weighted.ts'
import type { ClusterLoad } from '../src/cluster/host.ts'
import { Host } from '../src/cluster/host.ts'
import { median, printChecks } from './stats.ts'
import type { Check } from './stats.ts'

const RUNS = Number(process.env.RUNS ?? 7)
const WARMUP_RUNS = 2
const PICKS = Number(process.env.PICKS ?? 1_000_000)
const GC_CHECK_PICKS = 1_000_000
const REBUILDS = 9
const WARMUP_REBUILDS = 2
const SIZES = [10, 100, 1_000, 10_000]
/** Distinct request keys for consistent hashing; a power of two so the loop indexes with a mask. */
const KEYS = 1 << 16
/**
 * The children's young generation, fixed small: a scavenge then comes every megabyte allocated,
 * so the GC check sees an allocation of a byte per pick. Left to grow (to 16 MB or more after the
 * rebuilds of large sets), it would let 16 bytes per pick pass with no GC at all.
 */
const SEMI_SPACE_MB = 1

const TARGET_PICK_NS = 100
const TARGET_PICK_AT = 1_000
const TARGET_HASH_REBUILD_MS = 50
const TARGET_REBUILD_AT = 10_000

interface Row {
  name: string
  make: () => Balancer
  /** Consistent hashing: a key hash per pick instead of -1. */
  hashed: boolean
}

const ROWS: Row[] = [
  { name: 'round-robin', make: () => new RoundRobinBalancer(), hashed: false },
  { name: 'weighted', make: () => new WeightedBalancer(), hashed: false },
  { name: 'least-connections', make: () => new LeastConnectionsBalancer(), hashed: false },
  { name: 'consistent-hash', make: () => new ConsistentHashBalancer(0), hashed: true },
  { name: 'consistent-hash (bounded 1.25)', make: () => new ConsistentHashBalancer(1.25), hashed: true },
]

interface SizeResult {
  endpoints: number
  nsMedian: number
  nsMin: number
  nsMax: number
  /** A fresh balancer's first `rebuild(hosts)`. */
  buildMs: number
  /** The same balancer's `rebuild` with one endpoint removed. */
  rebuildMs: number
  /** GC events during GC_CHECK_PICKS picks. */
  gcs: number
  /** Consistent hashing only: points on the ring, and virtual nodes per unit of weight. */
  ring: { points: number; vnodesPerWeight: number } | null
}

interface RowResult {
  name: string
  sizes: SizeResult[]
  checksum: number
}

/** `n` hosts of one cluster: weights 1–5 and 0–3 requests in flight each, fixed by index. */
function makeHosts(n: number): Host[] {
  const load: ClusterLoad = { inFlight: 0 }
  const dispatcher = {} as unknown as Dispatcher
  const hosts: Host[] = []
  for (let i = 0; i < n; i++) {
    const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    const host = new Host({ address, port: 20_000 + i, weight: 1 + (mix32(i) % 5), meta: {} }, dispatcher, 1_000_000, 0, load)
    for (let k = mix32(i ^ 0x5bd1e995) % 4; k > 0; k--) host.acquire()
    hosts.push(host)
  }
  return hosts
}

// The two timing loops. Nothing in them allocates: the context is reused, the result folds into a
// number. Each child process runs only one of them, so its pick() call site stays monomorphic.

function pickLoop(picker: Picker, context: PickContext, count: number): number {
  let checksum = 0
  for (let i = 0; i < count; i++) {
    const host = picker.pick(context)
    checksum = (checksum + (host === null ? -1 : host.port)) | 0
  }
  return checksum
}

function hashedPickLoop(picker: Picker, context: PickContext, hashes: Uint32Array, count: number): number {
  const mask = hashes.length - 1
  let checksum = 0
  for (let i = 0; i < count; i++) {
    context.hash = hashes[i & mask]!
    const host = picker.pick(context)
    checksum = (checksum + (host === null ? -1 : host.port)) | 0
  }
  return checksum
}

async function measureRow(row: Row): Promise<RowResult> {
  let sink = 0
  const hashes = new Uint32Array(KEYS)
  for (let i = 0; i < KEYS; i++) hashes[i] = hashString(`user-${i}`)
  // A double from the start, so storing key hashes never changes the field's representation.
  const context: PickContext = { hash: row.hashed ? hashes[0]! : -1, stickyToken: null, tried: null }
  const run = (picker: Picker, count: number): number =>
    row.hashed ? hashedPickLoop(picker, context, hashes, count) : pickLoop(picker, context, count)

  const gcStarts: number[] = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcStarts.push(entry.startTime)
  })
  observer.observe({ entryTypes: ['gc'] })

  const sizes: SizeResult[] = []
  for (const n of SIZES) {
    const hosts = makeHosts(n)
    const withoutOne = hosts.filter((_, i) => i !== n >> 1)

    const buildMs: number[] = []
    const rebuildMs: number[] = []
    for (let r = 0; r < WARMUP_REBUILDS + REBUILDS; r++) {
      const balancer = row.make()
      const t0 = performance.now()
      balancer.rebuild(hosts)
      const t1 = performance.now()
      balancer.rebuild(withoutOne)
      const t2 = performance.now()
      if (r >= WARMUP_REBUILDS) {
        buildMs.push(t1 - t0)
        rebuildMs.push(t2 - t1)
      }
    }

    const balancer = row.make()
    const picker = balancer.rebuild(hosts)
    let ring: SizeResult['ring'] = null
    if (balancer instanceof ConsistentHashBalancer) {
      const v = balancer.vnodesPerWeight
      let points = 0
      for (const host of hosts) points += Math.max(1, Math.round(v * host.weight))
      ring = { points, vnodesPerWeight: v }
    }

    for (let r = 0; r < WARMUP_RUNS; r++) sink ^= run(picker, PICKS)
    const ns: number[] = []
    for (let r = 0; r < RUNS; r++) {
      const start = performance.now()
      sink ^= run(picker, PICKS)
      ns.push(((performance.now() - start) * 1e6) / PICKS)
    }

    // GC entries arrive asynchronously; count those that started while the picks ran.
    globalThis.gc?.()
    const start = performance.now()
    sink ^= run(picker, GC_CHECK_PICKS)
    const end = performance.now()
    await sleep(100)
    let gcs = 0
    for (const t of gcStarts) if (t >= start && t <= end) gcs++

    sizes.push({ endpoints: n, nsMedian: median(ns), nsMin: Math.min(...ns), nsMax: Math.max(...ns), buildMs: median(buildMs), rebuildMs: median(rebuildMs), gcs, ring })
  }
  observer.disconnect()
  return { name: row.name, sizes, checksum: sink }
}

// --- child: measure one row, print it as JSON --------------------------------------------------

const childAt = process.argv.indexOf('--child')
if (childAt !== -1) {
  const row = ROWS.find((r) => r.name === process.argv[childAt + 1])
  if (row === undefined) throw new Error(`unknown row ${process.argv[childAt + 1]}`)
  if (globalThis.gc === undefined) throw new Error('run with --expose-gc')
  process.stdout.write(`${JSON.stringify(await measureRow(row))}\n`)
  process.exit(0)
}

// --- parent: one child per row, then the tables -------------------------------------------------

const int = (n: number): string => n.toLocaleString('en-US')
const ms = (x: number): string => (x < 1 ? x.toFixed(3) : x.toFixed(1))
const pad = (s: string, width: number): string => s.padStart(width)

const filters = process.argv.slice(2)
const rows = ROWS.filter((r) => filters.length === 0 || filters.some((f) => r.name.startsWith(f)))
const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
console.log(`pick(): median of ${RUNS} runs of ${int(PICKS)} picks after ${WARMUP_RUNS} warm-up runs; rebuilds: median of ${REBUILDS} after ${WARMUP_REBUILDS} warm-up`)
console.log(`node ${process.version}, ${os.platform()} ${os.arch()}, ${os.availableParallelism()} CPUs (${cpu})`)
console.log(`each strategy in its own process, run with --expose-gc --max-semi-space-size=${SEMI_SPACE_MB}`)

const results: RowResult[] = []
for (const row of rows) {
  const out = execFileSync(process.execPath, ['--expose-gc', `--max-semi-space-size=${SEMI_SPACE_MB}`, import.meta.filename, '--child', row.name], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const result = JSON.parse(out.trim().split('\n').at(-1)!) as RowResult
  results.push(result)

  const hashed = result.sizes.some((s) => s.ring !== null)
  console.log(`\n${result.name}`)
  console.log(`  endpoints   ns/pick   (min–max)       build ms  rebuild −1 ms  GCs/${int(GC_CHECK_PICKS)} picks${hashed ? '   ring points (vnodes/weight)' : ''}`)
  for (const s of result.sizes) {
    const spread = `(${s.nsMin.toFixed(1)}–${s.nsMax.toFixed(1)})`
    const ring = s.ring === null ? '' : `   ${pad(int(s.ring.points), 11)} (${s.ring.vnodesPerWeight})`
    console.log(
      `  ${pad(int(s.endpoints), 9)}  ${pad(s.nsMedian.toFixed(1), 8)}   ${spread.padEnd(14)}${pad(ms(s.buildMs), 9)}  ${pad(ms(s.rebuildMs), 13)}  ${pad(String(s.gcs), 8)}${s.gcs > 0 ? ' ALLOCATES' : '         '}${ring}`,
    )
  }
}

console.log(`\nGC check at ${int(TARGET_PICK_AT)} endpoints (gc() first, then PerformanceObserver 'gc' entries during the picks):`)
for (const r of results) {
  const gcs = r.sizes.find((s) => s.endpoints === TARGET_PICK_AT)?.gcs ?? Number.NaN
  console.log(`  ${r.name.padEnd(32)} GCs during ${int(GC_CHECK_PICKS)} picks: ${gcs}${gcs === 0 ? '' : '   <-- ALLOCATES in pick()'}`)
}

const checks: Check[] = []
for (const r of results) {
  const at = r.sizes.find((s) => s.endpoints === TARGET_PICK_AT)
  if (at !== undefined) {
    checks.push({ what: `${r.name}: pick at ${int(TARGET_PICK_AT)} endpoints`, target: `< ${TARGET_PICK_NS} ns`, measured: `${at.nsMedian.toFixed(1)} ns`, ok: at.nsMedian < TARGET_PICK_NS })
    checks.push({ what: `${r.name}: GCs during ${int(GC_CHECK_PICKS)} picks`, target: '0', measured: String(at.gcs), ok: at.gcs === 0 })
  }
  const big = r.sizes.find((s) => s.endpoints === TARGET_REBUILD_AT)
  if (big?.ring != null) {
    checks.push({ what: `${r.name}: first build at ${int(TARGET_REBUILD_AT)}`, target: `< ${TARGET_HASH_REBUILD_MS} ms`, measured: `${ms(big.buildMs)} ms`, ok: big.buildMs < TARGET_HASH_REBUILD_MS })
    checks.push({ what: `${r.name}: rebuild −1 endpoint at ${int(TARGET_REBUILD_AT)}`, target: `< ${TARGET_HASH_REBUILD_MS} ms`, measured: `${ms(big.rebuildMs)} ms`, ok: big.rebuildMs < TARGET_HASH_REBUILD_MS })
  }
}
printChecks(checks)
