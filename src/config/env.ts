/**
 * `${VAR}` and `${VAR:-default}` expansion inside the string values of a parsed document.
 *
 * Expansion happens after parsing, so a variable can never inject YAML/JSON structure. `$${` is a
 * literal `${`. `${VAR:-default}` uses the default when VAR is unset or empty (as in the shell).
 * Keys are never expanded.
 */

import { isPlainObject } from './errors.ts'
import type { RawIssue } from './errors.ts'

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export interface ExpandedString {
  value: string
  /** Problems, each a complete message (`environment variable FOO is not set`). */
  problems: string[]
}

/** Expands one string. */
export function expandString(text: string, env: NodeJS.ProcessEnv): ExpandedString {
  const problems: string[] = []
  let out = ''
  let i = 0
  while (i < text.length) {
    const dollar = text.indexOf('$', i)
    if (dollar < 0) {
      out += text.slice(i)
      break
    }
    out += text.slice(i, dollar)
    if (text.startsWith('$${', dollar)) {
      out += '${'
      i = dollar + 3
      continue
    }
    if (!text.startsWith('${', dollar)) {
      out += '$'
      i = dollar + 1
      continue
    }
    const close = text.indexOf('}', dollar + 2)
    if (close < 0) {
      problems.push(`unterminated variable reference "${text.slice(dollar)}" (write $\${ for a literal \${)`)
      out += text.slice(dollar)
      break
    }
    const body = text.slice(dollar + 2, close)
    const sep = body.indexOf(':-')
    const name = sep < 0 ? body : body.slice(0, sep)
    if (!NAME.test(name)) {
      problems.push(`invalid variable reference "\${${body}}" (write $\${ for a literal \${)`)
    } else {
      const value = Object.hasOwn(env, name) ? env[name] : undefined
      if (sep >= 0) out += value === undefined || value === '' ? body.slice(sep + 2) : value
      else if (value === undefined) problems.push(`environment variable ${name} is not set`)
      else out += value
    }
    i = close + 1
  }
  return { value: out, problems }
}

export interface ExpandResult {
  value: unknown
  issues: RawIssue[]
}

/** Expands every string value (not key) of a plain JSON-like value; returns a new value. */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv): ExpandResult {
  const issues: RawIssue[] = []
  const walk = (v: unknown, path: PropertyKey[]): unknown => {
    if (typeof v === 'string') {
      if (!v.includes('$')) return v
      const r = expandString(v, env)
      for (const message of r.problems) issues.push({ path, message })
      return r.value
    }
    if (Array.isArray(v)) return v.map((item, idx) => walk(item, [...path, idx]))
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {}
      for (const [k, item] of Object.entries(v)) {
        // defineProperty: a key named __proto__ must stay a key, not become the prototype.
        Object.defineProperty(out, k, { value: walk(item, [...path, k]), enumerable: true, writable: true, configurable: true })
      }
      return out
    }
    return v
  }
  return { value: walk(value, []), issues }
}
