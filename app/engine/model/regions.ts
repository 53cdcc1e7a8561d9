// Where an expert's projection sits inside a tensor, and how to address its values.
//
// A weight is slabs × rows × cols of values. A region is a set of rows and columns of one slab
// (start, count, step each) holding a projection as a matrix [out, in]: value (o, i) is at
//   transposed ? (row0 + i·rowStep, col0 + o·colStep) : (row0 + o·rowStep, col0 + i·colStep).
// A bias is [out] over one row (transposed, in = 1).
import type { FusedParts } from '../arch/types.ts';
import { rowUnit, type Codec } from '../formats/codec.ts';
import { MoeError } from '../io.ts';
import type { Projection, Region, WeightView } from './types.ts';

/** Where element (o, i) of a region sits in a buffer of values: `at + o·so + i·si`. */
export interface Place {
  at: number;
  so: number;
  si: number;
}

export function wholeRegion(rows: number, cols: number): Region {
  return { row0: 0, rowCount: rows, rowStep: 1, col0: 0, colCount: cols, colStep: 1, transposed: false };
}

/** A bias of `n` outputs stored as one row: [out] with in = 1. */
export function biasRegion(n: number): Region {
  return { row0: 0, rowCount: 1, rowStep: 1, col0: 0, colCount: n, colStep: 1, transposed: true };
}

/** [out, in] of the matrix a region holds. */
export function regionDims(r: Region): { out: number; in: number } {
  return r.transposed ? { out: r.colCount, in: r.rowCount } : { out: r.rowCount, in: r.colCount };
}

export function sameRegion(a: Region, b: Region): boolean {
  return (
    a.row0 === b.row0 && a.rowCount === b.rowCount && a.rowStep === b.rowStep &&
    a.col0 === b.col0 && a.colCount === b.colCount && a.colStep === b.colStep && a.transposed === b.transposed
  );
}

/**
 * Where values (o, i), o ≥ oOff and i ≥ iOff, of a region sit in a buffer holding rows
 * [bandRow0, …) of its slab, `cols` values per row.
 */
export function placeIn(r: Region, bandRow0: number, cols: number, oOff: number, iOff: number): Place {
  if (r.transposed) {
    return { at: (r.row0 + iOff * r.rowStep - bandRow0) * cols + r.col0 + oOff * r.colStep, so: r.colStep, si: r.rowStep * cols };
  }
  return { at: (r.row0 + oOff * r.rowStep - bandRow0) * cols + r.col0 + iOff * r.colStep, so: r.rowStep * cols, si: r.colStep };
}

/** Slab rows [first, end) that values o ∈ [oa, ob), i ∈ [ia, ib) of a region lie in. */
export function regionRows(r: Region, oa: number, ob: number, ia: number, ib: number): [number, number] {
  const [a, b] = r.transposed ? [ia, ib] : [oa, ob];
  if (b <= a) return [r.row0, r.row0];
  return [r.row0 + a * r.rowStep, r.row0 + (b - 1) * r.rowStep + 1];
}

/**
 * The index range along the region's row axis (o, or i when transposed) whose rows lie in slab rows
 * [r0, r1).
 */
export function indicesInRows(r: Region, r0: number, r1: number): [number, number] {
  const n = r.rowCount;
  const lo = Math.min(n, Math.max(0, Math.ceil((r0 - r.row0) / r.rowStep)));
  const hi = Math.min(n, Math.max(0, Math.ceil((r1 - r.row0) / r.rowStep)));
  return [lo, Math.max(lo, hi)];
}

/**
 * How a fused expert tensor is viewed: [E, R, C…] as E slabs of R × C (trailing dimensions
 * flattened); 2-D stacked [E·R, C] as E slabs of R × C; a bias [E, out] as E slabs of one row.
 */
export function fusedView(shape: readonly number[], f: FusedParts, experts: number): WeightView {
  if (f.stacked2d) return { slabs: experts, rows: Math.floor((shape[0] ?? 0) / Math.max(1, experts)), cols: shape[1] ?? 1 };
  if (f.bias) return { slabs: shape[0] ?? 1, rows: 1, cols: shape.slice(1).reduce((a, b) => a * b, 1) };
  return { slabs: shape[0] ?? 1, rows: shape[1] ?? 1, cols: shape.slice(2).reduce((a, b) => a * b, 1) };
}

