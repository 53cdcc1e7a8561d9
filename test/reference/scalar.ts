// Scalar reference of the kernel arithmetic (see app/engine/kernels/types.ts and
// wasm-kernels/src/lib.rs for the contract). Written independently of the WASM kernels:
// conversions work on values (exponent, quantum, round half to even on an exact quotient)
// rather than on bit tricks, and every f32 operation is a JS f64 operation followed by
// Math.fround, which is correctly rounded for + - * / of f32 operands.
// Slow by design; use it on test-sized data.

import type { FloatDtype } from '../../app/engine/formats/dtype.ts';
import type { Chunk, DiffStats, Encoded, MixRequest } from '../../app/engine/kernels/types.ts';

export const BLOCK = 128;
export const F32_CANONICAL_NAN = 0x7fc00000;
export const BF16_CANONICAL_NAN = 0x7fc0;
export const F16_CANONICAL_NAN = 0x7e00;
export const E4M3_NAN_CODE = 0x7f;
export const F16_MAX = 65504;
export const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;
export const E4M3_MAX = 448;
/** f32(1e-4), the smallest amax a fresh FP8 scale uses. */
export const FP8_MIN_AMAX_F32 = Math.fround(1e-4);

export const ELEMENT_BYTES: Readonly<Record<FloatDtype, number>> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };

const f64View = new DataView(new ArrayBuffer(8));

/** floor(log2(a)) for finite a > 0 (exact; every f32 value is a normal f64). */
function ilogb(a: number): number {
  f64View.setFloat64(0, a);
  return ((f64View.getUint32(0) >>> 20) & 0x7ff) - 1023;
}

function isNegative(x: number): boolean {
  return x < 0 || Object.is(x, -0);
}

/**
 * Rounds x to the nearest value with `mantBits` fraction bits and minimum normal exponent
 * `minExp` (so subnormals are quantized at 2^(minExp - mantBits)), ties to even. No upper bound:
 * the caller decides about overflow.
 */
export function roundToFormat(x: number, mantBits: number, minExp: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const e = Math.max(ilogb(a), minExp);
  const q = 2 ** (e - mantBits);
  const n = a / q; // exact: a power-of-two scaling inside the f64 range
  const fl = Math.floor(n);
  const frac = n - fl;
  const r = frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  const v = r * q;
  return x < 0 ? -v : v;
}

/** Exponent and fraction fields of a non-negative finite value exactly representable in the format. */
function fields(v: number, mantBits: number, bias: number, minExp: number): number {
  if (v === 0) return 0;
  const e = ilogb(v);
  if (e < minExp) return v / 2 ** (minExp - mantBits); // subnormal: exponent field 0
  const frac = v / 2 ** (e - mantBits) - 2 ** mantBits;
  return ((e + bias) << mantBits) | frac;
}

// ---- decoding -------------------------------------------------------------------------------

export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1024 + m) * 2 ** (e - 25);
}

export function bf16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0xff) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -133;
  return s * (128 + m) * 2 ** (e - 134);
}

/** e4m3fn: bias 7, no infinities, S.1111.111 is NaN, subnormals m/8 · 2^-6. */
export function e4m3ToF32(c: number): number {
  const s = c & 0x80 ? -1 : 1;
  const e = (c >> 3) & 0xf;
  const m = c & 0x7;
  if (e === 0xf && m === 7) return NaN;
  if (e === 0) return s * m * 2 ** -9;
  return s * (8 + m) * 2 ** (e - 10);
}

// ---- encoding (x must be an f32 value, e.g. from Math.fround) --------------------------------

export function f32ToBf16Bits(x: number): number {
  if (Number.isNaN(x)) return BF16_CANONICAL_NAN;
  const sign = isNegative(x) ? 0x8000 : 0;
  const v = Math.abs(roundToFormat(x, 7, -126));
  if (v > BF16_MAX) return sign | 0x7f80;
  return sign | fields(v, 7, 127, -126);
}

export function f32ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return F16_CANONICAL_NAN;
  const sign = isNegative(x) ? 0x8000 : 0;
  const v = Math.abs(roundToFormat(x, 10, -14));
  if (v > F16_MAX) return sign | 0x7c00;
  return sign | fields(v, 10, 15, -14);
}

/** Round to nearest e4m3fn, ties to even, saturating at ±448; NaN -> 0x7F. */
export function f32ToE4m3(x: number): number {
  if (Number.isNaN(x)) return E4M3_NAN_CODE;
  const sign = isNegative(x) ? 0x80 : 0;
  const v = Math.min(Math.abs(roundToFormat(x, 3, -6)), E4M3_MAX);
  return sign | fields(v, 3, 7, -6);
}

/** The fresh FP8 scale of a block whose largest |value| (NaN ignored) is amax. */
export function fp8ScaleRef(amax: number): number {
  return Math.fround(Math.max(amax, FP8_MIN_AMAX_F32) / E4M3_MAX);
}

// ---- chunks ---------------------------------------------------------------------------------

function checkChunk(c: Chunk): void {
  const n = c.rows * c.cols;
  if (c.bytes.byteLength !== n * ELEMENT_BYTES[c.dtype]) throw new Error('reference: bad chunk size');
  if (c.dtype === 'F8_E4M3') {
    const ns = Math.ceil(c.rows / BLOCK) * Math.ceil(c.cols / BLOCK);
    if (!c.scales || c.scales.length !== ns) throw new Error('reference: bad scales');
  }
}

