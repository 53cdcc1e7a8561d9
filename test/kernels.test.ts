// The WASM SIMD kernels (public/moe_kernels.wasm via app/engine/kernels/wasm-kernels.ts) against
// the scalar reference (test/reference/scalar.ts), bit for bit; and the reference itself against
// known values and exhaustive properties. MOE_KERNELS_WASM=path overrides the module (used to
// check that a deliberately broken build fails these tests).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { FLOAT_DTYPES, type FloatDtype } from '../app/engine/formats/dtype.ts';
import type { DiffStats } from '../app/engine/kernels/types.ts';
import { createWasmKernels, createWasmKernelsFromBytes, type Encoded as StripeEncoded, type Kernels, type Stripe } from '../app/engine/kernels/wasm-kernels.ts';
import type { Codec } from '../app/engine/formats/codec.ts';
import { xxh3Ref } from './reference/xxh3.ts';
import {
  BF16_MAX,
  ELEMENT_BYTES,
  bf16BitsToF32,
  decodeRef as decodeStripeRef,
  diffRef as diffStripeRef,
  e4m3ToF32,
  encodeRef as encodeStripeRef,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3,
  f32ToF16Bits,
  fp8ScaleRef,
  mixRef as mixStripeRef,
} from './reference/scalar.ts';

