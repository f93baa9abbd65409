/**
 * 32-bit hashing for consistent hashing: request keys (strings) and ring positions (integers).
 * Neither allocates. The string hash is FNV-1a over UTF-16 code units followed by murmur3's
 * finalizer, which spreads FNV's weak low bits over the whole word.
 */

/** murmur3's fmix32: a bijective avalanche of a 32-bit integer. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

/** A well-spread unsigned 32-bit hash of a string. */
export function hashString(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return mix32(h)
}

/**
 * Position of the `i`th virtual node of a host whose key hashes to `seed`: stable across rebuilds.
 * The point number is mixed on its own before it meets the seed, so two hosts whose seeds differ
 * by some constant share no run of points (an additive form, seed + i × stride, would make hosts
 * whose seeds differ by a multiple of the stride share hundreds of points).
 */
export function vnodeHash(seed: number, i: number): number {
  return mix32((seed ^ mix32(i + 0x2545f491)) | 0)
}
