/**
 * What can be checked of the Dockerfile without a Docker engine: it is parsed with dockerfile-ast
 * and held against the repository (every COPY source exists and is not excluded by .dockerignore;
 * every COPY --from names what its stage really produces), against the build (the entry point is
 * the file tsc emits for src/cli.ts and package.json's `bin`), and against the contract (config
 * from OUTRIGGER_CONFIG, /healthz, the default ports).
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { DockerfileParser, Env, ModifiableInstruction } from 'dockerfile-ast'
import type { Instruction } from 'dockerfile-ast'
import { parseConfig } from '../../src/config/load.ts'

const ROOT = path.join(import.meta.dirname, '..', '..')
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8')
const dockerfile = DockerfileParser.parse(read('Dockerfile'))
const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; scripts: Record<string, string> }
const buildTsconfig = JSON.parse(read('tsconfig.build.json')) as { extends?: string; compilerOptions: { outDir: string; rootDir: string } }

interface Stage {
  name: string | null
  image: string | null
  tag: string | null
  instructions: Instruction[]
}

/** The instructions grouped by the FROM that starts each stage. */
function stages(): Stage[] {
  const out: Stage[] = []
  for (const ins of dockerfile.getInstructions()) {
    if (ins.getKeyword() === 'FROM') {
      const from = dockerfile.getFROMs().find((f) => f.getRange().start.line === ins.getRange().start.line)
      assert.ok(from !== undefined)
      out.push({ name: from.getBuildStage(), image: from.getImageName(), tag: from.getImageTag(), instructions: [] })
    } else {
      assert.ok(out.length > 0, `${ins.getKeyword()} before the first FROM`)
      out.at(-1)!.instructions.push(ins)
    }
  }
  return out
}

const all = stages()
const final = all.at(-1)!
const byName = (name: string): Stage => {
  const s = all.find((x) => x.name === name)
  assert.ok(s !== undefined, `no stage named ${name}`)
  return s
}
const args = (ins: Instruction): string[] => ins.getArguments().map((a) => a.getValue())
const of = (stage: Stage, keyword: string): Instruction[] => stage.instructions.filter((i) => i.getKeyword() === keyword)
const flag = (ins: Instruction, name: string): string | null =>
  ins instanceof ModifiableInstruction ? (ins.getFlags().find((f) => f.getName() === name)?.getValue() ?? null) : null
/** ENV names and values of the final stage. */
const finalEnv = (): Map<string, string | null> =>
  new Map(of(final, 'ENV').flatMap((e) => (e instanceof Env ? e.getProperties().map((p) => [p.getName(), p.getValue()] as const) : [])))
/** The last WORKDIR of a stage (every stage here sets one). */
const workdir = (stage: Stage): string => {
  const w = of(stage, 'WORKDIR').at(-1)
  assert.ok(w !== undefined, `stage ${stage.name ?? '(final)'} has no WORKDIR`)
  return args(w)[0]!
}
/** The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK CMD). */
const execForm = (text: string): string[] => JSON.parse(text.replace(/\\\r?\n/g, ' ')) as string[]

/** The node flags of src/cli.ts's `#!/usr/bin/env -S node …` line, which tsc copies to dist/cli.js. */
function nodeFlagsOfBin(): string[] {
  const shebang = read('src/cli.ts').split('\n', 1)[0]!
  const m = /^#!\/usr\/bin\/env (?:-S )?node((?: --[a-z-]+(?:=\S+)?)*)$/.exec(shebang)
  assert.ok(m !== null, `src/cli.ts starts with an env node line: ${shebang}`)
  if (m[1] !== '') assert.ok(shebang.startsWith('#!/usr/bin/env -S '), 'env needs -S to pass flags to node')
  return m[1]!.trim().split(' ').filter((f) => f !== '')
}