/** The WebAssembly global, typed here: the test project's libs (ES2022 + node) do not declare it. */
interface WasmApi {
  compile(bytes: Uint8Array): Promise<unknown>;
  Module: {
    imports(m: unknown): { module: string; name: string; kind: string }[];
    exports(m: unknown): { name: string; kind: string }[];
  };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const WASM_PATH = process.env['MOE_KERNELS_WASM'] ?? fileURLToPath(new URL('../public/moe_kernels.wasm', import.meta.url));
let wasmBytes: Uint8Array;
let K: Kernels;

beforeAll(async () => {
  wasmBytes = new Uint8Array(readFileSync(WASM_PATH));
  K = await createWasmKernelsFromBytes(wasmBytes);
});

// ---- chunks: the plain dtypes and DeepSeek FP8 -----------------------------------------------
// Most tests below speak of a chunk as a dtype, F8_E4M3 meaning DeepSeek's 128×128 blocks of F32
// scales; these adapters put them into stripes of codecs for the kernels and the reference alike.
// The other codecs (FP8 block shapes and scale dtypes, MXFP4, INT4) are tested on stripes below.

interface Chunk {
  dtype: FloatDtype;
  rows: number;
  cols: number;
  bytes: Uint8Array;
  scales?: Float32Array;
}
interface Encoded {
  bytes: Uint8Array;
  scales?: Float32Array;
  nanCount: number;
}
interface ChunkMix {
  rows: number;
  cols: number;
  inputs: Chunk[];
  weights: number[];
  out: FloatDtype;
}
const DEEPSEEK_FP8: Codec = { kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' };
const codecOf = (d: FloatDtype): Codec => (d === 'F8_E4M3' ? DEEPSEEK_FP8 : { kind: 'plain', dtype: d });
function stripe(c: Chunk): Stripe {
  const s: Stripe = { codec: codecOf(c.dtype), rows: c.rows, cols: c.cols, data: c.bytes };
  if (c.scales && c.scales.length > 0) s.scales = new Uint8Array(c.scales.buffer, c.scales.byteOffset, c.scales.byteLength);
  return s;
}
function chunkEncoded(e: StripeEncoded, out: FloatDtype): Encoded {
  const r: Encoded = { bytes: e.data, nanCount: e.bad };
  if (out === 'F8_E4M3') r.scales = e.scales ? new Float32Array(e.scales.buffer.slice(e.scales.byteOffset, e.scales.byteOffset + e.scales.byteLength)) : new Float32Array(0);
  return r;
}
const mixStripes = (r: ChunkMix) => ({ rows: r.rows, cols: r.cols, inputs: r.inputs.map(stripe), weights: r.weights, out: codecOf(r.out) });
/** The kernels on chunks. */
const L = {
  decode: (c: Chunk) => K.decode(stripe(c)),
  encode: (v: Float32Array, rows: number, cols: number, out: FloatDtype) => chunkEncoded(K.encode(v, rows, cols, codecOf(out)), out),
  mix: (r: ChunkMix) => chunkEncoded(K.mix(mixStripes(r)), r.out),
  diff: (a: Chunk, b: Chunk) => K.diff(stripe(a), stripe(b)),
};
const decodeRef = (c: Chunk) => decodeStripeRef(stripe(c));
const encodeRef = (v: ArrayLike<number>, rows: number, cols: number, out: FloatDtype) => chunkEncoded(encodeStripeRef(v, rows, cols, codecOf(out)), out);
const mixRef = (r: ChunkMix) => chunkEncoded(mixStripeRef(mixStripes(r)), r.out);
const diffRef = (a: Chunk, b: Chunk) => diffStripeRef(stripe(a), stripe(b));

// ---- helpers --------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const randInt = (rng: Rng, n: number) => Math.floor(rng() * n);
function gauss(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

const u32ToF32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
const f32ToU32 = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;

function bytesOf(t: ArrayBufferView): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

function hexAt(b: Uint8Array, i: number, size: number): string {
  let s = '';
  for (let k = size - 1; k >= 0; k--) s += (b[i * size + k] ?? 0).toString(16).padStart(2, '0');
  return `0x${s}`;
}

/** Fails with the first differing element (and its input, when given). */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array, label: string, size = 1, input?: (i: number) => string): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: ${actual.length} bytes, expected ${expected.length}`);
  }
  for (let k = 0; k < actual.length; k++) {
    if (actual[k] !== expected[k]) {
      const i = Math.floor(k / size);
      throw new Error(
        `${label}: element ${i} is ${hexAt(actual, i, size)}, reference ${hexAt(expected, i, size)}` +
          (input ? ` (input ${input(i)})` : ''),
      );
    }
  }
}

function expectSameEncoded(got: Encoded, want: Encoded, dtype: FloatDtype, label: string, input?: (i: number) => string): void {
  expectSameBytes(got.bytes, want.bytes, `${label} bytes`, ELEMENT_BYTES[dtype], input);
  if (dtype === 'F8_E4M3') {
    expect(got.scales, `${label} scales`).toBeInstanceOf(Float32Array);
    expectSameBytes(bytesOf(got.scales!), bytesOf(want.scales!), `${label} scales`, 4);
  } else {
    expect(got.scales, `${label} scales`).toBeUndefined();
  }
  expect(got.nanCount, `${label} nanCount`).toBe(want.nanCount);
}

function expectStatsClose(got: DiffStats, want: DiffStats, label: string): void {
  expect(got.count, `${label} count`).toBe(want.count);
  expect(got.nonFinite, `${label} nonFinite`).toBe(want.nonFinite);
  expect(got.maxAbsDiff, `${label} maxAbsDiff`).toBe(want.maxAbsDiff); // a max: order-free, exact
  const close = (g: number, w: number, scale: number, what: string) => {
    const tol = 1e-9 * scale;
    if (!(Math.abs(g - w) <= tol)) throw new Error(`${label} ${what}: ${g} vs reference ${w} (tolerance ${tol})`);
  };
  close(got.sumSqDiff, want.sumSqDiff, want.sumSqDiff, 'sumSqDiff');
  close(got.sumSqA, want.sumSqA, want.sumSqA, 'sumSqA');
  close(got.sumSqB, want.sumSqB, want.sumSqB, 'sumSqB');
  // Σ|a·b| <= sqrt(Σa² Σb²): the scale of the summation error of dot.
  close(got.dot, want.dot, Math.sqrt(want.sumSqA * want.sumSqB), 'dot');
}

function blocks(rows: number, cols: number): number {
  return Math.ceil(rows / 128) * Math.ceil(cols / 128);
}

const SPECIAL_F32_BITS = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff, 0xffbfffff,
  0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000,
];

/** Special values of every format, their boundaries and ties (all f32). */
const SPECIAL_VALUES: number[] = (() => {
  const v: number[] = SPECIAL_F32_BITS.map(u32ToF32);
  const add = (x: number) => {
    const f = Math.fround(x);
    const b = f32ToU32(f);
    v.push(f, -f, u32ToF32(b + 1), u32ToF32((b - 1) >>> 0), -u32ToF32(b + 1));
  };
  // F16: max, overflow boundary, subnormals and their ties, smallest normal.
  for (const x of [65504, 65520, 65536, 65519.998, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 2 ** -14 - 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11]) add(x);
  // BF16: max, smallest normal and subnormals, ties.
  for (const x of [BF16_MAX, 2 ** -126, 2 ** -133, 2 ** -134, 3 * 2 ** -134, 1.00390625, 1.01171875, 2 ** 127 * (2 - 2 ** -8)]) add(x);
  // E4M3: max, saturation boundary, subnormals and ties.
  for (const x of [448, 464, 480, 2 ** -9, 2 ** -10, 3 * 2 ** -10, 2 ** -6, 1.0625, 1.1875, 2 ** -6 - 2 ** -10, 1e-4]) add(x);
  return v;
})();

function randomF32(rng: Rng): number {
  const r = rng();
  if (r < 0.05) return SPECIAL_VALUES[randInt(rng, SPECIAL_VALUES.length)]!;
  if (r < 0.25) return u32ToF32((rng() * 2 ** 32) >>> 0); // any bits, NaN and inf included
  if (r < 0.35) return Math.fround(gauss(rng) * 2 ** (randInt(rng, 40) - 30));
  return Math.fround(gauss(rng) * 0.02);
}

/** A random chunk. `finiteOnly` avoids NaN/inf encodings (for meaningful sums). */
function randomChunk(rng: Rng, dtype: FloatDtype, rows: number, cols: number, finiteOnly = false): Chunk {
  const n = rows * cols;
  const bytes = new Uint8Array(n * ELEMENT_BYTES[dtype]);
  const dv = new DataView(bytes.buffer);
  const value = () => {
    for (;;) {
      const x = randomF32(rng);
      if (!finiteOnly || Number.isFinite(x)) return x;
    }
  };
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case 'F32':
        dv.setFloat32(4 * i, value(), true);
        break;
      case 'F16':
      case 'BF16': {
        const raw = rng() < 0.3;
        let h = raw ? randInt(rng, 65536) : (dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits)(value());
        if (finiteOnly && (h & 0x7fff) >= (dtype === 'F16' ? 0x7c00 : 0x7f80)) h &= 0x3fff;
        dv.setUint16(2 * i, h, true);
        break;
      }
      case 'F8_E4M3': {
        let c = rng() < 0.5 ? randInt(rng, 256) : f32ToE4m3(Math.fround(gauss(rng) * 100));
        if (finiteOnly && (c & 0x7f) === 0x7f) c = 0x7e;
        bytes[i] = c;
        break;
      }
    }
  }
  const chunk: Chunk = { dtype, rows, cols, bytes };
  if (dtype === 'F8_E4M3') {
    const s = new Float32Array(blocks(rows, cols));
    for (let b = 0; b < s.length; b++) {
      const r = rng();
      s[b] = r < 0.05 ? 0 : r < 0.1 ? -Math.fround(rng()) : Math.fround((1 + rng()) * 2 ** (randInt(rng, 30) - 25));
    }
    chunk.scales = s;
  }
  return chunk;
}

function describeValue(x: number): string {
  return `${Object.is(x, -0) ? '-0' : String(x)} [0x${f32ToU32(x).toString(16).padStart(8, '0')}]`;
}

// ---- the reference, on its own --------------------------------------------------------------

describe('scalar reference', () => {
  it('knows the documented values', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1.00390625)).toBe(0x3f80); // tie, down to even
    expect(f32ToBf16Bits(1.01171875)).toBe(0x3f82); // tie, up to even
    expect(f32ToBf16Bits(u32ToF32(0x3f808001))).toBe(0x3f81); // one f32 ulp above the tie
    expect(f32ToBf16Bits(-2)).toBe(0xc000);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(NaN)).toBe(0x7fc0);
    expect(f32ToBf16Bits(BF16_MAX)).toBe(0x7f7f);
    expect(f32ToBf16Bits(u32ToF32(0x7f7fffff))).toBe(0x7f80); // f32 max rounds to inf
    expect(f32ToBf16Bits(2 ** -133)).toBe(0x0001);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133);
    expect(bf16BitsToF32(0x3f80)).toBe(1);

    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(Math.fround(65519.996))).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie, to even: infinity
    expect(f32ToF16Bits(-65520)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie, to even: zero
    expect(f32ToF16Bits(-(2 ** -25))).toBe(0x8000);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);

    expect(e4m3ToF32(0x7e)).toBe(448);
    expect(e4m3ToF32(0xfe)).toBe(-448);
    expect(e4m3ToF32(0x01)).toBe(2 ** -9);
    expect(e4m3ToF32(0x07)).toBe(7 * 2 ** -9);
    expect(e4m3ToF32(0x08)).toBe(2 ** -6);
    expect(e4m3ToF32(0x38)).toBe(1);
    expect(e4m3ToF32(0x7f)).toBeNaN();
    expect(e4m3ToF32(0xff)).toBeNaN();
    expect(Object.is(e4m3ToF32(0x80), -0)).toBe(true);
    expect(f32ToE4m3(448)).toBe(0x7e);
    expect(f32ToE4m3(Math.fround(463.99997))).toBe(0x7e);
    expect(f32ToE4m3(464)).toBe(0x7e); // tie between 448 and 480: even (and saturated anyway)
    expect(f32ToE4m3(465)).toBe(0x7e); // rounds to 480: saturates
    expect(f32ToE4m3(1e30)).toBe(0x7e);
    expect(f32ToE4m3(Infinity)).toBe(0x7e);
    expect(f32ToE4m3(-Infinity)).toBe(0xfe);
    expect(f32ToE4m3(NaN)).toBe(0x7f);
    expect(f32ToE4m3(-0)).toBe(0x80);
    expect(f32ToE4m3(2 ** -10)).toBe(0x00); // tie, to even: zero
    expect(f32ToE4m3(-(2 ** -10))).toBe(0x80);
    expect(f32ToE4m3(3 * 2 ** -10)).toBe(0x02);
    expect(f32ToE4m3(1.0625)).toBe(0x38);
    expect(f32ToE4m3(1.1875)).toBe(0x3a);
    expect(fp8ScaleRef(0)).toBe(Math.fround(Math.fround(1e-4) / 448));
    expect(fp8ScaleRef(448)).toBe(1);
    expect(fp8ScaleRef(Infinity)).toBe(Infinity);
  });

  it('decodes BF16 like the f32 bit pattern shifted by 16, for all 65536 codes', () => {
    for (let h = 0; h < 65536; h++) {
      const want = u32ToF32(h << 16);
      const got = bf16BitsToF32(h);
      if (!(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)))) throw new Error(`bf16 0x${h.toString(16)}: ${got} vs ${want}`);
    }
  });

  // For every pair of adjacent finite positive codes: both round-trip, their exact midpoint
  // rounds to the even one, and the f32 neighbours of the midpoint round away from the tie.
  const ladders: [string, number, (h: number) => number, (x: number) => number, number][] = [
    ['F16', 0x7bff, f16BitsToF32, f32ToF16Bits, 0x8000],
    ['BF16', 0x7f7f, bf16BitsToF32, f32ToBf16Bits, 0x8000],
    ['E4M3', 0x7e, e4m3ToF32, f32ToE4m3, 0x80],
  ];
  for (const [name, maxCode, dec, enc, signBit] of ladders) {
    it(`${name}: round trips, ties to even and neighbours of ties, exhaustively`, () => {
      for (let h = 0; h <= maxCode; h++) {
        const v = dec(h);
        expect(enc(v)).toBe(h);
        expect(enc(-v)).toBe(h | signBit);
        if (h === maxCode) continue;
        const mid = (v + dec(h + 1)) / 2;
        expect(Math.fround(mid)).toBe(mid); // exact in f32
        const even = h % 2 === 0 ? h : h + 1;
        if (enc(mid) !== even) throw new Error(`${name} tie ${mid} -> 0x${enc(mid).toString(16)}, want 0x${even.toString(16)}`);
        expect(enc(-mid)).toBe(even | signBit);
        const bits = f32ToU32(mid);
        expect(enc(u32ToF32(bits - 1))).toBe(h);
        expect(enc(u32ToF32(bits + 1))).toBe(h + 1);
      }
    });
  }

  const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round;
  it.skipIf(typeof f16round !== 'function')('F16 agrees with Math.f16round', () => {
    const rng = mulberry32(7);
    const xs = [...SPECIAL_VALUES];
    for (let i = 0; i < 200_000; i++) xs.push(u32ToF32((rng() * 2 ** 32) >>> 0));
    for (let hi = 0; hi < 65536; hi++) xs.push(u32ToF32((hi << 16) | 0x1000), u32ToF32(hi << 16));
    for (const x of xs) {
      const want = f16round!(x);
      const got = f16BitsToF32(f32ToF16Bits(x));
      if (!(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)))) throw new Error(`f16round(${describeValue(x)}): ${want}, reference ${got}`);
    }
  });

  it('mixes with f32 roundings and skips zero weights', () => {
    const one = (x: number): Chunk => ({ dtype: 'F32', rows: 1, cols: 1, bytes: bytesOf(new Float32Array([x])) });
    const r = mixRef({ rows: 1, cols: 1, inputs: [one(0.1), one(0.2)], weights: [0.3, 0.7], out: 'F32' });
    const want = Math.fround(Math.fround(Math.fround(0.3) * Math.fround(0.1)) + Math.fround(Math.fround(0.7) * Math.fround(0.2)));
    expect(new Float32Array(r.bytes.buffer)[0]).toBe(want);
    const z = mixRef({ rows: 1, cols: 1, inputs: [one(-0), one(Infinity)], weights: [1, 0], out: 'F32' });
    expect(f32ToU32(new Float32Array(z.bytes.buffer)[0]!)).toBe(0); // +0: -0 through acc = +0, inf skipped
  });
});

// ---- the module -----------------------------------------------------------------------------

describe('wasm module', () => {
  it('imports nothing and exports memory and the kernels', async () => {
    const mod = await WA.compile(wasmBytes);
    expect(WA.Module.imports(mod)).toEqual([]);
    const names = WA.Module.exports(mod).map((e) => `${e.kind}:${e.name}`);
    for (const f of ['alloc', 'dealloc', 'fill_zero', 'decode', 'accumulate', 'encode', 'diff', 'xxh3', 'kernels_abi']) {
      expect(names).toContain(`function:${f}`);
    }
    expect(names).toContain('memory:memory');
    const k = await createWasmKernels(mod as Parameters<typeof createWasmKernels>[0]);
    expect(typeof k.mix).toBe('function');
  });

  it('the comparison helpers see a one-bit difference', () => {
    const a = new Uint8Array([1, 2, 3, 4]);
    const b = new Uint8Array([1, 2, 3, 5]);
    expect(() => expectSameBytes(a, b, 'x', 2)).toThrow(/element 1/);
  });
});

// ---- checksums ------------------------------------------------------------------------------

describe('xxh3', () => {
  /** The xxHash sanity check's test buffer (cli/xsum_sanity_check.c, XSUM_fillTestBuffer). */
  const testBuffer = (len: number) => {
    const out = new Uint8Array(len);
    let gen = 2654435761n;
    for (let i = 0; i < len; i++) {
      out[i] = Number(gen >> 56n);
      gen = (gen * 11400714785074694797n) & ((1n << 64n) - 1n);
    }
    return out;
  };

  it("gives the xxHash sanity check's published XXH3-64 values (seed 0) in every length class", () => {
    // cli/xsum_sanity_check.c, XSUM_XXH3_testdata: empty, 1-3, 4-8, 9-16, 17-128, 129-240, one
    // block with an overlapping last stripe, a block at a stripe boundary, 2 blocks, 2 blocks and a
    // partial one, 3 blocks.
    const published: [number, bigint][] = [
      [0, 0x2d06800538d394c2n], [1, 0xc44bdff4074eecdbn], [6, 0x27b56a84cd2d7325n], [12, 0xa713daf0dfbb77e7n],
      [24, 0xa3fe70bf9d3510ebn], [48, 0x397da259ecba1f11n], [80, 0xbcdefbbb2c47c90an], [195, 0xcd94217ee362ec3an],
      [403, 0xcdeb804d65c6dea4n], [512, 0x617e49599013cb6bn], [2048, 0xdd59e2c3a5f038e0n], [2099, 0xc6b9d9b3fc9ac765n],
      [2240, 0x6e73a90539cf2948n], [2367, 0xcb37aeb9e5d361edn],
    ];
    const buf = testBuffer(2367);
    for (const [len, want] of published) {
      expect(K.hash(buf.subarray(0, len)), `length ${len}`).toBe(want);
      expect(xxh3Ref(buf.subarray(0, len)), `reference, length ${len}`).toBe(want);
    }
  });

  it('equals the BigInt reference on every length 0-300, around the block sizes, and at every alignment', () => {
    const rnd = mulberry32(77);
    const buf = new Uint8Array(5000);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
    const lengths = [...Array.from({ length: 301 }, (_, i) => i), 1023, 1024, 1025, 1087, 1088, 1089, 2047, 2048, 2049, 3071, 3072, 3073, 4095, 4096, 4097, 4993];
    for (const len of lengths) {
      const start = len % 7;
      const view = buf.subarray(start, start + len);
      expect(K.hash(view), `length ${len}`).toBe(xxh3Ref(view));
    }
  });

  it('sees a one-bit change anywhere in a 1 MiB buffer', () => {
    const rnd = mulberry32(78);
    const buf = new Uint8Array(1 << 20);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
    const h = K.hash(buf);
    expect(h).toBe(xxh3Ref(buf));
    for (const at of [0, 31, 32, 1000, 1024, buf.length - 65, buf.length - 1]) {
      buf[at]! ^= 1;
      expect(K.hash(buf)).not.toBe(h);
      buf[at]! ^= 1;
    }
  });
});

// ---- decode ---------------------------------------------------------------------------------

describe('decode', () => {
  it('all 65536 F16 and BF16 codes', () => {
    for (const dtype of ['F16', 'BF16'] as const) {
      const codes = new Uint16Array(65536).map((_, i) => i);
      const chunk: Chunk = { dtype, rows: 256, cols: 256, bytes: bytesOf(codes) };
      expectSameBytes(bytesOf(L.decode(chunk)), bytesOf(decodeRef(chunk)), dtype, 4, (i) => `0x${i.toString(16)}`);
      // and a few by value, so wasm and reference cannot agree on something wrong
      const d = L.decode(chunk);
      if (dtype === 'F16') {
        expect([d[0x7bff], d[0x0001], d[0x3c00], d[0xfc00]]).toEqual([65504, 2 ** -24, 1, -Infinity]);
      } else {
        expect([d[0x3f80], d[0x0001], d[0x7f7f]]).toEqual([1, 2 ** -133, BF16_MAX]);
      }
      const bits = new Uint32Array(d.buffer);
      const nans = dtype === 'F16' ? [0x7e01, 0xfe01, 0x7c01, 0x7fff] : [0x7fc1, 0xff81, 0x7f81, 0xffff];
      for (const h of nans) expect(bits[h], `NaN 0x${h.toString(16)} canonical`).toBe(0x7fc00000);
      expect(Object.is(d[0x8000], -0)).toBe(true);
    }
  });

  it('all 256 E4M3 codes under many scales, partial blocks', () => {
    const scaleSet = [1, 2 ** -10, Math.fround(3.7e-3), 1e30, 1e-40, 0, -1, NaN, Infinity, 2 ** -149, Math.fround(0.1)];
    const rows = 130;
    const cols = 256 * 3 + 5; // 7 column blocks, the last partial
    const bytes = new Uint8Array(rows * cols);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + Math.floor(i / cols)) & 0xff;
    const scales = new Float32Array(blocks(rows, cols)).map((_, b) => scaleSet[b % scaleSet.length]!);
    const chunk: Chunk = { dtype: 'F8_E4M3', rows, cols, bytes, scales };
    expectSameBytes(bytesOf(L.decode(chunk)), bytesOf(decodeRef(chunk)), 'E4M3', 4);
    const unit: Chunk = { dtype: 'F8_E4M3', rows: 1, cols: 256, bytes: new Uint8Array(256).map((_, i) => i), scales: new Float32Array([1, 1]) };
    const d = L.decode(unit);
    expect([d[0x7e], d[0x01], d[0x08], d[0x38], d[0xfe]]).toEqual([448, 2 ** -9, 2 ** -6, 1, -448]);
    const bits = new Uint32Array(d.buffer);
    expect([bits[0x7f], bits[0xff]]).toEqual([0x7fc00000, 0x7fc00000]);
    expect(Object.is(d[0x80], -0)).toBe(true);
  });

  it('F32 keeps every value and canonicalizes NaN', () => {
    const bits = new Uint32Array([...SPECIAL_F32_BITS, 0x12345678, 0xdeadbeef, 0x7fa00000]);
    const chunk: Chunk = { dtype: 'F32', rows: 1, cols: bits.length, bytes: bytesOf(bits) };
    const got = new Uint32Array(L.decode(chunk).buffer);
    bits.forEach((b, i) => {
      const nan = (b & 0x7fffffff) > 0x7f800000;
      expect(got[i], `0x${b.toString(16)}`).toBe(nan ? 0x7fc00000 : b);
    });
    expectSameBytes(bytesOf(got), bytesOf(decodeRef(chunk)), 'F32', 4);
  });

  it('random chunks of every dtype and many shapes', () => {
    const rng = mulberry32(11);
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, cols] of [[1, 1], [1, 7], [3, 17], [129, 1], [1, 129], [257, 385], [300, 200], [128, 128]] as const) {
        const c = randomChunk(rng, dtype, rows, cols);
        expectSameBytes(bytesOf(L.decode(c)), bytesOf(decodeRef(c)), `${dtype} ${rows}x${cols}`, 4);
      }
    }
  });
});

// ---- encode ---------------------------------------------------------------------------------

/** Every f32 whose upper 16 bits vary, with low halves at and around the ties of each format. */
function sweepValues(): Float32Array {
  const lows = [0x0000, 0x0001, 0xffff, 0x7fff, 0x8000, 0x8001, 0x0fff, 0x1000, 0x1001, 0x2000, 0x3000, 0xc3a5];
  const out = new Uint32Array(65536 * lows.length);
  let k = 0;
  for (let hi = 0; hi < 65536; hi++) for (const lo of lows) out[k++] = ((hi << 16) | lo) >>> 0;
  return new Float32Array(out.buffer);
}

describe('encode', () => {
  const sweep = sweepValues();
  const rng = mulberry32(3);
  const randomBits = new Float32Array(new Uint32Array(200_000).map(() => (rng() * 2 ** 32) >>> 0).buffer);

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype}: f32 sweep (all upper halves × tie patterns), random bits and specials`, () => {
      for (const [name, values] of [['sweep', sweep], ['random', randomBits], ['specials', new Float32Array(SPECIAL_VALUES)]] as const) {
        const got = L.encode(values, 1, values.length, dtype);
        const want = encodeRef(values, 1, values.length, dtype);
        expectSameEncoded(got, want, dtype, `${dtype} ${name}`, (i) => describeValue(values[i]!));
      }
    });
  }

  it('known codes straight from the module', () => {
    const enc = (dtype: FloatDtype, xs: number[]) => {
      const e = L.encode(new Float32Array(xs), 1, xs.length, dtype);
      return Array.from(dtype === 'F32' ? new Uint32Array(e.bytes.buffer) : new Uint16Array(e.bytes.buffer));
    };
    expect(enc('F16', [65504, 65519.996, 65520, -65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, NaN, -NaN, -0, Infinity])).toEqual([
      0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x0001, 0x0000, 0x0002, 0x7e00, 0x7e00, 0x8000, 0x7c00,
    ]);
    expect(enc('BF16', [1.00390625, 1.01171875, BF16_MAX, u32ToF32(0x7f7fffff), NaN, u32ToF32(0xffc00001), -0, 2 ** -133])).toEqual([
      0x3f80, 0x3f82, 0x7f7f, 0x7f80, 0x7fc0, 0x7fc0, 0x8000, 0x0001,
    ]);
    expect(enc('F32', [u32ToF32(0xffc00001), u32ToF32(0x7f800001), -0, u32ToF32(1)])).toEqual([0x7fc00000, 0x7fc00000, 0x80000000, 1]);
  });

  it('E4M3 rounding of every swept f32 in [-448, 448] with block scale exactly 1', () => {
    // Each 128-column block starts with ±448, so amax = 448 and s = 448/448 = 1: codes are e4m3(x).
    const inRange = sweep.filter((x) => Math.abs(x) <= 448);
    const per = 127;
    const nb = Math.ceil(inRange.length / per);
    const values = new Float32Array(nb * 128);
    for (let b = 0; b < nb; b++) {
      values[b * 128] = b % 2 ? -448 : 448;
      values.set(inRange.subarray(b * per, (b + 1) * per), b * 128 + 1);
    }
    const got = L.encode(values, 1, values.length, 'F8_E4M3');
    const want = encodeRef(values, 1, values.length, 'F8_E4M3');
    expect(Array.from(new Set(want.scales))).toEqual([1]);
    expectSameEncoded(got, want, 'F8_E4M3', 'E4M3 sweep', (i) => describeValue(values[i]!));
    // Known codes through the module.
    const direct = new Float32Array([448, Math.fround(447.9), 2 ** -9, 2 ** -10, 3 * 2 ** -10, 1.0625, 1.1875, -0, -448, 2 ** -6]);
    const e = L.encode(direct, 1, direct.length, 'F8_E4M3');
    expect(Array.from(e.bytes)).toEqual([0x7e, 0x7e, 0x01, 0x00, 0x02, 0x38, 0x3a, 0x80, 0xfe, 0x08]);
    expect(Array.from(e.scales!)).toEqual([1]);
  });

  it('E4M3: saturation (464 and beyond), inf and NaN blocks, all-zero blocks', () => {
    // 3 × 128: block 0 has 464 (s = 464/448), block 1 inf (s = inf: inf/inf is NaN), block 2 zeros.
    const v = new Float32Array(3 * 128);
    v[0] = 464; v[1] = -464; v[2] = 463.9999; v[3] = NaN; v[4] = 448; v[5] = -0;
    v[128] = Infinity; v[129] = 1; v[130] = -Infinity; v[131] = -1;
    const got = L.encode(v, 1, v.length, 'F8_E4M3');
    const want = encodeRef(v, 1, v.length, 'F8_E4M3');
    expectSameEncoded(got, want, 'F8_E4M3', 'specials');
    expect(got.scales![0]).toBe(Math.fround(464 / 448));
    expect(got.scales![1]).toBe(Infinity);
    expect(got.scales![2]).toBe(Math.fround(Math.fround(1e-4) / 448));
    expect(got.nanCount).toBe(3); // NaN, inf/inf, -inf/inf
    expect([got.bytes[0], got.bytes[1], got.bytes[3], got.bytes[5], got.bytes[128], got.bytes[129], got.bytes[131]]).toEqual([0x7e, 0xfe, 0x7f, 0x80, 0x7f, 0x00, 0x80]);
    expect(Array.from(got.bytes.subarray(256))).toEqual(new Array(128).fill(0));
  });

  it('E4M3 partial edge blocks and many shapes', () => {
    const rng = mulberry32(5);
    for (const [rows, cols] of [[300, 200], [129, 1], [1, 129], [257, 385], [128, 128], [1, 1], [5, 3], [2, 16], [3, 33], [130, 17]] as const) {
      const n = rows * cols;
      const values = new Float32Array(n);
      const big = rng() < 0.5;
      for (let i = 0; i < n; i++) values[i] = big ? randomF32(rng) : Math.fround(gauss(rng) * 0.05);
      // one block all zeros, one block of tiny values (amax below 1e-4)
      for (let r = 0; r < Math.min(rows, 128); r++) {
        for (let c = 0; c < Math.min(cols, 128); c++) values[r * cols + c] = 0;
      }
      if (rows > 128) for (let c = 0; c < Math.min(cols, 128); c++) values[128 * cols + c] = Math.fround(gauss(rng) * 1e-6);
      const got = L.encode(values, rows, cols, 'F8_E4M3');
      const want = encodeRef(values, rows, cols, 'F8_E4M3');
      expect(got.scales!.length).toBe(blocks(rows, cols));
      expectSameEncoded(got, want, 'F8_E4M3', `${rows}x${cols}`, (i) => describeValue(values[i]!));
    }
  });

  it('conversion (decode then encode) keeps -0 and round-trips every code', () => {
    const codes = new Uint16Array(65536).map((_, i) => i);
    for (const dtype of ['F16', 'BF16'] as const) {
      const c: Chunk = { dtype, rows: 1, cols: 65536, bytes: bytesOf(codes) };
      const e = L.encode(L.decode(c), 1, 65536, dtype);
      const want = new Uint16Array(codes).map((h) => ((h & 0x7fff) > (dtype === 'F16' ? 0x7c00 : 0x7f80) ? (dtype === 'F16' ? 0x7e00 : 0x7fc0) : h));
      expectSameBytes(e.bytes, bytesOf(want), `${dtype} round trip`, 2);
    }
  });
});

