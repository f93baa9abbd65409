import type { ServiceConfig } from '../config/types.ts'
import type { DiscoveryAdapter, DiscoveryListener, Endpoint } from '../discovery/types.ts'
import type { CheckVerdict, CheckWatcher } from '../health/active.ts'
import type { ServiceState } from './protocol.ts'

interface ServiceEntry {
  endpoints: Endpoint[] | null
  error: string | null
  /** Unhealthy verdicts by `address:port`; an endpoint not listed is healthy (or unchecked). */
  failed: Map<string, string>
  listeners: Set<DiscoveryListener>
  watchers: Map<string, Set<CheckWatcher>>
}

/**
 * A worker's view of the control plane: the endpoint sets and active-check verdicts the primary
 * published, by service name. The worker's clusters read them through `adapter()` (a discovery
 * adapter, so the cluster code is the same as with a registry) and `watch()` (in place of an active
 * checker). Keyed by service name, not by cluster: a reload's rebuilt cluster of the same service
 * picks up where the old one was.
 */
export class RemoteControlPlane {
  readonly #services = new Map<string, ServiceEntry>()

  #entry(service: string): ServiceEntry {
    let e = this.#services.get(service)
    if (e === undefined) this.#services.set(service, (e = { endpoints: null, error: null, failed: new Map(), listeners: new Set(), watchers: new Map() }))
    return e
  }

  /** A complete state (at start, and on each discovery answer in the primary). */
  setState(state: ServiceState): void {
    const e = this.#entry(state.service)
    e.endpoints = state.endpoints
    e.error = state.error
    // The state's verdicts replace the ones held: an endpoint that left lost its check loop in the
    // primary (a returning one starts trusted there too).
    const failed = new Map(state.failed)
    for (const key of [...e.failed.keys()]) if (!failed.has(key)) this.setVerdict(state.service, key, { healthy: true, reason: '' })
    for (const [key, reason] of failed) this.setVerdict(state.service, key, { healthy: false, reason })
    for (const l of e.listeners) deliver(l, e)
  }

  setVerdict(service: string, key: string, verdict: CheckVerdict): void {
    const e = this.#entry(service)
    const was = e.failed.get(key)
    if (verdict.healthy ? was === undefined : was === verdict.reason) return
    if (verdict.healthy) e.failed.delete(key)
    else e.failed.set(key, verdict.reason)
    for (const w of e.watchers.get(key) ?? []) w(verdict)
  }

  /** A discovery adapter for one service, fed by the primary. */
  adapter(config: ServiceConfig): DiscoveryAdapter {
    const e = this.#entry(config.name)
    let listener: DiscoveryListener | null = null
    return {
      // The registry's name: the discovery series are labelled by it (and taken from the primary).
      source: config.source,
      start: (l) => {
        listener = l
        e.listeners.add(l)
        // Never synchronously from start(): the sidecar finishes wiring first.
        queueMicrotask(() => {
          if (listener !== null) deliver(listener, e)
        })
      },
      stop: () => {
        if (listener !== null) e.listeners.delete(listener)
        listener = null
        return Promise.resolve()
      },
    }
  }

  /** Watches the primary's verdicts on one endpoint of one service; a known bad one arrives at once (async). */
  watch(service: string, key: string, watcher: CheckWatcher): () => void {
    const e = this.#entry(service)
    let set = e.watchers.get(key)
    if (set === undefined) e.watchers.set(key, (set = new Set()))
    set.add(watcher)
    const reason = e.failed.get(key)
    if (reason !== undefined) {
      queueMicrotask(() => {
        const now = e.failed.get(key)
        if (now !== undefined && set.has(watcher)) watcher({ healthy: false, reason: now })
      })
    }
    return () => {
      set.delete(watcher)
      if (set.size === 0 && e.watchers.get(key) === set) e.watchers.delete(key)
    }
  }
}

function deliver(l: DiscoveryListener, e: ServiceEntry): void {
  if (e.endpoints !== null) l.onUpdate(e.endpoints)
  if (e.error !== null) l.onError(new Error(e.error))
}
