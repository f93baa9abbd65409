import type { HashKey } from '../config/types.ts'
import { repeatSeparator } from './headers.ts'

/**
 * Reads a request's consistent-hash key: a header, a cookie, a query parameter, the client address
 * or the path. Null when the request does not carry it (then the request is spread by weight).
 * Compiled once per service; called once per request of a consistent-hash service only.
 */
export interface HashKeyReader {
  /** `headers`: node's `req.headers` shape (lower-cased names). */
  (headers: Readonly<Record<string, string | string[] | undefined>>, path: string, clientAddress: string): string | null
  /**
   * For a `header:NAME` key, NAME lower-cased: a caller that holds the raw header pairs (the fast
   * lane) reads it with `rawHeaderValue` rather than building a header map to read one value.
   */
  readonly headerName: string | null
}

export function hashKeyReader(key: HashKey): HashKeyReader {
  if (key.kind === 'header') {
    const name = key.name
    const read = (headers: Readonly<Record<string, string | string[] | undefined>>): string | null => {
      const v = headers[name]
      return v === undefined ? null : typeof v === 'string' ? v : (v[0] ?? null)
    }
    // `__proto__` is read through the header map, which answers null for it as node's does; the raw scan would find it.
    return Object.assign(read, { headerName: name === '__proto__' ? null : name })
  }
  return Object.assign(otherReader(key), { headerName: null })
}

/**
 * The value of header `lowerName` in raw `[name, value, ...]` pairs, as node's `req.headers` (and the
 * fast lane's `headerMap`) has it and hashKeyReader reads it: null when absent; when repeated, the
 * values joined as repeatSeparator says, or the first one where it says none (the names node keeps
 * first-only, and set-cookie, an array of which the reader takes the first). Names
 * are compared without case and without allocating; a single value is returned as it is.
 */
export function rawHeaderValue(raw: readonly string[], lowerName: string): string | null {
  const separator = repeatSeparator(lowerName)
  let value: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if (!sameName(raw[i]!, lowerName)) continue
    if (value === null) {
      value = raw[i + 1]!
      if (separator === null) return value
    } else {
      value = `${value}${separator}${raw[i + 1]!}`
    }
  }
  return value
}

/** `name` equals `lower` (lower-case) but for the case of ASCII letters. */
function sameName(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false
  for (let i = 0; i < lower.length; i++) {
    let c = name.charCodeAt(i)
    if (c >= 65 && c <= 90) c += 32
    if (c !== lower.charCodeAt(i)) return false
  }
  return true
}

type Reader = (headers: Readonly<Record<string, string | string[] | undefined>>, path: string, clientAddress: string) => string | null

function otherReader(key: Exclude<HashKey, { kind: 'header' }>): Reader {
  switch (key.kind) {
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
