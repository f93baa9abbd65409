import { createHash } from 'node:crypto'

/**
 * The status page at the admin root: one self-contained document (no external assets, so it works
 * on an air-gapped host), built once at module load and served as is. It polls `/api/services`
 * about once a second and redraws in place, without reloading.
 *
 * Request rates are computed in the page from the `requests` counters of two successive polls
 * (delta over the time between them): the sidecar keeps no per-endpoint rate state and pays
 * nothing while nobody looks, each viewer gets the rate over its own interval, and the API stays
 * the contract's plain counters. A counter that went down (an endpoint that left and came back is
 * a new host) shows no rate for that interval rather than a negative one.
 *
 * Everything from config or registries is put into the page with `textContent` and
 * `setAttribute`, never parsed as HTML, so a service name, address, reason or discovery error
 * cannot inject markup. As a second line of defence the page is served with a Content-Security-Policy
 * that allows only this script and this style (by hash) and fetches to its own origin.
 */

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781;
  --ok-bg: #1a7f3718; --bad-bg: #cf222e14; --warn-bg: #9a670018; --line: #8884; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.25rem 1.5rem; }
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.35rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 0; }
.muted { color: var(--muted); }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
#banner { display: none; margin: .8rem 0; padding: .45rem .7rem; border-radius: .4rem; background: var(--bad-bg); color: var(--bad); font-weight: 600; }
#banner.on { display: block; }
section { margin: 1rem 0 1.4rem; padding: .7rem .9rem .8rem; border: 1px solid var(--line); border-left: .35rem solid var(--ok); border-radius: .4rem; }
section.degraded { border-left-color: var(--warn); }
section.down { border-left-color: var(--bad); }
.head { display: flex; align-items: center; gap: .45rem; flex-wrap: wrap; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .7rem; font-size: .8rem; border: 1px solid currentColor; white-space: nowrap; }
.badge.ok { background: var(--ok-bg); } .badge.bad { background: var(--bad-bg); } .badge.warn { background: var(--warn-bg); }
.count { font-weight: 600; }
.discovery { margin: .3rem 0 .5rem; font-size: .9rem; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th:nth-child(1) { width: 12rem; } th:nth-child(2) { width: 4.5rem; } th:nth-child(3) { width: 7.5rem; } th:nth-child(4) { width: 10rem; }
th:nth-child(5), th:nth-child(6) { width: 5.5rem; } th:nth-child(7) { width: 6.5rem; }
td { overflow-wrap: anywhere; }
th, td { text-align: left; padding: .22rem .9rem .22rem 0; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; vertical-align: top; }
th { white-space: nowrap; font-weight: 600; font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num, th.num { text-align: right; }
tr.unhealthy td { background: var(--bad-bg); }
.dot { display: inline-block; width: .6rem; height: .6rem; border-radius: 50%; margin-right: .35rem; background: currentColor; }
.flag { display: inline-block; margin: 0 .25rem .1rem 0; padding: 0 .4rem; border-radius: .3rem; font-size: .8rem; background: var(--warn-bg); color: var(--warn); }
.why { max-width: 32rem; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace; }
`

const SCRIPT = `
'use strict'
const POLL_MS = 1000
const previous = new Map()
let previousAt = 0
let lastOk = 0
let timer = 0

function el(tag, cls, text) {
  const node = document.createElement(tag)
  if (cls) node.className = cls
  if (text !== undefined && text !== null) node.textContent = String(text)
  return node
}
function badge(cls, text) { return el('span', 'badge ' + cls, text) }
function hostPort(e) { return String(e.address).includes(':') ? '[' + e.address + ']:' + e.port : e.address + ':' + e.port }
function ago(iso, now) {
  if (!iso) return null
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  return s < 60 ? s + 's ago' : s < 3600 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago'
}
function fmtRate(r) { return r === null ? '–' : r >= 100 ? r.toFixed(0) : r.toFixed(1) }

function rateOf(key, requests, t) {
  const before = previous.get(key)
  previous.set(key, { requests: requests, t: t })
  if (before === undefined || t <= before.t || requests < before.requests) return null
  return (requests - before.requests) / ((t - before.t) / 1000)
}

function render(services, t) {
  const now = Date.now()
  const seen = new Set()
  const sections = []
  let healthyAll = 0, totalAll = 0, rateAll = 0
  for (const s of services) {
    const eps = s.endpoints || []
    let healthy = 0, rate = 0, inFlight = 0
    for (const e of eps) if (e.healthy) healthy++
    healthyAll += healthy
    totalAll += eps.length
    const state = eps.length > 0 && healthy === eps.length ? 'ok' : healthy > 0 ? 'degraded' : 'down'
    const section = el('section', state === 'ok' ? '' : state)
    section.setAttribute('data-service', s.name)

    const head = el('div', 'head')
    head.append(el('h2', '', s.name))
    head.append(badge(state === 'ok' ? 'ok count' : state === 'degraded' ? 'warn count' : 'bad count', healthy + '/' + eps.length + ' healthy'))
    head.append(badge('muted', s.strategy), badge('muted', s.source))
    if (s.stale) head.append(badge('warn', 'stale ' + Math.round(s.discovery.stalenessSeconds) + 's'))
    if (s.panic) head.append(badge('bad', 'panic: routing to all'))
    section.append(head)

    const disc = el('div', 'discovery muted')
    const since = ago(s.discovery.lastUpdate, now)
    disc.textContent = since === null ? 'discovery: waiting for the first result' : 'discovery: last update ' + since
    if (s.discovery.error) {
      const err = el('span', 'bad', ' · last error: ' + s.discovery.error)
      err.setAttribute('data-discovery-error', '')
      disc.append(err)
    }
    section.append(disc)

    // Traffic policies, when configured: breaker slots, limiter tokens, cache size and hit rate.
    const pol = s.policies || {}
    const parts = []
    if (pol.circuitBreaker) {
      const b = pol.circuitBreaker
      parts.push([b.open ? 'bad' : '', 'circuit breaker: ' + b.inFlight + '/' + b.maxRequests + ' in flight, ' + b.pending + '/' + b.maxPending + ' waiting, ' + b.rejected + ' refused' + (b.open ? ' (open)' : '')])
    }
    if (pol.rateLimit) {
      const r = pol.rateLimit
      parts.push([r.tokens < 1 ? 'warn' : '', 'rate limit: ' + Math.floor(r.tokens) + '/' + r.burst + ' tokens at ' + r.requestsPerSecond + '/s, ' + r.rejected + ' refused'])
    }
    if (s.cache) {
      const c = s.cache
      parts.push(['', 'cache: ' + c.entries + ' entries, ' + (c.bytes / 1048576).toFixed(1) + ' MiB, ' + Math.round(c.hitRate * 100) + '% hits'])
    }
    if (parts.length > 0) {
      const line = el('div', 'discovery muted')
      line.setAttribute('data-policies', '')
      parts.forEach(function (p, i) { line.append(el('span', p[0], (i > 0 ? ' · ' : '') + p[1])) })
      section.append(line)
    }

    const table = el('table')
    const hrow = el('tr')
    for (const [name, cls] of [['endpoint'], ['weight', 'num'], ['health'], ['flags'], ['in flight', 'num'], ['req/s', 'num'], ['requests', 'num'], ['why']]) hrow.append(el('th', cls, name))
    const thead = el('thead')
    thead.append(hrow)
    table.append(thead)
    const body = el('tbody')
    for (const e of eps) {
      const key = s.name + ' ' + hostPort(e)
      seen.add(key)
      const r = rateOf(key, e.requests, t)
      if (r !== null) rate += r
      inFlight += e.inFlight
      const row = el('tr', e.healthy ? 'healthy' : 'unhealthy')
      row.setAttribute('data-endpoint', hostPort(e))
      row.append(el('td', '', hostPort(e)), el('td', 'num', e.weight))
      const health = el('td', e.healthy ? 'ok' : 'bad')
      health.setAttribute('data-health', e.healthy ? 'healthy' : 'unhealthy')
      health.append(el('span', 'dot'), e.healthy ? 'healthy' : 'unhealthy')
      const flags = el('td')
      for (const f of e.flags) flags.append(el('span', 'flag', f))
      row.append(health, flags, el('td', 'num', e.inFlight), el('td', 'num', fmtRate(r)), el('td', 'num', e.requests), el('td', 'why', e.reasons.join('; ')))
      body.append(row)
    }
    if (eps.length === 0) {
      const row = el('tr')
      const cell = el('td', 'muted', s.discovery.lastUpdate === null ? 'no endpoints yet' : 'no endpoints')
      cell.colSpan = 8
      body.append(row)
      row.append(cell)
    }
    table.append(body)
    section.append(table)
    rateAll += rate
    head.append(el('span', 'muted', inFlight + ' in flight · ' + fmtRate(previousAt === 0 ? null : rate) + ' req/s'))
    sections.push(section)
  }
  for (const key of previous.keys()) if (!seen.has(key)) previous.delete(key)
  document.getElementById('services').replaceChildren(...sections)
  const summary = document.getElementById('summary')
  summary.className = healthyAll === totalAll ? 'ok' : 'bad'
  summary.textContent = services.length + (services.length === 1 ? ' service · ' : ' services · ') + healthyAll + '/' + totalAll + ' endpoints healthy · ' + fmtRate(previousAt === 0 ? null : rateAll) + ' req/s'
  previousAt = t
}

async function poll() {
  timer = 0
  try {
    const res = await fetch('api/services', { cache: 'no-store' })
    if (!res.ok) throw new Error('HTTP ' + res.status)
    const services = await res.json()
    render(services, performance.now())
    lastOk = Date.now()
    document.getElementById('banner').className = ''
    document.getElementById('updated').textContent = 'updated ' + new Date(lastOk).toLocaleTimeString([], { hour12: false })
  } catch (err) {
    const banner = document.getElementById('banner')
    banner.className = 'on'
    banner.textContent = 'Cannot read /api/services (' + (err && err.message ? err.message : err) + ')' +
      (lastOk ? '; showing data from ' + new Date(lastOk).toLocaleTimeString([], { hour12: false }) : '')
  }
  if (!document.hidden) timer = setTimeout(poll, POLL_MS)
}
document.addEventListener('visibilitychange', () => { if (!document.hidden && timer === 0) poll() })
poll()
`

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`
}

/** The page, built once. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>outrigger</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header><h1>outrigger</h1><span id="summary" class="muted">loading…</span><span id="updated" class="muted"></span></header>
<div id="banner" role="alert"></div>
<main id="services"></main>
<script>${SCRIPT}</script>
</body>
</html>
`

/** Headers for the page: nothing but its own script and style may run, and only same-origin fetches. */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}
