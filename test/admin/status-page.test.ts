import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { STATUS_PAGE_HEADERS, STATUS_PAGE_HTML } from '../../src/admin/status-page.ts'

function inline(tag: string): string[] {
  return [...STATUS_PAGE_HTML.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]!)
}

function hashSource(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`
}

describe('status page', () => {
  const csp = STATUS_PAGE_HEADERS['content-security-policy'] ?? ''
  const directive = (name: string): string[] => csp.split('; ').find((d) => d.startsWith(`${name} `))?.split(' ').slice(1) ?? []

  it('allows exactly its own inline script and style by hash, and fetches only from its origin', () => {
    const scripts = inline('script')
    const styles = inline('style')
    assert.equal(scripts.length, 1)
    assert.equal(styles.length, 1)
    assert.deepEqual(directive('script-src'), [hashSource(scripts[0]!)])
    assert.deepEqual(directive('style-src'), [hashSource(styles[0]!)])
    assert.deepEqual(directive('default-src'), ["'none'"])
    assert.deepEqual(directive('connect-src'), ["'self'"])
    assert.deepEqual(directive('frame-ancestors'), ["'none'"])
  })

  it('loads nothing from elsewhere and never parses data as HTML', () => {
    assert.doesNotMatch(STATUS_PAGE_HTML, /\b(src|href)="(https?:)?\/\//)
    assert.doesNotMatch(STATUS_PAGE_HTML, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/)
    assert.match(STATUS_PAGE_HTML, /fetch\('api\/services'/)
  })
})
