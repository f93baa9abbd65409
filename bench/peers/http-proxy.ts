/**
 * Peer for bench/compare.ts: http-proxy (node-http-proxy) behind a node:http server, round-robin over
 * the upstreams with a keep-alive agent (without one it would open a connection per request).
 *   node bench/peers/http-proxy.ts PORT URL1 URL2 ...
 * Imported by a computed name from bench/peers/node_modules, as in fastify-proxy.ts.
 */
import http from 'node:http'

interface ProxyServer {
  web(req: http.IncomingMessage, res: http.ServerResponse, options: { target: string }): void
  on(event: 'error', listener: (err: Error, req: http.IncomingMessage, res: http.ServerResponse) => void): void
}
interface HttpProxyModule {
  createProxyServer(options: Record<string, unknown>): ProxyServer
}

const [portArg, ...upstreams] = process.argv.slice(2)
if (portArg === undefined || upstreams.length === 0) throw new Error('usage: http-proxy.ts PORT URL...')

const moduleName = 'http-proxy'
const httpProxy = ((await import(moduleName)) as { default: HttpProxyModule }).default
const proxy = httpProxy.createProxyServer({ agent: new http.Agent({ keepAlive: true, maxSockets: 256 }), xfwd: true })
proxy.on('error', (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502)
  res.end()
})

let next = 0
const server = http.createServer((req, res) => proxy.web(req, res, { target: upstreams[next++ % upstreams.length]! }))
server.keepAliveTimeout = 60_000
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write('listening\n'))
process.on('SIGTERM', () => process.exit(0))
