import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseConfig } from '../../src/config/load.ts'
import { notBuiltYet } from '../../src/config/not-built.ts'

describe('notBuiltYet', () => {
  it('names, by path, every configured key whose behaviour is not built yet', () => {
    const text = readFileSync(path.join(import.meta.dirname, '..', 'config', 'fixtures', 'full.yaml'), 'utf8')
    const config = parseConfig(text, { format: 'yaml', baseDir: '/tmp', env: {} })
    assert.deepEqual(notBuiltYet(config), [
      'services.payments.circuitBreaker',
      'services.payments.rateLimit',
      'services.payments.routes[0].requestHeaders',
      'services.payments.routes[0].responseHeaders',
    ])
  })

  it('is empty for a config that uses only what is built', () => {
    const config = parseConfig(JSON.stringify({ services: { a: { source: 'static', endpoints: ['127.0.0.1:1'], routes: [{ pathPrefix: '/a/' }] } } }), { format: 'json', baseDir: '/tmp', env: {} })
    assert.deepEqual(notBuiltYet(config), [])
  })
})
