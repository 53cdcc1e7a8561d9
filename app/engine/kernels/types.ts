// The per-element work, as the engine sees it. Implemented by the WASM SIMD kernels
// (wasm-kernels.ts) and checked bit for bit against the scalar reference in test/reference.
import type { FloatDtype } from '../formats/dtype.ts';

/**
 * A 2-D slice of one tensor: `rows` full rows of `cols` elements (a 1-D tensor is one row).
 * For F8_E4M3, `rowStart` is a multiple of 128 and `scales` holds the block scales of exactly
 * these rows: ceil(rows/128) × ceil(cols/128) f32 values, row-major.
 */
export interface Chunk {
  dtype: FloatDtype;
  rows: number;
  cols: number;
  bytes: Uint8Array;
  scales?: Float32Array;
}

export interface Encoded {
  bytes: Uint8Array;
  /** FP8 output only: the fresh block scales (ceil(rows/128) × ceil(cols/128)). */
  scales?: Float32Array;
  /** FP8 output only: how many values were NaN (an error for the caller to report). */
  nanCount: number;
}

export interface MixRequest {
  rows: number;
  cols: number;
  /** One chunk per parent, all of shape rows × cols, in the recipe's parent order. */
  inputs: Chunk[];
  /** f64 weights as written in the recipe; each is rounded to f32 once. Zero weights are skipped. */
  weights: number[];
  out: FloatDtype;
}

/** Sums over the element pairs of two chunks, accumulated in f64. Non-finite pairs are counted, not summed. */
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

export interface Kernels {
  /** Decode to f32 (FP8: times its block scale, one f32 rounding). */
  decode(chunk: Chunk): Float32Array;
  /** Encode f32 values (rows × cols) to a dtype; FP8 gets fresh 128×128 block scales. */
  encode(values: Float32Array, rows: number, cols: number, out: FloatDtype): Encoded;
  /** acc = 0; acc = acc + f32(w_i) * x_i for each parent with w_i ≠ 0; then encode. */
  mix(req: MixRequest): Encoded;
  /** Difference statistics of b against a (same shape). */
  diff(a: Chunk, b: Chunk): DiffStats;
  /** XXH64 (seed 0) of the bytes: the checksum of a written span, for resume journals. */
  hash(bytes: Uint8Array): bigint;
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
