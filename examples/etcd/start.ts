/**
 * `npm run example:etcd`: a real single-member etcd (loopback, free ports), three demo "hello"
 * instances put under /services/hello/ with weights 1, 1 and 2, and outrigger following etcd beside
 * them, run from source exactly as `outrigger run -c examples/etcd/outrigger.yaml` would run it.
 * Prints what to try; Ctrl-C stops everything.
 *
 * The etcd binary is the one the integration tests use: `etcd` on PATH, ETCD_BIN, or Debian's
 * package fetched once into .cache/registries/ by integration/registries/fetch.sh.
 */
import path from 'node:path'
import { freeAddress, runBeside, startInstances, startRegistry } from '../demo.ts'

const config = path.join(import.meta.dirname, 'outrigger.yaml')
const listen = process.env.OUTRIGGER_LISTEN ?? (await freeAddress('127.0.0.1:15001'))
const admin = process.env.OUTRIGGER_ADMIN ?? (await freeAddress('127.0.0.1:9901'))
const PREFIX = '/services/'

process.stderr.write('starting a local etcd...\n')
const etcd = await startRegistry('etcd')
const instances = await startInstances(['hello-1', 'hello-2', 'hello-3'])
const b64 = (s: string): string => Buffer.from(s).toString('base64')

// One key per instance, valued as the etcd source reads it. A real instance would put its key on a
// lease it keeps alive (outrigger's own `register: { source: etcd }` does), so the key goes away when
// the instance dies; this throwaway etcd is removed on exit anyway. The v3 JSON gateway is used so
// the commands printed below are plain curl.
for (const [n, i] of instances.entries()) {
  const value = JSON.stringify({ address: '127.0.0.1', port: i.port, weight: n === 2 ? 2 : 1, meta: { instance: i.name } })
  const res = await fetch(`${etcd.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64(`${PREFIX}hello/${i.name}`), value: b64(value) }) })
  if (!res.ok) throw new Error(`putting ${i.name} in etcd: HTTP ${res.status} ${await res.text()}`)
}

await runBeside(config, { ...process.env, ETCD_ENDPOINT: etcd.url, OUTRIGGER_LISTEN: listen, OUTRIGGER_ADMIN: admin }, admin, instances, etcd, () => {
  const ports = instances.map((i) => i.port).join(', ')
  return [
    `etcd is at ${etcd.url}, with three "hello" instances under ${PREFIX}hello/ (127.0.0.1 ports ${ports}; weights 1, 1, 2),`,
    `and outrigger follows it: listener ${listen}, admin ${admin}.`,
    'Try:',
    `  for i in 1 2 3 4; do curl -s -H 'Host: hello' http://${listen}/; done   # weighted: hello-3 answers twice`,
    `  curl http://${listen}/hello/world               # path route, prefix stripped`,
    `  curl http://${admin}/api/services               # endpoints, weights, health, in-flight`,
    `  curl http://${admin}/metrics                    # Prometheus`,
    'Delete an instance\'s key and watch outrigger stop sending to it (no restart, no reload):',
    `  curl -X POST ${etcd.url}/v3/kv/deleterange -d '{"key":"${b64(`${PREFIX}hello/hello-2`)}"}'   # ${PREFIX}hello/hello-2`,
    `  npm run outrigger -- status --admin ${admin}`,
  ]
})
