/**
 * Everything under examples/ that cannot run here (no Docker engine, no Kubernetes, no Grafana) is
 * still held to the code: every outrigger config passes the real loader, the Compose and Kubernetes
 * files parse and wire the sidecar as their comments say, and the Grafana dashboard queries only
 * metrics that outrigger really exports.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parse, parseAllDocuments } from 'yaml'
import { ConfigError } from '../../src/config/errors.ts'
import { loadConfigFile, parseConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/types.ts'
import { Metrics } from '../../src/observability/metrics.ts'

const ROOT = path.join(import.meta.dirname, '..', '..')
const EXAMPLES = path.join(ROOT, 'examples')

/** Loads like `outrigger validate`, failing with its messages. */
function valid(load: () => Config): Config {
  try {
    return load()
  } catch (err) {
    assert.fail(err instanceof ConfigError ? `invalid config:\n${err.message}` : String(err))
  }
}

/** Every examples/<dir>/outrigger.{yaml,yml,json}. */
function configFiles(): string[] {
  return readdirSync(EXAMPLES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => ['outrigger.yaml', 'outrigger.yml', 'outrigger.json'].map((f) => path.join(EXAMPLES, d.name, f)))
    .filter((f) => existsSync(f))
}

interface Probe {
  httpGet?: { path?: string; port?: number | string }
}
interface Container {
  name: string
  env?: { name: string; value?: string }[]
  ports?: { name?: string; containerPort: number }[]
  livenessProbe?: Probe
  readinessProbe?: Probe
  startupProbe?: Probe
  volumeMounts?: { name: string; mountPath: string }[]
}
interface K8sObject {
  kind: string
  metadata: { name: string }
  data?: Record<string, string>
  spec?: { template: { spec: { containers: Container[]; initContainers?: (Container & { restartPolicy?: string })[]; volumes?: { name: string; configMap?: { name: string } }[] } } }
}

