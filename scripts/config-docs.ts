/**
 * `npm run docs:config`: writes docs/configuration.md from two sources, so the reference cannot
 * drift from the code:
 *
 * - the structure (every key path, its type, default, allowed values, whether it is required) comes
 *   from the zod schema in src/config/schema.ts, through `z.toJSONSchema` of its input side;
 * - the prose comes from docs/config-descriptions.yaml, keyed by the same paths (`services.<name>`
 *   for a map's values, `routes[]` for a list's items), plus an introduction and a full example.
 *
 * test/packaging/config-docs.test.ts renders in memory and fails when the file differs, when a
 * schema path has no description, or when a description names a path the schema does not have.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'
import { z } from 'zod'
import { configSchema } from '../src/config/schema.ts'

const ROOT = path.join(import.meta.dirname, '..')
export const DESCRIPTIONS_FILE = path.join(ROOT, 'docs', 'config-descriptions.yaml')
export const OUTPUT_FILE = path.join(ROOT, 'docs', 'configuration.md')

/** A JSON Schema node, as much of it as zod emits for this schema. */
interface Node {
  type?: string | string[]
  description?: string
  default?: unknown
  enum?: unknown[]
  properties?: Record<string, Node>
  required?: string[]
  additionalProperties?: Node | boolean
  items?: Node
  minItems?: number
  minLength?: number
}

/** Value types the JSON Schema cannot tell apart (a duration and an address are both string|number). */
export const TYPE_NAMES = {
  duration: 'duration',
  size: 'size',
  address: '`host:port` or a port',
  integer: 'integer',
  number: 'number',
  percent: 'percent (0–100)',
  url: 'URL',
  urls: 'list of URLs',
  path: 'file path',
  'header name': 'header name',
  'hash key': '`ip`, `path`, `header:NAME`, `cookie:NAME` or `query:NAME`',
  endpoints: 'list of `"host:port"` or `{address, port, weight}`',
} as const
export type TypeName = keyof typeof TYPE_NAMES

export interface KeyDoc {
  /** Overrides the type inferred from the schema; required where the schema is ambiguous. */
  type?: TypeName
  text: string
}

export interface Descriptions {
  intro: string
  example: string
  /** Prose after the tables: how the parts behave (Markdown, `##` headings). */
  behaviour: string
  keys: Record<string, KeyDoc>
}

export interface SchemaEntry {
  path: string
  /** An object (a section of the reference) rather than a value. */
  section: boolean
  node: Node
  required: boolean
}

/** The schema's input side as JSON Schema: what a user writes, defaults in their written form. */
export function configJsonSchema(): Node {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Node
}

const isObjectNode = (n: Node | undefined): n is Node & { properties: Record<string, Node> } => n !== undefined && n.properties !== undefined
const mapValues = (n: Node): Node | undefined => (typeof n.additionalProperties === 'object' && isObjectNode(n.additionalProperties) ? n.additionalProperties : undefined)
const listItems = (n: Node): Node | undefined => (isObjectNode(n.items) ? n.items : undefined)

/**
 * Every key path of the schema in document order, depth first. Objects with fixed keys are
 * sections; so are maps whose values are objects (`services.<name>`) and lists of objects
 * (`routes[]`), whose entries get the `<name>` / `[]` suffix.
 */
export function schemaEntries(root: Node = configJsonSchema()): SchemaEntry[] {
  const out: SchemaEntry[] = []
  const walk = (node: Node, at: string, required: boolean): void => {
    const values = mapValues(node)
    const items = listItems(node)
    if (isObjectNode(node)) {
      if (at !== '') out.push({ path: at, section: true, node, required })
      const req = new Set(node.required ?? [])
      for (const [key, child] of Object.entries(node.properties)) walk(child, at === '' ? key : `${at}.${key}`, req.has(key))
    } else if (values !== undefined) {
      out.push({ path: at, section: false, node, required })
      walk(values, `${at}.<name>`, false)
    } else if (items !== undefined) {
      out.push({ path: at, section: false, node, required })
      walk(items, `${at}[]`, false)
    } else {
      out.push({ path: at, section: false, node, required })
    }
  }
  walk(root, '', false)
  return out
}

/** Paths whose type the JSON Schema cannot name: string-or-number unions other than numbers. */
export function isAmbiguous(node: Node): boolean {
  const t = node.type
  return Array.isArray(t) && t[0] === 'string' && t.includes('number')
}

function inferredType(node: Node): string {
  if (node.enum !== undefined) return node.enum.map((v) => `\`${String(v)}\``).join(' \\| ')
  const t = node.type
  const first = Array.isArray(t) ? t[0] : t
  switch (first) {
    case 'boolean':
      return 'boolean'
    case 'number':
      return 'number'
    case 'string':
      return 'string'
    case 'array': {
      const item = node.items
      if (item?.enum !== undefined) return `list of ${inferredType(item)}`
      if (isObjectNode(item)) return 'list of maps'
      return `list of ${item === undefined ? 'values' : `${inferredType(item)}s`}`
    }
    case 'object':
      return mapValues(node) !== undefined ? 'map of maps' : 'map of strings'
    default:
      return 'value'
  }
}

const code = (v: unknown): string => `\`${typeof v === 'string' ? (v === '' ? '""' : v) : JSON.stringify(v)}\``
const cell = (s: string): string => s.replace(/\n+/g, ' ').replace(/(?<!\\)\|/g, '\\|').trim()