// ---- mix ------------------------------------------------------------------------------------

describe('mix', () => {
  const SHAPES = [[130, 260], [1, 37], [257, 129]] as const;
  for (const inDtype of FLOAT_DTYPES) {
    for (const out of FLOAT_DTYPES) {
      it(`${inDtype} + ${inDtype} -> ${out}`, () => {
        const rng = mulberry32(FLOAT_DTYPES.indexOf(inDtype) * 16 + FLOAT_DTYPES.indexOf(out) + 100);
        for (const [rows, cols] of SHAPES) {
          for (const weights of [[0.3, 0.7], [1, 0], [0, 1], [-0.5, 1.5]]) {
            const inputs = [randomChunk(rng, inDtype, rows, cols), randomChunk(rng, inDtype, rows, cols)];
            const req = { rows, cols, inputs, weights, out };
            expectSameEncoded(L.mix(req), mixRef(req), out, `${rows}x${cols} w=${weights}`);
          }
        }
      });
    }
  }

  it('mixed dtypes, 2 to 4 inputs, 1/3 thrice, zero weights', () => {
    const rng = mulberry32(42);
    const weightSets = [[1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.25, 0.25], [0.5, 0, 0.5], [0, 0, 0], [0.1, 0.2, 0.3, 0.4], [2, -1], [1e-30, 1]];
    for (const weights of weightSets) {
      for (const out of FLOAT_DTYPES) {
        const rows = 1 + randInt(rng, 300);
        const cols = 1 + randInt(rng, 300);
        const inputs = weights.map(() => randomChunk(rng, FLOAT_DTYPES[randInt(rng, 4)]!, rows, cols));
        const req = { rows, cols, inputs, weights, out };
        expectSameEncoded(L.mix(req), mixRef(req), out, `${inputs.map((c) => c.dtype)} w=${weights} -> ${out}`);
      }
    }
  });

  it('weight 1 maps -0 to +0; zero weights skip inf; all-zero weights give zeros', () => {
    const c: Chunk = { dtype: 'BF16', rows: 1, cols: 3, bytes: bytesOf(new Uint16Array([0x8000, 0x7f80, 0xbf80])) };
    const r = L.mix({ rows: 1, cols: 3, inputs: [c], weights: [1], out: 'BF16' });
    expect(Array.from(new Uint16Array(r.bytes.buffer))).toEqual([0x0000, 0x7f80, 0xbf80]);
    const z = L.mix({ rows: 1, cols: 3, inputs: [c, c], weights: [0, 1], out: 'F32' });
    expect(Array.from(new Uint32Array(z.bytes.buffer))).toEqual([0, 0x7f800000, 0xbf800000]);
    const nan = L.mix({ rows: 1, cols: 3, inputs: [c, c], weights: [1, -1], out: 'F16' });
    expect(Array.from(new Uint16Array(nan.bytes.buffer))).toEqual([0, 0x7e00, 0]); // inf - inf
    const zero = L.mix({ rows: 2, cols: 200, inputs: [], weights: [], out: 'F8_E4M3' });
    expect(zero.bytes.every((b) => b === 0)).toBe(true);
    expect(Array.from(zero.scales!)).toEqual([fp8ScaleRef(0), fp8ScaleRef(0)]);
  });

  it('every length 0..70 (SIMD tails)', () => {
    const rng = mulberry32(9);
    for (let n = 0; n <= 70; n++) {
      for (const out of FLOAT_DTYPES) {
        const inputs = FLOAT_DTYPES.map((d) => randomChunk(rng, d, 1, n));
        const req = { rows: 1, cols: n, inputs, weights: [0.4, 0.3, 0.2, 0.1], out };
        expectSameEncoded(L.mix(req), mixRef(req), out, `n=${n} -> ${out}`);
      }
    }
  });

  it('FP8 + FP8 -> FP8 with partial blocks', () => {
    const rng = mulberry32(77);
    for (const [rows, cols] of [[300, 200], [129, 1], [1, 129], [257, 385]] as const) {
      const inputs = [randomChunk(rng, 'F8_E4M3', rows, cols, true), randomChunk(rng, 'F8_E4M3', rows, cols, true)];
      const req = { rows, cols, inputs, weights: [0.3, 0.7], out: 'F8_E4M3' as const };
      const got = L.mix(req);
      expectSameEncoded(got, mixRef(req), 'F8_E4M3', `${rows}x${cols}`);
    }
  });
});