/** Decoded values of a chunk as numbers (f32 values; NaN left as NaN). */
export function decodeValues(c: Chunk): Float64Array {
  checkChunk(c);
  const n = c.rows * c.cols;
  const out = new Float64Array(n);
  const dv = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
  const nbc = Math.ceil(c.cols / BLOCK);
  for (let i = 0; i < n; i++) {
    switch (c.dtype) {
      case 'F32':
        out[i] = dv.getFloat32(4 * i, true);
        break;
      case 'F16':
        out[i] = f16BitsToF32(dv.getUint16(2 * i, true));
        break;
      case 'BF16':
        out[i] = bf16BitsToF32(dv.getUint16(2 * i, true));
        break;
      case 'F8_E4M3': {
        const r = Math.floor(i / c.cols);
        const col = i - r * c.cols;
        const s = c.scales![Math.floor(r / BLOCK) * nbc + Math.floor(col / BLOCK)]!;
        out[i] = Math.fround(e4m3ToF32(c.bytes[i]!) * s);
        break;
      }
    }
  }
  return out;
}

/** Writes f32 values with canonical NaN bits. */
function toF32Canonical(values: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) bits[i] = F32_CANONICAL_NAN;
    else out[i] = v;
  }
  return out;
}

/** Step 1: decode to f32 (FP8 times its block scale); NaN as 0x7FC00000. */
export function decodeRef(chunk: Chunk): Float32Array {
  return toF32Canonical(decodeValues(chunk));
}

/** Step 3/4: encode f32 values to a dtype (FP8 with fresh block scales). */
export function encodeRef(values: ArrayLike<number>, rows: number, cols: number, dtype: FloatDtype): Encoded {
  const n = rows * cols;
  if (values.length !== n) throw new Error('reference: bad values length');
  const bytes = new Uint8Array(n * ELEMENT_BYTES[dtype]);
  const dv = new DataView(bytes.buffer);
  if (dtype === 'F32') {
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      if (Number.isNaN(v)) dv.setUint32(4 * i, F32_CANONICAL_NAN, true);
      else dv.setFloat32(4 * i, v, true);
    }
    return { bytes, nanCount: 0 };
  }
  if (dtype === 'F16' || dtype === 'BF16') {
    const conv = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
    for (let i = 0; i < n; i++) dv.setUint16(2 * i, conv(Math.fround(values[i]!)), true);
    return { bytes, nanCount: 0 };
  }
  const nbr = Math.ceil(rows / BLOCK);
  const nbc = Math.ceil(cols / BLOCK);
  const amax = new Float64Array(nbr * nbc);
  for (let i = 0; i < n; i++) {
    const r = Math.floor(i / cols);
    const b = Math.floor(r / BLOCK) * nbc + Math.floor((i - r * cols) / BLOCK);
    const a = Math.abs(Math.fround(values[i]!));
    if (a > amax[b]!) amax[b] = a; // NaN never wins a comparison
  }
  const scales = new Float32Array(nbr * nbc);
  for (let b = 0; b < scales.length; b++) scales[b] = fp8ScaleRef(amax[b]!);
  let nanCount = 0;
  for (let i = 0; i < n; i++) {
    const r = Math.floor(i / cols);
    const b = Math.floor(r / BLOCK) * nbc + Math.floor((i - r * cols) / BLOCK);
    const x = Math.fround(Math.fround(values[i]!) / scales[b]!);
    if (Number.isNaN(x)) nanCount++;
    bytes[i] = f32ToE4m3(x);
  }
  return { bytes, scales, nanCount };
}

/** Mix: acc = +0; acc = f32(acc + f32(f32(w) * x)) per input with w ≠ 0; then encode. */
export function mixRef(req: MixRequest): Encoded {
  const n = req.rows * req.cols;
  if (req.inputs.length !== req.weights.length) throw new Error('reference: weights/inputs mismatch');
  const acc = new Float64Array(n); // +0
  req.inputs.forEach((input, k) => {
    const w64 = req.weights[k]!;
    if (w64 === 0) return;
    if (input.rows !== req.rows || input.cols !== req.cols) throw new Error('reference: shape mismatch');
    const w = Math.fround(w64);
    const x = decodeValues(input);
    for (let i = 0; i < n; i++) acc[i] = Math.fround(acc[i]! + Math.fround(w * x[i]!));
  });
  return encodeRef(acc, req.rows, req.cols, req.out);
}

/** Diff statistics of b against a, sequential f64 sums over the pairs where both are finite. */
export function diffRef(a: Chunk, b: Chunk): DiffStats {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('reference: shape mismatch');
  const x = decodeValues(a);
  const y = decodeValues(b);
  const s: DiffStats = { count: x.length, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
  for (let i = 0; i < x.length; i++) {
    const u = x[i]!;
    const v = y[i]!;
    if (!Number.isFinite(u) || !Number.isFinite(v)) {
      s.nonFinite++;
      continue;
    }
    const d = v - u;
    s.sumSqDiff += d * d;
    s.sumSqA += u * u;
    s.sumSqB += v * v;
    s.dot += u * v;
    s.maxAbsDiff = Math.max(s.maxAbsDiff, Math.abs(d));
  }
  return s;
}
