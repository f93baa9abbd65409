import net from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import type { Config, ListenAddress } from '../config/types.ts'
import { StartupError, fmt } from '../sidecar.ts'

/** The proxy listeners of a config by config path: `listen` and each `services.NAME.listen`. */
function proxyAddresses(config: Config): Map<string, ListenAddress> {
  const out = new Map<string, ListenAddress>([['listen', config.listen]])
  for (const s of config.services) if (s.listen !== undefined) out.set(`services.${s.name}.listen`, s.listen)
  return out
}

/** Binds `address` alone (no SO_REUSEPORT) and lets go: the port it got, or why it cannot. */
function probe(address: ListenAddress, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', (err) => reject(new StartupError(path, `cannot listen on ${fmt(address)}: ${err.message}`)))
    server.listen({ port: address.port, host: address.host, exclusive: true }, () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

/**
 * Gives every proxy listener of `next` a concrete port before workers bind it, because each worker
 * binds its own socket: port 0 would give each a different port. An address the previous config
 * already had (as written) keeps the port it got then; a new one is probed by binding it alone once,
 * which also refuses a port another process holds (including another outrigger's workers, whose
 * SO_REUSEPORT group would otherwise take ours in silently). A probed port 0 is released until the
 * workers bind it: another process could take it in between; the workers then fail to bind and
 * the start (or reload) fails, naming the address. Configured (non-zero) ports have no such window.
 */
export async function resolveProxyPorts(next: Config, previous: { written: Config; resolved: Config } | null): Promise<Config> {
  const before = previous === null ? new Map<string, ListenAddress>() : proxyAddresses(previous.written)
  const resolvedBefore = previous === null ? new Map<string, ListenAddress>() : proxyAddresses(previous.resolved)
  const resolved = new Map<string, ListenAddress>()
  for (const [path, address] of proxyAddresses(next)) {
    const kept = resolvedBefore.get(path)
    if (kept !== undefined && isDeepStrictEqual(before.get(path), address)) resolved.set(path, kept)
    else resolved.set(path, { host: address.host, port: await probe(address, path) })
  }
  return {
    ...next,
    listen: resolved.get('listen')!,
    services: next.services.map((s) => (s.listen === undefined ? s : { ...s, listen: resolved.get(`services.${s.name}.listen`)! })),
  }
}
