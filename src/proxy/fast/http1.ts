/**
 * The HTTP/1.1 message heads the fast lane (lane.ts) understands, and nothing more.
 *
 * The request parser is deliberately narrow: it accepts only heads whose meaning no two parsers
 * could disagree on (origin-form target, HTTP/1.1, token header names, CRLF line ends, no obs-fold,
 * no control characters, at most one Content-Length of plain digits, no Transfer-Encoding, no
 * Upgrade, no Expect). Anything else returns null and the connection goes to node's llhttp, which
 * answers it exactly as before (400, 431, a chunked body, a WebSocket...). So the fast lane never
 * rejects a request itself and never frames a body differently from llhttp: request smuggling
 * needs two parsers to disagree, and every head this one takes is one llhttp reads the same way
 * (test/proxy/fast-http1.test.ts checks that against node's own parser).
 */

import { addConnectionTokens } from '../headers.ts'

/** `tchar` of RFC 9110 §5.6.2: 1 for bytes allowed in a header name or method. */
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1

/** 1 for bytes allowed in a field value: HTAB, visible ASCII, SP and obs-text (RFC 9110 §5.5). */
const VCHAR = new Uint8Array(256)
VCHAR[0x09] = 1
for (let c = 0x20; c <= 0x7e; c++) VCHAR[c] = 1
for (let c = 0x80; c <= 0xff; c++) VCHAR[c] = 1

/** Methods the fast lane forwards; others (CONNECT, WebDAV's...) go to node. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE'])

/** Where a head ends: the first CRLFCRLF. */
export const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')

/** The field line readField read last (both parsers are synchronous, so one scratch object serves). */
const field = { name: '', value: '' }
/** Where the field line scanField read last lies in its text: the colon and the trimmed value. */
const at = { colon: 0, vs: 0, ve: 0 }

/**
 * Checks the `name: value` line at `pos` of a head whose field lines end before `end` and notes
 * where its colon and its value (trimmed of spaces and tabs) are in `at`, without slicing. Returns
 * where the next line starts, or -1 for a line that is not a token, a colon and field-value bytes
 * ended by CRLF.
 */
function scanField(text: string, pos: number, end: number): number {
  const eol = text.indexOf('\r\n', pos)
  if (eol === -1 || eol > end) return -1
  const colon = text.indexOf(':', pos)
  if (colon <= pos || colon > eol) return -1
  for (let i = pos; i < colon; i++) if (TCHAR[text.charCodeAt(i)] !== 1) return -1
  let vs = colon + 1
  let ve = eol
  while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++
  while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--
  for (let i = vs; i < ve; i++) if (VCHAR[text.charCodeAt(i)] !== 1) return -1
  at.colon = colon
  at.vs = vs
  at.ve = ve
  return eol + 2
}

/** scanField, then the name and the value sliced into `field`. */
function readField(text: string, pos: number, end: number): number {
  const next = scanField(text, pos, end)
  if (next === -1) return -1
  field.name = text.slice(pos, at.colon)
  field.value = text.slice(at.vs, at.ve)
  return next
}

/** The forwarded methods by their length: the method is matched in place, not sliced per request. */
const METHODS_BY_LENGTH: ReadonlyArray<readonly string[]> = (() => {
  const out: string[][] = []
  for (const m of METHODS) (out[m.length] ??= []).push(m)
  return out
})()

/**
 * The text at `pos` is `lower` (lower-case letters and '-'), letters in either case. Used on names
 * and on values (a Connection of `close` or `keep-alive`).
 */
function nameIs(text: string, pos: number, lower: string): boolean {
  // `| 0x20` lower-cases a letter and leaves '-' alone; of the bytes a checked field line may hold,
  // no other becomes a letter or '-' (only CR would become '-', and a line holds none).
  for (let i = 0; i < lower.length; i++) if ((text.charCodeAt(pos + i) | 0x20) !== lower.charCodeAt(i)) return false
  return true
}

/**
 * The value at [vs, ve) of `text` as a Content-Length: plain digits, 1 to 15 of them; -1 for
 * anything else (signs, spaces inside, hex...), which both parsers refuse as llhttp does.
 */
function plainDigits(text: string, vs: number, ve: number): number {
  if (ve === vs || ve - vs > 15) return -1
  let n = 0
  for (let i = vs; i < ve; i++) {
    const c = text.charCodeAt(i)
    if (c < 48 || c > 57) return -1
    n = n * 10 + (c - 48)
  }
  return n
}

