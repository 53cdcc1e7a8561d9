// How a tensor is cut into chunks for the kernels. FP8 tensors go by whole 128-row stripes so each
// chunk carries complete block scales; everything else goes by flat element ranges.
import { FP8_BLOCK, elementCount } from '../formats/dtype.ts';

/**
 * Elements per chunk. 1 Mi keeps a two-parent mix near 12 MB per chunk in flight (inputs, f32
 * accumulator in the worker, output) while a kernel call still takes milliseconds, far above the
 * cost of posting it to a worker.
 */
export const CHUNK_ELEMENTS = 1024 * 1024;

export interface ChunkSpan {
  /** First element (flat) and element count. */
  start: number;
  count: number;
  /** As the kernels see it. */
  rows: number;
  cols: number;
  /** FP8 stripes only: the first row of the chunk (a multiple of 128). */
  row0: number;
}

/** Rows × cols of a tensor as the kernels treat it (2-D tensors as they are; others flattened to one row). */
export function matrixShape(shape: readonly number[]): { rows: number; cols: number } {
  if (shape.length === 2) return { rows: shape[0]!, cols: shape[1]! };
  return { rows: 1, cols: elementCount(shape) };
}

/** Chunks covering a tensor; `stripes` when any side is FP8. */
export function chunkSpans(shape: readonly number[], stripes: boolean, chunkElements = CHUNK_ELEMENTS): ChunkSpan[] {
  const n = elementCount(shape);
  const spans: ChunkSpan[] = [];
  if (n === 0) return spans;
  if (stripes) {
    const { rows, cols } = matrixShape(shape);
    const perChunk = Math.max(1, Math.floor(chunkElements / (FP8_BLOCK * cols))) * FP8_BLOCK;
    for (let r = 0; r < rows; r += perChunk) {
      const rr = Math.min(perChunk, rows - r);
      spans.push({ start: r * cols, count: rr * cols, rows: rr, cols, row0: r });
    }
    return spans;
  }
  for (let e = 0; e < n; e += chunkElements) {
    const c = Math.min(chunkElements, n - e);
    spans.push({ start: e, count: c, rows: 1, cols: c, row0: 0 });
  }
  return spans;
}

/** The block-scale rows a stripe chunk needs: [row0/128, ceil((row0+rows)/128)). */
export function scaleRows(span: ChunkSpan, cols: number): { first: number; count: number; perRow: number } {
  const perRow = Math.ceil(cols / FP8_BLOCK);
  const first = Math.floor(span.row0 / FP8_BLOCK);
  const last = Math.ceil((span.row0 + span.rows) / FP8_BLOCK);
  return { first, count: last - first, perRow };
}
