/**
 * Property tests of the config loader on random documents: whatever the text, `parseConfig`
 * returns a config or throws a ConfigError whose every issue has a message — nothing else, and
 * promptly (fast-check runs a bounded number of cases, each under a time limit).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/config/errors.ts'

/** Keys of the contract, so random documents reach deep into the schema, not only its top. */
const KEYS = ['listen', 'admin', 'shutdownTimeout', 'accessLog', 'discovery', 'stateDir', 'consul', 'etcd', 'url', 'token', 'endpoints', 'prefix',
  'services', 'api', 'source', 'static', 'file', 'strategy', 'routes', 'host', 'pathPrefix', 'stripPrefix', 'healthCheck', 'active', 'passive',
  'retry', 'attempts', 'replayBodyLimit', 'timeouts', 'connect', 'request', 'maxConcurrent', 'hashKey', 'stickyCookie', 'ttl', 'register', 'port',
  'address', 'weight', 'tls', '__proto__', 'constructor', 'limits', 'maxConnections', 'headersTimeout', 'adminToken']
const SCALARS = fc.oneof(
  fc.constantFrom('127.0.0.1:0', '5s', '64KiB', 'static', 'consul', 'round-robin', 'consistent-hash', 'cookie:s', '${X}', '${X:-1}', '$${', '-1', '1e309', 'NaN', '', ' '),
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
)
const doc = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, SCALARS, tie('map'), tie('list')),
  map: fc.dictionary(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 6 })), tie('value'), { maxKeys: 6 }),
  list: fc.array(tie('value'), { maxLength: 4 }),
})).map

function parses(text: string, format: 'json' | 'yaml'): void {
  const started = performance.now()
  try {
    const config = parseConfig(text, { format, baseDir: '/tmp', env: { X: 'x' } })
    assert.ok(Array.isArray(config.services))
  } catch (err) {
    assert.ok(err instanceof ConfigError, `threw ${String(err)}`)
    assert.ok(err.issues.length > 0)
    for (const i of err.issues) assert.ok(typeof i.message === 'string' && i.message !== '', JSON.stringify(i))
  }
  const ms = performance.now() - started
  assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`)
}

describe('config loader on random documents', () => {
  it('JSON documents built from contract keys: a config or a ConfigError, never anything else', () => {
    fc.assert(fc.property(doc, (d) => parses(JSON.stringify(d), 'json')), { numRuns: 400 })
  })

  it('the same documents as YAML, and random YAML-ish text', () => {
    const yamlish = fc.array(fc.constantFrom('services:', '  api:', '    source: static', '  - ', '&a ', '*a', '<<: *a', '{', '}', '[', ']', ': ', '"', "'", '#', '\t', '? ', '!!binary', '---', '...', '%YAML 1.2', 'x', '${X}'), { maxLength: 30 }).map((a) => a.join(''))
    fc.assert(fc.property(doc, (d) => parses(JSON.stringify(d), 'yaml')), { numRuns: 200 })
    fc.assert(fc.property(fc.oneof(yamlish, fc.string({ maxLength: 200 })), (text) => parses(text, 'yaml')), { numRuns: 400 })
  })

  it('an alias bomb is refused quickly', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for (let i = 1; i < 12; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`)
    parses(lines.join('\n'), 'yaml')
  })
})
