/**
 * `npm run example:consul`: a real Consul agent (dev mode, loopback, free ports), three demo "hello"
 * instances registered in it with an HTTP health check, and outrigger following Consul beside them,
 * run from source exactly as `outrigger run -c examples/consul/outrigger.yaml` would run it. Prints
 * what to try; Ctrl-C stops everything.
 *
 * The Consul binary is the one the integration tests use: `consul` on PATH, CONSUL_BIN, or Debian's
 * package fetched once into .cache/registries/ by integration/registries/fetch.sh.
 */
import path from 'node:path'
import { freeAddress, runBeside, startInstances, startRegistry } from '../demo.ts'

const config = path.join(import.meta.dirname, 'outrigger.yaml')
const listen = process.env.OUTRIGGER_LISTEN ?? (await freeAddress('127.0.0.1:15001'))
const admin = process.env.OUTRIGGER_ADMIN ?? (await freeAddress('127.0.0.1:9901'))

process.stderr.write('starting a local Consul agent (dev mode)...\n')
const consul = await startRegistry('consul')
const instances = await startInstances(['hello-1', 'hello-2', 'hello-3'])

// What a deployment tool (or the app's own outrigger, with `register:`) would do for each instance:
// an agent service with an HTTP check. Consul answers outrigger's `?passing=true` query with the
// instance once its check has passed.
for (const i of instances) {
  const res = await fetch(`${consul.url}/v1/agent/service/register`, {
    method: 'PUT',
    body: JSON.stringify({
      ID: i.name,
      Name: 'hello',
      Address: '127.0.0.1',
      Port: i.port,
      Tags: ['demo'],
      Check: { HTTP: `http://127.0.0.1:${i.port}/health`, Interval: '1s', Timeout: '1s', DeregisterCriticalServiceAfter: '1m' },
    }),
  })
  if (!res.ok) throw new Error(`registering ${i.name} in Consul: HTTP ${res.status} ${await res.text()}`)
}

await runBeside(config, { ...process.env, CONSUL_HTTP_ADDR: consul.url, OUTRIGGER_LISTEN: listen, OUTRIGGER_ADMIN: admin }, admin, instances, consul, () => {
  const ports = instances.map((i) => i.port).join(', ')
  return [
    `Consul is at ${consul.url}, with three "hello" instances registered (127.0.0.1 ports ${ports}),`,
    `and outrigger follows it: listener ${listen}, admin ${admin}.`,
    'Try:',
    `  curl -H 'Host: hello' http://${listen}/        # round-robin over the instances Consul knows: run it three times`,
    `  curl http://${listen}/hello/world               # path route, prefix stripped`,
    `  curl http://${admin}/api/services               # endpoints, health, in-flight`,
    `  curl http://${admin}/metrics                    # Prometheus`,
    `  curl ${consul.url}/v1/health/service/hello?passing=true   # what outrigger reads`,
    'Take an instance out of Consul and watch outrigger stop sending to it (no restart, no reload):',
    `  curl -X PUT ${consul.url}/v1/agent/service/deregister/hello-2`,
    `  npm run outrigger -- status --admin ${admin}`,
  ]
})
