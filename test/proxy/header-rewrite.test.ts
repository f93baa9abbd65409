import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { applyHeaderRewrite, compileHeaderRewrite } from '../../src/proxy/header-rewrite.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.ts'

describe('header rewriting', () => {
  it('is null when there is nothing to rewrite', () => {
    assert.equal(compileHeaderRewrite(undefined), null)
    assert.equal(compileHeaderRewrite({ set: {}, remove: [] }), null)
  })

  it('set replaces every occurrence (any case) with one value; remove drops every occurrence; the rest keeps its order and duplicates', () => {
    const rw = compileHeaderRewrite({ set: { 'x-env': 'prod' }, remove: ['x-debug'] })
    assert.ok(rw !== null)
    const table: ReadonlyArray<[string[], string[]]> = [
      [[], ['x-env', 'prod']],
      [
        ['X-Env', 'dev', 'accept', 'a', 'x-env', 'test', 'X-DEBUG', '1', 'accept', 'b', 'x-debug', '2'],
        ['accept', 'a', 'accept', 'b', 'x-env', 'prod'],
      ],
      [
        ['X-ENV', 'a', 'x-enw', 'b', 'x-debugger', 'c'], // same length as a dropped name, or a longer one, is kept
        ['x-enw', 'b', 'x-debugger', 'c', 'x-env', 'prod'],
      ],
      [
        ['set-cookie', 'a=1', 'set-cookie', 'b=2'],
        ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-env', 'prod'],
      ],
    ]
    for (const [input, expected] of table) {
      const headers = [...input]
      applyHeaderRewrite(headers, rw)
      assert.deepEqual(headers, expected, JSON.stringify(input))
    }
  })

  it('compares names case-insensitively whatever the config wrote', () => {
    const rw = compileHeaderRewrite({ set: { 'X-Served-By': 'outrigger' }, remove: ['Server'] })
    assert.ok(rw !== null)
    const headers = ['server', 'nginx', 'x-served-by', 'app', 'date', 'd']
    applyHeaderRewrite(headers, rw)
    assert.deepEqual(headers, ['date', 'd', 'x-served-by', 'outrigger'])
  })

  it('applies after hop-by-hop stripping on both sides, which a rewrite cannot undo', () => {
    const request = upstreamRequestHeaders(['Host', 'a', 'Connection', 'x-hop', 'x-hop', '1', 'x-debug', 'on', 'x-keep', 'k'], '10.0.0.1', 'http', null).headers
    applyHeaderRewrite(request, compileHeaderRewrite({ set: { 'x-env': 'prod' }, remove: ['x-debug'] })!)
    assert.deepEqual(request, ['x-keep', 'k', 'host', 'a', 'x-forwarded-for', '10.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a', 'x-env', 'prod'])
    const response = downstreamResponseHeaders(['Transfer-Encoding', 'chunked', 'Server', 'up', 'Keep-Alive', 'timeout=5'].map((s) => Buffer.from(s)))
    applyHeaderRewrite(response, compileHeaderRewrite({ set: { 'x-served-by': 'outrigger' }, remove: [] })!)
    assert.deepEqual(response, ['Server', 'up', 'x-served-by', 'outrigger'])
  })
})
