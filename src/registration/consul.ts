import type { Logger } from 'pino'
import type { ConsulDiscoveryConfig, RegisterConfig } from '../config/types.ts'
import { formatDuration } from '../config/units.ts'
import { request } from 'undici'
import { endpointKey } from '../discovery/types.ts'
import { RegistrationLoop } from './loop.ts'
import type { Registrar } from './types.ts'

/**
 * Registers the local app with the local Consul agent: an agent service (`Weights.Passing` and
 * `Meta.weight` = the configured weight) with an HTTP check against the app's `check.path` when
 * given. The agent keeps the catalog in sync. Deregistered on stop.
 *
 * Plain HTTP calls to the agent API rather than the `consul` package: its register call drops
 * `Weights`, which Consul's own DNS interface uses.
 */
export class ConsulRegistrar implements Registrar {
  readonly source = 'consul'
  readonly id: string
  readonly #config: RegisterConfig
  readonly #logger: Logger
  readonly #url: string
  readonly #headers: Record<string, string>
  readonly #loop: RegistrationLoop
  #registered = false

  constructor(config: RegisterConfig, consul: ConsulDiscoveryConfig, logger: Logger) {
    this.#config = config
    this.#logger = logger
    this.id = `${config.serviceName}-${endpointKey(config.address, config.port)}`
    this.#url = consul.url
    this.#headers = consul.token === '' ? {} : { 'x-consul-token': consul.token }
    this.#loop = new RegistrationLoop('consul', logger.child({ id: this.id }), () => this.#ensure())
  }

  start(): void {
    this.#loop.start()
  }

  async stop(): Promise<void> {
    this.#loop.stop()
    if (this.#registered) {
      try {
        await this.#call('PUT', `/v1/agent/service/deregister/${encodeURIComponent(this.id)}`)
        this.#logger.info({ id: this.id }, 'deregistered from consul')
      } catch (err) {
        this.#logger.warn({ id: this.id, err: (err as Error).message }, 'could not deregister from consul')
      }
    }
  }

  /** Registers when the agent does not know the service (first time, or after it lost it). */
  async #ensure(): Promise<void> {
    if (await this.#known()) return
    await this.#register()
    if (this.#registered) this.#logger.warn({ id: this.id }, 'registration missing in consul; registered again')
    else this.#logger.info({ id: this.id, service: this.#config.serviceName }, 'registered in consul')
    this.#registered = true
  }

  async #known(): Promise<boolean> {
    const services = JSON.parse(await this.#call('GET', '/v1/agent/services')) as Record<string, unknown>
    return Object.hasOwn(services, this.id)
  }

  /** One agent API call; rejects on a network error or a non-2xx answer. */
  async #call(method: 'GET' | 'PUT', path: string, body?: unknown): Promise<string> {
    const res = await request(`${this.#url}${path}`, {
      method,
      headers: body === undefined ? this.#headers : { ...this.#headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 5000,
      bodyTimeout: 5000,
    })
    const text = await res.body.text()
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`consul ${method} ${path}: HTTP ${res.statusCode} ${text.trim()}`)
    return text
  }

  async #register(): Promise<void> {
    const c = this.#config
    const service: Record<string, unknown> = {
      ID: this.id,
      Name: c.serviceName,
      Address: c.address,
      Port: c.port,
      Tags: c.tags,
      Meta: { weight: String(c.weight), 'registered-by': 'outrigger' },
      Weights: { Passing: c.weight, Warning: 1 },
    }
    if (c.check !== undefined) {
      service.Check = {
        HTTP: `http://${endpointKey(c.address, c.port)}${c.check.path}`,
        Interval: formatDuration(c.check.intervalMs),
        Timeout: formatDuration(Math.max(1000, Math.min(c.check.intervalMs / 2, 10_000))),
      }
    }
    await this.#call('PUT', '/v1/agent/service/register', service)
  }
}
