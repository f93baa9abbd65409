/**
 * The upstreams and the proxies bench/compare.ts measures, each configured the same way: one core,
 * one thread or worker (except the worker and thread counts of compare.ts's workers scenario),
 * keep-alive on both sides, round-robin over the same three upstreams, and routing by `Host: up`.
 * Configs are written to the run's temporary folder.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { freePort, startPinned, waitReady } from '../lib/process.ts'
import type { Started } from '../lib/process.ts'

export const HOST_HEADER = 'up'
export const SMALL_BODY = 'hello from upstream\n'
export const LARGE_BODY_BYTES = 64 * 1024
export const POST_BODY_BYTES = 16 * 1024

export interface Tools {
  haproxy: string
  nginx: string
  /** The Node 24 binary running the harness. */
  node: string
  /** Repository root. */
  root: string
  /** The run's temporary folder. */
  dir: string
}

export interface Upstreams {
  readonly ports: readonly number[]
  readonly server: Started
}

export interface RunningPeer {
  readonly port: number
  /** The process whose CPU time and memory are the peer's. */
  readonly pid: number
  stop(): Promise<void>
}

/** HAProxy's maxconn: two descriptors per connection within this machine's hard limit of 20,000. */
export const HAPROXY_MAX_CONNECTIONS = 9990

export const STRATEGIES = ['round-robin', 'weighted', 'least-connections', 'consistent-hash'] as const
export type Strategy = (typeof STRATEGIES)[number]
/** Weights of the three upstreams under the weighted strategy. */
export const WEIGHTS = [1, 2, 3] as const