/** Minimal .dockerignore matching: exact names, folder prefixes and `*` globs, as the file uses. */
function ignoredBy(patterns: string[], source: string): string | undefined {
  const clean = path.posix.normalize(source).replace(/\/$/, '')
  return patterns.find((p) => {
    const re = new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`)
    return re.test(clean)
  })
}
const dockerignore = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'))

/** The config the image runs with when the file sets nothing: the schema's defaults. */
const defaults = parseConfig('{}', { format: 'json', baseDir: ROOT, env: {} })

describe('Dockerfile', () => {
  it('builds every stage on a Node 24 slim image', () => {
    assert.ok(all.length >= 2, 'multi-stage')
    for (const s of all) {
      assert.equal(s.image, 'node', `stage ${s.name ?? '(final)'}`)
      assert.match(s.tag ?? '', /^24-(.+-)?slim$/, `stage ${s.name ?? '(final)'} tag`)
    }
  })

  it('copies only files that exist in the repository and that .dockerignore lets through', () => {
    let checked = 0
    for (const s of all) {
      for (const copy of [...of(s, 'COPY'), ...of(s, 'ADD')]) {
        if (flag(copy, 'from') !== null) continue
        const sources = args(copy).slice(0, -1)
        assert.ok(sources.length > 0)
        for (const src of sources) {
          assert.ok(existsSync(path.join(ROOT, src)), `COPY ${src}: no such file in the repository`)
          assert.equal(ignoredBy(dockerignore, src), undefined, `COPY ${src} is excluded by .dockerignore`)
          checked++
        }
      }
    }
    assert.ok(checked >= 5)
  })

  it('the build stage has everything tsc needs and runs `npm run build`, which is tsc on tsconfig.build.json', () => {
    const build = byName('build')
    const copied = new Set(of(build, 'COPY').flatMap((c) => args(c).slice(0, -1)))
    for (const need of ['package.json', 'package-lock.json', 'tsconfig.build.json', buildTsconfig.compilerOptions.rootDir]) assert.ok(copied.has(need), `build stage copies ${need}`)
    if (buildTsconfig.extends !== undefined) assert.ok(copied.has(path.posix.normalize(buildTsconfig.extends)), `build stage copies ${buildTsconfig.extends}`)
    assert.ok(of(build, 'RUN').some((r) => /\bnpm run build\b/.test(r.getArgumentsContent() ?? '')), 'RUN npm run build')
    assert.equal(pkg.scripts.build, 'tsc -p tsconfig.build.json')
  })

  it('takes from each earlier stage exactly what that stage produced', () => {
    const fromCopies = of(final, 'COPY').filter((c) => flag(c, 'from') !== null)
    assert.ok(fromCopies.length >= 2)
    for (const copy of fromCopies) {
      const stage = byName(flag(copy, 'from')!)
      const [src, dest] = args(copy)
      const runs = of(stage, 'RUN').map((r) => r.getArgumentsContent() ?? '')
      if (src === path.posix.join(workdir(stage), buildTsconfig.compilerOptions.outDir)) {
        assert.ok(runs.some((r) => r.includes('npm run build')), `${src} is tsc's outDir, produced by npm run build in stage ${stage.name}`)
        assert.equal(path.posix.join(workdir(final), dest!), path.posix.join(workdir(final), buildTsconfig.compilerOptions.outDir))
      } else if (src === path.posix.join(workdir(stage), 'node_modules')) {
        assert.ok(runs.some((r) => /npm ci\b.*--omit=dev/.test(r)), `${src} comes from npm ci --omit=dev (production dependencies only)`)
      } else {
        assert.fail(`COPY --from=${stage.name} ${src}: not something that stage produces`)
      }
    }
    // dist/*.js are ES modules only because package.json says "type": "module".
    assert.ok(of(final, 'COPY').some((c) => flag(c, 'from') === null && args(c).includes('package.json')), 'the final image has package.json')
  })

  it('runs, through tini, the file tsc emits for src/cli.ts, which is also the package bin', () => {
    const entry = of(final, 'ENTRYPOINT')
    assert.equal(entry.length, 1)
    const argv = execForm(entry[0]!.getArgumentsContent()!)
    assert.deepEqual(argv.slice(0, 3), ['/usr/bin/tini', '--', 'node'])
    assert.ok(of(final, 'RUN').some((r) => /apt-get install\b.*\btini\b/s.test(r.getArgumentsContent() ?? '')), 'tini is installed')
    const { rootDir, outDir } = buildTsconfig.compilerOptions
    const emitted = path.posix.join(outDir, path.posix.relative(rootDir, 'src/cli.ts').replace(/\.ts$/, '.js'))
    assert.ok(existsSync(path.join(ROOT, 'src', 'cli.ts')))
    assert.equal(path.posix.normalize(pkg.bin.outrigger!), emitted)
    const flags = nodeFlagsOfBin()
    assert.deepEqual(argv.slice(3, 3 + flags.length), flags, 'node gets the flags of the bin\'s #! line')
    assert.equal(argv[3 + flags.length], path.posix.join(workdir(final), emitted))
    assert.equal(argv.length, 4 + flags.length)
  })

  it('reads the config from OUTRIGGER_CONFIG, which the CLI honours', () => {
    const env = finalEnv()
    assert.match(env.get('OUTRIGGER_CONFIG') ?? '', /^\/.+\.ya?ml$/)
    const cmd = execForm(of(final, 'CMD')[0]!.getArgumentsContent()!)
    assert.deepEqual(cmd, ['run'], 'no -c: the path comes from OUTRIGGER_CONFIG, so overriding the env var is enough')
    assert.ok(read('src/cli.ts').includes('process.env.OUTRIGGER_CONFIG'))
  })

  it('runs as a non-root user', () => {
    const users = of(final, 'USER')
    assert.ok(users.length > 0, 'USER is set')
    const user = args(users.at(-1)!)[0]!.split(':')[0]!
    assert.ok(!['root', '0'].includes(user), `USER ${user}`)
  })

  it('health-checks /healthz on the default admin port with node (no curl in slim images), and exposes the default ports', () => {
    const hc = dockerfile.getHEALTHCHECKs()
    assert.equal(hc.length, 1)
    const content = hc[0]!.getArgumentsContent()!
    const cmdAt = content.indexOf('CMD')
    assert.ok(cmdAt >= 0, 'HEALTHCHECK CMD')
    const argv = execForm(content.slice(cmdAt + 3).trim())
    assert.equal(argv[0], 'node')
    assert.ok(argv.join(' ').includes('process.env.OUTRIGGER_HEALTHCHECK_URL'))
    const env = finalEnv()
    const url = new URL(env.get('OUTRIGGER_HEALTHCHECK_URL') ?? '')
    assert.equal(url.pathname, '/healthz')
    assert.equal(`${url.hostname}:${url.port}`, `${defaults.admin.host}:${defaults.admin.port}`)

    const exposed = new Set(of(final, 'EXPOSE').flatMap(args).map((p) => Number(p.split('/')[0])))
    assert.ok(exposed.has(defaults.listen.port), `EXPOSE ${defaults.listen.port} (listen)`)
    assert.ok(exposed.has(defaults.admin.port), `EXPOSE ${defaults.admin.port} (admin)`)
  })

  it('.dockerignore keeps local installs and build output out of the context', () => {
    for (const p of ['node_modules', 'dist', '.git', '.cache']) assert.ok(ignoredBy(dockerignore, p) !== undefined, p)
  })
})
