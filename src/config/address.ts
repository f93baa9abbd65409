/**
 * `host:port` addresses: listeners (`listen`, `admin`, a service's `listen`) and endpoints.
 * Throw a RangeError whose message is ready to show after `<path>: `.
 */
import { isIP, isIPv6 } from 'node:net'
import type { ListenAddress } from './types.ts'

const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/
const PORT = /^\d{1,5}$/

/** A host name, an IPv4 address or an IPv6 address (without brackets). */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || (HOSTNAME.test(host) && !host.includes('..'))
}

/** The port part of an address; `min` is 0 for listeners (0 = any free port) and 1 for endpoints. */
export function parsePort(text: string, min: number): number {
  if (!PORT.test(text)) throw new RangeError(`port must be a number, got "${text}"`)
  const port = Number(text)
  if (port < min || port > 65535) throw new RangeError(`port must be between ${min} and 65535`)
  return port
}

/**
 * `host:port` or `[ipv6]:port`; with `defaultHost`, a bare port (`15001`) is accepted too.
 * The returned host never has brackets.
 */
export function parseHostPort(text: string, opts: { defaultHost?: string; minPort?: number; what?: string } = {}): ListenAddress {
  const minPort = opts.minPort ?? 1
  const what = opts.what ?? (opts.defaultHost === undefined ? 'must be host:port or [ipv6]:port' : 'must be host:port, [ipv6]:port or a port')
  const s = text.trim()
  if (opts.defaultHost !== undefined && PORT.test(s)) return { host: opts.defaultHost, port: parsePort(s, minPort) }
  let host: string
  let portText: string
  if (s.startsWith('[')) {
    const close = s.indexOf(']')
    if (close < 0 || s[close + 1] !== ':') throw new RangeError(`${what}, got "${text}"`)
    host = s.slice(1, close)
    portText = s.slice(close + 2)
    if (!isIPv6(host)) throw new RangeError(`"${host}" is not an IPv6 address`)
  } else {
    const colon = s.lastIndexOf(':')
    if (colon < 0) throw new RangeError(`${what}, got "${text}"`)
    host = s.slice(0, colon)
    portText = s.slice(colon + 1)
    if (host.includes(':')) throw new RangeError(`an IPv6 address needs brackets, like [::1]:${portText}`)
    if (host === '' || !isValidHost(host)) throw new RangeError(`${what}, got "${text}"`)
  }
  return { host, port: parsePort(portText, minPort) }
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

const WILDCARDS = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0'])

/** Whether two listeners cannot both bind: same port (not 0) and same host, or either on a wildcard. */
export function listenersCollide(a: ListenAddress, b: ListenAddress): boolean {
  if (a.port === 0 || a.port !== b.port) return false
  return a.host.toLowerCase() === b.host.toLowerCase() || WILDCARDS.has(a.host) || WILDCARDS.has(b.host)
}