/**
 * Whether the comma-separated list `list` (a Connection value) holds `token` (lower case) as a whole
 * element, in any case: `no-keep-alive` is not `keep-alive`. Only space and tab are trimmed (OWS);
 * JavaScript's \s would take a latin1 0xA0 for space as well. Read only for unusual values.
 */
function hasToken(list: string, token: string): boolean {
  for (const element of splitList(list)) if (element === token) return true
  return false
}

/** The elements of a comma-separated field value, lower-cased, trimmed of spaces and tabs, empty ones left out. */
function splitList(list: string): string[] {
  const out: string[] = []
  let start = 0
  while (start <= list.length) {
    let end = list.indexOf(',', start)
    if (end === -1) end = list.length
    let s = start
    let e = end
    while (s < e && (list.charCodeAt(s) === 32 || list.charCodeAt(s) === 9)) s++
    while (e > s && (list.charCodeAt(e - 1) === 32 || list.charCodeAt(e - 1) === 9)) e--
    if (e > s) out.push(list.slice(s, e).toLowerCase())
    start = end + 1
  }
  return out
}

/**
 * Leaves this much of the upstream's `Keep-Alive: timeout` unused, so we close an idle connection
 * before the upstream does; a hint no longer than this means no reuse. undici's
 * keepAliveTimeoutThreshold (2 s), so both paths pool the same connections.
 */
export const KEEP_ALIVE_MARGIN_MS = 2000

/** node's server refuses a head of more field lines than this (431) unless maxHeadersCount says otherwise; the lane hands such a head to node. */
const MAX_FIELD_LINES = 1000

/** The field lines of `text` after the start line (which ends at `lineEnd`) as `[name, value, ...]`. */
function fieldList(text: string, lineEnd: number): string[] {
  const headers: string[] = []
  const end = text.length - 2
  for (let pos = lineEnd + 2; pos < end; ) {
    pos = readField(text, pos, end)
    headers.push(field.name, field.value)
  }
  return headers
}

/** A request head parseRequestHead took. */
export class RequestHead {
  readonly method: string
  /** The origin-form request target (path and query), as sent. */
  readonly target: string
  /** The head as received (latin1, up to and including the blank line). */
  readonly text: string
  /** Where the request line's CRLF is in `text`. */
  readonly lineEnd: number
  /** The Content-Length, or 0 when there is none. */
  readonly contentLength: number
  /** The Host header's value. */
  readonly host: string
  /** The client asked to close the connection after this exchange (`Connection: close`). */
  readonly close: boolean
  /**
   * `[start, end, start, end, ...]`: the field lines (each with its CRLF), in order, that do not go
   * upstream: the hop-by-hop ones and X-Forwarded-For/-Proto/-Host, which the proxy writes itself
   * (headers.ts's upstreamRequestHeaders drops the same); null when there are none.
   */
  readonly dropped: number[] | null
  /** The X-Forwarded-For values received, joined by ", "; '' when there were none. */
  readonly forwardedFor: string
  #headers: string[] | null = null

  constructor(text: string, method: string, target: string, lineEnd: number, contentLength: number, host: string, close: boolean, dropped: number[] | null, forwardedFor: string) {
    this.text = text
    this.method = method
    this.target = target
    this.lineEnd = lineEnd
    this.contentLength = contentLength
    this.host = host
    this.close = close
    this.dropped = dropped
    this.forwardedFor = forwardedFor
  }

