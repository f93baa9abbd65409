import type { HeaderRewrite } from '../config/types.ts'

/**
 * A route's `requestHeaders` / `responseHeaders`, compiled once per config load. Applied to raw
 * header arrays (`[name, value, name, value]`) after hop-by-hop stripping, so the rest of the array
 * keeps its order and duplicates.
 */
export interface CompiledHeaderRewrite {
  /** Lower-cased names whose every occurrence is dropped: the removed ones and the set ones. */
  readonly drop: ReadonlySet<string>
  /** `[name, value, ...]` appended once each: `set` replaces every occurrence with one value. */
  readonly set: readonly string[]
  /**
   * 1 at the index of each length a dropped name has: a header whose name has another length is
   * kept without lower-casing it (lower-casing every name was most of the cost).
   */
  readonly dropLengths: Uint8Array
}

/** Null when there is nothing to do, so the data path pays one null check. */
export function compileHeaderRewrite(rewrite: HeaderRewrite | undefined): CompiledHeaderRewrite | null {
  if (rewrite === undefined) return null
  // The schema has lower-cased every name already; lower-casing again keeps this safe for any caller.
  const set: string[] = []
  const drop = new Set<string>()
  for (const [name, value] of Object.entries(rewrite.set)) {
    const lower = name.toLowerCase()
    set.push(lower, value)
    drop.add(lower)
  }
  for (const name of rewrite.remove) drop.add(name.toLowerCase())
  if (drop.size === 0) return null
  let longest = 0
  for (const name of drop) longest = Math.max(longest, name.length)
  const dropLengths = new Uint8Array(longest + 1)
  for (const name of drop) dropLengths[name.length] = 1
  return { drop, set, dropLengths }
}

/** Rewrites `headers` in place: no array is allocated. */
export function applyHeaderRewrite(headers: string[], rewrite: CompiledHeaderRewrite): void {
  const drop = rewrite.drop
  const lengths = rewrite.dropLengths
  let kept = 0
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!
    if (lengths[name.length] === 1 && drop.has(name.toLowerCase())) continue
    headers[kept++] = name
    headers[kept++] = headers[i + 1]!
  }
  headers.length = kept
  const set = rewrite.set
  for (let i = 0; i < set.length; i++) headers.push(set[i]!)
}
