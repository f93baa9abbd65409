/**
 * The demo app of docker-compose.yml: for each request it calls the "backend" service through its
 * outrigger sidecar, which shares its network namespace, so the sidecar is at 127.0.0.1:15001.
 * Pointing an app at its sidecar is only this: a plain HTTP call to loopback with the service's
 * name as the Host (or HTTP_PROXY=http://127.0.0.1:15001 and http://backend/ URLs).
 */
import http from 'node:http'

const sidecar = process.env.OUTRIGGER_URL ?? 'http://127.0.0.1:15001'

http
  .createServer((req, res) => {
    fetch(new URL(req.url ?? '/', sidecar), { headers: { host: 'backend' } }).then(
      async (up) => {
        const body = `app -> outrigger -> ${await up.text()}`
        res.writeHead(up.status, { 'content-type': 'text/plain' })
        res.end(body)
      },
      (err: unknown) => {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end(`outrigger unreachable: ${String(err)}\n`)
      },
    )
  })
  .listen(8000, '0.0.0.0')
