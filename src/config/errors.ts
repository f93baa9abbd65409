/** One problem found in a config file. */
export interface ConfigIssue {
  /** Where, e.g. `services.legacy.endpoints[1].port`; '' for the file as a whole. */
  path: string
  /** What, e.g. `must be at most 65535`. */
  message: string
}

/** `<path>: <message>`, or just the message when the path is ''. */
export function formatIssue(i: ConfigIssue): string {
  return i.path === '' ? i.message : `${i.path}: ${i.message}`
}

/** Joins path segments: keys with dots, array indexes in brackets (`services.api.routes[0].host`). */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? String(seg) : `.${String(seg)}`
  }
  return out
}

/** Thrown by the loader: every issue found, one per line in `message`. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[]

  constructor(issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** An issue before its path is formatted. */
export interface RawIssue {
  path: PropertyKey[]
  message: string
  /** Where the problem stands in the document when that differs from `path` (an unknown key's own place). */
  at?: PropertyKey[]
}

/** Formats paths, drops exact duplicates. */
export function toConfigIssues(raw: readonly RawIssue[]): ConfigIssue[] {
  const seen = new Set<string>()
  const out: ConfigIssue[] = []
  for (const r of raw) {
    const issue: ConfigIssue = { path: formatPath(r.path), message: r.message }
    const line = formatIssue(issue)
    if (seen.has(line)) continue
    seen.add(line)
    out.push(issue)
  }
  return out
}

/**
 * Position of every node of a document in reading order, keyed by `pathKey`. Object keys keep the
 * order the parser saw them in (both JSON.parse and the YAML parser preserve it).
 */
export function documentOrder(value: unknown): Map<string, number> {
  const order = new Map<string, number>()
  const walk = (v: unknown, path: PropertyKey[]): void => {
    order.set(pathKey(path), order.size)
    if (Array.isArray(v)) v.forEach((item, idx) => walk(item, [...path, idx]))
    else if (isPlainObject(v)) for (const [k, item] of Object.entries(v)) walk(item, [...path, k])
  }
  walk(value, [])
  return order
}

export function pathKey(path: readonly PropertyKey[]): string {
  return JSON.stringify(path.map((p) => (typeof p === 'symbol' ? String(p) : p)))
}

/**
 * Sorts issues in document order: by the position of the deepest node of their path that exists in
 * the document (a missing field sorts with its parent). Stable, so ties keep their found order.
 */
export function sortByDocumentOrder(issues: RawIssue[], order: Map<string, number>): RawIssue[] {
  const rank = (path: readonly PropertyKey[]): number => {
    for (let n = path.length; n >= 0; n--) {
      const r = order.get(pathKey(path.slice(0, n)))
      if (r !== undefined) return r
    }
    return 0
  }
  return issues
    .map((issue, idx) => ({ issue, idx, rank: rank(issue.at ?? issue.path) }))
    .sort((a, b) => a.rank - b.rank || a.idx - b.idx)
    .map((x) => x.issue)
}

/** A plain `{...}` object (what JSON.parse and the YAML parser produce for a map). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}
