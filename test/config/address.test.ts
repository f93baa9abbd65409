import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatAddress, isValidHost, listenersCollide, parseHostPort, parsePort } from '../../src/config/address.ts'
import type { ListenAddress } from '../../src/config/types.ts'

describe('parseHostPort', () => {
  const valid: [string, ListenAddress][] = [
    ['127.0.0.1:80', { host: '127.0.0.1', port: 80 }],
    ['10.0.0.5:65535', { host: '10.0.0.5', port: 65535 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['api.internal:1', { host: 'api.internal', port: 1 }],
    ['my_host-1:443', { host: 'my_host-1', port: 443 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    ['[fe80::1:2]:8443', { host: 'fe80::1:2', port: 8443 }],
    [' 10.0.0.1:443 ', { host: '10.0.0.1', port: 443 }],
  ]
  for (const [text, expected] of valid) {
    it(`parses ${JSON.stringify(text)}`, () => {
      assert.deepEqual(parseHostPort(text), expected)
    })
  }

  it('accepts a bare port only with a defaultHost', () => {
    assert.deepEqual(parseHostPort('15001', { defaultHost: '127.0.0.1' }), { host: '127.0.0.1', port: 15001 })
    assert.deepEqual(parseHostPort('0', { defaultHost: '0.0.0.0', minPort: 0 }), { host: '0.0.0.0', port: 0 })
    assert.throws(() => parseHostPort('15001'), { name: 'RangeError', message: 'must be host:port or [ipv6]:port, got "15001"' })
  })

  it('port 0 is allowed only with minPort 0', () => {
    assert.deepEqual(parseHostPort('[::]:0', { minPort: 0 }), { host: '::', port: 0 })
    assert.throws(() => parseHostPort('host:0'), { message: 'port must be between 1 and 65535' })
  })

  const invalid: [string, string][] = [
    ['host', 'must be host:port or [ipv6]:port, got "host"'],
    [':80', 'must be host:port or [ipv6]:port, got ":80"'],
    ['host:', 'port must be a number, got ""'],
    ['host:abc', 'port must be a number, got "abc"'],
    ['host:-1', 'port must be a number, got "-1"'],
    ['host:65536', 'port must be between 1 and 65535'],
    ['::1:80', 'an IPv6 address needs brackets, like [::1]:80'],
    ['[::1]', 'must be host:port or [ipv6]:port, got "[::1]"'],
    ['[::1]80', 'must be host:port or [ipv6]:port, got "[::1]80"'],
    ['[1.2.3.4]:80', '"1.2.3.4" is not an IPv6 address'],
    ['a b:80', 'must be host:port or [ipv6]:port, got "a b:80"'],
    ['a..b:80', 'must be host:port or [ipv6]:port, got "a..b:80"'],
    ['-bad:80', 'must be host:port or [ipv6]:port, got "-bad:80"'],
    ['bad-:80', 'must be host:port or [ipv6]:port, got "bad-:80"'],
  ]
  for (const [text, message] of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseHostPort(text), { name: 'RangeError', message })
    })
  }

  it('says "or a port" when a bare port would be accepted, and uses a custom description', () => {
    assert.throws(() => parseHostPort('nope', { defaultHost: '127.0.0.1' }), { message: 'must be host:port, [ipv6]:port or a port, got "nope"' })
    assert.throws(() => parseHostPort('nope', { what: 'must be an address' }), { message: 'must be an address, got "nope"' })
  })
})

describe('parsePort', () => {
  it('parses ports within bounds', () => {
    assert.equal(parsePort('1', 1), 1)
    assert.equal(parsePort('65535', 1), 65535)
    assert.equal(parsePort('0', 0), 0)
  })

  it('rejects ports out of bounds and non-numbers', () => {
    assert.throws(() => parsePort('0', 1), { message: 'port must be between 1 and 65535' })
    assert.throws(() => parsePort('65536', 0), { message: 'port must be between 0 and 65535' })
    assert.throws(() => parsePort('123456', 0), { message: 'port must be a number, got "123456"' })
    assert.throws(() => parsePort('8o', 0), { message: 'port must be a number, got "8o"' })
    assert.throws(() => parsePort('+80', 0), { message: 'port must be a number, got "+80"' })
  })
})

describe('isValidHost', () => {
  it('accepts names and IP addresses', () => {
    for (const h of ['localhost', 'api.internal', 'a', '10.0.0.1', '::1', 'fe80::1', 'my_host', 'x-1.y-2']) assert.equal(isValidHost(h), true, h)
  })

  it('rejects what cannot be a host', () => {
    for (const h of ['', '-a', 'a-', '.a', 'a.', 'a..b', 'a b', 'a/b', '[::1]', 'a:b']) assert.equal(isValidHost(h), false, h)
  })
})

describe('formatAddress', () => {
  it('brackets IPv6 hosts only', () => {
    assert.equal(formatAddress({ host: '127.0.0.1', port: 80 }), '127.0.0.1:80')
    assert.equal(formatAddress({ host: 'api', port: 1 }), 'api:1')
    assert.equal(formatAddress({ host: '::1', port: 9901 }), '[::1]:9901')
  })
})

describe('listenersCollide', () => {
  const at = (host: string, port: number): ListenAddress => ({ host, port })
  const cases: [string, ListenAddress, ListenAddress, boolean][] = [
    ['same host and port', at('127.0.0.1', 80), at('127.0.0.1', 80), true],
    ['same host, other port', at('127.0.0.1', 80), at('127.0.0.1', 81), false],
    ['other host, same port', at('127.0.0.1', 80), at('10.0.0.1', 80), false],
    ['IPv4 wildcard first', at('0.0.0.0', 80), at('10.0.0.1', 80), true],
    ['IPv4 wildcard second', at('10.0.0.1', 80), at('0.0.0.0', 80), true],
    ['IPv6 wildcard', at('::', 80), at('127.0.0.1', 80), true],
    ['IPv6 wildcard, long form', at('0:0:0:0:0:0:0:0', 80), at('::1', 80), true],
    ['wildcard on another port', at('0.0.0.0', 80), at('127.0.0.1', 81), false],
    ['host names differing in case', at('LocalHost', 80), at('localhost', 80), true],
    ['both on port 0 (any free port)', at('127.0.0.1', 0), at('127.0.0.1', 0), false],
    ['wildcard and port 0', at('0.0.0.0', 0), at('0.0.0.0', 0), false],
  ]
  for (const [name, a, b, expected] of cases) {
    it(`${name}: ${expected ? 'collide' : 'do not collide'}`, () => {
      assert.equal(listenersCollide(a, b), expected)
      assert.equal(listenersCollide(b, a), expected, 'symmetric')
    })
  }
})
