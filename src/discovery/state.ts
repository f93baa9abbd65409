import { mkdirSync, readFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { parseEndpointList } from '../config/load.ts'
import type { Endpoint } from './types.ts'

/** What a state file holds. */
interface SavedState {
  version: 1
  service: string
  source: string
  savedAt: string
  endpoints: Array<{ address: string; port: number; weight: number; meta: Record<string, string> }>
}

/**
 * The last known endpoint set of each service, kept in `discovery.stateDir` so that a sidecar
 * restarted while its registry is down still routes. One JSON file per service, written
 * atomically (temporary file, then rename), so a crash mid-write leaves the previous good file.
 * Writes are coalesced per service: only the newest set is written, never a queue of old ones.
 */
export class EndpointStateStore {
  readonly #dir: string
  readonly #logger: Logger
  /** Per service: the set waiting to be written while a write is in progress. */
  readonly #pending = new Map<string, { source: string; endpoints: readonly Endpoint[] }>()
  readonly #writing = new Map<string, Promise<void>>()

  constructor(dir: string, logger: Logger) {
    this.#dir = dir
    this.#logger = logger
  }

  /** The saved set of a service, or null when there is none or it cannot be read. */
  load(service: string): Endpoint[] | null {
    const file = this.#file(service)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      return null
    }
    try {
      const saved = JSON.parse(text) as SavedState
      // The same validation as a file source's list; meta is carried alongside, as strings only.
      const endpoints = parseEndpointList(JSON.stringify(saved.endpoints.map((e) => ({ address: e.address, port: e.port, weight: e.weight }))), 'json', file)
      return endpoints.map((e, i) => ({ ...e, meta: stringMap(saved.endpoints[i]?.meta) }))
    } catch (err) {
      this.#logger.warn({ service, file, err: (err as Error).message }, 'saved endpoints unreadable; ignored')
      return null
    }
  }

  /** Saves a service's set in the background; failures are logged, never thrown. */
  save(service: string, source: string, endpoints: readonly Endpoint[]): void {
    this.#pending.set(service, { source, endpoints })
    if (!this.#writing.has(service)) this.#writing.set(service, this.#drain(service))
  }

  /** Resolves when every write in progress has finished (for shutdown and tests). */
  async flush(): Promise<void> {
    while (this.#writing.size > 0) await Promise.all(this.#writing.values())
  }

  async #drain(service: string): Promise<void> {
    try {
      for (let next = this.#pending.get(service); next !== undefined; next = this.#pending.get(service)) {
        this.#pending.delete(service)
        await this.#write(service, next.source, next.endpoints)
      }
    } finally {
      this.#writing.delete(service)
    }
  }

  async #write(service: string, source: string, endpoints: readonly Endpoint[]): Promise<void> {
    const file = this.#file(service)
    const state: SavedState = {
      version: 1,
      service,
      source,
      savedAt: new Date().toISOString(),
      endpoints: endpoints.map((e) => ({ address: e.address, port: e.port, weight: e.weight, meta: { ...e.meta } })),
    }
    const tmp = `${file}.${process.pid}.tmp`
    try {
      mkdirSync(this.#dir, { recursive: true })
      await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`)
      await rename(tmp, file)
    } catch (err) {
      this.#logger.warn({ service, file, err: (err as Error).message }, 'could not save the last known endpoints')
    }
  }

  #file(service: string): string {
    // Service names are validated to letters, digits, '.', '_' and '-', starting with a letter or digit.
    return path.join(this.#dir, `${service}.json`)
  }
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v
  return out
}
