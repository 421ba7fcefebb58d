/**
 * Deterministic pseudo-random numbers (mulberry32) for generated test data and bench stores:
 * the same seed gives the same data, so a failure reproduces and a bench store is the same
 * every run.
 */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
