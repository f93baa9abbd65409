/** A hand-written SVG bar chart of the comparison: requests per second and CPU µs per request. */

export interface ChartRow {
  label: string
  rps: number
  cpuUsPerReq: number
}
export interface ChartGroup {
  scenario: string
  rows: readonly ChartRow[]
}

const COLOURS: Record<string, string> = {
  direct: '#9e9e9e',
  outrigger: '#1f77b4',
  haproxy: '#2ca02c',
  nginx: '#17becf',
  fastify: '#ff7f0e',
  'http-proxy': '#d62728',
}

function colour(label: string): string {
  return COLOURS[label.split('/')[0]!] ?? '#8c564b'
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return '–'
  if (n >= 10_000) return `${(n / 1000).toFixed(0)}k`
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`
  return n >= 100 ? n.toFixed(0) : n.toFixed(1)
}

/** One horizontal-bar panel per metric, a block of bars per scenario. */
export function renderChart(title: string, groups: readonly ChartGroup[]): string {
  const BAR = 14
  const GAP = 4
  const GROUP_GAP = 22
  const LABEL_W = 190
  const PANEL_W = 360
  const PAD = 16
  const panels: { key: 'rps' | 'cpuUsPerReq'; title: string }[] = [
    { key: 'rps', title: 'requests per second (higher is better)' },
    { key: 'cpuUsPerReq', title: 'CPU µs per request of the proxy process (lower is better)' },
  ]
  let height = 56
  for (const g of groups) height += 18 + g.rows.length * (BAR + GAP) + GROUP_GAP
  const width = PAD + LABEL_W + panels.length * (PANEL_W + 80) + PAD
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${PAD}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ]
  panels.forEach((p, pi) => {
    const x0 = PAD + LABEL_W + pi * (PANEL_W + 80)
    out.push(`<text x="${x0}" y="42" font-weight="bold">${esc(p.title)}</text>`)
  })
  let y = 56
  for (const g of groups) {
    out.push(`<text x="${PAD}" y="${y + 12}" font-weight="bold">${esc(g.scenario)}</text>`)
    y += 18
    // `direct` (no proxy) is far off the proxies' scale: the bars scale to the proxies, and a bar
    // longer than the panel is cut and marked.
    const scaled = g.rows.some((r) => r.label !== 'direct') ? g.rows.filter((r) => r.label !== 'direct') : g.rows
    const max = panels.map((p) => Math.max(1e-9, ...scaled.map((r) => (Number.isFinite(r[p.key]) ? r[p.key] : 0))))
    for (const r of g.rows) {
      out.push(`<text x="${PAD + LABEL_W - 6}" y="${y + BAR - 3}" text-anchor="end">${esc(r.label)}</text>`)
      panels.forEach((p, pi) => {
        const x0 = PAD + LABEL_W + pi * (PANEL_W + 80)
        const v = r[p.key]
        const full = Number.isFinite(v) ? Math.max(1, (v / max[pi]!) * PANEL_W) : 0
        const w = Math.min(full, PANEL_W)
        out.push(`<rect x="${x0}" y="${y}" width="${w.toFixed(1)}" height="${BAR}" fill="${colour(r.label)}"/>`)
        if (full > PANEL_W) out.push(`<path d="M${x0 + w - 8} ${y} l4 ${BAR / 2} -4 ${BAR / 2} M${x0 + w - 4} ${y} l4 ${BAR / 2} -4 ${BAR / 2}" stroke="#fff" stroke-width="2" fill="none"/>`)
        out.push(`<text x="${(x0 + w + 4).toFixed(1)}" y="${y + BAR - 3}">${fmt(v)}</text>`)
      })
      y += BAR + GAP
    }
    y += GROUP_GAP
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
