import { pino } from 'pino'
import type { DestinationStream, Logger, LevelWithSilent } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level?: LevelWithSilent
  /** Human-readable lines instead of JSON (pino-pretty, for a terminal). */
  pretty?: boolean
  /** Where JSON lines go; stdout by default. */
  destination?: DestinationStream
}

/**
 * The root logger: JSON lines on stdout, ISO timestamps, and secrets redacted wherever a config
 * object is logged. Modules take a child (`logger.child({ module: 'discovery' })`).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    level: options.level ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    base: { pid: process.pid },
    redact: { paths: ['token', '*.token', '*.*.token', 'password', '*.password', '*.*.password'], censor: '[redacted]' },
  }
  if (options.pretty === true) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } })
  }
  // Async writes keep logging off the request path; the buffer is flushed on exit by pino.
  return pino(base, options.destination ?? pino.destination({ dest: 1, sync: false }))
}
