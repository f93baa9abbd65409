/** What the harness reads from /proc: a process's own CPU time and memory, and each CPU's busy time. */
import { readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux for every architecture in use). */
const USER_HZ = 100

/** utime + stime of `pid` (all its threads), in microseconds. Resolution: 10 ms. */
export function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14 and 15 of stat(5) are utime and stime; after the name, field 3 is at index 0.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / USER_HZ
}

/** VmRSS and VmHWM (peak resident set) of `pid`, in bytes. */
export function processMemory(pid: number): { rssBytes: number; hwmBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
    return m === null ? Number.NaN : Number(m[1]) * 1024
  }
  return { rssBytes: kib('VmRSS'), hwmBytes: kib('VmHWM') }
}

/** Busy and total ticks per CPU, from /proc/stat (idle and iowait count as not busy). */
export function cpuTicks(): { busy: number; total: number }[] {
  const out: { busy: number; total: number }[] = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line)
    if (m === null) continue
    const t = m[2]!.trim().split(/\s+/).map(Number)
    // user nice system idle iowait irq softirq steal (guest times are already inside user).
    const total = t.slice(0, 8).reduce((a, b) => a + b, 0)
    out[Number(m[1])] = { busy: total - t[3]! - t[4]!, total }
  }
  return out
}

/** Percent busy of each CPU between two `cpuTicks()` readings. */
export function cpuBusyPercent(before: readonly { busy: number; total: number }[], after: readonly { busy: number; total: number }[]): number[] {
  return after.map((a, i) => {
    const b = before[i]!
    const total = a.total - b.total
    return total > 0 ? (100 * (a.busy - b.busy)) / total : 0
  })
}
