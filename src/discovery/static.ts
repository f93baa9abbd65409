import type { ServiceConfig } from '../config/types.ts'
import type { DiscoveryAdapter, DiscoveryListener, Endpoint } from './types.ts'

/** The `static` source: the endpoints written in the config, delivered once. */
export class StaticDiscovery implements DiscoveryAdapter {
  readonly source = 'static'
  readonly #endpoints: readonly Endpoint[]
  #timer: NodeJS.Immediate | null = null

  constructor(service: ServiceConfig) {
    this.#endpoints = (service.endpoints ?? []).map((e) => ({ address: e.address, port: e.port, weight: e.weight, meta: {} }))
  }

  start(listener: DiscoveryListener): void {
    // Never call back synchronously: the caller may still be wiring itself up.
    this.#timer = setImmediate(() => {
      this.#timer = null
      listener.onUpdate(this.#endpoints)
    })
  }

  stop(): Promise<void> {
    if (this.#timer !== null) clearImmediate(this.#timer)
    this.#timer = null
    return Promise.resolve()
  }
}