// ---- diff -----------------------------------------------------------------------------------

describe('diff', () => {
  it('every dtype pair, finite and non-finite values, partial blocks', () => {
    const rng = mulberry32(21);
    for (const da of FLOAT_DTYPES) {
      for (const db of FLOAT_DTYPES) {
        for (const [rows, cols, finite] of [[130, 260, true], [257, 129, false], [1, 1031, true], [3, 5, false]] as const) {
          const a = randomChunk(rng, da, rows, cols, finite);
          const b = randomChunk(rng, db, rows, cols, finite);
          expectStatsClose(L.diff(a, b), diffRef(a, b), `${da} vs ${db} ${rows}x${cols}`);
        }
      }
    }
  });

  it('counts non-finite pairs and sums the rest, by value', () => {
    const a: Chunk = { dtype: 'F32', rows: 1, cols: 6, bytes: bytesOf(new Float32Array([1, 2, NaN, 4, Infinity, -3])) };
    const b: Chunk = { dtype: 'F32', rows: 1, cols: 6, bytes: bytesOf(new Float32Array([1.5, 2, 5, -Infinity, 1, -1])) };
    expect(L.diff(a, b)).toEqual({ count: 6, nonFinite: 3, sumSqDiff: 0.25 + 0 + 4, sumSqA: 1 + 4 + 9, sumSqB: 2.25 + 4 + 1, dot: 1.5 + 4 + 3, maxAbsDiff: 2 });
    const s = L.diff(a, a);
    expect([s.sumSqDiff, s.maxAbsDiff, s.nonFinite]).toEqual([0, 0, 2]);
  });
});

