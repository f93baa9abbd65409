#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import type { LevelWithSilent } from 'pino'
import { loadConfigFile } from './config/load.ts'
import { ConfigError } from './config/errors.ts'
import { createLogger } from './observability/logger.ts'
import { Sidecar, StartupError } from './sidecar.ts'
import { policyFileProblems } from './policies/service-policies.ts'
import type { ServiceView } from './admin/services-view.ts'
import { renderStatusTable } from './status-table.ts'

const HELP: Record<string, string> = {
  main: `outrigger: a load-balancing sidecar for services in Consul, etcd or a file

Usage:
  outrigger run -c FILE [--log-level LEVEL] [--pretty]   start the sidecar (also: outrigger -c FILE)
  outrigger validate -c FILE                             check a config file
  outrigger status [--admin URL]                         show services and endpoints of a running sidecar

The config file may also come from OUTRIGGER_CONFIG. 'outrigger COMMAND --help' for details.
`,
  run: `Usage: outrigger run -c FILE [--log-level LEVEL] [--pretty]

Starts the sidecar. JSON logs go to stdout.
  -c, --config FILE    config file (YAML or JSON); default: $OUTRIGGER_CONFIG
  --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent
  --pretty             human-readable logs instead of JSON
SIGTERM/SIGINT drain in-flight requests (up to shutdownTimeout) and exit 0.
Exit codes: 0 stopped cleanly, 1 bad config or cannot start.
`,
  validate: `Usage: outrigger validate -c FILE

Prints 'ok: N services' and exits 0 when FILE is valid; otherwise prints one line per
problem as '<path>: <message>' and exits 1.
`,
  status: `Usage: outrigger status [--admin URL]

Prints a table of services, endpoints, weights, health and in-flight requests, read from
the admin API of a running sidecar (default http://127.0.0.1:9901).
Exit codes: 0 shown, 1 the admin API could not be read.
`,
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])

async function main(argv: string[]): Promise<number> {
  let command = 'run'
  const explicit = argv[0] !== undefined && !argv[0].startsWith('-')
  if (explicit) command = argv.shift()!
  if (!(command in HELP) || command === 'main') {
    process.stderr.write(`outrigger: unknown command "${command}"\n\n${HELP.main}`)
    return 2
  }
  let values: Record<string, string | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string' },
        pretty: { type: 'boolean' },
        admin: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (err) {
    process.stderr.write(`outrigger: ${(err as Error).message}\n\n${HELP[command]}`)
    return 2
  }
  if (values.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  if (values.help === true) {
    process.stdout.write(explicit ? HELP[command]! : HELP.main!)
    return 0
  }
  switch (command) {
    case 'validate':
      return validate(values.config as string | undefined)
    case 'status':
      return status((values.admin as string | undefined) ?? 'http://127.0.0.1:9901')
    default:
      return run(values.config as string | undefined, values['log-level'] as string | undefined, values.pretty === true)
  }
}

function configPath(flag: string | undefined): string | null {
  const file = flag ?? process.env.OUTRIGGER_CONFIG
  if (file === undefined || file === '') {
    process.stderr.write('outrigger: no config file: pass -c FILE or set OUTRIGGER_CONFIG\n')
    return null
  }
  return file
}

function validate(flag: string | undefined): number {
  const file = configPath(flag)
  if (file === null) return 1
  try {
    const config = loadConfigFile(file)
    const problems = policyFileProblems(config)
    if (problems.length > 0) {
      process.stdout.write(`${problems.join('\n')}\n`)
      return 1
    }
    process.stdout.write(`ok: ${config.services.length} services\n`)
    return 0
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stdout.write(`${err.message}\n`)
      return 1
    }
    throw err
  }
}

async function status(adminUrl: string): Promise<number> {
  const url = new URL('/api/services', adminUrl.includes('://') ? adminUrl : `http://${adminUrl}`)
  let services: ServiceView[]
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    services = (await res.json()) as ServiceView[]
  } catch (err) {
    process.stderr.write(`outrigger: cannot read ${url.href}: ${(err as Error).message}\n`)
    return 1
  }
  process.stdout.write(renderStatusTable(services))
  return 0
}

async function run(flag: string | undefined, level: string | undefined, pretty: boolean): Promise<number> {
  const file = configPath(flag)
  if (file === null) return 1
  if (level !== undefined && !LEVELS.has(level)) {
    process.stderr.write(`outrigger: --log-level must be one of ${[...LEVELS].join(', ')}\n`)
    return 1
  }
  const logger = createLogger({ level: (level ?? 'info') as LevelWithSilent, pretty })
  let sidecar: Sidecar
  try {
    const config = loadConfigFile(file)
    sidecar = await Sidecar.start(config, logger)
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      logger.fatal({ file }, `cannot start: ${err.message.replaceAll('\n', '; ')}`)
      logger.flush()
      process.stderr.write(`outrigger: cannot start:\n${err.message}\n`)
      return 1
    }
    throw err
  }
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info({ signal }, 'shutting down')
      sidecar.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed')
          resolve(1)
        },
      )
    }
    process.once('SIGTERM', () => shutdown('SIGTERM'))
    process.once('SIGINT', () => shutdown('SIGINT'))
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // Let pino's async destination flush; nothing else should keep the loop alive after a stop.
    setTimeout(() => process.exit(code), 200).unref()
  },
  (err: unknown) => {
    process.stderr.write(`outrigger: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
