/**
 * Polls `check` every 5 ms until it holds, failing with `what` after `deadlineMs`: unit tests wait
 * for a state, never for a fixed sleep (integration/helpers.ts's waitFor is the same for those).
 */
export async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 10_000): Promise<void> {
  const deadline = performance.now() + deadlineMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
