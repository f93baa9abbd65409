import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/** Every error the proxy answers with, by its stable code (the contract's error answers). */
export const ERROR_STATUS = {
  no_route: 404,
  method_not_allowed: 405,
  rate_limited: 429,
  upstream_connect_failed: 502,
  upstream_reset: 502,
  no_healthy_endpoint: 503,
  overloaded: 503,
  upstream_timeout: 504,
} as const
export type ErrorCode = keyof typeof ERROR_STATUS

export const REASON: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

export function errorBody(code: string, service: string | null): string {
  return JSON.stringify({ error: code, service })
}

/** Answers a request with the contract's JSON error body and `x-outrigger-error` header. */
export function sendError(res: ServerResponse, code: ErrorCode, service: string | null, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    // The response already started: the only honest signal left is a cut connection.
    res.destroy()
    return
  }
  const body = errorBody(code, service)
  // The reason given, not left to res.statusMessage, which a failed writeHead may have set.
  res.writeHead(ERROR_STATUS[code], REASON[ERROR_STATUS[code]], {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-outrigger-error': code,
    ...extraHeaders,
  })
  res.end(body)
}

/** The same answer written on a raw socket (CONNECT and Upgrade requests have no ServerResponse). */
export function writeRawError(socket: Duplex, status: number, code: string, service: string | null, extra = ''): void {
  if (socket.destroyed) return
  const body = errorBody(code, service)
  socket.end(
    `HTTP/1.1 ${status} ${REASON[status] ?? 'Error'}\r\n` +
      'content-type: application/json\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      `x-outrigger-error: ${code}\r\n${extra}` +
      'connection: close\r\n\r\n' +
      body,
  )
}
