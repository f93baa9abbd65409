import assert from 'node:assert/strict'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { parseConfig } from '../../src/config/load.ts'
import { backoffDelayMs, EtcdDiscovery, parseEtcdValue, RETRY_MAX_MS, RETRY_MIN_MS } from '../../src/discovery/etcd.ts'

const KEY = '/services/api/i-1'

describe('parseEtcdValue', () => {
  it('reads a JSON value with weight and meta', () => {
    assert.deepEqual(parseEtcdValue(KEY, '{"address":"10.0.0.5","port":8080,"weight":2,"meta":{"zone":"a","version":"v2"}}'), {
      address: '10.0.0.5',
      port: 8080,
      weight: 2,
      meta: { zone: 'a', version: 'v2' },
    })
  })

  it('carries "scheme": "https" into meta.scheme (it turns TLS on) and refuses other schemes', () => {
    assert.deepEqual(parseEtcdValue(KEY, '{"address":"10.0.0.5","port":8443,"scheme":"https"}'), { address: '10.0.0.5', port: 8443, weight: 1, meta: { scheme: 'https' } })
    assert.throws(() => parseEtcdValue(KEY, '{"address":"10.0.0.5","port":8443,"scheme":"ftp"}'), /scheme: must be one of http, https/)
  })

  it('defaults weight to 1 and meta to empty', () => {
    assert.deepEqual(parseEtcdValue(KEY, '{"address":"10.0.0.5","port":8080}'), { address: '10.0.0.5', port: 8080, weight: 1, meta: {} })
    assert.deepEqual(parseEtcdValue(KEY, '{"address":"api-1.internal","port":443,"meta":{}}'), { address: 'api-1.internal', port: 443, weight: 1, meta: {} })
  })

  it('ignores fields it does not know, so other tools may store more', () => {
    assert.deepEqual(parseEtcdValue(KEY, '{"address":"10.0.0.5","port":80,"id":"i-1","registeredAt":"2025-01-01"}'), { address: '10.0.0.5', port: 80, weight: 1, meta: {} })
  })

  it('reads an IPv6 address in JSON with or without brackets', () => {
    assert.equal(parseEtcdValue(KEY, '{"address":"::1","port":80}').address, '::1')
    assert.equal(parseEtcdValue(KEY, '{"address":"[::1]","port":80}').address, '::1')
  })

  it('reads a plain host:port, trimmed', () => {
    assert.deepEqual(parseEtcdValue(KEY, '10.0.0.5:80'), { address: '10.0.0.5', port: 80, weight: 1, meta: {} })
    assert.deepEqual(parseEtcdValue(KEY, ' api-1.internal:443\n'), { address: 'api-1.internal', port: 443, weight: 1, meta: {} })
  })

  it('reads a bracketed IPv6 [::1]:80', () => {
    assert.deepEqual(parseEtcdValue(KEY, '[::1]:80'), { address: '::1', port: 80, weight: 1, meta: {} })
  })

  // Each bad value: the message names the key and says what is wrong.
  const bad: Array<[string, string, RegExp]> = [
    ['invalid JSON', '{"address":"10.0.0.5",', /^\/services\/api\/i-1: invalid JSON \(.+\) in "\{\\"address\\":\\"10\.0\.0\.5\\","$/],
    ['a JSON array', '[{"address":"10.0.0.5","port":80}]', /^\/services\/api\/i-1: must be host:port or \[ipv6\]:port, got "\[/],
    ['a host without a port', '10.0.0.5', /^\/services\/api\/i-1: must be host:port or \[ipv6\]:port, got "10\.0\.0\.5"$/],
    ['an empty value', '', /^\/services\/api\/i-1: must be host:port or \[ipv6\]:port, got ""$/],
    ['an unbracketed IPv6 address', '::1:80', /^\/services\/api\/i-1: an IPv6 address needs brackets, like \[::1\]:80$/],
    ['port 0 in host:port', '10.0.0.5:0', /^\/services\/api\/i-1: port must be between 1 and 65535$/],
    ['JSON without a port', '{"address":"10.0.0.5"}', /^\/services\/api\/i-1: port: is required$/],
    ['JSON without an address', '{"port":80}', /^\/services\/api\/i-1: address: is required$/],
    ['JSON port 0', '{"address":"10.0.0.5","port":0}', /^\/services\/api\/i-1: port: must be at least 1$/],
    ['JSON port above 65535', '{"address":"10.0.0.5","port":65536}', /^\/services\/api\/i-1: port: must be at most 65535$/],
    ['weight 0', '{"address":"10.0.0.5","port":80,"weight":0}', /^\/services\/api\/i-1: weight: must be at least 1$/],
    ['a fractional weight', '{"address":"10.0.0.5","port":80,"weight":1.5}', /^\/services\/api\/i-1: weight: must be an integer$/],
    ['a bad host name', '{"address":"not a host","port":80}', /^\/services\/api\/i-1: address: must be a host name or an IP address$/],
    ['non-string meta values', '{"address":"10.0.0.5","port":80,"meta":{"zone":"a","shard":3,"x":null}}', /^\/services\/api\/i-1: meta\.shard: must be a string; meta\.x: must be a string$/],
    ['meta that is not a map', '{"address":"10.0.0.5","port":80,"meta":["a"]}', /^\/services\/api\/i-1: meta: must be a map of strings$/],
  ]
  for (const [what, value, message] of bad) {
    it(`rejects ${what}`, () => {
      assert.throws(() => parseEtcdValue(KEY, value), (err: unknown) => {
        assert.ok(err instanceof Error)
        assert.match(err.message, message)
        return true
      })
    })
  }

  it('reports every problem of a JSON value at once', () => {
    assert.throws(() => parseEtcdValue(KEY, '{"address":"","port":0,"weight":-1,"meta":{"a":1}}'), /address: .+; port: must be at least 1; weight: must be at least 1; meta\.a: must be a string$/)
  })

  it('quotes at most 200 characters of a long bad value', () => {
    const value = `{"address":"${'x'.repeat(1000)}`
    assert.throws(() => parseEtcdValue(KEY, value), (err: unknown) => {
      assert.ok(err instanceof Error)
      assert.ok(err.message.length < 400, err.message)
      return true
    })
  })
})

describe('backoffDelayMs', () => {
  it('doubles from RETRY_MIN_MS with a random factor of 1–2, capped at RETRY_MAX_MS', () => {
    assert.equal(backoffDelayMs(1, () => 0), RETRY_MIN_MS)
    assert.equal(backoffDelayMs(1, () => 0.5), RETRY_MIN_MS * 1.5)
    assert.equal(backoffDelayMs(2, () => 0), RETRY_MIN_MS * 2)
    assert.equal(backoffDelayMs(3, () => 0.999), RETRY_MIN_MS * 4 * 1.999)
    assert.equal(backoffDelayMs(8, () => 0), RETRY_MAX_MS)
    assert.equal(backoffDelayMs(1000, () => 0.9), RETRY_MAX_MS)
  })
})

describe('EtcdDiscovery without a reachable etcd', () => {
  it('never calls back from start(), reports one error per streak while it keeps retrying, and is silent after stop()', async () => {
    // Not an etcd: a listener that drops every connection, so each attempt fails fast and is counted.
    let connections = 0
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      connections++
      socket.destroy()
    })
    server.on('connection', (socket) => sockets.add(socket))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const config = parseConfig(JSON.stringify({ discovery: { etcd: { endpoints: [url], username: 'reader', password: 's3cret-pw' } }, services: { api: { source: 'etcd' } } }), { format: 'json', baseDir: '/tmp', env: {} })
    const lines: string[] = []
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) })
    const adapter = new EtcdDiscovery(config.services[0]!, config.discovery.etcd, logger)
    const calls: string[] = []
    try {
      adapter.start({ onUpdate: () => calls.push('update'), onError: (err) => calls.push(`error ${err.message}`) })
      assert.deepEqual(calls, [], 'nothing synchronously from start()')
      // Three attempts take at least 200 + 400 ms of backoff.
      const deadline = Date.now() + 15_000
      while (connections < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      assert.ok(connections >= 3, `${connections} connection attempts`)
      assert.equal(calls.length, 1, calls.join('\n'))
      assert.match(calls[0]!, /^error etcd \/services\/api\/: /)
    } finally {
      const stopping = Date.now()
      await adapter.stop()
      assert.ok(Date.now() - stopping < 2000, `stop() took ${Date.now() - stopping} ms`)
    }
    const after = calls.length
    const attempts = connections
    await new Promise((r) => setTimeout(r, 1000))
    assert.equal(calls.length, after, 'no callback after stop()')
    assert.ok(connections <= attempts + 1, 'no retry after stop()')
    assert.ok(!lines.join('\n').includes('s3cret-pw'), 'the password is never logged')
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
})