function defaultCell(e: SchemaEntry): string {
  if (e.required) return '**required**'
  const d = e.node.default
  if (d === undefined) return '—'
  if (Array.isArray(d) && d.length === 0) return '`[]`'
  if (typeof d === 'object' && d !== null && Object.keys(d).length === 0) return '`{}`'
  return code(d)
}

export function loadDescriptions(file = DESCRIPTIONS_FILE): Descriptions {
  const doc = parse(readFileSync(file, 'utf8')) as { intro: string; example: string; behaviour?: string; keys: Record<string, string | KeyDoc> }
  const keys: Record<string, KeyDoc> = {}
  for (const [k, v] of Object.entries(doc.keys)) keys[k] = typeof v === 'string' ? { text: v } : v
  return { intro: doc.intro, example: doc.example, behaviour: doc.behaviour ?? '', keys }
}

/** Problems that make the reference incomplete or wrong; empty when it can be generated. */
export function descriptionProblems(d: Descriptions, entries: SchemaEntry[] = schemaEntries()): string[] {
  const problems: string[] = []
  const paths = new Set(entries.map((e) => e.path))
  for (const e of entries) {
    const doc = d.keys[e.path]
    if (doc === undefined || doc.text.trim() === '') problems.push(`${e.path}: no description in docs/config-descriptions.yaml`)
    else if (!e.section && isAmbiguous(e.node) && doc.type === undefined) problems.push(`${e.path}: the schema accepts a string or a number; say which (type: duration, size, address...)`)
  }
  for (const [p, doc] of Object.entries(d.keys)) {
    if (!paths.has(p)) problems.push(`${p}: described, but the schema has no such key`)
    if (doc.type !== undefined && !Object.hasOwn(TYPE_NAMES, doc.type)) problems.push(`${p}: unknown type "${doc.type}" (one of ${Object.keys(TYPE_NAMES).join(', ')})`)
  }
  return problems
}

/** The whole of docs/configuration.md. Throws when descriptions are missing or stale. */
export function renderConfigDocs(d: Descriptions = loadDescriptions(), entries: SchemaEntry[] = schemaEntries()): string {
  const problems = descriptionProblems(d, entries)
  if (problems.length > 0) throw new Error(`docs/config-descriptions.yaml does not match the schema:\n${problems.join('\n')}`)
  const typeOf = (e: SchemaEntry): string => {
    const t = d.keys[e.path]!.type
    return t !== undefined ? TYPE_NAMES[t] : inferredType(e.node)
  }
  const lines: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run docs:config` from src/config/schema.ts and docs/config-descriptions.yaml: edit those, not this file. -->',
    '',
    d.intro.trim(),
    '',
    '## Every key at once',
    '',
    '```yaml',
    d.example.trimEnd(),
    '```',
    '',
    '## Keys',
    '',
    'Paths are written as in `outrigger validate` messages: `services.<name>` is any service, `routes[]` any item of the list.',
  ]
  // One table per section: the top level first, then each object in document order. A map of
  // objects (`services`) or a list of objects (`routes`) is a row whose entries get their own section.
  const sections = new Map<string, { text: string; rows: SchemaEntry[] }>([['', { text: 'The top level of the file.', rows: [] }]])
  for (const e of entries) {
    if (e.section) sections.set(e.path, { text: d.keys[e.path]!.text, rows: [] })
    sections.get(parentOf(e.path))?.rows.push(e)
  }
  for (const [at, s] of sections) {
    lines.push('', `### ${at === '' ? 'Top level' : `\`${at}\``}`, '', s.text.trim(), '', '| key | type | default | |', '|---|---|---|---|')
    for (const e of s.rows) {
      const key = at === '' ? e.path : e.path.slice(at.length + 1)
      const sub = [e.path, `${e.path}.<name>`, `${e.path}[]`].find((p) => sections.has(p))
      const type = sub !== undefined ? `${sub === e.path ? 'map' : typeOf(e)}, see [\`${sub}\`](#${anchor(sub)})` : typeOf(e)
      const text = sub !== undefined ? firstSentence(d.keys[e.path]!.text) : d.keys[e.path]!.text
      lines.push(`| \`${key}\` | ${cell(type)} | ${cell(defaultCell(e))} | ${cell(text)} |`)
    }
  }
  if (d.behaviour.trim() !== '') lines.push('', d.behaviour.trim())
  return lines.join('\n') + '\n'
}

/** `a.b` → `a`, `a.routes[]` → `a.routes`, `a.routes[].host` → `a.routes[]`, `services.<name>` → `services`. */
function parentOf(p: string): string {
  if (p.endsWith('[]')) return p.slice(0, -2)
  const dot = p.lastIndexOf('.')
  return dot < 0 ? '' : p.slice(0, dot)
}

/** GitHub's heading anchor for `### \`path\``. */
function anchor(p: string): string {
  return p.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')
}

/** Up to the first full stop outside backticks (a section's summary in its parent's table). */
function firstSentence(s: string): string {
  const t = s.trim()
  let quoted = false
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '`') quoted = !quoted
    else if (!quoted && t[i] === '.' && (i + 1 === t.length || t[i + 1] === ' ')) return t.slice(0, i + 1)
  }
  return t
}

if (import.meta.main) {
  writeFileSync(OUTPUT_FILE, renderConfigDocs())
  process.stdout.write(`wrote ${path.relative(process.cwd(), OUTPUT_FILE)}\n`)
}
