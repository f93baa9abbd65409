/**
 * The messages between the primary (control plane) and its workers (data plane), over node:cluster's
 * IPC channel. Every message is caused by a change (an endpoint set, a verdict, a reload), a worker's
 * life (start, stop) or an admin request; none is sent per proxied request or per connection.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { Config } from '../config/types.ts'
import type { Endpoint } from '../discovery/types.ts'
import type { SidecarAddresses } from '../sidecar.ts'

/** What the primary knows of one service: its endpoint set and the active-check verdicts on it. */
export interface ServiceState {
  service: string
  /** The current complete set; null until discovery first answered. */
  endpoints: Endpoint[] | null
  /** The registry's last error while the last known set stays in use; null when fresh. */
  error: string | null
  /** Endpoints failing their active check, by `address:port`, with the reason in words. */
  failed: Array<[key: string, reason: string]>
}

/** One endpoint as a worker counts it, for the merged `/api/services`. */
export interface WorkerEndpointStats {
  key: string
  inFlight: number
  requests: number
  /** Why this worker's outlier detector ejected it; null when it did not. */
  ejected: string | null
}

export interface WorkerServiceStats {
  name: string
  panic: boolean
  endpoints: WorkerEndpointStats[]
  /** The worker's own traffic-policy and cache state (`policies`, `cache`), summed by the primary. */
  extra: Record<string, unknown>
}

export type Metrics = Array<MetricObjectWithValues<MetricValue<string>>>

export type ToWorker =
  | { t: 'start'; config: Config; state: ServiceState[] }
  | { t: 'endpoints'; state: ServiceState }
  | { t: 'health'; service: string; key: string; healthy: boolean; reason: string }
  | { t: 'reload'; id: number; config: Config }
  | { t: 'collect'; id: number; metrics: boolean }
  | { t: 'stop' }

export type FromWorker =
  /** The worker listens for messages: the primary may send `start`. */
  | { t: 'hello' }
  | { t: 'ready'; addresses: SidecarAddresses }
  | { t: 'failed'; message: string }
  | { t: 'reloaded'; id: number; error: string | null }
  | { t: 'collected'; id: number; services: WorkerServiceStats[]; metrics: Metrics | null }

function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}

/** The channel carries only our messages, but a worker's code could `process.send` anything. */
export function isToWorker(m: unknown): m is ToWorker {
  return isMessage(m) && ['start', 'endpoints', 'health', 'reload', 'collect', 'stop'].includes(m.t)
}

export function isFromWorker(m: unknown): m is FromWorker {
  return isMessage(m) && ['hello', 'ready', 'failed', 'reloaded', 'collected'].includes(m.t)
}
