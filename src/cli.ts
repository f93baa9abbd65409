#!/usr/bin/env -S node --max-semi-space-size=2 --single-threaded
// The flags, for latency (bench/README.md, "Latency at a fixed rate" and "Memory"):
// --max-semi-space-size=2 caps V8's young generation at 2 MB per semi-space (Node 24's default
//   grows to 32 MB).
//   - Latency: each scavenge stops the proxy for its pause, and at a steady rate every pause shows
//     in the clients' p99 as a spike about three times as long (the requests due just before it
//     wait for it, and those that queued during it are drained after it). Smaller is shorter and
//     more often. The p99 at 29,700 req/s was 0.62-0.95 ms at 2 MB against 1.00-1.35 at 4 (about
//     2 ms at 16), and at 32,000 req/s 0.58-1.17 at 2 against 0.93-1.16 at 3 (bench/README.md).
//   - Memory: a burst of new connections makes V8 grow it and the touched pages stay resident:
//     holding 10,000 idle clients costs 144 MB of RSS by default, 118 MB at 8 MB, about 114 MB at
//     4 MB or less.
//   - Throughput: small requests on 64 connections run as fast at 2 MB as at 4; with 10,000 more
//     connections open, 12% slower (58,000 against 65,800 req/s): each scavenge's fixed cost, paid
//     more often. A process that holds that many connections may want 4 or 8.
// --single-threaded keeps V8's work (compiling, marking, scavenging) on the event loop's thread
//   instead of four helper threads. A sidecar usually runs under a CPU limit of a core or less, where
//   the helpers take that core from the event loop for milliseconds at a time: with the proxy pinned to one
//   core, the event loop was seen waiting 10-45 ms for them (/proc/thread-self/schedstat), and the
//   p99 added at half the max rate fell from 3.7 to 1.6 ms (median of 3 rounds) with the flag, at
//   the same max rate (0.54 × HAProxy's in both runs). `node --no-single-threaded` undoes it.
// The Dockerfile's ENTRYPOINT passes the same flags; test/packaging/dockerfile.test.ts holds the
// two together. To choose others, run `node <flags> dist/cli.js`: a flag on the command line wins
// over NODE_OPTIONS.
import { parseArgs } from 'node:util'
import type { ParseArgsOptionsConfig } from 'node:util'
import { request } from 'undici'
import { readFileSync } from 'node:fs'
import type { LevelWithSilent } from 'pino'
import type { Reloadable } from './reload/reloader.ts'
import type { ServiceView } from './admin/services-view.ts'
import { renderStatusTable } from './status-table.ts'
import { ConfigReloader } from './reload/reloader.ts'

type Command = 'run' | 'validate' | 'status'

/** Exit codes, the same for every command. */
const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

const EXIT_CODES = `Exit codes:
  0  success
  1  failure: invalid config (validate), cannot start (run), admin API unreachable (status)
  2  usage error: unknown command or flag, missing or bad argument
`

const HELP: Record<Command | 'main', string> = {
  main: `outrigger: a load-balancing sidecar for services in Consul, etcd or a file

Usage:
  outrigger run -c FILE [--log-level LEVEL] [--pretty]   start the sidecar (also: outrigger -c FILE)
  outrigger validate -c FILE                             check a config file
  outrigger status [--admin URL]                         show services and endpoints of a running sidecar
  outrigger help [COMMAND]                               this text, or a command's

Options:
  -h, --help       usage (also after a command: outrigger status --help)
  -v, --version    print the version

The config file may also come from OUTRIGGER_CONFIG.
${EXIT_CODES}`,
  run: `Usage: outrigger run -c FILE [--log-level LEVEL] [--pretty]
       outrigger -c FILE ...          (run is the default command)
       OUTRIGGER_CONFIG=FILE outrigger run

Starts the sidecar. JSON logs go to stdout.
  -c, --config FILE    config file (YAML or JSON); default: $OUTRIGGER_CONFIG
  --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent
  --pretty             human-readable logs instead of JSON
  -h, --help           this text
SIGTERM/SIGINT drain in-flight requests (up to shutdownTimeout) and exit 0.

Exit codes:
  0  stopped cleanly after SIGTERM/SIGINT
  1  invalid config, or cannot start (e.g. a port already in use)
  2  usage error: unknown flag, no config file given
`,
  validate: `Usage: outrigger validate -c FILE

Checks a config file without starting anything.
  -c, --config FILE    config file (YAML or JSON); default: $OUTRIGGER_CONFIG
  -h, --help           this text

Exit codes:
  0  valid: prints 'ok: N services'
  1  invalid or unreadable: prints one line per problem, '<path>: <message>'
  2  usage error: unknown flag, no config file given
`,
  status: `Usage: outrigger status [--admin URL]

Prints a table of services and endpoints (strategy, weight, health, flags, in-flight and
total requests, and why an endpoint is unhealthy), read from /api/services of a running sidecar.
  --admin URL    its admin address: http://HOST:PORT or HOST:PORT (default http://127.0.0.1:9901)
  -h, --help     this text

Exit codes:
  0  the admin API answered and the table was printed (whatever the endpoints' health)
  1  the admin API could not be reached or did not answer with a services list
  2  usage error: unknown flag, bad URL
`,
}

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const
const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const
const OPTIONS = {
  run: { ...CONFIG_OPTION, 'log-level': { type: 'string' }, pretty: { type: 'boolean' }, ...HELP_OPTION },
  validate: { ...CONFIG_OPTION, ...HELP_OPTION },
  status: { admin: { type: 'string' }, ...HELP_OPTION },
} as const satisfies Record<Command, ParseArgsOptionsConfig>
/** Without a command: `run`'s flags (outrigger -c FILE), plus --version. */
const TOP_LEVEL_OPTIONS = { ...OPTIONS.run, version: { type: 'boolean', short: 'v' } } as const satisfies ParseArgsOptionsConfig

