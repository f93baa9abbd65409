import { Etcd3, isRecoverableError } from 'etcd3'
import type { IOptions, IWatchResponse } from 'etcd3'
import type { Logger } from 'pino'
import type { EtcdDiscoveryConfig, ServiceConfig } from '../config/types.ts'
import { configErrorMap, endpointSchema } from '../config/schema.ts'
import type { DiscoveryAdapter, DiscoveryListener, Endpoint } from './types.ts'

/** Reconnect backoff while etcd cannot be read: doubling from the minimum, times a random 1–2, capped. */
export const RETRY_MIN_MS = 200
export const RETRY_MAX_MS = 10_000
/**
 * A watch that stayed up this long counts as a recovery: the next failure starts over with an
 * immediate snapshot. A watch that fails sooner keeps backing off, so a server that accepts and
 * then cancels watches (say, on every compaction) is not hammered in a loop.
 */
export const HEALTHY_SESSION_MS = 10_000
/**
 * Deadline of each unary call (the snapshot, the auth token exchange) and of a watch's creation.
 * Without one, a call to a member that accepts connections but does not answer waits forever.
 */
export const CALL_TIMEOUT_MS = 5000
/** How long `stop()` waits for etcd to confirm the watch's cancellation before closing the client. */
export const STOP_CANCEL_TIMEOUT_MS = 1000
/**
 * gRPC keepalive on the watch stream: a member that vanished without closing the connection (host
 * down, network cut) is noticed within about 15 s instead of never. etcd refuses pings more often
 * than every 5 s (`--grpc-keepalive-min-time`), hence not less than that.
 */
export const KEEPALIVE_TIME_MS = 10_000
export const KEEPALIVE_TIMEOUT_MS = 5000
/** Longest part of a bad value quoted in a log line or an error message. */
const QUOTE_MAX_CHARS = 200

/**
 * The `etcd` source: every key under `<prefix><serviceName>/` is one endpoint, its value JSON
 * `{"address","port","weight","meta"}` or a plain `host:port` / `[ipv6]:port` (see `parseEtcdValue`).
 *
 * One session = a snapshot (`getAll().prefix()`, its header revision R), delivered at once as a
 * complete set, then a prefix watch from R + 1, so no change between the two is lost. Each watch
 * response updates an in-memory map (key → endpoint) and delivers the complete set again, sorted by
 * key, when it changed. A bad value under one key is skipped (warned once per key and value) without
 * touching the others.
 *
 * Any failure (etcd unreachable, the watch stream broken, the watch cancelled by the server, which
 * for a compacted start revision ends an etcd3 watch for good) ends the session: the last set stays
 * in use, `onError` is called once per streak of failures, and a new session (a fresh snapshot,
 * then a new watch) is tried after a jittered exponential backoff. etcd3's own recovery is turned
 * off because it works against this: its per-host circuit breaker refuses every call for 5 s after
 * three failures (delaying recovery after etcd is back), and a watcher it resumes by itself cannot
 * be told from one that needs a fresh snapshot.
 */
export class EtcdDiscovery implements DiscoveryAdapter {
  readonly source = 'etcd'
  readonly #service: ServiceConfig
  readonly #logger: Logger
  readonly #client: Etcd3
  /** `<prefix><serviceName>/`: the keys watched. */
  readonly #prefix: string
  readonly #abort = new AbortController()
  #running: Promise<void> | null = null
  /** The last watcher's cancellation, which `stop()` waits for (bounded) before closing the client. */
  #cancelling: Promise<void> | null = null
  /** Current registry content: key → its endpoint, or null for a bad value (skipped). */
  readonly #entries = new Map<string, Endpoint | null>()
  /** Bad values already warned about, key → value, so a value is warned about once, not per session. */
  readonly #warned = new Map<string, string>()
  /** Serialised text of the last delivered set: a watch response that changes nothing delivers nothing. */
  #last: string | null = null
  /** True from the first failure until a snapshot is delivered again: one `onError` per streak. */
  #failing = false

