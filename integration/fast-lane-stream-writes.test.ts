/**
 * The fast lane's suite again, with every write through net.Socket's Writable
 * (`OUTRIGGER_WRITES=stream`): the path the lane falls back to on a Node without the handle's
 * write API (src/proxy/fast/direct-write.ts). Set before the lane is loaded.
 */
process.env.OUTRIGGER_WRITES = 'stream'
const writes = await import('../src/proxy/fast/direct-write.ts')
if (writes.DIRECT_WRITES !== null) throw new Error('OUTRIGGER_WRITES=stream did not take: direct-write.ts was loaded before this file set it')
await import('./fast-lane.test.ts')