const DEFAULT_ADMIN = 'http://127.0.0.1:9901'
const STATUS_TIMEOUT_MS = 5000
const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])

function isCommand(word: string): word is Command {
  return word === 'run' || word === 'validate' || word === 'status'
}

/** A usage error: the message and the relevant usage on stderr, exit 2. */
function usage(message: string, topic: Command | 'main'): number {
  process.stderr.write(`outrigger: ${message}\n\n${HELP[topic]}`)
  return EXIT_USAGE
}

async function main(argv: string[]): Promise<number> {
  const first = argv[0]
  let command: Command = 'run'
  let explicit = false
  if (first !== undefined && !first.startsWith('-')) {
    if (first === 'help') {
      const topic = argv[1]
      if (argv.length > 2 || (topic !== undefined && !isCommand(topic))) return usage(`no help for "${argv.slice(1).join(' ')}"`, 'main')
      process.stdout.write(HELP[topic ?? 'main'])
      return EXIT_OK
    }
    if (!isCommand(first)) return usage(`unknown command "${first}"`, 'main')
    command = first
    explicit = true
  }
  const topic = explicit ? command : 'main'
  const options: ParseArgsOptionsConfig = explicit ? OPTIONS[command] : TOP_LEVEL_OPTIONS
  // With strict parsing, each option present has the type its definition gives.
  let values: { config?: string; 'log-level'?: string; pretty?: boolean; admin?: string; help?: boolean; version?: boolean }
  try {
    values = parseArgs({ args: explicit ? argv.slice(1) : argv, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    return usage((err as Error).message, topic)
  }
  if (values.help === true) {
    process.stdout.write(HELP[topic])
    return EXIT_OK
  }
  if (values.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return EXIT_OK
  }
  if (command === 'status') {
    const admin = adminBase(values.admin ?? DEFAULT_ADMIN)
    return admin === null ? usage(`--admin must be an http(s) URL or HOST:PORT, not "${values.admin}"`, 'status') : status(admin)
  }
  const file = values.config ?? process.env.OUTRIGGER_CONFIG
  if (file === undefined || file === '') return usage('no config file: pass -c FILE or set OUTRIGGER_CONFIG', topic)
  if (command === 'validate') return validate(file)
  if (values['log-level'] !== undefined && !LEVELS.has(values['log-level'])) {
    return usage(`--log-level must be one of ${[...LEVELS].join(', ')}`, topic)
  }
  return run(file, values['log-level'], values.pretty === true)
}

function configPath(flag: string | undefined): string | null {
  const file = flag ?? process.env.OUTRIGGER_CONFIG
  if (file === undefined || file === '') {
    process.stderr.write('outrigger: no config file: pass -c FILE or set OUTRIGGER_CONFIG\n')
    return null
  }
  return file
}

async function validate(file: string): Promise<number> {
  const [{ loadConfigFile }, { ConfigError }, { policyFileProblems }] = await Promise.all([import('./config/load.ts'), import('./config/errors.ts'), import('./policies/service-policies.ts')])
  try {
    const config = loadConfigFile(file)
    const problems = policyFileProblems(config)
    if (problems.length > 0) {
      process.stdout.write(`${problems.join('\n')}\n`)
      return EXIT_FAILED
    }
    process.stdout.write(`ok: ${config.services.length} services\n`)
    return EXIT_OK
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stdout.write(`${err.message}\n`)
      return EXIT_FAILED
    }
    throw err
  }
}

/** `--admin` as a base URL ending in `/`, so a sidecar behind a path prefix works too; null when unusable. */
function adminBase(given: string): URL | null {
  let url: URL
  try {
    url = new URL(given.includes('://') ? given : `http://${given}`)
  } catch {
    return null
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
  if (!url.pathname.endsWith('/')) url.pathname += '/'
  url.search = ''
  url.hash = ''
  return url
}

/** The innermost message of a fetch failure: `connect ECONNREFUSED 127.0.0.1:9901` rather than `fetch failed`. */
function failure(err: unknown): string {
  let e: unknown = err
  while (e instanceof Error && e.cause instanceof Error) e = e.cause
  if (e instanceof Error && e.name === 'TimeoutError') return `no answer within ${STATUS_TIMEOUT_MS / 1000} s`
  return e instanceof Error ? e.message : String(e)
}

function isServiceList(body: unknown): body is ServiceView[] {
  return Array.isArray(body) && body.every((s: unknown) => typeof s === 'object' && s !== null && typeof (s as ServiceView).name === 'string' && Array.isArray((s as ServiceView).endpoints))
}

async function status(admin: URL): Promise<number> {
  const url = new URL('api/services', admin)
  let body: unknown
  try {
    // undici's request rather than fetch: fetch refuses "bad ports" (6000, 6665...), which are fine admin ports.
    const res = await request(url, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`it answered HTTP ${res.statusCode}`)
    }
    body = await res.body.json()
  } catch (err) {
    process.stderr.write(
      `outrigger: cannot read the admin API at ${url.href}: ${failure(err)}\n` +
        `Is outrigger running there? Its address is the config's 'admin:' (default 127.0.0.1:9901); pass --admin URL.\n`,
    )
    return EXIT_FAILED
  }
  if (!isServiceList(body)) {
    process.stderr.write(`outrigger: ${url.href} did not answer with a list of services; is --admin an outrigger admin address?\n`)
    return EXIT_FAILED
  }
  const color = process.stdout.isTTY && (process.env.NO_COLOR ?? '') === ''
  process.stdout.write(renderStatusTable(body, { color }))
  return EXIT_OK
}

async function run(flag: string | undefined, level: string | undefined, pretty: boolean): Promise<number> {
  // Loaded here rather than at the top: the sidecar's modules take about 0.6 s to load, which
  // --help and status do not need.
  const [{ loadConfigFile }, { ConfigError }, { createLogger }, { Sidecar, StartupError }, { workerCount }] = await Promise.all([
    import('./config/load.ts'),
    import('./config/errors.ts'),
    import('./observability/logger.ts'),
    import('./sidecar.ts'),
    import('./workers/per-worker.ts'),
  ])
  const file = configPath(flag)
  if (file === null) return 1
  if (level !== undefined && !LEVELS.has(level)) {
    process.stderr.write(`outrigger: --log-level must be one of ${[...LEVELS].join(', ')}\n`)
    return 1
  }
  const logger = createLogger({ level: (level ?? 'info') as LevelWithSilent, pretty })
  let sidecar: Reloadable & { stop(): Promise<void> }
  let loadedText: string | null
  try {
    const config = loadConfigFile(file)
    loadedText = readFileText(file)
    const workers = workerCount(config.workers)
    // workers: 1 (the default) runs everything in this process; more: a primary and its workers.
    sidecar = workers > 1
      ? await (await import('./workers/supervisor.ts')).Supervisor.start(config, logger, { logLevel: level ?? 'info', pretty })
      : await Sidecar.start(config, logger)
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      logger.fatal({ file }, `cannot start: ${err.message.replaceAll('\n', '; ')}`)
      logger.flush()
      process.stderr.write(`outrigger: cannot start:\n${err.message}\n`)
      return 1
    }
    throw err
  }
  // SIGHUP or a change of the file: reload; an invalid file is refused and the running config kept.
  const reloader = new ConfigReloader(file, sidecar, logger.child({ module: 'reload' }), loadedText)
  reloader.watchFile()
  const onHangup = (): void => {
    logger.info({ signal: 'SIGHUP' }, 'reloading the config')
    void reloader.request('SIGHUP')
  }
  process.on('SIGHUP', onHangup)
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string): void => {
      process.off('SIGHUP', onHangup)
      reloader.close()
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

function readFileText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
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
