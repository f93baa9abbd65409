/**
 * Announces the local app in a registry while the sidecar runs.
 *
 * Contract: `start()` never throws and never blocks start-up on the registry: while the registry
 * cannot be reached it retries in the background with backoff, and it puts the registration back
 * if the registry loses it. `stop()` removes the registration (best effort, bounded in time).
 */
export interface Registrar {
  readonly source: string
  start(): void
  stop(): Promise<void>
}
