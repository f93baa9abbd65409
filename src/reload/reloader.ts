import { readFileSync, watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { Config } from '../config/types.ts'
import { ConfigError, formatIssue } from '../config/errors.ts'
import { formatOf, parseConfig } from '../config/load.ts'
import type { ReloadResult } from '../sidecar.ts'
import { StartupError } from '../sidecar.ts'
import type { Metrics } from '../observability/metrics.ts'

/** What the reloader drives: the running sidecar. */
export interface Reloadable {
  readonly metrics: Metrics
  reload(next: Config): Promise<ReloadResult>
}

export interface ConfigReloaderOptions {
  /** Quiet time after the last change event before the file is read (editors write in steps). */
  debounceMs?: number
  env?: NodeJS.ProcessEnv
}

/**
 * Reloads the sidecar from its config file on SIGHUP (`request('SIGHUP')`) and when the file changes.
 *
 * - The file's folder is watched, not the file: editors and `kubectl` replace files by renaming (a
 *   ConfigMap swaps a `..data` symlink), which a watch on the old inode would never see.
 * - Events are debounced and the file is re-read only when its text changed, so a save that changes
 *   nothing, or events for other files in the folder, cost one read at most.
 * - One reload at a time; requests arriving meanwhile collapse into one more run afterwards.
 * - An invalid file is refused with every problem logged as `<path>: <message>`; the running config
 *   stays in force, and `outrigger_config_last_reload_successful` turns 0 until a good one loads.
 */
export class ConfigReloader {
  readonly #file: string
  readonly #target: Reloadable
  readonly #logger: Logger
  readonly #debounceMs: number
  readonly #env: NodeJS.ProcessEnv
  #lastText: string | null
  #watcher: FSWatcher | null = null
  #timer: NodeJS.Timeout | null = null
  #busy: Promise<void> | null = null
  #pending: string | null = null
  #closed = false

  /** `loadedText` is the text the running config came from (so an unchanged file is not reloaded). */
  constructor(file: string, target: Reloadable, logger: Logger, loadedText: string | null, options: ConfigReloaderOptions = {}) {
    this.#file = path.resolve(file)
    this.#target = target
    this.#logger = logger
    this.#lastText = loadedText
    this.#debounceMs = options.debounceMs ?? 250
    this.#env = options.env ?? process.env
  }

  /** Starts watching the config file's folder. */
  watchFile(): void {
    const dir = path.dirname(this.#file)
    const base = path.basename(this.#file)
    try {
      this.#watcher = watch(dir, { persistent: false }, (_event, name) => {
        // null: the platform did not say which file; `..data`: a Kubernetes ConfigMap swap.
        if (name === null || name === base || name.startsWith('..')) this.#schedule()
      })
      this.#watcher.on('error', (err) => this.#logger.warn({ err, dir }, 'config file watch failed; reload with SIGHUP'))
    } catch (err) {
      this.#logger.warn({ err, dir }, 'cannot watch the config file; reload with SIGHUP')
    }
  }

  /** Asks for a reload; `trigger` is logged (`SIGHUP`, `file`). Never rejects. */
  request(trigger: string): Promise<void> {
    if (this.#closed) return Promise.resolve()
    if (this.#busy !== null) {
      this.#pending = trigger
      return this.#busy
    }
    const run = this.#run(trigger).finally(() => {
      this.#busy = null
      const again = this.#pending
      this.#pending = null
      if (again !== null) void this.request(again)
    })
    this.#busy = run
    return run
  }

  close(): void {
    this.#closed = true
    this.#watcher?.close()
    this.#watcher = null
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #schedule(): void {
    if (this.#closed) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.request('file')
    }, this.#debounceMs)
  }

  async #run(trigger: string): Promise<void> {
    let text: string
    try {
      text = readFileSync(this.#file, 'utf8')
    } catch (err) {
      // Mid-rename, or deleted: keep what runs; the next event (or SIGHUP) tries again.
      this.#refuse(trigger, [`cannot read config file ${this.#file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
      return
    }
    if (trigger === 'file' && text === this.#lastText) return
    let config: Config
    try {
      config = parseConfig(text, { format: formatOf(this.#file), baseDir: path.dirname(this.#file), env: this.#env, file: this.#file })
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      this.#lastText = text
      this.#refuse(trigger, err.issues.map(formatIssue))
      return
    }
    try {
      const result = await this.#target.reload(config)
      this.#lastText = text
      this.#target.metrics.configReload(true)
      this.#logger.info({ trigger, added: result.added, changed: result.changed, removed: result.removed }, 'config reload applied')
    } catch (err) {
      if (!(err instanceof StartupError)) {
        this.#refuse(trigger, [(err as Error).message])
        this.#logger.error({ err }, 'config reload failed unexpectedly')
        return
      }
      this.#lastText = text
      this.#refuse(trigger, [err.message])
    }
  }

  #refuse(trigger: string, errors: string[]): void {
    this.#target.metrics.configReload(false)
    this.#logger.error({ trigger, file: this.#file, errors }, `config reload refused, the running config is kept: ${errors.join('; ')}`)
  }
}
