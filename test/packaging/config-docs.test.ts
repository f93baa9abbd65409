/**
 * docs/configuration.md is generated (`npm run docs:config`) from the config schema and
 * docs/config-descriptions.yaml. These tests regenerate it in memory and fail when the file is out
 * of date, when a key of the schema has no description, or when the reference's example is invalid.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { ConfigError } from '../../src/config/errors.ts'
import { parseConfig } from '../../src/config/load.ts'
import { descriptionProblems, isAmbiguous, loadDescriptions, OUTPUT_FILE, renderConfigDocs, schemaEntries } from '../../scripts/config-docs.ts'
import type { Descriptions } from '../../scripts/config-docs.ts'

const descriptions = loadDescriptions()
const entries = schemaEntries()

describe('docs/configuration.md', () => {
  it('is what `npm run docs:config` generates now (run it after changing the schema or the descriptions)', () => {
    assert.equal(readFileSync(OUTPUT_FILE, 'utf8'), renderConfigDocs(descriptions, entries))
  })

  it('every key path of the schema has a description, and every description a key', () => {
    assert.deepEqual(descriptionProblems(descriptions, entries), [])
  })

  it('the walk finds the keys of every part of the schema', () => {
    const paths = new Set(entries.map((e) => e.path))
    for (const p of ['listen', 'discovery.consul.consistency', 'discovery.etcd.prefix', 'services.<name>.source', 'services.<name>.routes[].requestHeaders.set',
      'services.<name>.healthCheck.passive.maxEjectionPercent', 'services.<name>.endpoints[].weight', 'services.<name>.cache.maxBytes', 'register.check.interval']) {
      assert.ok(paths.has(p), p)
    }
    assert.ok(entries.length > 90, `${entries.length} paths`)
    assert.ok(isAmbiguous(entries.find((e) => e.path === 'shutdownTimeout')!.node))
  })

  it('a missing, an untyped ambiguous, and a stale description are each reported', () => {
    const keys = { ...descriptions.keys }
    delete keys['services.<name>.retry.attempts']
    keys['services.<name>.timeouts.idle'] = { text: 'no type' }
    keys['services.<name>.retries'] = { text: 'a key that does not exist' }
    const broken: Descriptions = { ...descriptions, keys }
    assert.deepEqual(descriptionProblems(broken, entries).sort(), [
      'services.<name>.retries: described, but the schema has no such key',
      'services.<name>.retry.attempts: no description in docs/config-descriptions.yaml',
      'services.<name>.timeouts.idle: the schema accepts a string or a number; say which (type: duration, size, address...)',
    ])
    assert.throws(() => renderConfigDocs(broken, entries), /does not match the schema/)
  })

  it('shows defaults, required keys and allowed values from the schema', () => {
    const md = renderConfigDocs(descriptions, entries)
    assert.match(md, /\| `source` \| `consul` \\\| `etcd` \\\| `file` \\\| `static` \| \*\*required\*\* \|/)
    assert.match(md, /\| `replayBodyLimit` \| size \| `64KiB` \|/)
    assert.match(md, /\| `connect` \| duration \| `2s` \|/)
    assert.match(md, /\| `admin` \| `host:port` or a port \| `127\.0\.0\.1:9901` \|/)
  })

  it("the reference's example of every key is a valid config", () => {
    try {
      const config = parseConfig(descriptions.example, { format: 'yaml', baseDir: '/etc/outrigger', env: {} })
      assert.deepEqual(config.services.map((s) => s.name), ['api', 'sessions', 'web', 'legacy', 'payments'])
    } catch (err) {
      assert.fail(err instanceof ConfigError ? err.message : String(err))
    }
  })
})
