import type { Config } from './types.ts'

/**
 * Keys the schema accepts (they are the contract) whose behaviour this build does not have yet.
 * The sidecar logs one warning per configured key at start, so a config is never silently half
 * applied. Each issue that builds a part removes its entry here.
 */
export function notBuiltYet(config: Config): string[] {
  const paths: string[] = []
  for (const s of config.services) {
    const at = `services.${s.name}`
    if (s.circuitBreaker !== undefined) paths.push(`${at}.circuitBreaker`)
    if (s.rateLimit !== undefined) paths.push(`${at}.rateLimit`)
    for (const [i, r] of s.routes.entries()) {
      if (r.requestHeaders !== undefined) paths.push(`${at}.routes[${i}].requestHeaders`)
      if (r.responseHeaders !== undefined) paths.push(`${at}.routes[${i}].responseHeaders`)
    }
  }
  return paths
}
