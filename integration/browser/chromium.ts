/**
 * A real headless Chromium for tests, driven by playwright-core. The binary is `CHROMIUM_BIN` when
 * set, otherwise whatever integration/browser/fetch.sh prints: the test command runs that script
 * first (installing Debian's chromium when missing), so here it only finds the binary again, and a
 * test file run on its own gets the same setup. Playwright never downloads a browser.
 */
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'

/** Flags that keep a headless Chromium quiet and able to run as root in a container. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export function chromiumPath(): string {
  const given = process.env.CHROMIUM_BIN
  if (given !== undefined && given !== '') return given
  const script = path.join(import.meta.dirname, 'fetch.sh')
  try {
    return execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  } catch (err) {
    throw new Error(`no Chromium for the browser tests: ${script} failed (${(err as Error).message}); install Debian's chromium or set CHROMIUM_BIN`, { cause: err })
  }
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, timeout: 60_000 })
}
