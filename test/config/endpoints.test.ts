import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseEndpointList } from '../../src/config/load.ts'
import { issuesOf, onlyIssueOf } from './helpers.ts'

describe('parseEndpointList', () => {
  it('parses a YAML list of "host:port" and {address, port, weight}', () => {
    const text = [
      '- "10.0.0.1:80"',
      '- web-2.internal:8080',
      '- { address: web.internal, port: 81, weight: 5 }',
      '- address: 10.0.0.9',
      '  port: "82"',
      '- "[::1]:83"',
      '- { address: "[fe80::1]", port: 84 }',
      '- { address: "::2", port: 85 }',
    ].join('\n')
    assert.deepEqual(parseEndpointList(text, 'yaml'), [
      { address: '10.0.0.1', port: 80, weight: 1 },
      { address: 'web-2.internal', port: 8080, weight: 1 },
      { address: 'web.internal', port: 81, weight: 5 },
      { address: '10.0.0.9', port: 82, weight: 1 },
      { address: '::1', port: 83, weight: 1 },
      { address: 'fe80::1', port: 84, weight: 1 },
      { address: '::2', port: 85, weight: 1 },
    ])
  })

  it('parses a JSON list', () => {
    assert.deepEqual(parseEndpointList('[{"address": "a", "port": 1, "weight": 2}, "b:3"]', 'json'), [
      { address: 'a', port: 1, weight: 2 },
      { address: 'b', port: 3, weight: 1 },
    ])
  })

  it('an empty document is an empty list', () => {
    assert.deepEqual(parseEndpointList('', 'yaml'), [])
    assert.deepEqual(parseEndpointList('# no endpoints yet\n', 'yaml'), [])
    assert.deepEqual(parseEndpointList('[]', 'json'), [])
  })

  it('does not expand ${VAR}', () => {
    const issue = onlyIssueOf(() => parseEndpointList('- "${HOST}:80"\n', 'yaml'))
    assert.deepEqual(issue, { path: '[0]', message: 'must be host:port or [ipv6]:port, got "${HOST}:80"' })
  })

  it('a document that is not a list', () => {
    assert.deepEqual(onlyIssueOf(() => parseEndpointList('endpoints: ["a:1"]\n', 'yaml')), { path: '', message: 'must be a list' })
    assert.deepEqual(onlyIssueOf(() => parseEndpointList('"a:1"', 'json')), { path: '', message: 'must be a list' })
  })

  const mistakes: { name: string; item: string; path: string; message: string }[] = [
    { name: 'port 0 (map form)', item: '{ address: a, port: 0 }', path: '[1].port', message: 'must be at least 1' },
    { name: 'port too large (map form)', item: '{ address: a, port: 65536 }', path: '[1].port', message: 'must be at most 65535' },
    { name: 'fractional port', item: '{ address: a, port: 80.5 }', path: '[1].port', message: 'must be an integer' },
    { name: 'named port', item: '{ address: a, port: http }', path: '[1].port', message: 'must be a number' },
    { name: 'port out of range (string form)', item: '"a:70000"', path: '[1]', message: 'port must be between 1 and 65535' },
    { name: 'port 0 (string form)', item: '"a:0"', path: '[1]', message: 'port must be between 1 and 65535' },
    { name: 'no port (string form)', item: '"a"', path: '[1]', message: 'must be host:port or [ipv6]:port, got "a"' },
    { name: 'IPv6 without brackets', item: '"::1:80"', path: '[1]', message: 'an IPv6 address needs brackets, like [::1]:80' },
    { name: 'missing address', item: '{ port: 80 }', path: '[1].address', message: 'is required' },
    { name: 'missing port', item: '{ address: a }', path: '[1].port', message: 'is required' },
    { name: 'bad address', item: '{ address: "a b", port: 80 }', path: '[1].address', message: 'must be a host name or an IP address' },
    { name: 'weight 0', item: '{ address: a, port: 80, weight: 0 }', path: '[1].weight', message: 'must be at least 1' },
    { name: 'unknown field', item: '{ address: a, port: 80, wieght: 2 }', path: '[1]', message: 'unknown field "wieght"' },
    { name: 'a number', item: '5', path: '[1]', message: 'must be "host:port" or a map with address, port and weight' },
    { name: 'null', item: 'null', path: '[1]', message: 'must be "host:port" or a map with address, port and weight' },
    { name: 'a list', item: '[a, 80]', path: '[1]', message: 'must be "host:port" or a map with address, port and weight' },
  ]
  for (const m of mistakes) {
    it(`rejects ${m.name} at ${m.path}`, () => {
      assert.deepEqual(onlyIssueOf(() => parseEndpointList(`- "10.0.0.1:80"\n- ${m.item}\n`, 'yaml')), { path: m.path, message: m.message })
    })
  }

  it('reports every bad item, in document order', () => {
    const text = ['- "a:1"', '- { address: b, port: 0, weight: 0 }', '- "c"', '- "d:2"', '- { port: 3 }', '- 7'].join('\n')
    assert.deepEqual(issuesOf(() => parseEndpointList(text, 'yaml')), [
      { path: '[1].port', message: 'must be at least 1' },
      { path: '[1].weight', message: 'must be at least 1' },
      { path: '[2]', message: 'must be host:port or [ipv6]:port, got "c"' },
      { path: '[4].address', message: 'is required' },
      { path: '[5]', message: 'must be "host:port" or a map with address, port and weight' },
    ])
  })

  it('reports JSON mistakes with the same paths', () => {
    assert.deepEqual(issuesOf(() => parseEndpointList('["a:1", {"address": "b", "port": 99999}, "c:x"]', 'json')), [
      { path: '[1].port', message: 'must be at most 65535' },
      { path: '[2]', message: 'port must be a number, got "x"' },
    ])
  })

  it('reports syntax errors with the file name, line and column', () => {
    assert.deepEqual(onlyIssueOf(() => parseEndpointList('[\n  "a:1",\n]', 'json', 'web.json')), {
      path: '',
      message: 'web.json: JSON syntax error at line 2, column 8: trailing comma (not allowed in JSON)',
    })
    const yaml = onlyIssueOf(() => parseEndpointList('- a:1\n\t- b:2\n', 'yaml', 'web.yaml'))
    assert.equal(yaml.path, '')
    assert.match(yaml.message, /^web\.yaml: YAML syntax error at line 2, column 1: /)
  })
})
