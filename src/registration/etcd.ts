import { Etcd3 } from 'etcd3'
import type { Lease } from 'etcd3'
import type { Logger } from 'pino'
import type { EtcdDiscoveryConfig, RegisterConfig } from '../config/types.ts'
import { clientOptions } from '../discovery/etcd.ts'
import { endpointKey } from '../discovery/types.ts'
import { RegistrationLoop } from './loop.ts'
import type { Registrar } from './types.ts'

/** Lease TTL: the registration disappears this long after the sidecar dies without revoking it. */
export const LEASE_TTL_SECONDS = 10

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
  readonly #loop: RegistrationLoop
  #lease: Lease | null = null
  #registered = false

  constructor(config: RegisterConfig, etcd: EtcdDiscoveryConfig, logger: Logger) {
    this.#logger = logger
    this.key = `${etcd.prefix}${config.serviceName}/${endpointKey(config.address, config.port)}`
    const meta: Record<string, string> = { 'registered-by': 'outrigger' }
    if (config.tags.length > 0) meta.tags = config.tags.join(',')
    this.#value = JSON.stringify({ address: config.address, port: config.port, weight: config.weight, meta })
    this.#client = new Etcd3(clientOptions(etcd))
    this.#loop = new RegistrationLoop('etcd', logger.child({ key: this.key }), () => this.#ensure(), () => this.#dropLease())
  }

  start(): void {
    this.#loop.start()
  }

  async stop(): Promise<void> {
    this.#loop.stop()
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

  /** Puts the key on a live lease: a new lease when there is none, the key again if it went missing. */
  async #ensure(): Promise<void> {
    if (this.#lease === null) {
      await this.#grantAndPut()
    } else if ((await this.#client.get(this.key).string()) === null) {
      await this.#lease.put(this.key).value(this.#value)
      this.#logger.warn({ key: this.key }, 'registration missing in etcd; put again')
    }
  }

  async #grantAndPut(): Promise<void> {
    const lease = this.#client.lease(LEASE_TTL_SECONDS)
    this.#lease = lease
    lease.on('lost', (err: Error) => {
      if (this.#loop.stopped || this.#lease !== lease) return
      this.#logger.warn({ key: this.key, err: err.message }, 'etcd lease lost; registering again')
      this.#lease = null
      this.#loop.now()
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
