// Safetensors dtypes the engine knows. Only the float dtypes are ever decoded;
// every other dtype is carried through by byte copy.

export const FLOAT_DTYPES = ['F32', 'F16', 'BF16', 'F8_E4M3'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

/** Bytes per element of every dtype safetensors defines. */
export const DTYPE_SIZE: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export function isKnownDtype(dtype: string): boolean {
  return Object.prototype.hasOwnProperty.call(DTYPE_SIZE, dtype);
}

export function isFloatDtype(dtype: string): dtype is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

/** Output dtype names as written in a recipe (`output.dtype`). */
export type OutputDtypeName = 'keep' | 'bf16' | 'f16' | 'f32';
export const OUTPUT_DTYPE: Readonly<Record<Exclude<OutputDtypeName, 'keep'>, FloatDtype>> = {
  bf16: 'BF16', f16: 'F16', f32: 'F32',
};

/** FP8 block quantization as DeepSeek-V3 ships it: 128×128 blocks, f32 inverse scales. */
export const FP8_BLOCK = 128;
export const FP8_MAX = 448;
/** Smallest amax used for a fresh FP8 scale, so an all-zero block still gets a finite scale. */
export const FP8_MIN_AMAX = 1e-4;

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
