// How a weight's values are stored: a plain float dtype, or a quantized format with companion
// tensors (scales). One place says, for every codec, which stored tensors it is made of, how
// many bytes a row of it takes, and how the WASM kernels are told about it.
//
// A weight is viewed as slabs × rows × cols of values: a fused expert tensor [E, R, C] has E slabs,
// everything else one (a 1-D tensor is one row). Codecs work on stripes of whole rows of one slab;
// where a codec scales blocks of rows (FP8 128×128), a stripe starts at a block boundary.
//
//   plain  F32 / F16 / BF16: the values.
//   fp8    F8_E4M3 codes, and a scale per block of br × bc values (F32, F16 or BF16):
//          DeepSeek's `…_scale_inv` [ceil(R/128), ceil(C/128)] (fused: [E, …]), compressed-tensors'
//          per-channel `weight_scale` [R, 1] or per-tensor `weight_scale` [] / [1].
//   mxfp4  gpt-oss: `X_blocks` U8 [.., R, C/32, 16] (E2M1, two per byte, low nibble first) and
//          `X_scales` U8 [.., R, C/32] (E8M0).
//   int4   compressed-tensors pack-quantized, symmetric: `weight_packed` I32 [R, C/8] (q + 8, eight
//          per word, low nibble first), `weight_scale` [R, C/g] and `weight_shape` [2].
//   nvfp4  ModelOpt / compressed-tensors NVFP4: E2M1 codes [R, C/2], E4M3 block scales [R, C/16],
//          a global scale. Shown and copied byte for byte; never decoded: the two loaders apply
//          the global scale differently (ModelOpt multiplies by `weight_scale_2`, compressed-
//          tensors divides by `weight_global_scale`), so no single decoding is the format's.
import { DTYPE_SIZE, type FloatDtype } from './dtype.ts';

export type ScaleDtype = 'F32' | 'F16' | 'BF16';

export type Codec =
  | { kind: 'plain'; dtype: FloatDtype | string }
  | { kind: 'fp8'; scaleDtype: ScaleDtype; blockRows: number; blockCols: number; scaleRole: 'scale_inv' | 'scale' }
  | { kind: 'mxfp4' }
  | { kind: 'int4'; scaleDtype: ScaleDtype; group: number }
  | { kind: 'nvfp4'; flavor: 'modelopt' | 'compressed-tensors' };

/** "Every row" / "every column" as a block size: one scale covers a whole slab's rows or columns. */
export const WHOLE = 0x7fffffff;
/** MXFP4's block length along a row. */
export const MX_BLOCK = 32;

const PLAIN_DECODABLE = new Set(['F32', 'F16', 'BF16']);

/** Can the kernels decode (and so mix or convert) values of this codec? */
export function isDecodable(c: Codec): boolean {
  if (c.kind === 'plain') return PLAIN_DECODABLE.has(c.dtype);
  return c.kind !== 'nvfp4';
}

/** Can the kernels write fresh values in this codec (a mixed tensor that keeps its format)? */
export function isEncodable(c: Codec): boolean {
  return isDecodable(c);
}

/** A short description for inspect and messages: "BF16", "FP8 E4M3, 128×128 blocks (F32 scales)". */
export function codecName(c: Codec): string {
  switch (c.kind) {
    case 'plain':
      return c.dtype;
    case 'fp8': {
      const block =
        c.blockRows === WHOLE && c.blockCols === WHOLE
          ? 'per-tensor scale'
          : c.blockRows === 1 && c.blockCols === WHOLE
            ? 'per-channel scales'
            : `${c.blockRows === WHOLE ? 'all' : c.blockRows}×${c.blockCols === WHOLE ? 'all' : c.blockCols} blocks`;
      return `FP8 E4M3, ${block} (${c.scaleDtype})`;
    }
    case 'mxfp4':
      return 'MXFP4 (E2M1, E8M0 scales per 32)';
    case 'int4':
      return `INT4 pack-quantized, groups of ${c.group} (${c.scaleDtype} scales)`;
    case 'nvfp4':
      return `NVFP4 (${c.flavor})`;
  }
}

