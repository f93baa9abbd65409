/**
 * Discovery adapters turn a registry into a stream of complete endpoint sets for one service.
 *
 * Contract (every adapter):
 * - `onUpdate` receives the *whole* current set each time, never a delta; the consumer diffs.
 * - Callbacks are never invoked synchronously from `start()`: the consumer finishes wiring first.
 * - On a registry error the adapter keeps the last good set (it simply does not call `onUpdate`),
 *   reports the failure through `onError`, and retries by itself with backoff.
 * - `stop()` ends every timer, watch and connection; no callback fires after it resolves.
 */

/** One instance of a service as a registry describes it. */
export interface Endpoint {
  address: string
  port: number
  /** Relative share for the weighted strategies; a positive integer, 1 when the registry says nothing. */
  weight: number
  /** Free-form registry metadata (Consul `Service.Meta`, etcd `meta`); empty when none. */
  meta: Readonly<Record<string, string>>
}

export interface DiscoveryListener {
  /** A complete endpoint set; may equal the previous one (the consumer ignores no-op updates). */
  onUpdate(endpoints: readonly Endpoint[]): void
  /** The registry could not be read; the last set stays in use. Not thrown: failures travel as values. */
  onError(error: Error): void
}

export interface DiscoveryAdapter {
  /** Human-readable source name for logs and metrics: `static`, `file`, `consul`, `etcd`. */
  readonly source: string
  start(listener: DiscoveryListener): void
  stop(): Promise<void>
}

/** `address:port`, the identity of an endpoint across updates. IPv6 literals are bracketed. */
export function endpointKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}