/** The nginx directives that would otherwise point at /var/lib/nginx and /var/log/nginx. */
function nginxPaths(dir: string, name: string): string {
  return ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${path.join(dir, `${name}-${t}`)};`).join('\n')
}

/**
 * The start of both nginx configs, up to the inside of `http {`, files under `dir`: one process, one
 * worker; or, with `processes` > 1, a master and that many workers.
 */
function nginxHead(dir: string, name: string, processes = 1): string {
  return `daemon off;
master_process ${processes > 1 ? 'on' : 'off'};
worker_processes ${processes};
worker_rlimit_nofile 20000;
error_log ${path.join(dir, `${name}-error.log`)} warn;
pid ${path.join(dir, `${name}.pid`)};
events { worker_connections 20000; }
http {
  access_log off;
${nginxPaths(dir, name)}`
}

/**
 * Three upstreams in one nginx process (one worker, `master_process off`) on CPU `cpu`: `/` answers
 * 20 bytes, `/64k` a 64 KiB file, `/post` reads and drops the body and answers 3 bytes, `/health` ok.
 * nginx rather than node:http because node:http on one core (~75k req/s) would cap the fast proxies.
 */
export async function startUpstreams(tools: Tools, cpu: number): Promise<Upstreams> {
  const ports = [await freePort(), await freePort(), await freePort()]
  const large = path.join(tools.dir, '64k.bin')
  writeFileSync(large, Buffer.alloc(LARGE_BODY_BYTES, 'x'))
  const servers = ports
    .map(
      (p) => `  server {
    listen 127.0.0.1:${p} backlog=4096;
    location = / { return 200 "${SMALL_BODY.replace('\n', '\\n')}"; }
    location = /64k { alias ${large}; }
    location = /post { client_max_body_size 1m; return 200 "ok\\n"; }
    location = /health { return 200 "ok\\n"; }
  }`,
    )
    .join('\n')
  const conf = path.join(tools.dir, 'upstreams.conf')
  writeFileSync(
    conf,
    `${nginxHead(tools.dir, 'upstreams')}
  default_type text/plain;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
${servers}
}
`,
  )
  const log = path.join(tools.dir, 'upstreams.log')
  const server = startPinned(cpu, tools.nginx, ['-e', path.join(tools.dir, 'upstreams-error.log'), '-c', conf], log)
  await waitReady('upstream nginx', ports[0]!, HOST_HEADER, server, log)
  return { ports, server }
}

async function launch(name: string, tools: Tools, cpu: number | string, command: string, args: string[], cwd?: string, port?: number): Promise<RunningPeer> {
  const listen = port ?? (await freePort())
  const log = path.join(tools.dir, `${name}.log`)
  const started = startPinned(cpu, command, args, log, cwd)
  await waitReady(name, listen, HOST_HEADER, started, log)
  return { port: listen, pid: started.pid, stop: () => started.stop() }
}

/** The compiled CLI and the node flags its `#!` line passes, built once per run. */
let built: { script: string; flags: string[] } | undefined

/**
 * outrigger as it ships: `npm run build` compiles src/ to dist/, and the `outrigger` bin and the
 * Docker image run dist/cli.js with the node flags on its `#!/usr/bin/env -S node …` line. Running
 * src/cli.ts instead would measure Node's type stripping too (about 28 MB more resident memory).
 */
function builtCli(tools: Tools): { script: string; flags: string[] } {
  if (built !== undefined) return built
  const tsc = path.join(tools.root, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(tools.node, [tsc, '-p', path.join(tools.root, 'tsconfig.build.json')], { cwd: tools.root, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`building dist/ failed:\n${r.stdout}${r.stderr}`)
  const script = path.join(tools.root, 'dist', 'cli.js')
  const shebang = readFileSync(script, 'utf8').split('\n', 1)[0]!
  const m = /^#!\/usr\/bin\/env (?:-S )?node(.*)$/.exec(shebang)
  if (m === null) throw new Error(`dist/cli.js: unexpected first line ${JSON.stringify(shebang)}`)
  built = { script, flags: m[1]!.trim().split(/\s+/).filter((f) => f !== '') }
  return built
}

/**
 * outrigger as a real `outrigger run` process of the built CLI (see builtCli), full features on
 * except the access log; `nodeFlags` go to node after the bin's own (`--cpu-prof`). `cpu` is a CPU
 * or a taskset CPU list ("0,1"). With `workers` > 1 the config says `workers: N`: the returned pid
 * is the primary's, and the node:cluster workers (which inherit the node flags and the CPU list)
 * are its children.
 */
export async function startOutrigger(tools: Tools, cpu: number | string, up: Upstreams, strategy: Strategy, nodeFlags: readonly string[] = [], workers = 1): Promise<RunningPeer> {
  const port = await freePort()
  const admin = await freePort()
  const endpoints = up.ports.map((p, i) => `      - { address: 127.0.0.1, port: ${p}, weight: ${strategy === 'weighted' ? WEIGHTS[i] : 1} }`).join('\n')
  // A name of its own per worker count: two outriggers of one scenario must not share a config file.
  const name = `outrigger-${strategy}${workers > 1 ? `-workers${workers}` : ''}`
  const config = path.join(tools.dir, `${name}.yaml`)
  writeFileSync(
    config,
    `listen: 127.0.0.1:${port}
admin: 127.0.0.1:${admin}
accessLog: false
${workers > 1 ? `workers: ${workers}\n` : ''}services:
  ${HOST_HEADER}:
    source: static
    strategy: ${strategy}
${strategy === 'consistent-hash' ? '    hashKey: header:x-user\n' : ''}    endpoints:
${endpoints}
    healthCheck:
      active: { type: http, path: /health, interval: 5s, timeout: 1s }
      passive: { consecutiveFailures: 5, ejectionTime: 30s }
    retry: { attempts: 2 }
`,
  )
  const cli = builtCli(tools)
  return launch(name, tools, cpu, tools.node, [...cli.flags, ...nodeFlags, cli.script, 'run', '-c', config, '--log-level', 'warn'], tools.root, port)
}

/**
 * HAProxy: one thread, round-robin, keep-alive both ways, an HTTP check per server as outrigger has.
 * HAProxy reserves two descriptors per connection; with this machine's hard limit of 20,000 open
 * files (raising it needs root) it can hold at most 9,990 clients, so the conns10k scenario gives it
 * 9,900 idle clients instead of 10,000. `threads` > 1 (compare.ts's workers scenario, as a reference
 * for outrigger's `workers`): `nbthread`, the threads sharing the listener.
 */
export async function startHaproxy(tools: Tools, cpu: number | string, up: Upstreams, threads = 1): Promise<RunningPeer> {
  const port = await freePort()
  const servers = up.ports.map((p, i) => `  server s${i + 1} 127.0.0.1:${p} check inter 5s`).join('\n')
  const name = `haproxy${threads > 1 ? `-threads${threads}` : ''}`
  const conf = path.join(tools.dir, `${name}.cfg`)
  writeFileSync(
    conf,
    `global
  nbthread ${threads}
  maxconn ${HAPROXY_MAX_CONNECTIONS}
defaults
  mode http
  timeout connect 2s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
  option forwardfor
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /health
${servers}
`,
  )
  return launch(name, tools, cpu, tools.haproxy, ['-db', '-f', conf], undefined, port)
}

/**
 * nginx: one process (`master_process off`), an upstream block with kept-alive connections. Request
 * bodies are streamed (`proxy_request_buffering off`, as outrigger does) and response buffers are
 * large enough that a 64 KiB answer never spills to a temporary file. `processes` > 1 (compare.ts's
 * workers scenario, as a reference for outrigger's `workers`): a master and that many workers, each
 * with its own listening socket (`reuseport`), as outrigger's workers have.
 */
export async function startNginx(tools: Tools, cpu: number | string, up: Upstreams, processes = 1): Promise<RunningPeer> {
  const port = await freePort()
  const name = `nginx${processes > 1 ? `-workers${processes}` : ''}`
  const conf = path.join(tools.dir, `${name}-proxy.conf`)
  writeFileSync(
    conf,
    `${nginxHead(tools.dir, name, processes)}
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  upstream up {
${up.ports.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096${processes > 1 ? ' reuseport' : ''};
    client_max_body_size 1m;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_buffers 32 8k;
    }
  }
}
`,
  )
  return launch(name, tools, cpu, tools.nginx, ['-e', path.join(tools.dir, `${name}-error.log`), '-c', conf], undefined, port)
}

/** @fastify/http-proxy or http-proxy, from bench/peers/ with bench's own dependencies. */
export async function startNodePeer(tools: Tools, cpu: number, up: Upstreams, script: 'fastify-proxy' | 'http-proxy'): Promise<RunningPeer> {
  const port = await freePort()
  const urls = up.ports.map((p) => `http://127.0.0.1:${p}`)
  return launch(script, tools, cpu, tools.node, [path.join(import.meta.dirname, `${script}.ts`), String(port), ...urls], undefined, port)
}