  /**
   * `[name, value, name, value, ...]` as sent (values trimmed of surrounding whitespace). Made on
   * first use (routes that match headers, hash keys, a header rewrite): a usual request needs none.
   */
  get headers(): string[] {
    return (this.#headers ??= fieldList(this.text, this.lineEnd))
  }
}

/**
 * Parses a request head: `text` is the head as latin1, up to and including the blank line's CRLF.
 * Returns null for anything outside the narrow subset described above.
 *
 * Names are matched in place by length and letters; only the values the lane needs are sliced
 * (Host, and the rare ones), so a usual request costs no string per header.
 */
export function parseRequestHead(text: string): RequestHead | null {
  const lineEnd = text.indexOf('\r\n')
  if (lineEnd === -1) return null
  const sp1 = text.indexOf(' ')
  if (sp1 <= 0 || sp1 > lineEnd) return null
  let method: string | null = null
  const sameLength = METHODS_BY_LENGTH[sp1]
  if (sameLength !== undefined) for (const m of sameLength) if (text.startsWith(m)) method = m
  if (method === null) return null
  const sp2 = text.indexOf(' ', sp1 + 1)
  if (sp2 === -1 || sp2 > lineEnd || lineEnd - sp2 !== 9 || !text.startsWith('HTTP/1.1', sp2 + 1)) return null
  if (text.charCodeAt(sp1 + 1) !== 47 /* '/' */) return null
  for (let i = sp1 + 1; i < sp2; i++) {
    const c = text.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f) return null
  }
  const target = text.slice(sp1 + 1, sp2)
  let contentLength = -1
  let host: string | null = null
  let close = false
  let dropped: number[] | null = null
  let forwardedFor = ''
  let named: Set<string> | null = null
  const end = text.length - 2
  let pos = lineEnd + 2
  let lines = 0
  while (pos < end) {
    const next = scanField(text, pos, end)
    if (next === -1 || ++lines > MAX_FIELD_LINES) return null
    const vs = at.vs
    const ve = at.ve
    let drop = false
    // Only names of these lengths matter here: 2 te, 4 host, 6 expect, 7 upgrade and trailer,
    // 10 connection and keep-alive, 14 content-length, 15-17 x-forwarded-*, 17 transfer-encoding;
    // and proxy-* (hop-by-hop; node's parser reads Proxy-Connection as Connection).
    switch (at.colon - pos) {
      case 2:
        drop = nameIs(text, pos, 'te')
        break
      case 4:
        if (nameIs(text, pos, 'host')) {
          if (host !== null) return null
          host = text.slice(vs, ve)
        }
        break
      case 6:
        if (nameIs(text, pos, 'expect')) return null
        break
      case 7:
        if (nameIs(text, pos, 'upgrade')) return null
        drop = nameIs(text, pos, 'trailer')
        break
      case 10:
        if (nameIs(text, pos, 'connection')) {
          drop = true
          if (ve - vs === 10 && nameIs(text, vs, 'keep-alive')) break
          if (ve - vs === 5 && nameIs(text, vs, 'close')) {
            close = true
            break
          }
          const value = text.slice(vs, ve)
          // Anything that mentions upgrade is node's (it handles upgrades); close only as a token.
          if (value.toLowerCase().includes('upgrade')) return null
          if (hasToken(value, 'close')) close = true
          named = addConnectionTokens(value, named)
        } else drop = nameIs(text, pos, 'keep-alive')
        break
      case 14:
        if (nameIs(text, pos, 'content-length')) {
          if (contentLength !== -1) return null
          contentLength = plainDigits(text, vs, ve)
          if (contentLength === -1) return null
        }
        break
      case 15:
        if (nameIs(text, pos, 'x-forwarded-for')) {
          drop = true
          forwardedFor = forwardedFor === '' ? text.slice(vs, ve) : `${forwardedFor}, ${text.slice(vs, ve)}`
        }
        break
      case 16:
        drop = nameIs(text, pos, 'x-forwarded-host')
        break
      case 17:
        if (nameIs(text, pos, 'transfer-encoding')) return null
        drop = nameIs(text, pos, 'x-forwarded-proto')
        break
    }
    if (!drop && at.colon - pos >= 6 && nameIs(text, pos, 'proxy-')) {
      drop = true
      if (at.colon - pos === 16 && nameIs(text, pos, 'proxy-connection')) {
        const value = text.slice(vs, ve)
        if (value.toLowerCase().includes('upgrade')) return null
        if (hasToken(value, 'close')) close = true
      }
    }
    if (drop) dropped = withDropped(dropped, pos, next)
    pos = next
  }
  // node:http answers 400 to an HTTP/1.1 request without Host (requireHostHeader); so does it here.
  if (host === null) return null
  // Names a Connection header listed are hop-by-hop too (rare: a second pass only then). A listed
  // X-Forwarded-For is dropped before it is read, as upstreamRequestHeaders does.
  if (named !== null) {
    dropped = dropNamed(text, lineEnd + 2, end, named, dropped)
    if (named.has('x-forwarded-for')) forwardedFor = ''
  }
  return new RequestHead(text, method, target, lineEnd, contentLength === -1 ? 0 : contentLength, host, close, dropped, forwardedFor)
}

