import { readFileSync, watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import type { Logger } from 'pino'
import { buildConnector } from 'undici'
import type { TlsConfig } from '../config/types.ts'
import type { Endpoint } from '../discovery/types.ts'

/** Certificate files are re-read this long after the last change seen in their folders. */
export const CERT_RELOAD_DEBOUNCE_MS = 250

/**
 * What a health prober needs to reach a TLS endpoint the way traffic does (Envoy's health checks
 * use the cluster's transport socket): a TLS socket with the current certificates.
 */
export interface TlsDialer {
  /** Distinguishes dialers with different settings (one probe loop per endpoint and dialer). */
  readonly id: number
  /** A TLS connection to `address:port`; emits `secureConnect` once the handshake is done. */
  dial(address: string, port: number): tls.TLSSocket
  /**
   * True when `error` (from undici) ended a connection that the server had rejected in the TLS
   * handshake: with TLS 1.3 the server checks the client certificate after the client considers the
   * handshake done, so undici sees only "other side closed" after it started writing. Such a request
   * never reached the upstream's application: a connect failure.
   */
  rejectedAtHandshake(error: Error): boolean
}

/** Rejected connections remembered until their request's error is classified; older ones are dropped. */
const MAX_REJECTED_REMEMBERED = 256

/** A certificate file that cannot be used at start: `services.payments.tls.cert: cannot read ...`. */
export class TlsMaterialError extends Error {
  readonly path: string
  constructor(path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'TlsMaterialError'
    this.path = path
  }
}

/** undici errors that mean a TLS handshake failed (the request never reached the upstream's application). */
const HANDSHAKE_ALERT = /^ERR_SSL_(?:TLSV13_ALERT_CERTIFICATE_REQUIRED|SSLV3_ALERT_BAD_CERTIFICATE|SSLV3_ALERT_CERTIFICATE_\w+|TLSV1_ALERT_UNKNOWN_CA|TLSV1_ALERT_ACCESS_DENIED|SSLV3_ALERT_HANDSHAKE_FAILURE|TLSV1_ALERT_DECRYPT_ERROR|TLSV1_ALERT_PROTOCOL_VERSION)$/

/**
 * True for an error code that a server's handshake alert produces. With TLS 1.3 the client finishes
 * its side of the handshake before the server checks the client certificate, so a rejected (or
 * missing) client certificate shows up after undici started writing the request; the request was
 * still never delivered, so it is a connect failure, safe to retry anywhere.
 */
export function isTlsHandshakeFailure(code: string): boolean {
  return code.length > 8 && code.charCodeAt(0) === 69 /* 'E' */ && HANDSHAKE_ALERT.test(code)
}

/** True when discovery says this endpoint speaks HTTPS (Consul `Service.Meta.scheme`, etcd `scheme`). */
export function endpointWantsTls(endpoint: Endpoint): boolean {
  return endpoint.meta.scheme === 'https'
}

interface Material {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

const FILE_FIELDS = ['ca', 'cert', 'key'] as const
type FileField = (typeof FILE_FIELDS)[number]

let nextId = 1

/**
 * Upstream TLS of one service: the certificates of `tls:` (or the system CAs alone, for endpoints
 * that discovery marks `scheme: https`), turned into an undici connector for the endpoints' pools and
 * a dialer for health probes.
 *
 * Certificate files are read at start (a missing or broken file fails the start with the field's
 * path) and again whenever their folders change (debounced; an atomic replace or a Kubernetes
 * secret's symlink swap included). A new set that does not load (unreadable, not PEM, key not
 * matching the certificate) is logged and the previous one kept. New connections use the newest
 * set; established ones keep theirs until they close. Each reload builds a new connector, so TLS
 * sessions negotiated with the old certificates are not resumed.
 */
export class UpstreamTls implements TlsDialer {
  readonly id = nextId++
  /** True when `tls:` is configured: every endpoint of the service is reached over TLS. */
  readonly always: boolean
  readonly #service: string
  readonly #config: TlsConfig
  readonly #connectTimeoutMs: number
  readonly #logger: Logger
  #material: Material
  #context: tls.SecureContext | null
  #connector: buildConnector.connector | null = null
  readonly #watchers: FSWatcher[] = []
  #timer: NodeJS.Timeout | null = null
  #closed = false
  /** Successful reloads so far (tests and logs). */
  reloads = 0

  /** Reads the certificate files; throws TlsMaterialError naming the field when one cannot be used. */
  constructor(service: string, config: TlsConfig | undefined, connectTimeoutMs: number, logger: Logger) {
    this.#service = service
    this.#config = config ?? {}
    this.always = config !== undefined
    this.#connectTimeoutMs = connectTimeoutMs
    this.#logger = logger
    const { material, context } = loadMaterial(service, this.#config)
    this.#material = material
    this.#context = context
    this.#watch()
  }

  /** What is wrong with a service's certificate files (`<path>: <message>`), or null. For `outrigger validate`. */
  static check(service: string, config: TlsConfig): string | null {
    try {
      loadMaterial(service, config)
      return null
    } catch (err) {
      if (err instanceof TlsMaterialError) return err.message
      throw err
    }
  }

  /** Whether this endpoint is reached over TLS: always with `tls:`, else when discovery says https. */
  usesTls(endpoint: Endpoint): boolean {
    return this.always || endpointWantsTls(endpoint)
  }

  /** The `connect` option of an endpoint's undici Pool: the current connector, so new connections use the newest certificates. */
  readonly connect: buildConnector.connector = (options, callback) => {
    // SNI and the certificate check use `tls.servername`, else the endpoint's address (never the
    // request's Host header, which undici would otherwise pass along).
    options.servername = this.#servername(options.hostname)
    ;(this.#connector ??= this.#buildConnector())(options, (...args) => {
      const socket = args[1]
      if (args[0] === null && socket !== null) {
        const localPort = socket.localPort
        if (localPort !== undefined) socket.once('error', (e: NodeJS.ErrnoException) => this.#noteRejected(localPort, e.code))
      }
      callback(...args)
    })
  }

  rejectedAtHandshake(error: Error): boolean {
    if (isTlsHandshakeFailure((error as NodeJS.ErrnoException).code ?? '')) return true
    const localPort = (error as { socket?: { localPort?: number } }).socket?.localPort
    if (localPort === undefined || !this.#rejected.has(localPort)) return false
    this.#rejected.delete(localPort)
    return true
  }

  /** Local ports of connections the server rejected with a handshake alert (see rejectedAtHandshake). */
  readonly #rejected = new Set<number>()

  #noteRejected(localPort: number, code: string | undefined): void {
    if (code === undefined || !isTlsHandshakeFailure(code)) return
    if (this.#rejected.size >= MAX_REJECTED_REMEMBERED) this.#rejected.delete(this.#rejected.values().next().value!)
    this.#rejected.add(localPort)
  }

  dial(address: string, port: number): tls.TLSSocket {
    const socket = tls.connect({
      host: address,
      port,
      secureContext: this.#context ?? undefined,
      servername: this.#servername(address),
      ALPNProtocols: ['http/1.1'],
    })
    socket.setNoDelay(true)
    return socket
  }

  /** Stops watching the certificate files. */
  close(): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    for (const w of this.#watchers) w.close()
    this.#watchers.length = 0
  }

  /** Re-reads the files now; true when a new set is in use. Called by the folder watch (debounced). */
  async reload(): Promise<boolean> {
    const material: Material = {}
    for (const field of FILE_FIELDS) {
      const file = this.#config[field]
      if (file === undefined) continue
      try {
        material[field] = await readFile(file)
      } catch (err) {
        this.#logger.warn({ service: this.#service, file, err: (err as Error).message }, `tls.${field}: cannot read the new file; keeping the certificates in use`)
        return false
      }
    }
    if (this.#closed || sameMaterial(material, this.#material)) return false
    const built = buildContext(material)
    if (typeof built === 'string') {
      this.#logger.warn({ service: this.#service, err: built }, 'tls: the new certificate files do not load; keeping the ones in use')
      return false
    }
    this.#material = material
    this.#context = built
    this.#connector = null
    this.reloads++
    this.#logger.info({ service: this.#service }, 'tls: certificates reloaded; new connections use them')
    return true
  }

  #servername(address: string): string | undefined {
    if (this.#config.servername !== undefined) return this.#config.servername
    return net.isIP(address) === 0 ? address : undefined
  }

  #buildConnector(): buildConnector.connector {
    return buildConnector({
      secureContext: this.#context ?? undefined,
      timeout: this.#connectTimeoutMs,
      allowH2: false,
    })
  }

  /** One watch per folder holding a certificate file; any change there schedules a reload. */
  #watch(): void {
    const folders = new Set<string>()
    for (const field of FILE_FIELDS) {
      const file = this.#config[field]
      if (file !== undefined) folders.add(path.dirname(file))
    }
    for (const folder of folders) {
      try {
        const w = watch(folder, { persistent: false }, () => this.#schedule())
        w.on('error', (err) => this.#logger.warn({ service: this.#service, folder, err: err.message }, 'tls: watching the certificate folder failed'))
        this.#watchers.push(w)
      } catch (err) {
        this.#logger.warn({ service: this.#service, folder, err: (err as Error).message }, 'tls: cannot watch the certificate folder; changes need a restart')
      }
    }
  }

  #schedule(): void {
    if (this.#closed) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.reload()
    }, CERT_RELOAD_DEBOUNCE_MS)
    this.#timer.unref()
  }
}

/** Reads and checks the files at start; throws TlsMaterialError. */
function loadMaterial(service: string, config: TlsConfig): { material: Material; context: tls.SecureContext | null } {
  const material: Material = {}
  for (const field of FILE_FIELDS) {
    const file = config[field]
    if (file === undefined) continue
    try {
      material[field] = readFileSync(file)
    } catch (err) {
      throw new TlsMaterialError(`services.${service}.tls.${field}`, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  const built = buildContext(material)
  if (typeof built === 'string') {
    const field = built.slice(0, built.indexOf(':'))
    const at = field === 'ca' || field === 'cert' ? `.${field}` : ''
    throw new TlsMaterialError(`services.${service}.tls${at}`, at === '' ? built : built.slice(field.length + 2))
  }
  return { material, context: built }
}

/** A secure context from the files' contents, or what is wrong with them. */
function buildContext(material: Material): tls.SecureContext | null | string {
  if (material.ca === undefined && material.cert === undefined) return null
  try {
    if (material.ca !== undefined) new X509Certificate(material.ca)
  } catch (err) {
    return `ca: not a PEM certificate (${(err as Error).message})`
  }
  try {
    if (material.cert !== undefined) new X509Certificate(material.cert)
  } catch (err) {
    return `cert: not a PEM certificate (${(err as Error).message})`
  }
  try {
    return tls.createSecureContext({ ca: material.ca, cert: material.cert, key: material.key })
  } catch (err) {
    return `cert/key: ${(err as Error).message}`
  }
}

function sameMaterial(a: Material, b: Material): boolean {
  return FILE_FIELDS.every((f: FileField) => (a[f] === undefined ? b[f] === undefined : b[f] !== undefined && a[f].equals(b[f])))
}