// ---- the wrapper ----------------------------------------------------------------------------

describe('wrapper', () => {
  const bf = (rows: number, cols: number): Chunk => ({ dtype: 'BF16', rows, cols, bytes: new Uint8Array(rows * cols * 2) });

  it('rejects inconsistent requests with clear errors', () => {
    expect(() => L.decode({ dtype: 'BF16', rows: 2, cols: 3, bytes: new Uint8Array(11) })).toThrow(/needs 12 data bytes, got 11/);
    expect(() => L.decode({ dtype: 'F8_E4M3', rows: 2, cols: 3, bytes: new Uint8Array(6) })).toThrow(/needs 4 scale bytes, got 0/);
    expect(() => L.decode({ dtype: 'F8_E4M3', rows: 200, cols: 3, bytes: new Uint8Array(600), scales: new Float32Array(1) })).toThrow(/needs 8 scale bytes, got 4/);
    expect(() => K.decode({ codec: { kind: 'plain', dtype: 'I8' }, rows: 1, cols: 1, data: new Uint8Array(1) })).toThrow(/I8 has no kernel codec/);
    expect(() => L.encode(new Float32Array(5), 2, 3, 'BF16')).toThrow(/needs 6 values, got 5/);
    expect(() => L.mix({ rows: 2, cols: 3, inputs: [bf(2, 3)], weights: [0.5, 0.5], out: 'BF16' })).toThrow(/1 inputs but 2 weights/);
    expect(() => L.mix({ rows: 2, cols: 3, inputs: [bf(3, 2)], weights: [1], out: 'BF16' })).toThrow(/shape 3 × 2 differs/);
    expect(() => L.diff(bf(2, 3), bf(3, 2))).toThrow(/shapes differ/);
  });

  it('handles 0-element chunks', () => {
    for (const [rows, cols] of [[0, 0], [0, 5], [5, 0]] as const) {
      expect(L.decode({ ...bf(rows, cols) }).length).toBe(0);
      const e = L.encode(new Float32Array(0), rows, cols, 'F8_E4M3');
      expect([e.bytes.length, e.scales!.length, e.nanCount]).toEqual([0, 0, 0]);
      const m = L.mix({ rows, cols, inputs: [bf(rows, cols)], weights: [1], out: 'BF16' });
      expect(m.bytes.length).toBe(0);
      expect(L.diff(bf(rows, cols), bf(rows, cols)).count).toBe(0);
      const f8: Chunk = { dtype: 'F8_E4M3', rows, cols, bytes: new Uint8Array(0), scales: new Float32Array(0) };
      expect(L.decode(f8).length).toBe(0);
    }
  });

  it('returns fresh arrays, and stays exact after memory grows', () => {
    const rng = mulberry32(1234);
    const small = randomChunk(rng, 'BF16', 3, 50);
    const first = L.decode(small);
    const firstCopy = first.slice();
    const firstEnc = L.mix({ rows: 3, cols: 50, inputs: [small], weights: [0.5], out: 'BF16' });
    const firstEncCopy = firstEnc.bytes.slice();
    expect(first.buffer.byteLength).toBe(first.byteLength);
    expect(firstEnc.bytes.buffer.byteLength).toBe(firstEnc.bytes.byteLength);
    // 3M elements: grows wasm memory well past its first size.
    const rows = 1500;
    const cols = 2000;
    const a = randomChunk(rng, 'BF16', rows, cols);
    const b = randomChunk(rng, 'F8_E4M3', rows, cols);
    const req = { rows, cols, inputs: [a, b], weights: [0.3, 0.7], out: 'F8_E4M3' as const };
    expectSameEncoded(L.mix(req), mixRef(req), 'F8_E4M3', 'large');
    expectSameBytes(bytesOf(first), bytesOf(firstCopy), 'earlier decode result untouched', 4);
    expectSameBytes(firstEnc.bytes, firstEncCopy, 'earlier mix result untouched', 2);
    const again = randomChunk(rng, 'F16', 3, 50);
    const r = { rows: 3, cols: 50, inputs: [small, again], weights: [0.5, 0.5], out: 'F16' as const };
    expectSameEncoded(L.mix(r), mixRef(r), 'F16', 'small after large');
  });
});

