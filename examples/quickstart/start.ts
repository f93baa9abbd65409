/**
 * `npm start`: three demo "hello" instances on loopback, and outrigger in front of them, run from
 * source exactly as `outrigger run -c examples/quickstart/outrigger.yaml` would run it. Prints where
 * to send requests; Ctrl-C stops everything (outrigger drains in-flight requests first).
 */
import { spawn } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'

const here = import.meta.dirname
const cli = path.join(here, '..', '..', 'src', 'cli.ts')
const config = path.join(here, 'outrigger.yaml')
const DEFAULT_PORTS = [9001, 9002, 9003]

/** Listens on `preferred`, or on any free port when it is taken. */
async function listen(server: http.Server, preferred: number): Promise<number> {
  for (const port of [preferred, 0]) {
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (ok) return (server.address() as AddressInfo).port
  }
  throw new Error('no free port for a demo instance')
}

const instances: http.Server[] = []
const env: NodeJS.ProcessEnv = { ...process.env }
for (const [i, preferred] of DEFAULT_PORTS.entries()) {
  const name = `hello-${i + 1}`
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ instance: name, method: req.method, url: req.url, host: req.headers.host, forwardedFor: req.headers['x-forwarded-for'] ?? null }) + '\n'
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  instances.push(server)
  env[`HELLO_PORT_${i + 1}`] = String(await listen(server, preferred))
}

const pretty = process.stdout.isTTY ? ['--pretty'] : []
const child = spawn(process.execPath, [cli, 'run', '-c', config, ...pretty], { env, stdio: ['ignore', 'inherit', 'inherit'] })

const listenAddr = env.OUTRIGGER_LISTEN ?? '127.0.0.1:15001'
const adminAddr = env.OUTRIGGER_ADMIN ?? '127.0.0.1:9901'

async function waitReady(): Promise<boolean> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if ((await fetch(`http://${adminAddr}/readyz`)).ok) return true
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

function stopInstances(): void {
  for (const s of instances) {
    s.close()
    s.closeAllConnections()
  }
}

child.once('exit', (code, signal) => {
  stopInstances()
  process.exitCode = code ?? (signal === null ? 1 : 0)
})
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig))

if (await waitReady()) {
  const ports = DEFAULT_PORTS.map((_, i) => env[`HELLO_PORT_${i + 1}`]).join(', ')
  process.stderr.write(
    [
      '',
      `outrigger is balancing "hello" over three demo instances on 127.0.0.1 ports ${ports}.`,
      'Try:',
      `  curl -H 'Host: hello' http://${listenAddr}/        # round-robin: run it three times`,
      `  curl http://${listenAddr}/hello/world               # path route, prefix stripped`,
      `  curl http://${adminAddr}/api/services               # endpoints, health, in-flight`,
      `  curl http://${adminAddr}/metrics                    # Prometheus`,
      `  open http://${adminAddr}/                           # status page`,
      `  npm run outrigger -- status --admin ${adminAddr}   # the same as a table`,
      'Ctrl-C stops it.',
      '',
    ].join('\n') + '\n',
  )
}
