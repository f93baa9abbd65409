import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { EndpointStateStore } from '../../src/discovery/state.ts'

const logger = pino({ level: 'silent' })

describe('EndpointStateStore', () => {
  it('saves the newest set atomically and loads it back, meta included', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'state-test-')), 'nested')
    const store = new EndpointStateStore(dir, logger)
    store.save('api', 'consul', [{ address: '10.0.0.1', port: 80, weight: 1, meta: {} }])
    store.save('api', 'consul', [{ address: '10.0.0.2', port: 81, weight: 3, meta: { zone: 'b' } }])
    await store.flush()
    assert.deepEqual(readdirSync(dir), ['api.json'], 'no temporary file left behind')
    assert.deepEqual(new EndpointStateStore(dir, logger).load('api'), [{ address: '10.0.0.2', port: 81, weight: 3, meta: { zone: 'b' } }])
  })

  it('answers null for a missing or unreadable file, never throws', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'state-test-'))
    const store = new EndpointStateStore(dir, logger)
    assert.equal(store.load('nothing'), null)
    writeFileSync(path.join(dir, 'broken.json'), '{"endpoints": [{"address": "10.0.0.1", "port": 0}]}')
    assert.equal(store.load('broken'), null)
    writeFileSync(path.join(dir, 'garbage.json'), 'not json')
    assert.equal(store.load('garbage'), null)
  })

  it('logs and survives a folder it cannot write', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'state-test-')), 'a-file')
    writeFileSync(file, '')
    const store = new EndpointStateStore(path.join(file, 'sub'), logger)
    store.save('api', 'etcd', [{ address: '10.0.0.1', port: 80, weight: 1, meta: {} }])
    await store.flush()
    assert.equal(store.load('api'), null)
  })
})