describe('examples/', () => {
  it('every outrigger config file in examples/ is valid, with its ${VAR:-default}s as they are', () => {
    const files = configFiles()
    for (const dir of ['quickstart', 'consul', 'etcd', 'compose']) assert.ok(files.some((f) => f.includes(`${path.sep}${dir}${path.sep}`)), `examples/${dir} has a config`)
    for (const file of files) {
      const config = valid(() => loadConfigFile(file, {}))
      assert.ok(config.services.length > 0, file)
    }
  })

  it('compose: outrigger shares the app network namespace, and gets the config file the compose file mounts', () => {
    const dir = path.join(EXAMPLES, 'compose')
    const compose = parse(readFileSync(path.join(dir, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { build?: { context: string }; network_mode?: string; environment?: Record<string, string>; volumes?: string[]; ports?: string[] }>
    }
    const sidecar = compose.services.outrigger
    assert.ok(sidecar !== undefined)
    assert.equal(sidecar.network_mode, 'service:app')
    assert.ok(compose.services.app !== undefined && compose.services.consul !== undefined && compose.services.backend !== undefined)
    assert.ok(existsSync(path.join(dir, sidecar.build!.context, 'Dockerfile')), 'build context is the repository')
    const target = sidecar.environment?.OUTRIGGER_CONFIG
    const mount = sidecar.volumes?.map((v) => v.split(':')).find((v) => v[1] === target)
    assert.ok(mount !== undefined, `a volume mounts ${target}`)
    const config = valid(() => loadConfigFile(path.join(dir, mount[0]!), { CONSUL_HTTP_ADDR: sidecar.environment?.CONSUL_HTTP_ADDR }))
    // The sidecar has no ports of its own: what of it is published, the app publishes.
    assert.ok(compose.services.app.ports?.some((p) => p.endsWith(`:${config.admin.port}`)), 'the app publishes the admin port')
    // Every file mounted into a container exists.
    for (const s of Object.values(compose.services)) for (const v of s.volumes ?? []) if (v.startsWith('./')) assert.ok(existsSync(path.join(dir, v.split(':')[0]!)), v)
  })

  it('kubernetes: the ConfigMap holds a valid config, and the sidecar is probed on /healthz and /readyz at an admin the kubelet can reach', () => {
    const docs = parseAllDocuments(readFileSync(path.join(EXAMPLES, 'kubernetes', 'outrigger-sidecar.yaml'), 'utf8'))
    for (const d of docs) assert.deepEqual(d.errors, [])
    const objects = docs.map((d) => d.toJS() as K8sObject)
    const deployment = objects.find((o) => o.kind === 'Deployment')
    assert.ok(deployment?.spec !== undefined)
    const pod = deployment.spec.template.spec
    const sidecar = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === 'outrigger')
    assert.ok(sidecar !== undefined, 'an outrigger container')
    const asInit = pod.initContainers?.find((c) => c.name === 'outrigger')
    if (asInit !== undefined) assert.equal(asInit.restartPolicy, 'Always', 'a sidecar among initContainers needs restartPolicy Always, or it blocks the app')

    // The config comes from the ConfigMap mounted at OUTRIGGER_CONFIG's folder, under its file name.
    const configPath = sidecar.env?.find((e) => e.name === 'OUTRIGGER_CONFIG')?.value
    assert.ok(configPath !== undefined)
    const mount = sidecar.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(configPath))
    const volume = pod.volumes?.find((v) => v.name === mount?.name)
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name)
    const text = configMap?.data?.[path.posix.basename(configPath)]
    assert.ok(text !== undefined, `a ConfigMap key ${path.posix.basename(configPath)} mounted at ${configPath}`)
    const config = valid(() => parseConfig(text, { format: 'yaml', baseDir: '/etc/outrigger', env: { HOST_IP: '10.1.0.1', POD_IP: '10.2.0.7' } }))

    // The kubelet probes the pod IP, never the container's loopback.
    assert.ok(!['127.0.0.1', '::1', 'localhost'].includes(config.admin.host), `admin ${config.admin.host} is loopback: every probe would fail`)
    const adminPort = (p: Probe | undefined): number | undefined => {
      const port = p?.httpGet?.port
      return typeof port === 'number' ? port : sidecar.ports?.find((x) => x.name === port)?.containerPort
    }
    assert.equal(sidecar.livenessProbe?.httpGet?.path, '/healthz')
    assert.equal(sidecar.readinessProbe?.httpGet?.path, '/readyz')
    for (const probe of [sidecar.livenessProbe, sidecar.readinessProbe, sidecar.startupProbe].filter((p) => p !== undefined)) assert.equal(adminPort(probe), config.admin.port)
    assert.equal(config.register?.address, '10.2.0.7', 'registers the pod IP')
  })

  it('grafana: the dashboard queries only metrics outrigger exports, and covers those of the contract', () => {
    const dashboard = JSON.parse(readFileSync(path.join(EXAMPLES, 'grafana', 'outrigger-dashboard.json'), 'utf8')) as { uid: string; panels: { type: string; targets?: { expr: string }[] }[] }
    assert.equal(typeof dashboard.uid, 'string')
    const exported = new Set(new Metrics().registry.getMetricsAsArray().flatMap((m) =>
      String(m.type) === 'histogram' ? [m.name, `${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name]))
    const used = new Set<string>()
    for (const panel of dashboard.panels) {
      if (panel.type === 'row') continue
      assert.ok((panel.targets ?? []).length > 0, 'every panel has a query')
      for (const t of panel.targets ?? []) for (const m of t.expr.matchAll(/\boutrigger_[a-z_]+/g)) used.add(m[0])
    }
    const unknown = [...used].filter((n) => !exported.has(n))
    assert.deepEqual(unknown, [], 'metrics outrigger does not export')
    for (const n of ['outrigger_requests_total', 'outrigger_request_duration_seconds_bucket', 'outrigger_upstream_attempts_total', 'outrigger_retries_total',
      'outrigger_endpoints', 'outrigger_discovery_staleness_seconds', 'outrigger_in_flight_requests']) {
      assert.ok(used.has(n), `the dashboard shows ${n}`)
    }
  })
})