/** `dropped` with the line [pos, next) added. The first pair is a literal: an empty array's first push reserves 16 slots. */
function withDropped(dropped: number[] | null, pos: number, next: number): number[] {
  if (dropped === null) return [pos, next]
  dropped.push(pos, next)
  return dropped
}

/** How many bytes the `[start, end, ...]` ranges of a head's `dropped` lines cover. */
function droppedBytes(dropped: readonly number[] | null): number {
  let n = 0
  if (dropped !== null) for (let i = 0; i < dropped.length; i += 2) n += dropped[i + 1]! - dropped[i]!
  return n
}

/**
 * Copies the head bytes [from, to) of `src` (where the head starts at `srcStart`) into `out` at
 * `o`, less the `dropped` ranges (all of which lie in [from, to)); returns where it ended.
 */
function copyKept(src: Buffer, srcStart: number, from: number, to: number, dropped: readonly number[] | null, out: Buffer, o: number): number {
  if (dropped !== null) {
    for (let i = 0; i < dropped.length; i += 2) {
      o += src.copy(out, o, srcStart + from, srcStart + dropped[i]!)
      from = dropped[i + 1]!
    }
  }
  return o + src.copy(out, o, srcStart + from, srcStart + to)
}

/**
 * The head to send upstream, from the received bytes (`raw`, which starts with the head): the
 * request line as received when `path` is the target, else `method path HTTP/1.1`; the field lines
 * less the dropped ones; then `tail`, the proxy's own lines (X-Forwarded-*) and the blank line. The
 * same head headers.ts's upstreamRequestHeaders gives the slow path, with the Host line where it
 * was (test/proxy/fast-http1.test.ts checks the two agree).
 */
export function writeRequestHead(head: RequestHead, raw: Buffer, path: string, tail: Buffer): Buffer {
  const fields = head.lineEnd + 2
  const line = path === head.target ? '' : `${head.method} ${path} HTTP/1.1\r\n`
  const lineLength = line === '' ? fields : line.length
  const out = Buffer.allocUnsafe(lineLength + head.text.length - 2 - fields - droppedBytes(head.dropped) + tail.length)
  if (line === '') raw.copy(out, 0, 0, fields)
  else out.write(line, 0, 'latin1')
  const o = copyKept(raw, 0, fields, head.text.length - 2, head.dropped, out, lineLength)
  tail.copy(out, o)
  return out
}

/** How a response body is delimited (RFC 9112 §6.3). */
export const Framing = {
  /** No body (HEAD, 1xx, 204, 304, or Content-Length: 0). */
  NONE: 0,
  LENGTH: 1,
  CHUNKED: 2,
  /** Until the upstream closes the connection. */
  CLOSE: 3,
} as const
export type Framing = (typeof Framing)[keyof typeof Framing]

export interface ResponseHead {
  readonly status: number
  /**
   * The head as received (latin1, up to and including the blank line). What goes on to the client
   * is this text less the `dropped` lines, with the status line's version made HTTP/1.1: the lane
   * copies those bytes as they are (writeResponseHead) rather than rebuilding the head from strings.
   */
  readonly text: string
  /** Where the status line's CRLF is in `text`. */
  readonly lineEnd: number
  /**
   * `[start, end, start, end, ...]`: the hop-by-hop field lines (each with its CRLF), in order, that
   * must not reach the client; null when there are none.
   */
  readonly dropped: number[] | null
  readonly framing: Framing
  /** Body bytes for Framing.LENGTH. */
  readonly contentLength: number
  /**
   * The transfer-codings of a body that comes with them (Framing.CHUNKED, or CLOSE when chunked is
   * not the last), as the client is to be told them: `chunked` as a rule; '' when there are none.
   */
  readonly transferCodings: string
  /** The upstream will close, or must be closed, after this response. */
  readonly close: boolean
  /** The upstream's `Keep-Alive: timeout=N` in ms, or -1 when it gave none. */
  readonly keepAliveMs: number
}

/**
 * Parses an upstream's response head (`text` as in parseRequestHead); null when it is malformed,
 * which the lane treats as a reset connection. `bodiless` is true for a response to HEAD.
 *
 * Only names of the lengths that matter (and proxy-*) are sliced and lower-cased; the hop-by-hop
 * lines are noted by position, so a usual response costs no string per header.
 */
