import os from 'node:os'
import type { Config, ServiceConfig } from '../config/types.ts'

/** `workers` as a number of processes: `auto` is one per CPU this process may use. */
export function workerCount(workers: Config['workers']): number {
  return workers === 'auto' ? os.availableParallelism() : workers
}

/**
 * The config a worker runs: the limits a user sets for the sidecar (per endpoint in flight, circuit
 * breaker, rate limit, cache size) split evenly over `count` workers, so the upstreams and the
 * memory see one sidecar's worth, not `count` times it. Integer limits round up (a limit of 1 stays
 * 1 per worker), so their sum may exceed the configured value by less than `count`. The kernel
 * spreads connections, not requests, so a worker holding more busy connections reaches its share
 * first: the split is exact in sum, approximate per moment (see docs/architecture.md, "Workers").
 */
export function perWorkerConfig(config: Config, count: number): Config {
  if (count <= 1) return config
  const share = (n: number): number => Math.ceil(n / count)
  return {
    ...config,
    services: config.services.map((s): ServiceConfig => {
      const out: ServiceConfig = { ...s, maxConcurrent: share(s.maxConcurrent) }
      if (s.circuitBreaker !== undefined) out.circuitBreaker = { maxRequests: share(s.circuitBreaker.maxRequests), maxPending: share(s.circuitBreaker.maxPending) }
      if (s.rateLimit !== undefined) out.rateLimit = { requestsPerSecond: s.rateLimit.requestsPerSecond / count, burst: share(s.rateLimit.burst) }
      if (s.cache !== undefined) out.cache = { maxEntries: share(s.cache.maxEntries), maxBytes: share(s.cache.maxBytes) }
      return out
    }),
  }
}
