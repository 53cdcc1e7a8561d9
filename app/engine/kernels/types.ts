// Difference statistics as the kernels produce them, and how partial sums combine. The kernels
// themselves (stripes, codecs) are in wasm-kernels.ts; they are checked bit for bit against the
// scalar reference in test/reference.

/** Sums over the element pairs of two stripes, accumulated in f64. Non-finite pairs are counted, not summed. */
export interface DiffStats {
  /** Elements compared. */
  count: number;
  /** Pairs where a or b is NaN or ±inf; excluded from every sum below. */
  nonFinite: number;
  sumSqDiff: number;
  sumSqA: number;
  sumSqB: number;
  dot: number;
  maxAbsDiff: number;
}

export function emptyStats(): DiffStats {
  return { count: 0, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
}

/** Adds b into a, in a fixed order so results do not depend on how work was spread over workers. */
export function addStats(a: DiffStats, b: DiffStats): DiffStats {
  return {
    count: a.count + b.count,
    nonFinite: a.nonFinite + b.nonFinite,
    sumSqDiff: a.sumSqDiff + b.sumSqDiff,
    sumSqA: a.sumSqA + b.sumSqA,
    sumSqB: a.sumSqB + b.sumSqB,
    dot: a.dot + b.dot,
    maxAbsDiff: Math.max(a.maxAbsDiff, b.maxAbsDiff),
  };
}