export function parseResponseHead(text: string, bodiless: boolean): ResponseHead | null {
  const lineEnd = text.indexOf('\r\n')
  if (lineEnd < 12 || !text.startsWith('HTTP/1.')) return null
  const minor = text.charCodeAt(7)
  if ((minor !== 49 && minor !== 48) || text.charCodeAt(8) !== 32) return null
  const d0 = text.charCodeAt(9) - 48
  const d1 = text.charCodeAt(10) - 48
  const d2 = text.charCodeAt(11) - 48
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null
  if (lineEnd > 12 && text.charCodeAt(12) !== 32) return null
  for (let i = 13; i < lineEnd; i++) if (VCHAR[text.charCodeAt(i)] !== 1) return null
  const status = d0 * 100 + d1 * 10 + d2
  let dropped: number[] | null = null
  let contentLength = -1
  let codings: string | null = null
  let close = minor === 48
  let keepAliveSaid = false
  let keepAliveMs = -1
  const end = text.length - 2
  let pos = lineEnd + 2
  let named: Set<string> | null = null
  while (pos < end) {
    const next = scanField(text, pos, end)
    if (next === -1) return null
    const n = at.colon - pos
    const vs = at.vs
    const ve = at.ve
    let drop = false
    // Only these lengths, and proxy-*, can be a name this parse or the hop-by-hop list cares about:
    // 2 te, 7 trailer and upgrade, 10 connection and keep-alive, 14 content-length, 17
    // transfer-encoding. Names are matched in place; values are sliced only when unusual.
    switch (n) {
      case 2:
        drop = nameIs(text, pos, 'te')
        break
      case 7:
        drop = nameIs(text, pos, 'trailer') || nameIs(text, pos, 'upgrade')
        break
      case 10:
        if (nameIs(text, pos, 'connection')) {
          drop = true
          if (ve - vs === 10 && nameIs(text, vs, 'keep-alive')) {
            keepAliveSaid = true
            if (minor === 48) close = false
          } else if (ve - vs === 5 && nameIs(text, vs, 'close')) {
            close = true
          } else {
            // Whole tokens only: a `no-keep-alive` read as keep-alive would pool a connection the
            // upstream means to close, and its next bytes would answer another client's request.
            const value = text.slice(vs, ve)
            if (hasToken(value, 'close')) close = true
            else if (hasToken(value, 'keep-alive')) {
              keepAliveSaid = true
              if (minor === 48) close = false
            }
            named = addConnectionTokens(value, named)
          }
        } else if (nameIs(text, pos, 'keep-alive')) {
          drop = true
          const m = /timeout\s*=\s*(\d+)/i.exec(text.slice(vs, ve))
          if (m !== null) keepAliveMs = Number(m[1]) * 1000
          // A hint that leaves nothing after the margin (`timeout=0` to `2`): not reused, as by undici.
          if (m !== null && keepAliveMs <= KEEP_ALIVE_MARGIN_MS) close = true
        }
        break
      case 14:
        if (nameIs(text, pos, 'content-length')) {
          const length = plainDigits(text, vs, ve)
          // Even a repeated equal one: node's client refuses it, so a client behind us would too.
          if (length === -1 || contentLength !== -1) return null
          contentLength = length
        }
        break
      case 17:
        if (nameIs(text, pos, 'transfer-encoding')) {
          // Every line counts, as for llhttp: the codings are read from all of them, joined, below.
          codings = codings === null ? text.slice(vs, ve) : `${codings},${text.slice(vs, ve)}`
          drop = true
        }
        break
    }
    if (!drop && n >= 6 && nameIs(text, pos, 'proxy-')) {
      drop = true
      if (n === 16 && nameIs(text, pos, 'proxy-connection') && hasToken(text.slice(vs, ve), 'close')) close = true
    }
    if (drop) dropped = withDropped(dropped, pos, next)
    pos = next
  }
  // Names a Connection header listed are hop-by-hop too (rare: a second pass only then).
  if (named !== null) dropped = dropNamed(text, lineEnd + 2, end, named, dropped)
  // Both Content-Length and Transfer-Encoding: ambiguous framing, refused like llhttp does.
  const transferEncoding = codings !== null
  if (transferEncoding && contentLength !== -1) return null
  // Chunked must be the last coding (elements trimmed of spaces and tabs only: a 0xA0 beside
  // `chunked` makes another coding, as llhttp reads it); anything else is delimited by the
  // connection's close. The codings go on to the client as they are, for the body goes as it is:
  // `gzip, chunked` stays that, or the client would take gzip bytes for the content.
  let forwardCodings = ''
  let chunked = false
  if (codings !== null) {
    if (codings === 'chunked') {
      forwardCodings = codings
      chunked = true
    } else {
      const list = splitList(codings)
      chunked = list.length > 0 && list[list.length - 1] === 'chunked'
      forwardCodings = list.join(', ')
    }
  }
  let framing: Framing
  if (bodiless || status < 200 || status === 204 || status === 304) framing = Framing.NONE
  else if (transferEncoding) framing = chunked ? Framing.CHUNKED : Framing.CLOSE
  else if (contentLength === 0) framing = Framing.NONE
  else if (contentLength > 0) framing = Framing.LENGTH
  else framing = Framing.CLOSE
  if (framing === Framing.CLOSE) close = true
  // No body, yet one may follow from an upstream that sends it anyway, to be read as the next
  // request's response on this connection (another client's, once pooled): so, as undici does, the
  // connection is not reused after a 204 or 304 that declares a body, nor after the response to a
  // HEAD unless it says Connection: keep-alive.
  if ((status === 204 || status === 304) && (contentLength > 0 || transferEncoding)) close = true
  if (bodiless && !keepAliveSaid) close = true
  const transferCodings = framing === Framing.NONE ? '' : forwardCodings
  return { status, text, lineEnd, dropped, framing, contentLength: contentLength === -1 ? 0 : contentLength, transferCodings, close, keepAliveMs }
}

