// Safetensors dtypes the engine knows. Only the float dtypes are ever decoded;
// every other dtype is carried through by byte copy.

export const FLOAT_DTYPES = ['F32', 'F16', 'BF16', 'F8_E4M3'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

/**
 * Every dtype the reference safetensors reader knows, in its `Dtype` enum's declaration order
 * (the reference writer lays tensors out by this order, descending, then by name), with its size
 * in bits. F4 and F6 are sub-byte: a tensor of them must hold a whole number of bytes.
 */
export const DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ['BOOL', 8], ['F4', 4], ['F6_E2M3', 6], ['F6_E3M2', 6], ['U8', 8], ['I8', 8], ['F8_E5M2', 8], ['F8_E4M3', 8],
  ['F8_E8M0', 8], ['F8_E4M3FNUZ', 8], ['F8_E5M2FNUZ', 8], ['I16', 16], ['U16', 16], ['F16', 16], ['BF16', 16],
  ['I32', 32], ['U32', 32], ['F32', 32], ['C64', 64], ['F64', 64], ['I64', 64], ['U64', 64],
]);

/** Position of a dtype in the reference enum (the writer's layout order). */
export const DTYPE_ORDER: ReadonlyMap<string, number> = new Map([...DTYPE_BITS.keys()].map((d, i) => [d, i]));

/** Bytes per element of every whole-byte dtype (sub-byte F4/F6 are absent: use tensorBytes). */
export const DTYPE_SIZE: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries([...DTYPE_BITS].filter(([, b]) => b % 8 === 0).map(([d, b]) => [d, b / 8])),
);

export function isKnownDtype(dtype: string): boolean {
  return DTYPE_BITS.has(dtype);
}

/**
 * Bytes of `elements` values of a dtype, or undefined when they do not fill whole bytes (the
 * reference reader refuses such a tensor) or the count is not a safe integer.
 */
export function tensorBytes(dtype: string, elements: number): number | undefined {
  const bits = DTYPE_BITS.get(dtype);
  if (bits === undefined) return undefined;
  const total = elements * bits;
  if (!Number.isSafeInteger(total) || total % 8 !== 0) return undefined;
  return total / 8;
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
