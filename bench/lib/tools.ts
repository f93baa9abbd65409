/** The harness's outside tools: Debian's haproxy, nginx and wrk, and the C fixed-rate client. */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, statSync } from 'node:fs'
import path from 'node:path'

const benchDir = path.join(import.meta.dirname, '..')

/** Paths of haproxy, nginx and wrk from bench/peers/fetch.sh (on PATH, or Debian's packages unpacked). */
export function fetchTools(): { haproxy: string; nginx: string; wrk: string; versions: string } {
  const r = spawnSync('bash', [path.join(benchDir, 'peers', 'fetch.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`bench/peers/fetch.sh failed:\n${r.stderr}`)
  const found = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  return { haproxy: found.haproxy!, nginx: found.nginx!, wrk: found.wrk!, versions: r.stderr.trim() }
}

/**
 * The C client's arguments, in the order clients/fixed-rate.c reads them: a fixed rate of GETs of `/`
 * with `host` as Host, over `connections` to 127.0.0.1:`port`, for `seconds` after `calibrate`.
 */
export function fixedRateArgs(port: number, host: string, rate: number | string, seconds: number | string, connections: number, calibrate: number | string): string[] {
  return ['127.0.0.1', String(port), host, '/', String(rate), String(seconds), String(connections), String(calibrate)]
}

/**
 * The fixed-rate client in C (clients/fixed-rate.c), built with the machine's cc into .cache/bench/bin
 * when missing or older than its source. null when there is no C compiler: the latency scenario
 * then runs fixed-rate.ts, whose own cost on CPU 1 raises every target's p99 (bench/README.md).
 */
export function buildFixedRateClient(): string | null {
  const source = path.join(benchDir, 'clients', 'fixed-rate.c')
  const binary = path.join(benchDir, '..', '.cache', 'bench', 'bin', 'fixed-rate')
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) return binary
  mkdirSync(path.dirname(binary), { recursive: true })
  const r = spawnSync(process.env.CC ?? 'cc', ['-O2', '-Wall', '-o', binary, source], { encoding: 'utf8' })
  if (r.status === 0) return binary
  console.log(`could not build bench/clients/fixed-rate.c (${r.error?.message ?? r.stderr.trim()}); the latency scenario uses fixed-rate.ts`)
  return null
}