/**
 * The regions of a fused tensor's slab: one per projection of `f.parts`, side by side along the
 * output axis (halves or interleaved). `input: 'auto'` is told by the hidden size: the input of
 * gate and up, the output of down.
 */
export function fusedRegions(view: WeightView, f: FusedParts, hiddenSize: number | undefined, where: { file: string; name: string; config: string }): { proj: Projection; region: Region }[] {
  const { rows, cols } = view;
  let input: 'rows' | 'cols';
  if (f.bias) input = 'cols';
  else if (f.input !== 'auto') input = f.input;
  else {
    const H = hiddenSize;
    if (H === undefined) throw new MoeError('the layout of this fused tensor is told by the hidden size, and the config states none', where.config, where.name);
    const inputIsH = f.parts[0] !== 'down';
    const hAxis = cols === H && rows !== H ? 'cols' : rows === H && cols !== H ? 'rows' : undefined;
    if (hAxis === undefined) {
      throw new MoeError(`cannot tell which axis of [${rows}, ${cols}] is the hidden size ${H}: the family entry must say whether the input runs along rows or columns`, where.file, where.name);
    }
    input = inputIsH ? hAxis : hAxis === 'cols' ? 'rows' : 'cols';
  }
  const outLen = f.bias ? cols : input === 'cols' ? rows : cols;
  const n = f.parts.length;
  if (outLen % n !== 0) throw new MoeError(`cannot split ${outLen} outputs into ${n} projections (${f.parts.join(', ')})`, where.file, where.name);
  const per = outLen / n;
  return f.parts.map((proj, k) => {
    const start = f.mode === 'halves' ? k * per : k;
    const step = f.mode === 'halves' ? 1 : n;
    const region: Region = f.bias
      ? { row0: 0, rowCount: 1, rowStep: 1, col0: start, colCount: per, colStep: step, transposed: true }
      : input === 'cols'
        ? { row0: start, rowCount: per, rowStep: step, col0: 0, colCount: cols, colStep: 1, transposed: false }
        : { row0: 0, rowCount: rows, rowStep: 1, col0: start, colCount: per, colStep: step, transposed: true };
    return { proj, region };
  });
}

/**
 * Can values copied from region `src` (of a slab `srcView`) into region `dst` (of `dstView`) move
 * as stored bytes in codec `c`, untouched? Plain codecs always (element by element, any strides);
 * quantized ones when the regions are whole rows and their scale blocks lie wholly inside them
 * (a block shared with other values would need a fresh scale).
 */
export function movableAsBytes(c: Codec, dst: Region, dstView: WeightView, src: Region, srcView: WeightView): boolean {
  if (c.kind === 'plain') return true;
  if (dst.transposed || src.transposed) return false;
  if (dstView.cols !== srcView.cols) return false;
  for (const r of [dst, src]) if (r.col0 !== 0 || r.colStep !== 1 || r.colCount !== dstView.cols) return false;
  const unitD = rowUnit(c, dstView.rows);
  const unitS = rowUnit(c, srcView.rows);
  if (unitD === 1 && unitS === 1) return true;
  if (unitD !== unitS || dst.rowStep !== 1 || src.rowStep !== 1) return false;
  if (dst.row0 % unitD !== 0 || src.row0 % unitS !== 0) return false;
  const n = dst.rowCount;
  return n % unitD === 0 || (dst.row0 + n === dstView.rows && src.row0 + n === srcView.rows);
}

/**
 * Does a stored tensor of a weight hold one equal share per slab? The data and the codec's scales
 * always do (one slab: the whole); another companion (an activation scale, a global scale) does
 * when its first dimension counts the slabs, else it belongs to the whole weight.
 */
export function recordIsPerSlab(w: { view: WeightView; fused?: FusedParts }, role: string, shape: readonly number[]): boolean {
  if (role === 'data' || role === 'scale') return true;
  const E = w.view.slabs;
  if (E <= 1 || role === 'shape') return false;
  return shape.length > 0 && shape[0]! % E === 0 && (shape[0] === E || w.fused?.stacked2d === true);
}
