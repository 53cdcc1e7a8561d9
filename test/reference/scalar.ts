// Scalar reference of the kernel arithmetic (see app/engine/kernels/types.ts and
// wasm-kernels/src/lib.rs for the contract). Written independently of the WASM kernels:
// conversions work on values (exponent, quantum, round half to even on an exact quotient)
// rather than on bit tricks, and every f32 operation is a JS f64 operation followed by
// Math.fround, which is correctly rounded for + - * / of f32 operands.
// Slow by design; use it on test-sized data.

import type { Codec } from '../../app/engine/formats/codec.ts';
import type { DiffStats } from '../../app/engine/kernels/types.ts';
import type { Encoded, MixRequest, Stripe } from '../../app/engine/kernels/wasm-kernels.ts';

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

export const ELEMENT_BYTES: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };
/** "Every row / column": a block size covering the whole stripe. */
export const WHOLE = 0x7fffffff;

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

/** E2M1 magnitudes by code (the sign is bit 3). */
export const E2M1_VALUES = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

export function e2m1ToF32(code: number): number {
  const m = E2M1_VALUES[code & 7]!;
  return code & 8 ? -m : m;
}

/** Nearest E2M1 code to x (exact), ties to the code with an even low bit, saturating at ±6. */
export function nearestE2m1(x: number): number {
  const sign = isNegative(x) ? 8 : 0;
  const a = Math.min(Math.abs(x), 6);
  let best = 0;
  for (let c = 1; c < 8; c++) {
    const d = Math.abs(E2M1_VALUES[c]! - a);
    const e = Math.abs(E2M1_VALUES[best]! - a);
    if (d < e || (d === e && c % 2 === 0)) best = c;
  }
  return sign | best;
}

function scaleValue(dtype: string, dv: DataView, k: number): number {
  if (dtype === 'F32') return dv.getFloat32(4 * k, true);
  if (dtype === 'F16') return f16BitsToF32(dv.getUint16(2 * k, true));
  return bf16BitsToF32(dv.getUint16(2 * k, true));
}

/** Writes s (an f32 value) in the scale dtype, rounded to nearest even; returns the value stored. */
function storeScale(dtype: string, dv: DataView, k: number, s: number): number {
  if (dtype === 'F32') {
    dv.setFloat32(4 * k, s, true);
    return s;
  }
  const bits = dtype === 'F16' ? f32ToF16Bits(s) : f32ToBf16Bits(s);
  dv.setUint16(2 * k, bits, true);
  return dtype === 'F16' ? f16BitsToF32(bits) : bf16BitsToF32(bits);
}

// ---- stripes --------------------------------------------------------------------------------

function scaleBytes(dtype: string): number {
  return dtype === 'F32' ? 4 : 2;
}

function blockGrid(c: Codec & { kind: 'fp8' }, rows: number, cols: number): [number, number, number, number] {
  const br = c.blockRows === WHOLE ? rows : c.blockRows;
  const bc = c.blockCols === WHOLE ? cols : c.blockCols;
  return [br, bc, Math.ceil(rows / Math.max(1, br)), Math.ceil(cols / Math.max(1, bc))];
}

function dataLength(c: Codec, rows: number, cols: number): number {
  if (c.kind === 'plain') return rows * cols * ELEMENT_BYTES[c.dtype]!;
  if (c.kind === 'fp8') return rows * cols;
  return (rows * cols) / 2;
}

