/**
 * Taskfile.yml mirrors the npm scripts for go-task users (go-task itself cannot be installed here,
 * so CI never runs it). Each task must only delegate to `npm run <script>` of a script that exists,
 * and every npm script must have its task, so the two cannot drift apart.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parse } from 'yaml'

const ROOT = path.join(import.meta.dirname, '..', '..')
const scripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts
const taskfile = parse(readFileSync(path.join(ROOT, 'Taskfile.yml'), 'utf8')) as { version: unknown; tasks: Record<string, { cmds?: unknown; desc?: unknown }> }

/** npm runs these by itself around install/publish; nobody calls them by hand. */
const LIFECYCLE = new Set(['prepare', 'preinstall', 'install', 'postinstall', 'prepublishOnly', 'prepack', 'postpack'])
/** Commands a task may run besides `npm run <script>`. */
const ALLOWED_OTHER = new Set(['npm ci'])
const NPM_RUN = /^npm run ([\w:.-]+)(?: -- \{\{\.CLI_ARGS\}\})?$/

describe('Taskfile.yml', () => {
  it('is go-task version 3 with a description on every task', () => {
    assert.equal(String(taskfile.version), '3')
    for (const [name, task] of Object.entries(taskfile.tasks)) assert.equal(typeof task.desc, 'string', `task ${name} has a desc`)
  })

  it('every task only runs an npm script that exists (or npm ci)', () => {
    for (const [name, task] of Object.entries(taskfile.tasks)) {
      assert.ok(Array.isArray(task.cmds) && task.cmds.length === 1, `task ${name}: exactly one command`)
      const cmd = task.cmds[0] as unknown
      assert.equal(typeof cmd, 'string', `task ${name}`)
      if (ALLOWED_OTHER.has(cmd as string)) continue
      const m = NPM_RUN.exec(cmd as string)
      assert.ok(m !== null, `task ${name}: "${String(cmd)}" is not "npm run <script>"`)
      assert.ok(Object.hasOwn(scripts, m[1]!), `task ${name} runs npm script "${m[1]}", which package.json does not have`)
      assert.equal(m[1], name, `task ${name} should run the script of the same name`)
    }
  })

  it('every npm script has its task', () => {
    const missing = Object.keys(scripts).filter((s) => !LIFECYCLE.has(s) && !Object.hasOwn(taskfile.tasks, s))
    assert.deepEqual(missing, [], `add to Taskfile.yml: ${missing.map((s) => `${s}: { desc: ..., cmds: [npm run ${s}] }`).join('; ')}`)
  })
})
