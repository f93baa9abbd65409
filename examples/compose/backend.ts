/**
 * A demo backend replica for docker-compose.yml: answers JSON naming itself, and registers itself
 * in Consul (agent API, with an HTTP check) at start and deregisters on SIGTERM, as a real service
 * would (or as its own outrigger sidecar would, with `register:`). Runs on node:24 as is.
 */
import http from 'node:http'
import os from 'node:os'

const port = Number(process.env.PORT ?? 8080)
const consul = process.env.CONSUL_HTTP_ADDR ?? 'http://consul:8500'
const id = `backend-${os.hostname()}`
// The container's address on the compose network: what other containers reach it by.
const address = Object.values(os.networkInterfaces()).flat().find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address ?? '127.0.0.1'

const server = http.createServer((req, res) => {
  const body = req.url === '/health' ? 'ok\n' : JSON.stringify({ instance: id, url: req.url }) + '\n'
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
})
server.listen(port, '0.0.0.0')

async function register(): Promise<void> {
  for (;;) {
    try {
      const res = await fetch(`${consul}/v1/agent/service/register`, {
        method: 'PUT',
        body: JSON.stringify({ ID: id, Name: 'backend', Address: address, Port: port, Check: { HTTP: `http://${address}:${port}/health`, Interval: '2s', DeregisterCriticalServiceAfter: '1m' } }),
      })
      if (res.ok) return
    } catch {
      // Consul not up yet
    }
    await new Promise((r) => setTimeout(r, 1000))
  }
}
await register()
console.log(`${id} at ${address}:${port}, registered in ${consul} as "backend"`)

process.once('SIGTERM', () => {
  void fetch(`${consul}/v1/agent/service/deregister/${id}`, { method: 'PUT' }).finally(() => server.close(() => process.exit(0)))
})
