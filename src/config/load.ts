/**
 * Loading a config file: read, parse (YAML or JSON), expand `${VAR}`, validate, resolve relative
 * paths. Everything is synchronous so a reload (SIGHUP, file change) is one call. Every problem is
 * collected and thrown together as one ConfigError, sorted in document order.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { ConfigError, documentOrder, pathKey, sortByDocumentOrder, toConfigIssues } from './errors.ts'
import type { RawIssue } from './errors.ts'
import { expandEnv } from './env.ts'
import { parseJson } from './json.ts'
import { configErrorMap, endpointListSchema, validateDocument, zodIssuesToRaw } from './schema.ts'
import type { Config, StaticEndpoint } from './types.ts'

export type ConfigFormat = 'yaml' | 'json'

export interface ParseConfigOptions {
  format: ConfigFormat
  /** Folder that relative paths (`path`, `discovery.stateDir`, `tls` files) are resolved against. */
  baseDir: string
  /** Variables for `${VAR}` expansion; default `process.env`. */
  env?: NodeJS.ProcessEnv
  /** File name for messages (syntax errors). */
  file?: string
}

/** `.json` is JSON, anything else YAML. */
export function formatOf(file: string): ConfigFormat {
  return path.extname(file).toLowerCase() === '.json' ? 'json' : 'yaml'
}

/** Reads and validates a config file; throws ConfigError listing every problem. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const abs = path.resolve(file)
  let text: string
  try {
    text = readFileSync(abs, 'utf8')
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot read config file ${file}: ${describeFsError(err)}` }])
  }
  return parseConfig(text, { format: formatOf(abs), baseDir: path.dirname(abs), env, file })
}

/** Parses and validates config text; throws ConfigError listing every problem. */
export function parseConfig(text: string, opts: ParseConfigOptions): Config {
  const doc = parseText(text, opts.format, opts.file)
  const expanded = expandEnv(doc ?? {}, opts.env ?? process.env)
  const result = validateDocument(expanded.value)
  if (result.ok && expanded.issues.length === 0) return resolvePaths(result.config, opts.baseDir)
  // A value whose variable is missing would also fail its own validation: report only the variable.
  const broken = new Set(expanded.issues.map((i) => pathKey(i.path)))
  const schemaIssues = result.ok ? [] : result.issues.filter((i) => !broken.has(pathKey(i.path)))
  const all = sortByDocumentOrder([...expanded.issues, ...schemaIssues], documentOrder(expanded.value))
  throw new ConfigError(toConfigIssues(all))
}

/**
 * Parses the endpoints document of a `file` source: a YAML or JSON list of `"host:port"` or
 * `{address, port, weight}` (an empty document is an empty list). No `${VAR}` expansion.
 * Throws ConfigError, with paths like `[1].port`.
 */
export function parseEndpointList(text: string, format: ConfigFormat, file?: string): StaticEndpoint[] {
  const doc = parseText(text, format, file) ?? []
  const r = endpointListSchema.safeParse(doc, { error: configErrorMap })
  if (r.success) return r.data
  throw new ConfigError(toConfigIssues(sortByDocumentOrder(zodIssuesToRaw(r.error.issues), documentOrder(doc))))
}

/** The document as plain data (null for an empty YAML document); throws ConfigError on a syntax error. */
function parseText(text: string, format: ConfigFormat, file: string | undefined): unknown {
  const where = file === undefined ? '' : `${file}: `
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text
  if (format === 'json') {
    const r = parseJson(body)
    if (r.ok) return r.value
    const p = r.problem
    throw new ConfigError([{ path: '', message: `${where}JSON syntax error at line ${p.line}, column ${p.column}: ${p.reason}` }])
  }
  const lineCounter = new LineCounter()
  const doc = parseDocument(body, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const issues: RawIssue[] = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0])
      return { path: [], message: `${where}YAML syntax error at line ${line}, column ${col}: ${firstLine(e.message)}` }
    })
    throw new ConfigError(toConfigIssues(issues))
  }
  try {
    return doc.toJS({ maxAliasCount: 1000 }) as unknown
  } catch (err) {
    // e.g. an alias to an unknown anchor, or an alias bomb.
    throw new ConfigError([{ path: '', message: `${where}YAML error: ${firstLine((err as Error).message)}` }])
  }
}

function firstLine(s: string): string {
  const nl = s.indexOf('\n')
  return (nl < 0 ? s : s.slice(0, nl)).trim()
}

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  switch (e.code) {
    case 'ENOENT':
      return 'no such file (ENOENT)'
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${e.code})`
    case 'EISDIR':
      return 'is a directory (EISDIR)'
    default:
      return e.message
  }
}

/** Resolves the file paths of a config (`discovery.stateDir`, `path`, `tls` files) against baseDir. */
export function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string): string => path.resolve(baseDir, p)
  return {
    ...config,
    discovery: { ...config.discovery, stateDir: abs(config.discovery.stateDir) },
    services: config.services.map((s) => {
      const out = { ...s }
      if (s.path !== undefined) out.path = abs(s.path)
      if (s.tls !== undefined) {
        const tls = { ...s.tls }
        if (tls.ca !== undefined) tls.ca = abs(tls.ca)
        if (tls.cert !== undefined) tls.cert = abs(tls.cert)
        if (tls.key !== undefined) tls.key = abs(tls.key)
        out.tls = tls
      }
      return out
    }),
  }
}
