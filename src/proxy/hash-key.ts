import type { HashKey } from '../config/types.ts'

/**
 * Reads a request's consistent-hash key: a header, a cookie, a query parameter, the client address
 * or the path. Null when the request does not carry it (then the request is spread by weight).
 * Compiled once per service; called once per request of a consistent-hash service only.
 */
/** `headers`: node's `req.headers` shape (lower-cased names). */
export type HashKeyReader = (headers: Readonly<Record<string, string | string[] | undefined>>, path: string, clientAddress: string) => string | null

export function hashKeyReader(key: HashKey): HashKeyReader {
  switch (key.kind) {
    case 'header': {
      const name = key.name
      return (headers) => {
        const v = headers[name]
        return v === undefined ? null : typeof v === 'string' ? v : (v[0] ?? null)
      }
    }
    case 'cookie': {
      const name = key.name
      return (headers) => {
        const v = headers.cookie
        return cookieValue(typeof v === 'string' ? v : v?.join('; '), name)
      }
    }
    case 'query': {
      const name = key.name
      return (_headers, path) => queryValue(path, name)
    }
    case 'ip':
      return (_headers, _path, clientAddress) => clientAddress
    case 'path':
      return (_headers, path) => {
        const q = path.indexOf('?')
        return q === -1 ? path : path.slice(0, q)
      }
  }
}

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), or null. Names are case-sensitive. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  let start = 0
  while (start < header.length) {
    while (header.charCodeAt(start) === 32 /* ' ' */) start++
    let end = header.indexOf(';', start)
    if (end === -1) end = header.length
    const eq = header.indexOf('=', start)
    if (eq !== -1 && eq < end && eq - start === name.length && header.startsWith(name, start)) {
      let value = header.slice(eq + 1, end).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      return value
    }
    start = end + 1
  }
  return null
}

/** The raw value of query parameter `name` in a path (`/x?a=1&b=2`), or null. `?a` gives ''. */
export function queryValue(path: string, name: string): string | null {
  const q = path.indexOf('?')
  if (q === -1) return null
  let start = q + 1
  while (start <= path.length) {
    let end = path.indexOf('&', start)
    if (end === -1) end = path.length
    const eq = path.indexOf('=', start)
    const nameEnd = eq !== -1 && eq < end ? eq : end
    if (nameEnd - start === name.length && path.startsWith(name, start)) return nameEnd === end ? '' : path.slice(eq + 1, end)
    start = end + 1
  }
  return null
}
