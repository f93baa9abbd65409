import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { Agent } from 'undici'
import { STATUS_PAGE_HEADERS, STATUS_PAGE_HTML } from '../src/admin/status-page.ts'
import type { RunningSidecar, Upstream } from './helpers.ts'
import { echoHandler, send, startSidecar, startUpstream, waitFor } from './helpers.ts'
import { launchChromium } from './browser/chromium.ts'

const OUTPUT_DIR = path.join(import.meta.dirname, '.output')
const PAGE_DEADLINE_MS = 20_000

/** An upstream whose `/health` answers 503 while `sick` is set. */
async function checkedUpstream(name: string): Promise<Upstream & { sick: boolean }> {
  const up = (await startUpstream(name, (req, res, u) => {
    if (req.url === '/health') {
      res.writeHead((u as Upstream & { sick: boolean }).sick ? 503 : 200, { 'content-length': '0' })
      res.end()
      return
    }
    echoHandler(req, res, u)
  })) as Upstream & { sick: boolean }
  up.sick = false
  return up
}

/** Problems the page itself reports: script errors, CSP violations, failed loads. */
function watchProblems(page: Page): string[] {
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`)
  })
  return problems
}

describe('status page in a real headless Chromium', () => {
  let browser: Browser
  const cleanup: Array<() => Promise<void>> = []
  before(async () => {
    browser = await launchChromium()
  })
  after(async () => {
    for (const c of cleanup.reverse()) await c()
    await browser?.close()
  })

  it('shows services and endpoints, live rates, and an endpoint turning unhealthy with its reason, without reloading', async (t) => {
    const a = await checkedUpstream('a')
    const b = await checkedUpstream('b')
    const c = await startUpstream('c')
    cleanup.push(() => a.close(), () => b.close(), () => c.close())
    const sc: RunningSidecar = await startSidecar({
      services: {
        api: {
          source: 'static',
          strategy: 'least-connections',
          endpoints: [a.address, { address: '127.0.0.1', port: b.port, weight: 3 }],
          healthCheck: { active: { type: 'http', path: '/health', interval: '1s', timeout: '900ms', healthyThreshold: 1, unhealthyThreshold: 1 }, panicThreshold: 0 },
        },
        web: {
          source: 'static',
          strategy: 'weighted',
          endpoints: [c.address],
          circuitBreaker: { maxRequests: 100, maxPending: 10 },
          rateLimit: { requestsPerSecond: 100_000, burst: 1000 },
          cache: { maxEntries: 100, maxBytes: '1MiB' },
        },
      },
    })
    cleanup.push(() => sc.stop())
    const agent = new Agent()
    cleanup.push(() => agent.close())

    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } })
    const problems = watchProblems(page)
    let navigations = 0
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations++
    })
    const response = await page.goto(`${sc.adminUrl}/`)
    assert.equal(response?.status(), 200)
    assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'sha256-/)

    const api = page.locator('section[data-service="api"]')
    const web = page.locator('section[data-service="web"]')
    await api.waitFor({ timeout: PAGE_DEADLINE_MS })
    assert.equal(await api.locator('h2').textContent(), 'api')
    assert.match((await api.locator('.head').textContent()) ?? '', /2\/2 healthy.*least-connections.*static/)
    assert.match((await web.locator('.head').textContent()) ?? '', /1\/1 healthy.*weighted/)
    assert.match((await web.locator('[data-policies]').textContent()) ?? '', /^circuit breaker: \d+\/100 in flight, 0\/10 waiting, 0 refused · rate limit: \d+\/1000 tokens at 100000\/s, 0 refused · cache: 0 entries, 0\.0 MiB, 0% hits$/)
    assert.equal(await api.locator('[data-policies]').count(), 0)
    const rowB = api.locator(`tr[data-endpoint="${b.address}"]`)
    assert.equal(await rowB.locator('td').nth(1).textContent(), '3')
    assert.equal(await rowB.locator('[data-health]').getAttribute('data-health'), 'healthy')
    assert.equal(await web.locator(`tr[data-endpoint="${c.address}"] [data-health]`).getAttribute('data-health'), 'healthy')

    // Live request rates: traffic to both services while the page polls, until web's rate column shows it.
    const rateCell = web.locator(`tr[data-endpoint="${c.address}"] td`).nth(5)
    let sending = true
    let trafficError: unknown = null
    const traffic = (async () => {
      for (let i = 0; sending; i++) await send(agent, `${sc.url}/`, { headers: { host: i % 2 === 0 ? 'web' : 'api' } })
    })().catch((err: unknown) => {
      trafficError = err
    })
    cleanup.push(async () => {
      sending = false
      await traffic
    })
    await waitFor('a request rate above 0 for web on the page', async () => Number(await rateCell.textContent()) > 0, PAGE_DEADLINE_MS)

    // One upstream fails its health check: the open page turns its row unhealthy, with the reason.
    const marker = await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = Math.random()))
    b.sick = true
    await waitFor(
      'the page to show b unhealthy',
      async () => (await rowB.locator('[data-health]').getAttribute('data-health')) === 'unhealthy',
      PAGE_DEADLINE_MS,
    )
    assert.match((await rowB.locator('td.why').textContent()) ?? '', /failed check.*\(HTTP 503\) since \d\d:\d\d:\d\d/)
    assert.match((await rowB.locator('td').nth(3).textContent()) ?? '', /failed_active_check/)
    assert.match((await api.locator('.head').textContent()) ?? '', /1\/2 healthy/)
    assert.equal(await api.getAttribute('class'), 'degraded')
    assert.equal(await page.evaluate(() => (globalThis as unknown as { marker: number }).marker), marker, 'the page was reloaded')
    assert.equal(navigations, 1)

    mkdirSync(OUTPUT_DIR, { recursive: true })
    const shot = path.join(OUTPUT_DIR, 'status-page.png')
    await page.screenshot({ path: shot, fullPage: true })
    t.diagnostic(`screenshot: ${shot}`)
    assert.deepEqual(problems, [])
    assert.equal(trafficError, null)
    await page.close()
  })

  it('puts hostile names, addresses and reasons on the page as text, and says when the admin API is gone', async (t) => {
    const hostile = '<img src=x onerror="globalThis.pwned=1">'
    const services = [
      {
        name: `svc${hostile}`,
        source: 'etcd',
        strategy: `round-robin${hostile}`,
        stale: true,
        panic: false,
        discovery: { lastUpdate: new Date().toISOString(), error: `etcd said ${hostile}`, stalenessSeconds: 4 },
        endpoints: [{ address: `10.0.0.1${hostile}`, port: 80, weight: 1, healthy: false, flags: [`ejected${hostile}`], inFlight: 0, requests: 5, reasons: [`reason ${hostile}`] }],
      },
    ]
    // The real page and its JSON, served without the CSP header: escaping alone must hold.
    const headers = { ...STATUS_PAGE_HEADERS }
    delete (headers as Record<string, string>)['content-security-policy']
    const fake = http.createServer((req, res) => {
      if (req.url === '/') res.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8' }).end(STATUS_PAGE_HTML)
      else if (req.url === '/api/services') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(services))
      else res.writeHead(404).end()
    })
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve))
    let closed = false
    const close = (): Promise<void> =>
      closed
        ? Promise.resolve()
        : new Promise((resolve) => {
            closed = true
            fake.close(() => resolve())
            fake.closeAllConnections()
          })
    cleanup.push(close)

    const page = await browser.newPage()
    const problems = watchProblems(page)
    await page.goto(`http://127.0.0.1:${(fake.address() as AddressInfo).port}/`)
    const section = page.locator('section').first()
    await section.waitFor({ timeout: PAGE_DEADLINE_MS })
    const text = (await section.textContent()) ?? ''
    for (const expected of [`svc${hostile}`, `round-robin${hostile}`, `etcd said ${hostile}`, `10.0.0.1${hostile}:80`, `ejected${hostile}`, `reason ${hostile}`]) {
      assert.ok(text.includes(expected), `page text lacks ${expected}: ${text}`)
    }
    assert.equal(await page.locator('img').count(), 0)
    assert.equal(await page.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned), undefined)
    assert.match(text, /0\/1 healthy/)
    assert.match(text, /stale 4s/)
    assert.deepEqual(problems, [])

    // The admin API goes away: a banner says so and the last data stays.
    await close()
    const banner = page.locator('#banner')
    await waitFor('the unreachable banner', async () => (await banner.getAttribute('class')) === 'on', PAGE_DEADLINE_MS)
    assert.match((await banner.textContent()) ?? '', /^Cannot read \/api\/services .*; showing data from /)
    assert.equal(await page.locator('section').count(), 1)
    t.diagnostic('hostile strings rendered as text; banner shown when the admin API went away')
    await page.close()
  })
})
