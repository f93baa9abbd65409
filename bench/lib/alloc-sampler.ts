// Preloaded into outrigger (`node --import`) by bench/alloc-profile.ts: V8's sampling heap profiler,
// told to keep the samples of objects the scavenger and the mark-compactor have collected, so the
// profile shows every byte allocated in the window, not only what is still alive at its end.
// SIGUSR2 starts a window; the next SIGUSR2 ends it and writes the profile to ALLOC_SAMPLER_OUT.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'

const out = process.env.ALLOC_SAMPLER_OUT
if (out === undefined) throw new Error('alloc-sampler: ALLOC_SAMPLER_OUT is not set')
const session = new Session()
session.connect()
let sampling = false
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true
    session.post('HeapProfiler.startSampling', {
      samplingInterval: Number(process.env.ALLOC_SAMPLER_INTERVAL ?? 512),
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    })
    return
  }
  sampling = false
  session.post('HeapProfiler.stopSampling', (err, result) => {
    writeFileSync(out, JSON.stringify(err === null ? result.profile : { error: String(err) }))
  })
})
