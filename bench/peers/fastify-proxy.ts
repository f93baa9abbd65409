/**
 * Peer for bench/compare.ts: @fastify/http-proxy round-robin over the upstreams, logging off.
 *   node bench/peers/fastify-proxy.ts PORT URL1 URL2 ...
 * @fastify/http-proxy proxies to one `upstream`; with `upstream: ''` and `replyOptions.getUpstream`
 * each request picks its own, and @fastify/reply-from keeps an undici Agent (a keep-alive pool per
 * origin). The packages come from bench/peers/node_modules; they are imported by a computed name so the
 * root typecheck and lint do not depend on bench's dependencies being installed, and typed here by
 * the little of their surface this file uses.
 */
interface FastifyApp {
  register(plugin: unknown, options: Record<string, unknown>): unknown
  listen(options: { port: number; host: string }): Promise<string>
}
type FastifyFactory = (options: Record<string, unknown>) => FastifyApp

const [portArg, ...upstreams] = process.argv.slice(2)
if (portArg === undefined || upstreams.length === 0) throw new Error('usage: fastify-proxy.ts PORT URL...')

const fastifyName = 'fastify'
const proxyName = '@fastify/http-proxy'
const fastify = ((await import(fastifyName)) as { default: FastifyFactory }).default
const httpProxy = ((await import(proxyName)) as { default: unknown }).default

let next = 0
const app = fastify({ logger: false })
await app.register(httpProxy, {
  upstream: '',
  replyOptions: { getUpstream: () => upstreams[next++ % upstreams.length]! },
})
await app.listen({ port: Number(portArg), host: '127.0.0.1' })
process.stdout.write('listening\n')
process.on('SIGTERM', () => process.exit(0))
