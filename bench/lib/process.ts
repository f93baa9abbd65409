/** Child processes of the harness: pinned with taskset, logged to a file, stopped by pid. */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { openSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Started {
  readonly child: ChildProcess
  /** The pid whose /proc entries are read: taskset execs the command, so it is the command's own. */
  readonly pid: number
  stop(): Promise<void>
}

/** Starts `command` on CPU `cpu`, or on a CPU list such as "0,1" (taskset -c), stdout and stderr to `logFile`. */
export function startPinned(cpu: number | string, command: string, args: readonly string[], logFile: string, cwd?: string): Started {
  const log = openSync(logFile, 'a')
  const child = spawn('taskset', ['-c', String(cpu), command, ...args], { stdio: ['ignore', log, log], cwd })
  if (child.pid === undefined) throw new Error(`could not start ${command}`)
  const pid = child.pid
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true
      resolve()
    }),
  )
  return {
    child,
    pid,
    async stop() {
      if (exited) return
      child.kill('SIGTERM')
      const killed = await Promise.race([exit.then(() => true), sleep(5000).then(() => false)])
      if (!killed) {
        child.kill('SIGKILL')
        await exit
      }
    },
  }
}

/** A loopback port free at the time of asking. */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** One GET; resolves with the status, or 0 when the request failed. */
export function probe(port: number, host: string, urlPath = '/'): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host }, agent: false, timeout: 2000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', () => resolve(0))
    req.on('timeout', () => req.destroy())
  })
}

/** Waits until `port` answers 200 through to an upstream, or throws after `timeoutMs`. */
export async function waitReady(name: string, port: number, host: string, started: Started, logFile: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (started.child.exitCode !== null) throw new Error(`${name} exited with ${started.child.exitCode}; see ${logFile}`)
    if ((await probe(port, host)) === 200) return
    await sleep(100)
  }
  throw new Error(`${name} did not answer 200 on port ${port} within ${timeoutMs} ms; see ${logFile}`)
}
