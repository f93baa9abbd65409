/** A minimal keep-alive upstream for benchmarks: answers every request with a small body. Prints its port. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

const body = Buffer.from('hello from upstream\n')
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
  res.end(body)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`))
process.on('SIGTERM', () => process.exit(0))
