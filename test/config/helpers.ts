import assert from 'node:assert/strict'
import { ConfigError } from '../../src/config/errors.ts'
import type { ConfigIssue } from '../../src/config/errors.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ConfigFormat } from '../../src/config/load.ts'
import type { Config } from '../../src/config/types.ts'

/** Base folder used by the tests that parse text (relative paths resolve against it). */
export const BASE_DIR = '/etc/outrigger'

/** Parses config text with an explicit (by default empty) environment, never process.env. */
export function parse(text: string, opts: { format?: ConfigFormat; env?: NodeJS.ProcessEnv; file?: string } = {}): Config {
  return parseConfig(text, { format: opts.format ?? 'yaml', baseDir: BASE_DIR, env: opts.env ?? {}, file: opts.file })
}

/** The issues of the ConfigError thrown by `fn`; fails the test when nothing or something else is thrown. */
export function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err.issues
  }
  assert.fail('expected a ConfigError, but nothing was thrown')
}

/** The single issue of the ConfigError thrown by `fn`; fails when there are none or several. */
export function onlyIssueOf(fn: () => unknown): ConfigIssue {
  const issues = issuesOf(fn)
  assert.equal(issues.length, 1, `expected exactly one issue, got:\n${JSON.stringify(issues, null, 2)}`)
  const [issue] = issues
  assert.ok(issue !== undefined)
  return issue
}
