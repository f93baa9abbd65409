import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkJson, lineColumn, parseJson } from '../../src/config/json.ts'

describe('checkJson', () => {
  const broken: { name: string; text: string; line: number; column: number; reason: string }[] = [
    { name: 'trailing comma in an object', text: '{"a": 1,}', line: 1, column: 8, reason: 'trailing comma (not allowed in JSON)' },
    { name: 'trailing comma in an array', text: '[1, 2,]', line: 1, column: 6, reason: 'trailing comma (not allowed in JSON)' },
    {
      name: 'trailing comma on a later line (CRLF)',
      text: '{\r\n  "a": 1,\r\n}',
      line: 2,
      column: 9,
      reason: 'trailing comma (not allowed in JSON)',
    },
    { name: 'duplicate key', text: '{\n  "a": 1,\n  "a": 2\n}', line: 3, column: 3, reason: 'duplicate key "a"' },
    {
      name: 'duplicate key in a nested object',
      text: '{\n  "x": {\n    "k": 1, "k": 2\n  }\n}',
      line: 3,
      column: 13,
      reason: 'duplicate key "k"',
    },
    { name: 'duplicate key written with an escape', text: '{"a": 1, "\\u0061": 2}', line: 1, column: 10, reason: 'duplicate key "a"' },
    { name: 'unquoted key', text: '{a: 1}', line: 1, column: 2, reason: "unexpected 'a': expected a property name in double quotes" },
    { name: 'unquoted value', text: '{"a": tru}', line: 1, column: 7, reason: "unexpected 't' (strings need double quotes in JSON)" },
    { name: 'missing colon', text: '{"a" 1}', line: 1, column: 6, reason: "unexpected '1': expected ':' after a property name" },
    { name: 'missing comma in an array', text: '[1 2]', line: 1, column: 4, reason: "unexpected '2': expected ',' or ']'" },
    { name: 'leading zero', text: '{"a": 01}', line: 1, column: 8, reason: "unexpected '1': expected ',' or '}'" },
    { name: 'missing value', text: '{"a": [1, {"b": }]}', line: 1, column: 17, reason: "unexpected '}'" },
    { name: 'line break in a string', text: '{"a": "b\nc"}', line: 1, column: 9, reason: 'line break or control character inside a string' },
    { name: 'bad escape', text: '{"a": "\\x"}', line: 1, column: 8, reason: 'invalid escape "\\x" in string' },
    { name: 'bad unicode escape', text: '{"a": "\\u12G4"}', line: 1, column: 8, reason: 'invalid \\u escape in string' },
    { name: 'unterminated string', text: '{\n  "a": "b', line: 2, column: 8, reason: 'unterminated string' },
    { name: 'unclosed object', text: '{\n  "a": 1\n', line: 3, column: 1, reason: "unexpected end of input: expected ',' or '}'" },
    { name: 'text after the document', text: '{"a": 1}\n\n  }', line: 3, column: 3, reason: "unexpected '}' after the end of the document" },
    { name: 'empty document', text: '', line: 1, column: 1, reason: 'unexpected end of input' },
    { name: 'only spaces', text: '  \n ', line: 2, column: 2, reason: 'unexpected end of input' },
  ]
  for (const b of broken) {
    it(`${b.name}: line ${b.line}, column ${b.column}`, () => {
      assert.deepEqual(checkJson(b.text), { line: b.line, column: b.column, reason: b.reason })
    })
  }

  it('accepts valid JSON, including the same key in different objects', () => {
    for (const text of ['{}', '[]', '"x"', '-1.5e+3', 'null', ' {"x": {"a": 1}, "y": {"a": [true, false, null]}} ', '{"a": "\\u0041\\n", "A": 1}']) {
      assert.equal(checkJson(text), undefined, text)
    }
  })
})

describe('parseJson', () => {
  it('returns the value of a valid document', () => {
    assert.deepEqual(parseJson('{"a": [1, "b", null], "c": {"d": true}}'), { ok: true, value: { a: [1, 'b', null], c: { d: true } } })
  })

  it('returns the problem of a broken document instead of the last duplicate', () => {
    assert.deepEqual(parseJson('{"a": 1, "a": 2}'), { ok: false, problem: { line: 1, column: 10, reason: 'duplicate key "a"' } })
  })
})

describe('lineColumn', () => {
  it('counts lines and columns from 1', () => {
    const text = 'ab\ncd\n\nef'
    assert.deepEqual(lineColumn(text, 0), { line: 1, column: 1 })
    assert.deepEqual(lineColumn(text, 1), { line: 1, column: 2 })
    assert.deepEqual(lineColumn(text, 3), { line: 2, column: 1 })
    assert.deepEqual(lineColumn(text, 6), { line: 3, column: 1 })
    assert.deepEqual(lineColumn(text, 8), { line: 4, column: 2 })
  })
})
