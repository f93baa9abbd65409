/**
 * Durations and sizes as users write them in the config file.
 *
 * Durations: `250ms`, `5s`, `1m`, `1h`, `1.5s`, sequences like `1m30s`, a plain number or a numeric
 * string (milliseconds). Sizes: `512B`, `64KiB`, `1MiB`, `1GiB`, `1TiB` (1024-based), `10KB`/`10kB`,
 * `1MB`, `1GB`, `1TB` (1000-based), a plain number or a numeric string (bytes).
 *
 * Both throw a RangeError with a message meant for humans; the schema turns it into a config issue.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }
const DECIMAL = String.raw`(?:\d+(?:\.\d+)?|\.\d+)`
const PLAIN_NUMBER = new RegExp(`^${DECIMAL}$`)
const DURATION_PART = new RegExp(`(${DECIMAL})(ms|s|m|h)`, 'y')

/** The longest duration the config accepts: Node timers overflow at 2^31-1 ms (about 596.5 hours). */
export const MAX_DURATION_MS = 596 * 3_600_000

/** Parses a duration into milliseconds. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError(`invalid duration ${String(v)}: must be a finite number of milliseconds`)
    if (v < 0) throw new RangeError(`invalid duration ${v}: must not be negative`)
    return v
  }
  if (typeof v !== 'string') throw new RangeError('invalid duration: must be a string or a number')
  const text = v.trim()
  if (text.startsWith('-')) throw new RangeError(`invalid duration "${v}": must not be negative`)
  if (PLAIN_NUMBER.test(text)) return Number(text)
  let total = 0
  let pos = 0
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos
    const m = DURATION_PART.exec(text)
    if (m === null) break
    total += Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? Number.NaN)
    pos = DURATION_PART.lastIndex
  }
  if (text.length === 0 || pos !== text.length || !Number.isFinite(total)) {
    throw new RangeError(`invalid duration "${v}": expected a number with a unit ms, s, m or h, like 250ms, 5s or 1m`)
  }
  // 1.1s is 1100.0000000000002 in floating point; durations are whole milliseconds unless written smaller.
  return Math.round(total * 1000) / 1000
}

/** Formats milliseconds the way users write them: `250ms`, `5s`, `1.5s`, `2m`, `1h`, `1m30s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s'
  if (ms < 1000 || !Number.isInteger(ms)) return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`
  const parts: string[] = []
  let rest = ms
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  if (rest > 0) parts.push(`${rest / 1000}s`)
  return parts.join('')
}

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  KB: 1000,
  kB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
}
const SIZE = new RegExp(`^(${DECIMAL})(B|KiB|MiB|GiB|TiB|KB|kB|MB|GB|TB)?$`)

/** Parses a size into bytes (a whole number). */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError(`invalid size ${String(v)}: must be a finite number of bytes`)
    if (v < 0) throw new RangeError(`invalid size ${v}: must not be negative`)
    if (!Number.isInteger(v)) throw new RangeError(`invalid size ${v}: must be a whole number of bytes`)
    return v
  }
  if (typeof v !== 'string') throw new RangeError('invalid size: must be a string or a number')
  const text = v.trim()
  if (text.startsWith('-')) throw new RangeError(`invalid size "${v}": must not be negative`)
  const m = SIZE.exec(text)
  if (m === null) {
    throw new RangeError(`invalid size "${v}": expected a number with a unit B, KiB, MiB, GiB, KB, MB or GB, like 64KiB or 1MiB`)
  }
  const bytes = Number(m[1]) * (SIZE_UNITS[m[2] ?? 'B'] ?? Number.NaN)
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`invalid size "${v}": must be a whole number of bytes (at most ${Number.MAX_SAFE_INTEGER})`)
  }
  return bytes
}
