import { watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import type { ServiceConfig } from '../config/types.ts'
import { formatOf, parseEndpointList } from '../config/load.ts'
import type { DiscoveryAdapter, DiscoveryListener, Endpoint } from './types.ts'

/** Editors and deploy tools write in bursts (truncate, write, rename): wait for quiet before reading. */
export const FILE_DEBOUNCE_MS = 100

/**
 * The `file` source: a YAML or JSON list of endpoints (`"host:port"` or `{address, port, weight}`),
 * re-read whenever it changes. The folder is watched rather than the file, so an atomic
 * rename-and-replace (the safe way to rewrite a file) is seen too. An unreadable or invalid file
 * keeps the last good endpoints and reports why.
 */
export class FileDiscovery implements DiscoveryAdapter {
  readonly source = 'file'
  readonly #file: string
  readonly #logger: Logger
  #watcher: FSWatcher | null = null
  #timer: NodeJS.Timeout | null = null
  #listener: DiscoveryListener | null = null
  #stopped = false
  /** Serialised text of the last delivered set: an unchanged file delivers nothing. */
  #last: string | null = null

  constructor(service: ServiceConfig, logger: Logger) {
    if (service.path === undefined) throw new Error(`services.${service.name}.path is required for the file source`)
    this.#file = service.path
    this.#logger = logger
  }

  start(listener: DiscoveryListener): void {
    this.#listener = listener
    const base = path.basename(this.#file)
    try {
      this.#watcher = watch(path.dirname(this.#file), { persistent: false }, (_event, name) => {
        if (name === null || name === base) this.#schedule()
      })
      this.#watcher.on('error', (err) => listener.onError(err))
    } catch (err) {
      // The folder does not exist (yet): report, and keep polling by re-reading on a timer.
      setImmediate(() => listener.onError(err as Error))
    }
    this.#schedule(0)
  }

  stop(): Promise<void> {
    this.#stopped = true
    this.#watcher?.close()
    if (this.#timer !== null) clearTimeout(this.#timer)
    return Promise.resolve()
  }

  #schedule(delayMs = FILE_DEBOUNCE_MS): void {
    if (this.#stopped) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.#read()
    }, delayMs)
  }

  async #read(): Promise<void> {
    const listener = this.#listener!
    let endpoints: Endpoint[]
    try {
      // The same schema as `static` endpoints: the same messages as `outrigger validate`.
      endpoints = parseEndpointList(await readFile(this.#file, 'utf8'), formatOf(this.#file)).map((e) => ({ ...e, meta: {} }))
    } catch (err) {
      if (this.#stopped) return
      this.#logger.warn({ file: this.#file, err: (err as Error).message }, 'endpoints file unusable; keeping the last good endpoints')
      listener.onError(new Error(`${this.#file}: ${(err as Error).message.replaceAll('\n', '; ')}`))
      if (this.#watcher === null) this.#schedule(1000)
      return
    }
    if (this.#stopped) return
    const text = JSON.stringify(endpoints)
    if (text === this.#last) return
    this.#last = text
    listener.onUpdate(endpoints)
  }
}