// ---- fuzz -----------------------------------------------------------------------------------

describe('fuzz (seeded)', () => {
  it('random shapes, dtypes, weights and values: mix, decode, encode, diff', () => {
    const seed = Number(process.env['MOE_KERNELS_FUZZ_SEED'] ?? 20240601);
    const rng = mulberry32(seed);
    for (let iter = 0; iter < 150; iter++) {
      const rows = 1 + randInt(rng, rng() < 0.3 ? 300 : 20);
      const cols = 1 + randInt(rng, rng() < 0.3 ? 300 : 40);
      const k = randInt(rng, 5);
      const inputs = Array.from({ length: k }, () => randomChunk(rng, FLOAT_DTYPES[randInt(rng, 4)]!, rows, cols, rng() < 0.5));
      const weights = inputs.map(() => {
        const r = rng();
        return r < 0.15 ? 0 : r < 0.3 ? 1 / (1 + randInt(rng, 5)) : gauss(rng);
      });
      const out = FLOAT_DTYPES[randInt(rng, 4)]!;
      const label = `seed ${seed} iter ${iter}: ${rows}x${cols} ${inputs.map((c) => c.dtype)} w=${weights} -> ${out}`;
      const req = { rows, cols, inputs, weights, out };
      expectSameEncoded(L.mix(req), mixRef(req), out, label);
      if (k > 0) {
        expectSameBytes(bytesOf(L.decode(inputs[0]!)), bytesOf(decodeRef(inputs[0]!)), `${label} decode`, 4);
        const v = L.decode(inputs[0]!);
        expectSameEncoded(L.encode(v, rows, cols, out), encodeRef(v, rows, cols, out), out, `${label} encode`);
      }
      if (k > 1) expectStatsClose(L.diff(inputs[0]!, inputs[1]!), diffRef(inputs[0]!, inputs[1]!), `${label} diff`);
    }
  });
});