/** `dropped` with the lines of [from, end) whose names `named` lists added, in order. */
function dropNamed(text: string, from: number, end: number, named: Set<string>, dropped: number[] | null): number[] {
  const out: number[] = []
  let d = 0
  for (let pos = from; pos < end; ) {
    const next = scanField(text, pos, end) // the first pass read every line already
    const already = dropped !== null && d < dropped.length && dropped[d] === pos
    if (already) d += 2
    if (already || named.has(text.slice(pos, at.colon).toLowerCase())) out.push(pos, next)
    pos = next
  }
  return out
}

/** `HTTP/1.1 200 OK`: the head's status line, with the version the proxy speaks. */
export function statusLine(head: ResponseHead): string {
  return `HTTP/1.1${head.text.slice(8, head.lineEnd)}`
}

/**
 * `[name, value, ...]` as sent (values trimmed), less the dropped lines: what goes on to the
 * client, the list headers.ts's downstreamResponseHeaders gives. Built only when something needs
 * the list (a response header rewrite).
 */
export function responseHeaders(head: ResponseHead): string[] {
  const { text, dropped } = head
  const headers: string[] = []
  const end = text.length - 2
  let d = 0
  for (let pos = head.lineEnd + 2; pos < end; ) {
    const next = readField(text, pos, end)
    if (dropped !== null && d < dropped.length && dropped[d] === pos) d += 2
    else headers.push(field.name, field.value)
    pos = next
  }
  return headers
}

/** Bytes writeResponseHead writes for `head` with `extra` (field lines, each ending in CRLF). */
export function responseHeadLength(head: ResponseHead, extra: string): number {
  return head.text.length + extra.length - droppedBytes(head.dropped)
}

/**
 * Writes the head to send the client into `out` at `offset`, from the received bytes (`src`, where
 * the head starts at `srcStart`): HTTP/1.1, the status line's code and reason as received, the
 * field lines less the dropped ones, then `extra` and the blank line. Returns where it ended.
 */
export function writeResponseHead(head: ResponseHead, src: Buffer, srcStart: number, extra: string, out: Buffer, offset: number): number {
  let o = offset + out.write('HTTP/1.1', offset, 'latin1')
  o = copyKept(src, srcStart, 8, head.text.length - 2, head.dropped, out, o)
  if (extra !== '') o += out.write(extra, o, 'latin1')
  out[o++] = 13
  out[o++] = 10
  return o
}