/** The kernels' codec descriptor: [kind, scale dtype, block rows, block cols]. */
export function codecDescriptor(c: Codec): Uint32Array {
  const sd = (d: ScaleDtype) => (d === 'F32' ? 0 : d === 'F16' ? 1 : 2);
  switch (c.kind) {
    case 'plain': {
      const k = c.dtype === 'F32' ? 0 : c.dtype === 'F16' ? 1 : c.dtype === 'BF16' ? 2 : -1;
      if (k < 0) throw new Error(`internal: ${c.dtype} has no kernel codec`);
      return Uint32Array.of(k, 0, 0, 0);
    }
    case 'fp8':
      return Uint32Array.of(3, sd(c.scaleDtype), c.blockRows, c.blockCols);
    case 'mxfp4':
      return Uint32Array.of(4, 0, 1, MX_BLOCK);
    case 'int4':
      return Uint32Array.of(5, sd(c.scaleDtype), 1, c.group);
    case 'nvfp4':
      throw new Error('internal: NVFP4 is never decoded');
  }
}

/** Bytes of the values of `rows` rows of `cols` columns (data only). */
export function dataBytes(c: Codec, rows: number, cols: number): number {
  switch (c.kind) {
    case 'plain':
      return rows * cols * (DTYPE_SIZE[c.dtype] ?? 1);
    case 'fp8':
      return rows * cols;
    case 'mxfp4':
    case 'int4':
    case 'nvfp4':
      return (rows * cols) / 2;
  }
}

function scaleSize(d: ScaleDtype): number {
  return d === 'F32' ? 4 : 2;
}

/**
 * Scale entries of a stripe (rows × cols of a slab, starting at a block boundary), and the bytes
 * they take: what a stripe reads or writes besides its data. None for plain codecs; for a
 * per-tensor FP8 scale, the one scale.
 */
export function stripeScales(c: Codec, rows: number, cols: number): { entries: number; bytes: number } {
  switch (c.kind) {
    case 'plain':
      return { entries: 0, bytes: 0 };
    case 'fp8': {
      const n = Math.ceil(rows / Math.min(c.blockRows, rows || 1)) * Math.ceil(cols / Math.min(c.blockCols, cols || 1));
      return { entries: n, bytes: n * scaleSize(c.scaleDtype) };
    }
    case 'mxfp4':
      return { entries: (rows * cols) / MX_BLOCK, bytes: (rows * cols) / MX_BLOCK };
    case 'int4': {
      const n = rows * Math.ceil(cols / c.group);
      return { entries: n, bytes: n * scaleSize(c.scaleDtype) };
    }
    case 'nvfp4':
      return { entries: (rows * cols) / 16, bytes: (rows * cols) / 16 };
  }
}

/**
 * Rows a stripe must start at a multiple of (its encoding unit along rows): FP8 blocks of rows;
 * every other codec scales within a row.
 */
export function rowUnit(c: Codec, rows: number): number {
  if (c.kind !== 'fp8') return 1;
  return c.blockRows === WHOLE ? Math.max(1, rows) : c.blockRows;
}

/** Columns an encoding unit spans (a region must cover whole units to be copied as bytes inside a stripe). */
export function colUnit(c: Codec, cols: number): number {
  switch (c.kind) {
    case 'plain':
      return 1;
    case 'fp8':
      return c.blockCols === WHOLE ? Math.max(1, cols) : c.blockCols;
    case 'mxfp4':
      return MX_BLOCK;
    case 'int4':
      return c.group;
    case 'nvfp4':
      return 16;
  }
}

/** Same codec, same parameters: bytes of one can stand for the other's. */
export function sameCodec(a: Codec, b: Codec): boolean {
  if (a === b) return true;
  if (a.kind !== b.kind) return false;
  // Field by field (called for every weight of every parent while planning: no JSON strings).
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => x[k] === y[k]);
}

/** Element size in bytes of a plain codec, for byte-exact region copies (0 for the quantized ones). */
export function plainElementBytes(c: Codec): number {
  return c.kind === 'plain' ? (DTYPE_SIZE[c.dtype] ?? 0) : 0;
}
