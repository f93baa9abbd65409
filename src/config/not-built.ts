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
    if (s.tls !== undefined) paths.push(`${at}.tls`)
    if (s.cache !== undefined) paths.push(`${at}.cache`)
  }
  return paths
}
