/**
 * The fast lane's suite again, with client connections read by 'data' events
 * (`OUTRIGGER_CLIENT_READS=stream`): the path the lane falls back to on a Node without net's
 * user-buffer hooks (src/proxy/fast/lane.ts, readIntoShared). Set before the lane is loaded.
 */
process.env.OUTRIGGER_CLIENT_READS = 'stream'
const lane = await import('../src/proxy/fast/lane.ts')
if (lane.USER_READS !== null) throw new Error('OUTRIGGER_CLIENT_READS=stream did not take: the lane was loaded before this file set it')
await import('./fast-lane.test.ts')
