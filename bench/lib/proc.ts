/** What the harness reads from /proc: a process's (or a process tree's) CPU time and memory, and each CPU's busy time;
 * and the real-time scheduling latency-rounds.ts can run the proxy and the load under (a diagnosis). */
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux for every architecture in use). */
const USER_HZ = 100

/** utime + stime of `pid` (all its threads), in microseconds. Resolution: 10 ms. */
export function processCpuMicros(pid: number): number {
  const fields = statFields(pid)
  // Fields 14 and 15 of stat(5) are utime and stime.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / USER_HZ
}

/** The fields of /proc/PID/stat after the command name: field 3 of stat(5) is at index 0. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** `pid`'s children, forked by any of its threads (/proc/PID/task/TID/children). */
function childPids(pid: number): number[] {
  const out: number[] = []
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let children: string
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
    } catch {
      continue // the thread ended meanwhile
    }
    for (const c of children.trim().split(' ')) if (c !== '') out.push(Number(c))
  }
  return out
}

/** `pid` and all its living descendants, `pid` first. */
export function processTree(pid: number): number[] {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    try {
      out.push(...childPids(out[i]!))
    } catch {
      // a descendant that exited meanwhile has no task folder; the root's absence shows below
    }
  }
  return out
}

/**
 * CPU time of `pid` and all its descendants (node:cluster workers, nginx's workers), in
 * microseconds: each living process's utime + stime, plus cutime + cstime, the time of children it
 * has already reaped (a worker restarted during a measurement still counts). A process without
 * children gives what processCpuMicros does. Throws when `pid` itself is gone; a descendant that
 * exits between the listing and the read is left out.
 */
export function processTreeCpuMicros(pid: number): number {
  let ticks = 0
  for (const p of processTree(pid)) {
    let fields: string[]
    try {
      fields = statFields(p)
    } catch (err) {
      if (p === pid) throw err
      continue
    }
    // Fields 14–17 of stat(5): utime, stime, cutime, cstime.
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
  }
  return (ticks * 1e6) / USER_HZ
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

/** VmRSS and VmHWM summed over `pid` and its descendants (see processTree), in bytes. The sum of
 * peaks is an upper bound of the tree's peak: the processes need not have peaked together. */
export function processTreeMemory(pid: number): { rssBytes: number; hwmBytes: number } {
  let rssBytes = 0
  let hwmBytes = 0
  for (const p of processTree(pid)) {
    let m: { rssBytes: number; hwmBytes: number }
    try {
      m = processMemory(p)
    } catch (err) {
      if (p === pid) throw err
      continue
    }
    rssBytes += m.rssBytes
    hwmBytes += m.hwmBytes
  }
  return { rssBytes, hwmBytes }
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

/**
 * Runs every thread of `pid` and of its descendants under SCHED_FIFO at `priority` (`chrt -f -a`),
 * until the returned function puts them back to SCHED_OTHER; returns null, changing nothing, where
 * that is not permitted (it needs root or CAP_SYS_NICE). Normal tasks on the same CPU (this VM's
 * agent runs at nice -10) then wait while the process has work instead of preempting it. A diagnosis
 * (`latency-rounds.ts --shield` and `--shield-load`; bench/README.md, "Latency at a fixed rate"),
 * not part of the comparison: only for a load the process keeps up with, since the kernel stops
 * every real-time thread of a CPU for the rest of each second once they have had 950 ms of it
 * (sched_rt_runtime_us), which the CPU shared by the client and the upstreams reached when both
 * were shielded in the comparison's latency rounds (tried; bench/README.md).
 */
export function shieldProcessTree(pid: number, priority = 1): (() => void) | null {
  const chrt = (args: string[]): boolean => spawnSync('chrt', args, { stdio: 'ignore' }).status === 0
  const shielded: number[] = []
  for (const p of processTree(pid)) {
    if (chrt(['-f', '-a', '-p', String(priority), String(p)])) shielded.push(p)
    else if (p === pid) return null
  }
  return () => {
    for (const p of shielded) chrt(['-o', '-a', '-p', '0', String(p)])
  }
}