/** Decoded values of a stripe as numbers (f32 values; NaN left as NaN). */
export function decodeValues(s: Stripe): Float64Array {
  const { codec: c, rows, cols } = s;
  const n = rows * cols;
  if (s.data.byteLength !== dataLength(c, rows, cols)) throw new Error('reference: bad stripe size');
  const out = new Float64Array(n);
  const dv = new DataView(s.data.buffer, s.data.byteOffset, s.data.byteLength);
  const sv = s.scales ? new DataView(s.scales.buffer, s.scales.byteOffset, s.scales.byteLength) : undefined;
  const nib = (i: number) => (s.data[i >> 1]! >> ((i & 1) * 4)) & 15;
  for (let i = 0; i < n; i++) {
    const r = Math.floor(i / cols);
    const col = i - r * cols;
    switch (c.kind) {
      case 'plain':
        out[i] = c.dtype === 'F32' ? dv.getFloat32(4 * i, true) : c.dtype === 'F16' ? f16BitsToF32(dv.getUint16(2 * i, true)) : bf16BitsToF32(dv.getUint16(2 * i, true));
        break;
      case 'fp8': {
        const [br, bc, , nbc] = blockGrid(c, rows, cols);
        const scale = scaleValue(c.scaleDtype, sv!, Math.floor(r / br) * nbc + Math.floor(col / bc));
        out[i] = Math.fround(e4m3ToF32(s.data[i]!) * scale);
        break;
      }
      case 'mxfp4': {
        const e = s.scales![r * (cols / 32) + Math.floor(col / 32)]!;
        out[i] = Math.fround(e2m1ToF32(nib(i)) * 2 ** (e - 127));
        break;
      }
      case 'int4': {
        const scale = scaleValue(c.scaleDtype, sv!, r * Math.ceil(cols / c.group) + Math.floor(col / c.group));
        out[i] = Math.fround((nib(i) - 8) * scale);
        break;
      }
      case 'nvfp4':
        throw new Error('reference: NVFP4 is never decoded');
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

/** Step 1: decode to f32; NaN as 0x7FC00000. */
export function decodeRef(s: Stripe): Float32Array {
  return toF32Canonical(decodeValues(s));
}

/** Steps 3/4: encode f32 values to a codec (quantized codecs with fresh scales, per their rules). */
export function encodeRef(values: ArrayLike<number>, rows: number, cols: number, c: Codec): Encoded {
  const n = rows * cols;
  if (values.length !== n) throw new Error('reference: bad values length');
  const data = new Uint8Array(dataLength(c, rows, cols));
  const dv = new DataView(data.buffer);
  const v = (i: number) => Math.fround(values[i]!);
  if (c.kind === 'plain') {
    for (let i = 0; i < n; i++) {
      const x = v(i);
      if (c.dtype === 'F32') {
        if (Number.isNaN(x)) dv.setUint32(4 * i, F32_CANONICAL_NAN, true);
        else dv.setFloat32(4 * i, x, true);
      } else dv.setUint16(2 * i, c.dtype === 'F16' ? f32ToF16Bits(x) : f32ToBf16Bits(x), true);
    }
    return { data, bad: 0 };
  }
  if (c.kind === 'fp8') {
    const [br, bc, nbr, nbc] = blockGrid(c, rows, cols);
    const scales = new Uint8Array(nbr * nbc * scaleBytes(c.scaleDtype));
    const sv = new DataView(scales.buffer);
    const amax = new Float64Array(nbr * nbc);
    const block = (i: number) => Math.floor(Math.floor(i / cols) / br) * nbc + Math.floor((i % cols) / bc);
    for (let i = 0; i < n; i++) if (Math.abs(v(i)) > amax[block(i)]!) amax[block(i)] = Math.abs(v(i)); // NaN never wins
    const stored = Array.from(amax, (a, k) => storeScale(c.scaleDtype, sv, k, fp8ScaleRef(a)));
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const x = Math.fround(v(i) / stored[block(i)]!);
      if (Number.isNaN(x)) bad++;
      data[i] = f32ToE4m3(x);
    }
    return { data, scales, bad };
  }
  if (c.kind === 'mxfp4') {
    const per = cols / 32;
    const scales = new Uint8Array(rows * per);
    let bad = 0;
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < per; b++) {
        let amax = 0;
        for (let k = 0; k < 32; k++) {
          const x = v(r * cols + b * 32 + k);
          if (!Number.isFinite(x)) bad++;
          else amax = Math.max(amax, Math.abs(x));
        }
        const e = amax > 0 ? Math.min(254, Math.max(0, ilogb(amax) - 2 + 127)) : 0;
        scales[r * per + b] = e;
        for (let k = 0; k < 32; k++) {
          const i = r * cols + b * 32 + k;
          const x = v(i);
          const code = Number.isFinite(x) ? nearestE2m1(x / 2 ** (e - 127)) : 0;
          data[i >> 1] |= code << ((i & 1) * 4);
        }
      }
    }
    return { data, scales, bad };
  }
  if (c.kind === 'int4') {
    const per = Math.ceil(cols / c.group);
    const scales = new Uint8Array(rows * per * scaleBytes(c.scaleDtype));
    const sv = new DataView(scales.buffer);
    let bad = 0;
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < per; g++) {
        const c0 = g * c.group;
        const c1 = Math.min(cols, c0 + c.group);
        let amax = 0;
        for (let col = c0; col < c1; col++) {
          const x = v(r * cols + col);
          if (!Number.isFinite(x)) bad++;
          else amax = Math.max(amax, Math.abs(x));
        }
        const sc = storeScale(c.scaleDtype, sv, r * per + g, Math.fround(amax / 7));
        for (let col = c0; col < c1; col++) {
          const i = r * cols + col;
          const x = v(i);
          let q = 0;
          if (sc !== 0 && Number.isFinite(x)) q = Math.max(-8, Math.min(7, roundHalfEven(Math.fround(x / sc))));
          data[i >> 1] |= (q + 8) << ((i & 1) * 4);
        }
      }
    }
    return { data, scales, bad };
  }
  throw new Error('reference: NVFP4 is never encoded');
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
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
export function diffRef(a: Stripe, b: Stripe): DiffStats {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('reference: shape mismatch');
  return diffValuesRef(decodeValues(a), decodeValues(b));
}

/** Diff statistics of decoded values y against x, sequential f64 sums over the pairs where both are finite. */
export function diffValuesRef(x: ArrayLike<number>, y: ArrayLike<number>): DiffStats {
  const s: DiffStats = { count: x.length, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
  for (let i = 0; i < x.length; i++) {
    const u = x[i]!;
    const w = y[i]!;
    if (!Number.isFinite(u) || !Number.isFinite(w)) {
      s.nonFinite++;
      continue;
    }
    const d = w - u;
    s.sumSqDiff += d * d;
    s.sumSqA += u * u;
    s.sumSqB += w * w;
    s.dot += u * w;
    s.maxAbsDiff = Math.max(s.maxAbsDiff, Math.abs(d));
  }
  return s;
}
