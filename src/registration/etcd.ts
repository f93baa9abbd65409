import { Etcd3 } from 'etcd3'
import type { Lease } from 'etcd3'
import type { Logger } from 'pino'
import type { EtcdDiscoveryConfig, RegisterConfig } from '../config/types.ts'
import { clientOptions } from '../discovery/etcd.ts'
import { endpointKey } from '../discovery/types.ts'
import type { Registrar } from './types.ts'

/** Lease TTL: the registration disappears this long after the sidecar dies without revoking it. */
export const LEASE_TTL_SECONDS = 10
/** How often the key is verified (and put back if someone deleted it). */
export const VERIFY_INTERVAL_MS = 10_000
const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 10_000

/**
 * Registers the local app in etcd: the key `<prefix><serviceName>/<address:port>` holding
 * `{"address","port","weight","meta"}` (what the etcd source reads), on a lease that etcd3 keeps
 * alive. When the lease is lost (etcd unreachable for longer than the TTL, or revoked), a new lease
 * is granted and the key put again. Revoked on stop, which deletes the key at once.
 */
export class EtcdRegistrar implements Registrar {
  readonly source = 'etcd'
  readonly key: string
  readonly #value: string
  readonly #logger: Logger
  readonly #client: Etcd3
  #lease: Lease | null = null
  #timer: NodeJS.Timeout | null = null
  #stopped = false
  #registered = false
  #failures = 0

  constructor(config: RegisterConfig, etcd: EtcdDiscoveryConfig, logger: Logger) {
    this.#logger = logger
    this.key = `${etcd.prefix}${config.serviceName}/${endpointKey(config.address, config.port)}`
    const meta: Record<string, string> = { 'registered-by': 'outrigger' }
    if (config.tags.length > 0) meta.tags = config.tags.join(',')
    this.#value = JSON.stringify({ address: config.address, port: config.port, weight: config.weight, meta })
    this.#client = new Etcd3(clientOptions(etcd))
  }

  start(): void {
    this.#schedule(0)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const lease = this.#lease
    this.#lease = null
    if (lease !== null) {
      try {
        await lease.revoke()
        this.#logger.info({ key: this.key }, 'deregistered from etcd')
      } catch (err) {
        this.#logger.warn({ key: this.key, err: (err as Error).message }, `could not revoke the lease; the key expires within ${LEASE_TTL_SECONDS}s`)
      }
    }
    this.#client.close()
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.#ensure()
    }, delayMs)
    this.#timer.unref()
  }

  async #ensure(): Promise<void> {
    try {
      if (this.#lease === null) {
        await this.#grantAndPut()
      } else if ((await this.#client.get(this.key).string()) === null) {
        await this.#lease.put(this.key).value(this.#value)
        this.#logger.warn({ key: this.key }, 'registration missing in etcd; put again')
      }
      this.#failures = 0
      this.#schedule(VERIFY_INTERVAL_MS)
    } catch (err) {
      if (this.#stopped) return
      if (this.#failures++ === 0) this.#logger.warn({ key: this.key, err: (err as Error).message }, 'cannot register in etcd; retrying')
      this.#dropLease()
      const backoff = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.#failures, 10))
      this.#schedule(backoff * (0.5 + Math.random()))
    }
  }

  async #grantAndPut(): Promise<void> {
    const lease = this.#client.lease(LEASE_TTL_SECONDS)
    this.#lease = lease
    lease.on('lost', (err: Error) => {
      if (this.#stopped || this.#lease !== lease) return
      this.#logger.warn({ key: this.key, err: err.message }, 'etcd lease lost; registering again')
      this.#lease = null
      if (this.#timer !== null) clearTimeout(this.#timer)
      this.#schedule(0)
    })
    await lease.put(this.key).value(this.#value)
    this.#logger.info({ key: this.key }, this.#registered ? 'registered in etcd again' : 'registered in etcd')
    this.#registered = true
  }

  /** Forgets a lease that failed, without waiting on etcd (it expires by itself). */
  #dropLease(): void {
    const lease = this.#lease
    this.#lease = null
    if (lease !== null) {
      lease.removeAllListeners('lost')
      lease.on('lost', () => undefined)
      lease.release()
    }
  }
}