  constructor(service: ServiceConfig, config: EtcdDiscoveryConfig, logger: Logger) {
    this.#service = service
    this.#logger = logger
    this.#prefix = `${config.prefix}${service.serviceName}/`
    this.#client = new Etcd3(clientOptions(config))
  }

  start(listener: DiscoveryListener): void {
    // Never call back synchronously: the first step is behind setImmediate.
    this.#running = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#loop(listener))
  }

  async stop(): Promise<void> {
    // Aborting ends the session in hand, which starts cancelling its watcher.
    this.#abort.abort()
    // Cancelling waits for etcd's confirmation (or, when it is down, for a reconnect that will not
    // come): bounded, since closing the client ends the stream anyway.
    if (this.#cancelling !== null) await withTimeout(this.#cancelling, STOP_CANCEL_TIMEOUT_MS)
    this.#client.close()
    await this.#running
  }

  /** Sessions until stopped; between failed ones, a jittered exponential backoff. */
  async #loop(listener: DiscoveryListener): Promise<void> {
    const signal = this.#abort.signal
    let attempt = 0
    while (!signal.aborted) {
      if (attempt > 0) await sleep(backoffDelayMs(attempt), signal)
      if (signal.aborted) return
      let ended: Promise<Error>
      try {
        ;({ ended } = await this.#connect(listener, signal))
      } catch (err) {
        this.#failed(listener, err)
        attempt++
        continue
      }
      const startedMs = Date.now()
      const error = await ended
      if (signal.aborted) return
      this.#failed(listener, error)
      attempt = Date.now() - startedMs >= HEALTHY_SESSION_MS ? 0 : attempt + 1
    }
  }

  /**
   * A snapshot, delivered, then a watch from the snapshot's revision + 1. Resolves once the watch is
   * established, with a promise of the error that ends it (`stopped` after `stop()`). Rejects when
   * the snapshot or the watch's creation fails.
   */
  async #connect(listener: DiscoveryListener, signal: AbortSignal): Promise<{ ended: Promise<Error> }> {
    const snapshot = await abortable(this.#client.getAll().prefix(this.#prefix).exec(), signal)
    if (signal.aborted) throw new Error('stopped')
    this.#entries.clear()
    for (const kv of snapshot.kvs) this.#put(kv.key.toString(), kv.value.toString())
    for (const key of this.#warned.keys()) if (this.#entries.get(key) !== null) this.#warned.delete(key)
    // Delivered even when empty or unchanged: the first marks the service ready, a later one ends
    // the staleness of an outage.
    this.#deliver(listener, true)
    if (this.#failing) {
      this.#failing = false
      this.#logger.info({ service: this.#service.name }, 'etcd reachable again')
    }

    const revision = BigInt(snapshot.header.revision)
    const watcher = this.#client.watch().prefix(this.#prefix).startRevision(String(revision + 1n)).watcher()
    let end: (error: Error) => void = () => undefined
    const ended = new Promise<Error>((resolve) => (end = resolve))
    // Whatever ends the watch ends the session; later events of the same watcher are ignored.
    let over = false
    const finish = (error: Error, detach: boolean): void => {
      if (over) return
      over = true
      signal.removeEventListener('abort', onAbort)
      // Detaching a watcher whose stream broke is immediate; one that etcd cancelled is detached
      // already (cancelling it again would wait for an answer etcd never sends).
      if (detach) this.#cancelling = watcher.cancel().catch(() => undefined)
      end(error)
    }
    const onAbort = (): void => finish(new Error('stopped'), true)
    signal.addEventListener('abort', onAbort, { once: true })
    watcher.on('data', (res: IWatchResponse) => {
      if (over || signal.aborted) return
      this.#apply(listener, res)
    })
    // Without an 'error' listener, etcd3's cancellation of a watch would crash the process.
    watcher.on('error', (err: Error) => finish(new Error(`etcd cancelled the watch on ${this.#prefix} (compacted past its revision?): ${err.message}`, { cause: err }), false))
    watcher.on('disconnected', (err: Error) => finish(new Error(`etcd watch on ${this.#prefix} broke: ${err.message}`, { cause: err }), true))

    let timer: NodeJS.Timeout | undefined
    const created = await Promise.race([
      new Promise<true>((resolve) => watcher.once('connected', () => resolve(true))),
      ended,
      new Promise<Error>((resolve) => (timer = setTimeout(() => resolve(new Error(`etcd watch on ${this.#prefix} not created within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS))),
    ])
    clearTimeout(timer)
    if (created !== true) {
      finish(created, true)
      throw created
    }
    return { ended }
  }

  /** One watch response: all its events (a transaction's come together), then one delivery. */
  #apply(listener: DiscoveryListener, res: IWatchResponse): void {
    if (res.events.length === 0) return // a progress notification
    for (const event of res.events) {
      const key = event.kv.key.toString()
      if (event.type === 'Delete') {
        this.#entries.delete(key)
        this.#warned.delete(key)
      } else {
        this.#put(key, event.kv.value.toString())
      }
    }
    this.#deliver(listener, false)
  }

  #put(key: string, value: string): void {
    try {
      this.#entries.set(key, parseEtcdValue(key, value))
      this.#warned.delete(key)
    } catch (err) {
      this.#entries.set(key, null)
      if (this.#warned.get(key) === value) return
      this.#warned.set(key, value)
      this.#logger.warn({ service: this.#service.name, key, value: quote(value), err: (err as Error).message }, 'etcd value is not an endpoint; skipped')
    }
  }

  /** The complete set, sorted by key; `always` delivers it even when it equals the last one. */
  #deliver(listener: DiscoveryListener, always: boolean): void {
    const keys = [...this.#entries.keys()].sort()
    const endpoints: Endpoint[] = []
    for (const key of keys) {
      const endpoint = this.#entries.get(key)
      if (endpoint != null) endpoints.push(endpoint)
    }
    const text = JSON.stringify(endpoints)
    if (!always && text === this.#last) return
    this.#last = text
    try {
      listener.onUpdate(endpoints)
    } catch (err) {
      // etcd3 rethrows a watch handler's exception on a later tick, where it would end the process.
      this.#logger.error({ service: this.#service.name, err }, 'discovery listener threw')
    }
  }

  #failed(listener: DiscoveryListener, err: unknown): void {
    if (this.#abort.signal.aborted || this.#failing) return
    this.#failing = true
    const error = err instanceof Error ? err : new Error(String(err))
    this.#logger.warn({ service: this.#service.name, err: error.message }, 'etcd unreachable; keeping the last known endpoints')
    listener.onError(new Error(`etcd ${this.#prefix}: ${error.message}`, { cause: error }))
  }
}

/**
 * The endpoint stored under `key`: JSON `{"address": "10.0.0.5", "port": 8080, "weight": 2, "meta": {}}`
 * (weight defaults to 1, meta is an optional map of strings, `"scheme": "https"` is copied into
 * `meta.scheme` and turns TLS on, other fields are ignored so that other
 * tools may store more), or a plain `host:port` / `[ipv6]:port`. Throws an Error naming the key and
 * what is wrong, in the words `outrigger validate` uses for endpoints.
 */
export function parseEtcdValue(key: string, value: string): Endpoint {
  const text = value.trim()
  if (!text.startsWith('{')) {
    const r = endpointSchema.safeParse(text, { error: configErrorMap })
    if (!r.success) throw new Error(`${key}: ${issuesText(r.error.issues)}`)
    return { ...r.data, meta: {} }
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new Error(`${key}: invalid JSON (${(err as Error).message}) in ${JSON.stringify(quote(text))}`, { cause: err })
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${key}: must be a JSON object or host:port`)
  const o = doc as Record<string, unknown>
  const fields: Record<string, unknown> = {}
  for (const name of ['address', 'port', 'weight'] as const) if (Object.hasOwn(o, name) && o[name] !== undefined) fields[name] = o[name]
  const problems: string[] = []
  const r = endpointSchema.safeParse(fields, { error: configErrorMap })
  if (!r.success) problems.push(issuesText(r.error.issues))
  const meta: Record<string, string> = {}
  const rawMeta = o.meta
  if (rawMeta !== undefined) {
    if (typeof rawMeta !== 'object' || rawMeta === null || Array.isArray(rawMeta)) problems.push('meta: must be a map of strings')
    else {
      for (const [name, v] of Object.entries(rawMeta)) {
        if (typeof v === 'string') meta[name] = v
        else problems.push(`meta.${name}: must be a string`)
      }
    }
  }
  // `"scheme": "https"` turns TLS on for the endpoint; carried in meta, as Consul's Service.Meta.scheme is.
  if (o.scheme !== undefined) {
    if (o.scheme === 'http' || o.scheme === 'https') meta.scheme ??= o.scheme
    else problems.push('scheme: must be one of http, https')
  }
  if (!r.success || problems.length > 0) throw new Error(`${key}: ${problems.join('; ')}`)
  return { ...r.data, meta }
}

/** Backoff before the `attempt`-th retry (1-based): RETRY_MIN_MS doubling, times a random 1–2, capped. */
export function backoffDelayMs(attempt: number, random: () => number = Math.random): number {
  const base = RETRY_MIN_MS * 2 ** Math.min(attempt - 1, 30)
  return Math.min(RETRY_MAX_MS, base * (1 + random()))
}

type FaultHandling = NonNullable<IOptions['faultHandling']>
type Policy = NonNullable<FaultHandling['global']>
type WatchBackoff = NonNullable<FaultHandling['watchBackoff']>

/** Client options: auth when configured, deadlines on unary calls, keepalive, and no fault handling of etcd3's own (see the class). */
export function clientOptions(config: EtcdDiscoveryConfig): IOptions {
  const options: IOptions = {
    hosts: config.endpoints,
    // etcd3 1.1.2 documents `dialTimeout` but never reads it: deadlines are the only bound.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    grpcOptions: { 'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS, 'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS },
    faultHandling: {
      host: () => tryEachHost(1),
      // Each call tries every member once (etcd3 moves to the next member on each retry).
      global: tryEachHost(config.endpoints.length),
      // The watch manager reconnects only watchers still attached; a broken session's watcher is not.
      watchBackoff: constantBackoff(RETRY_MIN_MS),
    },
  }
  if (config.username !== undefined) options.auth = { username: config.username, password: config.password ?? '' }
  return options
}

/** A cockatiel-shaped policy that runs the call up to `attempts` times while its error is recoverable, at once. */
function tryEachHost(attempts: number): Policy {
  const noEvent = (): { dispose(): void } => ({ dispose: () => undefined })
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
      const context = { signal: signal ?? new AbortController().signal }
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn(context)
        } catch (err) {
          if (attempt >= attempts || !(err instanceof Error) || !isRecoverableError(err)) throw err
        }
      }
    },
  }
  // `_altReturn`, the one member not given, exists only in cockatiel's types.
  return policy as unknown as Policy
}

function constantBackoff(durationMs: number): WatchBackoff {
  const backoff: WatchBackoff = { duration: durationMs, next: () => backoff }
  return backoff
}

function issuesText(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; ')
}

function quote(value: string): string {
  return value.length > QUOTE_MAX_CHARS ? `${value.slice(0, QUOTE_MAX_CHARS)}…` : value
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** `promise`, or a rejection as soon as `signal` aborts (the call itself runs on to its deadline). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('stopped'))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('stopped'))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err instanceof Error ? err : new Error(String(err)))
      },
    )
  })
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]).finally(() => clearTimeout(timer))
}
