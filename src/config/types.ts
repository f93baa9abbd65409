/**
 * The resolved configuration: what `loadConfig` returns after parsing, `${VAR}` expansion, validation
 * and normalisation. Durations are milliseconds, sizes are bytes, every default is filled in, so the
 * rest of the code never re-parses or re-defaults anything.
 *
 * The shape follows ../shared/DESIGN.md ("Configuration"); field names are the contract's.
 */

export const STRATEGIES = ['round-robin', 'weighted', 'least-connections', 'consistent-hash'] as const
export type Strategy = (typeof STRATEGIES)[number]

export const SOURCES = ['consul', 'etcd', 'file', 'static'] as const
export type SourceKind = (typeof SOURCES)[number]

/** `host:port` split into its parts; `host` may be an IPv6 literal without brackets. */
export interface ListenAddress {
  host: string
  port: number
}

/** One endpoint as written in `static.endpoints` or in a `file` source. */
export interface StaticEndpoint {
  address: string
  port: number
  weight: number
}

export interface RouteConfig {
  host?: string
  pathPrefix?: string
  stripPrefix: boolean
  methods?: string[]
  headers?: Record<string, string>
  requestHeaders?: HeaderRewrite
  responseHeaders?: HeaderRewrite
}

export interface HeaderRewrite {
  set: Record<string, string>
  remove: string[]
}

export interface ActiveHealthCheckConfig {
  type: 'http' | 'tcp'
  path: string
  intervalMs: number
  timeoutMs: number
  healthyThreshold: number
  unhealthyThreshold: number
}

export interface PassiveHealthCheckConfig {
  consecutiveFailures: number
  ejectionTimeMs: number
  maxEjectionTimeMs: number
  maxEjectionPercent: number
}

export interface HealthCheckConfig {
  active?: ActiveHealthCheckConfig
  passive?: PassiveHealthCheckConfig
  /** Percent healthy below which health is ignored; 0 disables panic mode. */
  panicThreshold: number
}

export interface RetryConfig {
  /** Extra attempts after the first, each on a different endpoint. */
  attempts: number
  budgetPercent: number
  replayBodyLimitBytes: number
  /** Lower-cased header name. */
  idempotencyKeyHeader: string
}

export interface TimeoutsConfig {
  connectMs: number
  requestMs: number
  idleMs: number
}

export type HashKey =
  | { kind: 'header'; name: string }
  | { kind: 'cookie'; name: string }
  | { kind: 'query'; name: string }
  | { kind: 'ip' }
  | { kind: 'path' }

export interface TlsConfig {
  ca?: string
  cert?: string
  key?: string
  servername?: string
}

export interface ServiceConfig {
  /** The key under `services`. */
  name: string
  source: SourceKind
  /** Name in the registry; defaults to the key. */
  serviceName: string
  tags: string[]
  strategy: Strategy
  listen?: ListenAddress
  routes: RouteConfig[]
  healthCheck: HealthCheckConfig
  retry: RetryConfig
  slowStart?: { windowMs: number }
  timeouts: TimeoutsConfig
  maxConcurrent: number
  hashKey: HashKey
  stickyCookie?: { ttlMs: number }
  hashBalanceFactor?: number
  /** `file` source: path of the watched endpoints file, resolved against the config file's folder. */
  path?: string
  /** `static` source. */
  endpoints?: StaticEndpoint[]
  tls?: TlsConfig
  circuitBreaker?: { maxRequests: number; maxPending: number }
  rateLimit?: { requestsPerSecond: number; burst: number }
  cache?: { maxEntries: number; maxBytes: number }
}

export interface ConsulDiscoveryConfig {
  url: string
  token: string
  datacenter?: string
  waitMs: number
  consistency: 'default' | 'stale' | 'consistent'
}

export interface EtcdDiscoveryConfig {
  endpoints: string[]
  prefix: string
  username?: string
  password?: string
}

export interface DiscoveryConfig {
  /** Absolute path; relative paths in the file are resolved against the config file's folder. */
  stateDir: string
  /** Always present: the contract's defaults when the file has no `discovery.consul`. */
  consul: ConsulDiscoveryConfig
  /** Always present: the contract's defaults when the file has no `discovery.etcd`. */
  etcd: EtcdDiscoveryConfig
}

export interface RegisterConfig {
  source: 'consul' | 'etcd'
  serviceName: string
  address: string
  port: number
  weight: number
  tags: string[]
  check?: { path: string; intervalMs: number }
}

export interface LimitsConfig {
  /** Client connections per proxy listener; absent: no cap. */
  maxConnections?: number
  headersTimeoutMs: number
  requestTimeoutMs: number
  maxHeaderSizeBytes: number
}

export interface Config {
  listen: ListenAddress
  admin: ListenAddress
  shutdownTimeoutMs: number
  accessLog: boolean
  /**
   * Proxy processes: 1 runs everything in one process; more (or `auto`, one per CPU) runs the data
   * plane in that many node:cluster workers beside a primary holding the control plane (see
   * docs/architecture.md, "Workers").
   */
  workers: number | 'auto'
  discovery: DiscoveryConfig
  services: ServiceConfig[]
  register?: RegisterConfig
  limits: LimitsConfig
  /** Bearer token the admin API requires (except /healthz and /readyz); absent: open. */
  adminToken?: string
}