// Chunked-body scanner states.
const SIZE = 0
const SIZE_AFTER = 1 // after the digits: `;` extensions until CR
const SIZE_LF = 2
const DATA = 3
const DATA_CR = 4
const DATA_LF = 5
const TRAILER_START = 6 // after the last chunk: CRLF ends the body, anything else is a trailer line
const TRAILER_LINE = 7
const TRAILER_LF = 8
const END_LF = 9

/** Returned by ChunkedScanner.scan for a malformed body. */
export const CHUNKED_ERROR = -2
/** The largest chunk size taken: 12 hex digits' worth, far below 2^53 so the count stays exact. */
const MAX_CHUNK_SIZE = 0xffffffffffff

/**
 * Finds where a chunked body ends without decoding it: the lane forwards the bytes as they are
 * (chunk framing, extensions and trailers pass through to the client unchanged).
 */
export class ChunkedScanner {
  #state = SIZE
  #size = 0
  #digits = 0
  #remaining = 0
  /** Inside a chunk extension; in a trailer line, past its colon. */
  #ext = false
  #quoted = false

  reset(): void {
    this.#ext = false
    this.#quoted = false
    this.#state = SIZE
    this.#size = 0
    this.#digits = 0
    this.#remaining = 0
  }

  /**
   * Scans `buf[start, end)`. Returns the offset just past the body's last byte when the body ends
   * in this range, -1 when it continues past `end`, or CHUNKED_ERROR.
   */
  scan(buf: Uint8Array, start: number, end: number): number {
    let i = start
    while (i < end) {
      switch (this.#state) {
        case DATA: {
          const take = Math.min(this.#remaining, end - i)
          i += take
          this.#remaining -= take
          if (this.#remaining === 0) this.#state = DATA_CR
          continue
        }
        case SIZE: {
          const c = buf[i]!
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1
          if (v !== -1) {
            // The size, not its digits, is bounded: leading zeros are as llhttp reads them.
            this.#digits++
            this.#size = this.#size * 16 + v
            if (this.#size > MAX_CHUNK_SIZE) return CHUNKED_ERROR
          } else {
            if (this.#digits === 0) return CHUNKED_ERROR
            this.#state = SIZE_AFTER
            continue // look at this byte again
          }
          break
        }
        case SIZE_AFTER: {
          // Only what llhttp takes: CR right after the digits, or `;name=value` extensions of
          // tokens and quoted strings (no whitespace), so the client's parser reads the same.
          const c = buf[i]!
          if (this.#quoted) {
            if (c === 34 /* " */) this.#quoted = false
            else if (VCHAR[c] !== 1) return CHUNKED_ERROR
          } else if (c === 13) this.#state = SIZE_LF
          else if (c === 59 /* ; */) this.#ext = true
          else if (!this.#ext) return CHUNKED_ERROR
          else if (c === 34) this.#quoted = true
          else if (TCHAR[c] !== 1 && c !== 61 /* = */) return CHUNKED_ERROR
          break
        }
        case SIZE_LF:
          if (buf[i] !== 10) return CHUNKED_ERROR
          if (this.#size === 0) {
            this.#state = TRAILER_START
          } else {
            this.#remaining = this.#size
            this.#state = DATA
          }
          this.#size = 0
          this.#digits = 0
          this.#ext = false
          break
        case DATA_CR:
          if (buf[i] !== 13) return CHUNKED_ERROR
          this.#state = DATA_LF
          break
        case DATA_LF:
          if (buf[i] !== 10) return CHUNKED_ERROR
          this.#state = SIZE
          break
        case TRAILER_START:
          if (buf[i] === 13) this.#state = END_LF
          else if (TCHAR[buf[i]!] === 1) this.#state = TRAILER_LINE
          else return CHUNKED_ERROR
          break
        case TRAILER_LINE: {
          // `name: value`: a token, a colon, then field-value bytes.
          const c = buf[i]!
          if (this.#ext) {
            if (c === 13) this.#state = TRAILER_LF
            else if (VCHAR[c] !== 1) return CHUNKED_ERROR
          } else if (c === 58 /* : */) this.#ext = true
          else if (TCHAR[c] !== 1) return CHUNKED_ERROR
          break
        }
        case TRAILER_LF:
          if (buf[i] !== 10) return CHUNKED_ERROR
          this.#ext = false
          this.#state = TRAILER_START
          break
        case END_LF:
          if (buf[i] !== 10) return CHUNKED_ERROR
          this.reset()
          return i + 1
      }
      i++
    }
    return -1
  }
}
