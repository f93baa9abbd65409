/**
 * Strict JSON with useful errors: V8's JSON.parse does not always say where a document is broken
 * ("Unexpected token '}'") and silently keeps the last of two duplicate keys. `checkJson` scans the
 * text first and reports the first problem with its position; JSON.parse then builds the value.
 */

export interface JsonSyntaxProblem {
  /** 1-based. */
  line: number
  /** 1-based, in UTF-16 code units. */
  column: number
  reason: string
}

export type JsonParseResult = { ok: true; value: unknown } | { ok: false; problem: JsonSyntaxProblem }

export function parseJson(text: string): JsonParseResult {
  const problem = checkJson(text)
  if (problem !== undefined) return { ok: false, problem }
  try {
    return { ok: true, value: JSON.parse(text) as unknown }
  } catch (err) {
    // Not expected (checkJson accepts exactly JSON), but never lose the parser's word.
    const m = /\(line (\d+) column (\d+)\)/.exec((err as Error).message)
    return { ok: false, problem: { line: Number(m?.[1] ?? 1), column: Number(m?.[2] ?? 1), reason: (err as Error).message } }
  }
}

/** A syntax problem at an offset; thrown inside the scanner only, caught by `checkJson`. */
class Fail extends Error {
  readonly pos: number
  readonly reason: string
  constructor(pos: number, reason: string) {
    super(reason)
    this.pos = pos
    this.reason = reason
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't'])
const HEX4 = /^[0-9A-Fa-f]{4}$/

/** The first syntax problem of a JSON text (including duplicate keys), or undefined when it is valid. */
export function checkJson(text: string): JsonSyntaxProblem | undefined {
  let pos = 0

  const describe = (at: number): string => {
    if (at >= text.length) return 'unexpected end of input'
    const ch = text[at] ?? ''
    return `unexpected ${/\s/.test(ch) ? JSON.stringify(ch) : `'${ch}'`}`
  }
  const ws = (): void => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos] ?? '')) pos++
  }
  const str = (): string => {
    const start = pos
    pos++ // opening quote
    for (;;) {
      if (pos >= text.length) throw new Fail(start, 'unterminated string')
      const ch = text[pos] ?? ''
      if (ch === '"') {
        pos++
        return JSON.parse(text.slice(start, pos)) as string
      }
      if (ch === '\\') {
        const esc = text[pos + 1] ?? ''
        if (esc === 'u') {
          if (!HEX4.test(text.slice(pos + 2, pos + 6))) throw new Fail(pos, 'invalid \\u escape in string')
          pos += 6
        } else if (ESCAPES.has(esc)) {
          pos += 2
        } else {
          throw new Fail(pos, `invalid escape "\\${esc}" in string`)
        }
        continue
      }
      if (ch.charCodeAt(0) < 0x20) throw new Fail(pos, 'line break or control character inside a string')
      pos++
    }
  }
  const value = (): void => {
    const ch = text[pos]
    if (ch === '{') return object()
    if (ch === '[') return array()
    if (ch === '"') {
      str()
      return
    }
    for (const lit of ['true', 'false', 'null']) {
      if (text.startsWith(lit, pos)) {
        pos += lit.length
        return
      }
    }
    NUMBER.lastIndex = pos
    if (ch !== undefined && /[-0-9]/.test(ch) && NUMBER.test(text)) {
      pos = NUMBER.lastIndex
      return
    }
    if (ch !== undefined && /[A-Za-z_']/.test(ch)) throw new Fail(pos, `${describe(pos)} (strings need double quotes in JSON)`)
    throw new Fail(pos, describe(pos))
  }
  const object = (): void => {
    pos++
    ws()
    if (text[pos] === '}') {
      pos++
      return
    }
    const keys = new Set<string>()
    for (;;) {
      if (text[pos] !== '"') throw new Fail(pos, `${describe(pos)}: expected a property name in double quotes`)
      const keyPos = pos
      const key = str()
      if (keys.has(key)) throw new Fail(keyPos, `duplicate key "${key}"`)
      keys.add(key)
      ws()
      if (text[pos] !== ':') throw new Fail(pos, `${describe(pos)}: expected ':' after a property name`)
      pos++
      ws()
      value()
      ws()
      if (text[pos] === '}') {
        pos++
        return
      }
      if (text[pos] !== ',') throw new Fail(pos, `${describe(pos)}: expected ',' or '}'`)
      const comma = pos
      pos++
      ws()
      if (text[pos] === '}') throw new Fail(comma, 'trailing comma (not allowed in JSON)')
    }
  }
  const array = (): void => {
    pos++
    ws()
    if (text[pos] === ']') {
      pos++
      return
    }
    for (;;) {
      value()
      ws()
      if (text[pos] === ']') {
        pos++
        return
      }
      if (text[pos] !== ',') throw new Fail(pos, `${describe(pos)}: expected ',' or ']'`)
      const comma = pos
      pos++
      ws()
      if (text[pos] === ']') throw new Fail(comma, 'trailing comma (not allowed in JSON)')
    }
  }

  try {
    ws()
    value()
    ws()
    if (pos < text.length) throw new Fail(pos, `${describe(pos)} after the end of the document`)
    return undefined
  } catch (err) {
    if (!(err instanceof Fail)) throw err
    return { ...lineColumn(text, err.pos), reason: err.reason }
  }
}

/** 1-based line and column of an offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let lineStart = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, column: offset - lineStart + 1 }
}
