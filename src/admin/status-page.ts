/**
 * The status page at the admin root: one self-contained document (no external assets, so it works
 * on an air-gapped host) that polls `/api/services` and redraws. Request rates are derived from the
 * `requests` counters between two polls.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>outrigger</title>
<style>
  :root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .muted { color: var(--muted); }
  section { margin: 1.2rem 0; }
  h2 { font-size: 1.05rem; margin: 0 0 .4rem; }
  .badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; border: 1px solid currentColor; margin-left: .35rem; }
  .ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { text-align: left; padding: .2rem .8rem .2rem 0; border-bottom: 1px solid #8883; font-variant-numeric: tabular-nums; }
  th { font-weight: 600; }
</style>
</head>
<body>
<h1>outrigger</h1>
<div class="muted" id="summary">loading…</div>
<main id="services"></main>
<script>
const previous = new Map()
let previousAt = 0
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]) }
async function refresh() {
  let services
  try {
    const res = await fetch('api/services', { cache: 'no-store' })
    services = await res.json()
  } catch (err) {
    document.getElementById('summary').textContent = 'admin API unreachable: ' + err
    return
  }
  const now = Date.now()
  const dt = previousAt === 0 ? 0 : (now - previousAt) / 1000
  const html = []
  for (const s of services) {
    const healthy = s.endpoints.filter((e) => e.healthy).length
    html.push('<section data-service="' + esc(s.name) + '"><h2>' + esc(s.name) +
      '<span class="badge muted">' + esc(s.strategy) + '</span><span class="badge muted">' + esc(s.source) + '</span>' +
      (s.stale ? '<span class="badge warn">stale ' + Math.round(s.discovery.stalenessSeconds) + 's</span>' : '') +
      (s.panic ? '<span class="badge bad">panic</span>' : '') +
      '<span class="badge ' + (healthy === s.endpoints.length ? 'ok' : 'bad') + '">' + healthy + '/' + s.endpoints.length + ' healthy</span></h2>')
    if (s.discovery.error) html.push('<div class="warn">discovery: ' + esc(s.discovery.error) + '</div>')
    html.push('<table><thead><tr><th>endpoint</th><th>weight</th><th>health</th><th>in flight</th><th>req/s</th><th>requests</th><th>why</th></tr></thead><tbody>')
    for (const e of s.endpoints) {
      const key = s.name + ' ' + e.address + ':' + e.port
      const before = previous.get(key)
      const rate = dt > 0 && before !== undefined ? ((e.requests - before) / dt).toFixed(1) : '–'
      previous.set(key, e.requests)
      html.push('<tr data-endpoint="' + esc(e.address + ':' + e.port) + '"><td>' + esc(e.address + ':' + e.port) + '</td><td>' + e.weight +
        '</td><td class="' + (e.healthy ? 'ok' : 'bad') + '">' + (e.healthy ? 'healthy' : 'unhealthy') + (e.flags.length ? ' (' + esc(e.flags.join(', ')) + ')' : '') +
        '</td><td>' + e.inFlight + '</td><td>' + rate + '</td><td>' + e.requests + '</td><td>' + esc(e.reasons.join('; ')) + '</td></tr>')
    }
    html.push('</tbody></table></section>')
  }
  previousAt = now
  document.getElementById('services').innerHTML = html.join('')
  document.getElementById('summary').textContent = services.length + ' services · updated ' + new Date(now).toLocaleTimeString()
}
refresh()
setInterval(refresh, 2000)
</script>
</body>
</html>
`
