import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { consulEndpoints } from '../../src/discovery/consul.ts'

describe('consulEndpoints', () => {
  it('takes Service.Address, else Node.Address; weight from Meta.weight, else Weights.Passing, else 1; sorted', () => {
    const got = consulEndpoints([
      { Node: { Address: '10.0.0.9' }, Service: { Address: '', Port: 8080, Weights: { Passing: 3 }, Meta: null } },
      { Node: { Address: '10.0.0.1' }, Service: { Address: '10.0.0.5', Port: 80, Weights: { Passing: 3 }, Meta: { weight: '7', zone: 'a' } } },
      { Node: { Address: '10.0.0.2' }, Service: { Address: '10.0.0.5', Port: 79 } },
    ])
    assert.deepEqual(got, [
      { address: '10.0.0.5', port: 79, weight: 1, meta: {} },
      { address: '10.0.0.5', port: 80, weight: 7, meta: { weight: '7', zone: 'a' } },
      { address: '10.0.0.9', port: 8080, weight: 3, meta: {} },
    ])
  })

  it('ignores a Meta.weight that is not a positive integer, and skips entries without address or port', () => {
    const got = consulEndpoints([
      { Service: { Address: '10.0.0.5', Port: 80, Weights: { Passing: 2 }, Meta: { weight: 'heavy' } } },
      { Service: { Address: '10.0.0.6', Port: 80, Meta: { weight: '0' } } },
      { Service: { Port: 80 } },
      { Service: { Address: '10.0.0.7' } },
      { Service: { Address: '10.0.0.8', Port: 70000 } },
    ])
    assert.deepEqual(got.map((e) => [e.address, e.weight]), [['10.0.0.5', 2], ['10.0.0.6', 1]])
  })
})
