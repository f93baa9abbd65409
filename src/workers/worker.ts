/**
 * A worker process (node:cluster): the data plane. It waits for the primary's `start` (the config
 * and the state of every service), then runs a Sidecar with only its proxy listeners, each bound
 * with SO_REUSEPORT beside its siblings'. Endpoint sets and active-check verdicts come from the
 * primary; passive outlier detection, pools, policies and metrics are its own.
 */
import cluster from 'node:cluster'
import { pino } from 'pino'
import type { LevelWithSilent } from 'pino'
import type { Logger } from '../observability/logger.ts'
import { createLogger } from '../observability/logger.ts'
import { HostFlag } from '../cluster/host.ts'
import type { Sidecar } from '../sidecar.ts'
import type { FromWorker, ToWorker, WorkerServiceStats } from './protocol.ts'
import { isToWorker } from './protocol.ts'
import { RemoteControlPlane } from './remote.ts'

function send(m: FromWorker): void {
  if (process.connected) process.send!(m)
}

/** Per-service counts the primary merges into `/api/services` (and `outrigger_endpoints`). */
function stats(sidecar: Sidecar): WorkerServiceStats[] {
  const views = new Map(sidecar.servicesView().map((v) => [v.name, v]))
  return sidecar.clusters().map((c) => {
    const view = views.get(c.name)
    const extra: Record<string, unknown> = {}
    if (view?.policies !== undefined) extra.policies = view.policies
    if (view?.cache !== undefined) extra.cache = view.cache
    return {
      name: c.name,
      panic: c.panic,
      endpoints: [...c.hosts(), ...c.drainingHosts()].map((h) => ({
        key: h.key,
        inFlight: h.inFlight,
        requests: h.requests,
        ejected: (h.flags & HostFlag.EJECTED) !== 0 ? (h.reasons.get(HostFlag.EJECTED) ?? 'ejected') : null,
      })),
      extra,
    }
  })
}

async function main(): Promise<void> {
  const level = (process.env.OUTRIGGER_LOG_LEVEL ?? 'info') as LevelWithSilent
  // Every worker writes to the primary's stdout: synchronous writes keep each line one write(2),
  // which a pipe never interleaves with another process's (up to 4 KiB), where an async buffer
  // flushing several lines at once could be split. Only log lines pay it (the access log, if on).
  const root = createLogger({ level, pretty: process.env.OUTRIGGER_LOG_PRETTY === '1', destination: pino.destination({ dest: 1, sync: true }) })
  const logger: Logger = root.child({ worker: Number(process.env.OUTRIGGER_WORKER_SLOT ?? cluster.worker?.id ?? 0) })
  const remote = new RemoteControlPlane()
  let sidecar: Sidecar | null = null
  let stopping: Promise<void> | null = null
  const stop = (why: string): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ why }, 'worker stopping')
      await sidecar?.stop()
      logger.flush()
      process.exit(0)
    })()
    return stopping
  }
  // The primary decides: a terminal's Ctrl-C or a hangup reaches the whole process group, and a
  // worker leaving on its own would only be restarted.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => logger.debug({ signal }, 'signal ignored; the primary decides'))
  // The primary is gone (even SIGKILLed): nobody feeds this worker any more.
  process.on('disconnect', () => void stop('the primary disconnected'))

  const { Sidecar: SidecarClass } = await import('../sidecar.ts')
  const handle = async (m: ToWorker): Promise<void> => {
    switch (m.t) {
      case 'start':
        for (const s of m.state) remote.setState(s)
        try {
          sidecar = await SidecarClass.start(m.config, logger, {
            plane: 'data',
            discovery: (c) => remote.adapter(c),
            health: (service, host, watcher) => remote.watch(service, host.key, watcher),
          })
        } catch (err) {
          send({ t: 'failed', message: (err as Error).message })
          logger.flush()
          process.exit(1)
        }
        send({ t: 'ready', addresses: sidecar.addresses })
        return
      case 'endpoints':
        remote.setState(m.state)
        return
      case 'health':
        remote.setVerdict(m.service, m.key, { healthy: m.healthy, reason: m.reason })
        return
      case 'reload': {
        let error: string | null = null
        try {
          if (sidecar === null) throw new Error('not started')
          await sidecar.reload(m.config)
        } catch (err) {
          error = (err as Error).message
        }
        send({ t: 'reloaded', id: m.id, error })
        return
      }
      case 'collect':
        send({ t: 'collected', id: m.id, services: sidecar === null ? [] : stats(sidecar), metrics: m.metrics && sidecar !== null ? await sidecar.metrics.registry.getMetricsAsJSON() : null })
        return
      case 'stop':
        await stop('asked by the primary')
        return
    }
  }
  process.on('message', (m: unknown) => {
    if (!isToWorker(m)) return
    handle(m).catch((err: unknown) => logger.error({ err, message: m.t }, 'worker message failed'))
  })
  send({ t: 'hello' })
}

void main()
