// The quantized codecs bit for bit against the scalar reference (test/reference/scalar.ts):
// FP8 E4M3 with any block shape (DeepSeek blocks, per-channel, per-tensor, odd sizes) and F32,
// F16 or BF16 scales; MXFP4; compressed-tensors INT4. Every code, ties, saturation, non-finite
// values, partial blocks, and the round trip decode ∘ encode ∘ decode = decode on values the format
// holds. And the strided copies that move expert regions.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { WHOLE, codecName, type Codec, type ScaleDtype } from '../app/engine/formats/codec.ts';
import { createWasmKernelsFromBytes, instantiateKernelsFromBytes, type Encoded, type Kernels, type Stripe, type WasmModule } from '../app/engine/kernels/wasm-kernels.ts';
import type { DiffStats } from '../app/engine/kernels/types.ts';
import { E2M1_VALUES, decodeRef, diffRef, e2m1ToF32, encodeRef, f32ToBf16Bits, f32ToF16Bits, mixRef, nearestE2m1 } from './reference/scalar.ts';

let K: Kernels;
/** The raw module, for kernels the engine calls on wasm memory directly (mix_tiled). */
let M: WasmModule;
beforeAll(async () => {
  const bytes = new Uint8Array(readFileSync(fileURLToPath(new URL('../public/moe_kernels.wasm', import.meta.url))));
  K = await createWasmKernelsFromBytes(bytes);
  M = await instantiateKernelsFromBytes(bytes);
});

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32Bytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

function expectSame(got: Uint8Array | undefined, want: Uint8Array | undefined, label: string): void {
  expect(got?.length ?? 0, `${label}: length`).toBe(want?.length ?? 0);
  if (!got || !want) return;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) throw new Error(`${label}: byte ${i} is ${got[i]}, reference ${want[i]}`);
}

function expectSameEncoded(got: Encoded, want: Encoded, label: string): void {
  expectSame(got.data, want.data, `${label} data`);
  expectSame(got.scales, want.scales, `${label} scales`);
  expect(got.bad, `${label} bad`).toBe(want.bad);
}

function scaleBytes(d: ScaleDtype, values: number[]): Uint8Array {
  if (d === 'F32') return f32Bytes(Float32Array.from(values));
  const out = new Uint16Array(values.length);
  values.forEach((v, i) => (out[i] = d === 'F16' ? f32ToF16Bits(Math.fround(v)) : f32ToBf16Bits(Math.fround(v))));
  return new Uint8Array(out.buffer);
}

/** Values with every awkward kind in proportion: normal, tiny, huge, zeros, ±0, ±inf, NaN. */
function values(r: () => number, n: number, finite = false): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.02 && !finite) v[i] = [NaN, Infinity, -Infinity][Math.floor(r() * 3)]!;
    else if (k < 0.05) v[i] = r() < 0.5 ? 0 : -0;
    else if (k < 0.1) v[i] = (r() - 0.5) * 2 ** (Math.floor(r() * 60) - 140);
    else if (k < 0.12) v[i] = (r() - 0.5) * 1e30;
    else v[i] = (r() - 0.5) * 0.08;
  }
  return v;
}

/** Counts and the max exactly; sums (SIMD lanes added in another order) to 1e-9 relative. */
function expectStatsClose(got: DiffStats, want: DiffStats): void {
  expect([got.count, got.nonFinite, got.maxAbsDiff]).toEqual([want.count, want.nonFinite, want.maxAbsDiff]);
  for (const k of ['sumSqDiff', 'sumSqA', 'sumSqB'] as const) expect(Math.abs(got[k] - want[k])).toBeLessThanOrEqual(1e-9 * want[k]);
  expect(Math.abs(got.dot - want.dot)).toBeLessThanOrEqual(1e-9 * Math.sqrt(want.sumSqA * want.sumSqB));
}

const FP8_SHAPES: [string, number, number][] = [
  ['DeepSeek 128×128 blocks', 128, 128],
  ['per-channel', 1, WHOLE],
  ['per-tensor', WHOLE, WHOLE],
  ['odd 3×5 blocks', 3, 5],
];

describe('FP8 E4M3 with any block shape and scale dtype', () => {
  for (const [name, br, bc] of FP8_SHAPES) {
    for (const scaleDtype of ['F32', 'F16', 'BF16'] as const) {
      const codec: Codec = { kind: 'fp8', scaleDtype, blockRows: br, blockCols: bc, scaleRole: 'scale' };
      it(`${name}, ${scaleDtype} scales: decode, encode, mix and diff equal the reference (partial blocks too)`, () => {
        const r = rng(br * 31 + bc + scaleDtype.length);
        for (const [rows, cols] of [[1, 1], [7, 13], [130, 200]] as const) {
          const v = values(r, rows * cols);
          const enc = K.encode(v, rows, cols, codec);
          expectSameEncoded(enc, encodeRef(v, rows, cols, codec), `${codecName(codec)} ${rows}x${cols} encode`);
          const s: Stripe = { codec, rows, cols, data: enc.data, scales: enc.scales! };
          expectSame(f32Bytes(K.decode(s)), f32Bytes(decodeRef(s)), `${rows}x${cols} decode`);
          const other: Stripe = { codec: { kind: 'plain', dtype: 'BF16' }, rows, cols, data: K.encode(values(r, rows * cols, true), rows, cols, { kind: 'plain', dtype: 'BF16' }).data };
          const req = { rows, cols, inputs: [s, other], weights: [0.3, 0.7], out: codec };
          expectSameEncoded(K.mix(req), mixRef(req), `${rows}x${cols} mix`);
          expectStatsClose(K.diff(s, other), diffRef(s, other));
        }
      });
    }
  }

  it('decodes every code with stored scales of each dtype, exactly', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const scaleDtype of ['F32', 'F16', 'BF16'] as const) {
      const codec: Codec = { kind: 'fp8', scaleDtype, blockRows: 1, blockCols: 64, scaleRole: 'scale' };
      const s: Stripe = { codec, rows: 1, cols: 256, data: codes, scales: scaleBytes(scaleDtype, [1, 0.001953125, 3.5e-3, -2]) };
      expectSame(f32Bytes(K.decode(s)), f32Bytes(decodeRef(s)), `codes × ${scaleDtype} scales`);
    }
  });

  it('a BF16 scale is rounded when stored, and the codes are made with the stored scale', () => {
    const codec: Codec = { kind: 'fp8', scaleDtype: 'BF16', blockRows: 1, blockCols: WHOLE, scaleRole: 'scale' };
    const v = Float32Array.of(1, 0.3, -0.77);
    const e = K.encode(v, 1, 3, codec);
    const stored = new Uint16Array(e.scales!.buffer.slice(e.scales!.byteOffset, e.scales!.byteOffset + 2))[0]!;
    expect(stored).toBe(f32ToBf16Bits(Math.fround(1 / 448)));
    expectSameEncoded(e, encodeRef(v, 1, 3, codec), 'bf16 scale');
  });
});

describe('FP8 E4M3 fast paths', () => {
  it('finite blocks whose stored scale rounds down saturate at 448 exactly as the reference', () => {
    // A block's fresh scale is amax / 448 rounded to the scale dtype; rounded down (F16 subnormal
    // scales are coarse) it makes quotients of 464 and more, which must give the largest code.
    for (const scaleDtype of ['F16', 'BF16', 'F32'] as const) {
      const codec: Codec = { kind: 'fp8', scaleDtype, blockRows: 1, blockCols: 64, scaleRole: 'scale' };
      const rows = 200;
      const v = new Float32Array(rows * 64);
      for (let r = 0; r < rows; r++) {
        const amax = Math.fround(1e-4 * (1 + r / 20));
        for (let c = 0; c < 64; c++) v[r * 64 + c] = Math.fround(amax * (1 - c / 256) * (c % 2 ? -1 : 1));
      }
      const want = encodeRef(v, rows, 64, codec);
      const got = K.encode(v, rows, 64, codec);
      expectSameEncoded(got, want, `${scaleDtype} scales`);
      if (scaleDtype === 'F16') {
        const stored = K.decode({ codec: { kind: 'plain', dtype: 'F16' }, rows: 1, cols: rows, data: want.scales! });
        const over = Array.from(v).filter((x, i) => Math.abs(x) / stored[Math.floor(i / 64)]! >= 464).length;
        expect(over, 'quotients of 464 and more exercised').toBeGreaterThan(50);
      }
    }
  });

  it('every code under scales of every kind (huge, subnormal, zero, negative, non-finite) mixes as the reference', () => {
    const scaleSet = [1e30, 300, 256, 255.99998, 2 ** -149, 1e-40, 0, -1, NaN, Infinity, -Infinity, 3.5e-3];
    const codec: Codec = { kind: 'fp8', scaleDtype: 'F32', blockRows: 1, blockCols: 256, scaleRole: 'scale' };
    const rows = scaleSet.length;
    const data = Uint8Array.from({ length: rows * 256 }, (_, i) => (i * 5 + Math.floor(i / 256)) & 0xff);
    const s: Stripe = { codec, rows, cols: 256, data, scales: scaleBytes('F32', scaleSet) };
    const r = rng(9);
    const other: Stripe = { codec: { kind: 'plain', dtype: 'BF16' }, rows, cols: 256, data: K.encode(values(r, rows * 256, true), rows, 256, { kind: 'plain', dtype: 'BF16' }).data };
    expectSame(f32Bytes(K.decode(s)), f32Bytes(decodeRef(s)), 'decode');
    for (const out of [{ kind: 'plain', dtype: 'BF16' }, { kind: 'plain', dtype: 'F32' }, codec] as Codec[]) {
      for (const [inputs, weights] of [[[s, other], [0.3, 0.7]], [[other, s], [-1.5, 0.25]], [[s, s], [1, 1]]] as [Stripe[], number[]][]) {
        const req = { rows, cols: 256, inputs, weights, out };
        expectSameEncoded(K.mix(req), mixRef(req), `${codecName(out)} mix`);
      }
    }
  });
});

describe('mixing into E4M3 block by block (mix_e4m3)', () => {
  const r = rng(77);
  /** An E4M3 stripe of random codes (some NaN codes where `nan`) and its scales, one per block. */
  function fp8(codec: Extract<Codec, { kind: 'fp8' }>, rows: number, cols: number, scale: (block: number) => number, nan = false): Stripe {
    const data = new Uint8Array(rows * cols);
    for (let i = 0; i < data.length; i++) {
      let c = Math.floor(r() * 256);
      if (!nan && (c & 0x7f) === 0x7f) c ^= 1;
      data[i] = c;
    }
    const nb = Math.ceil(rows / Math.min(codec.blockRows, rows)) * Math.ceil(cols / Math.min(codec.blockCols, cols));
    return { codec, rows, cols, data, scales: scaleBytes(codec.scaleDtype, Array.from({ length: nb }, (_, b) => scale(b))) };
  }
  const bf16 = (rows: number, cols: number): Stripe => ({ codec: { kind: 'plain', dtype: 'BF16' }, rows, cols, data: K.encode(values(r, rows * cols, true), rows, cols, { kind: 'plain', dtype: 'BF16' }).data });

  it('two parents on the output grid, every path: groups of blocks, partial blocks, NaN codes, infinite and huge scales', () => {
    for (const scaleDtype of ['F32', 'BF16'] as const) {
      const codec = { kind: 'fp8', scaleDtype, blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' } as const;
      // 9 column blocks (the tile holds 8 side by side), the last 76 wide; 130 rows (a 2-row block row).
      const [rows, cols] = [130, 1100];
      const plain = (b: number) => [2e-4, 1e-3, 3.5e-3, 0.5][b % 4]!;
      const cases: [string, Stripe, Stripe][] = [
        ['finite', fp8(codec, rows, cols, plain), fp8(codec, rows, cols, (b) => plain(b + 1))],
        ['NaN codes', fp8(codec, rows, cols, plain, true), fp8(codec, rows, cols, plain)],
        // An infinite scale makes infinities (and NaN from 0 · inf); a scale of 300 takes the
        // general path for that block (no single factor); a tiny scale makes subnormal quotients.
        ['inf and huge scales', fp8(codec, rows, cols, (b) => (b === 3 ? Infinity : b === 5 ? 300 : plain(b))), fp8(codec, rows, cols, (b) => (b === 10 ? 1e-30 : plain(b)))],
      ];
      for (const [label, a, b] of cases) {
        for (const weights of [[0.5, 0.5], [-1.25, 3], [1, -1]]) {
          const req = { rows, cols, inputs: [a, b], weights, out: codec };
          expectSameEncoded(K.mix(req), mixRef(req), `${scaleDtype} ${label} ${weights}`);
        }
      }
    }
  });

  it('other inputs: three parents, a BF16 parent, zero weights, no weights, per-channel and odd blocks', () => {
    const ds = { kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' } as const;
    const [rows, cols] = [200, 300];
    const s = (b: number) => 1e-3 * (1 + (b % 3));
    const [a, b, c] = [fp8(ds, rows, cols, s), fp8(ds, rows, cols, s), fp8(ds, rows, cols, s, true)];
    const reqs = [
      { inputs: [a, b, c], weights: [0.2, 0.3, 0.5] },
      { inputs: [a, bf16(rows, cols)], weights: [0.7, 0.3] },
      { inputs: [a, b, c], weights: [0, 0.4, 0.6] },
      { inputs: [a, b], weights: [0, 0] },
      { inputs: [], weights: [] },
    ];
    for (const out of [ds, { kind: 'fp8', scaleDtype: 'BF16', blockRows: 1, blockCols: WHOLE, scaleRole: 'scale' }, { kind: 'fp8', scaleDtype: 'F16', blockRows: 3, blockCols: 5, scaleRole: 'scale' }] as Codec[]) {
      for (const q of reqs) {
        const req = { rows, cols, ...q, out };
        expectSameEncoded(K.mix(req), mixRef(req), `${codecName(out)}: ${q.inputs.length} inputs, weights ${q.weights}`);
      }
    }
  });
});

describe('mixing into a plain output tile by tile (mix_tiled, as the engine calls it)', () => {
  const r = rng(91);
  /** out = mix_tiled(inputs) through wasm memory, as run-unit.ts calls it. */
  function mixTiled(inputs: Stripe[], weights: number[], rows: number, cols: number, out: Codec): Uint8Array {
    const placed = inputs.map((s, i) => ({ codec: s.codec, data: M.put(`t${i}`, s.data), scales: M.put(`t${i}.scales`, s.scales), weight: weights[i]! }));
    const bytes = mixRef({ rows, cols, inputs, weights, out }).data.length;
    const dst = M.slot('t.out', bytes);
    expect(M.mixTiled(placed.filter((p) => p.weight !== 0), rows, cols, out, dst)).toBe(0);
    return M.u8(dst, bytes).slice();
  }
  function fp8(codec: Extract<Codec, { kind: 'fp8' }>, rows: number, cols: number, scale: (block: number) => number): Stripe {
    const data = Uint8Array.from({ length: rows * cols }, () => Math.floor(r() * 256));
    const nb = Math.ceil(rows / Math.min(codec.blockRows, rows)) * Math.ceil(cols / Math.min(codec.blockCols, cols));
    return { codec, rows, cols, data, scales: scaleBytes(codec.scaleDtype, Array.from({ length: nb }, (_, b) => scale(b))) };
  }
  const plain = (dtype: 'BF16' | 'F16' | 'F32', rows: number, cols: number): Stripe => ({ codec: { kind: 'plain', dtype }, rows, cols, data: K.encode(values(r, rows * cols), rows, cols, { kind: 'plain', dtype }).data });

  it('two FP8 parents on one grid (every code, every kind of scale, partial and wide blocks), BF16 pairs and mixed inputs equal the reference', () => {
    const kinds = [1e-3, 3.5e-3, 300, 2 ** -149, Infinity, NaN, 0, -2, 0.5];
    const grids = [
      { kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' },
      { kind: 'fp8', scaleDtype: 'BF16', blockRows: 1, blockCols: WHOLE, scaleRole: 'scale' },
      { kind: 'fp8', scaleDtype: 'F16', blockRows: 3, blockCols: 5, scaleRole: 'scale' },
    ] as const;
    for (const [rows, cols] of [[130, 300], [3, 1500], [1, 17]] as const) {
      for (const g of grids) {
        const a = fp8(g, rows, cols, (b) => kinds[b % kinds.length]!);
        const b = fp8(g, rows, cols, (k) => kinds[(k * 5 + 1) % kinds.length]!);
        for (const out of ['BF16', 'F16', 'F32'] as const) {
          for (const weights of [[0.5, 0.5], [-1.25, 0.3], [0, 1]]) {
            const req = { rows, cols, inputs: [a, b], weights, out: { kind: 'plain', dtype: out } as Codec };
            expectSame(mixTiled(req.inputs, weights, rows, cols, req.out), mixRef(req).data, `${codecName(g)} ${rows}x${cols} → ${out} ${weights}`);
          }
        }
      }
      const x = plain('BF16', rows, cols);
      const y = plain('BF16', rows, cols);
      const z = fp8(grids[0], rows, cols, () => 2e-3);
      for (const [inputs, weights] of [[[x, y], [0.3, 0.7]], [[x, z], [0.5, 0.5]], [[x, y, z], [0.2, 0.3, 0.5]], [[plain('F16', rows, cols), plain('F32', rows, cols)], [1, -1]]] as [Stripe[], number[]][]) {
        const req = { rows, cols, inputs, weights, out: { kind: 'plain', dtype: 'BF16' } as Codec };
        expectSame(mixTiled(inputs, weights, rows, cols, req.out), mixRef(req).data, `${inputs.map((i) => codecName(i.codec))} ${rows}x${cols}`);
      }
    }
  });
});

describe('MXFP4 (gpt-oss): E2M1 codes, E8M0 scales per 32', () => {
  const codec: Codec = { kind: 'mxfp4' };

  it('decodes every code at every scale exponent, 0 and 255 included, as e2m1 · 2^(e−127) rounded to f32', () => {
    const data = new Uint8Array(16 * 256);
    const scales = new Uint8Array(256);
    for (let e = 0; e < 256; e++) {
      scales[e] = e;
      for (let k = 0; k < 16; k++) data[e * 16 + k] = (k << 4) | (15 - k); // every code, both nibbles
    }
    const s: Stripe = { codec, rows: 256, cols: 32, data, scales };
    const got = K.decode(s);
    expectSame(f32Bytes(got), f32Bytes(decodeRef(s)), 'all codes × all exponents');
    expect(got[0 * 32 + 1]).toBe(0); // code 0 at e = 0
    expect(got[127 * 32 + 1]).toBe(0); // low nibble 15 - 0 = 15 → -6, high 0 → 0
    expect(got[127 * 32 + 0]).toBe(-6);
    expect(got[255 * 32 + 0]).toBe(-Infinity); // -6 · 2^128 overflows f32, as ldexp in BF16/F32 does
    expect(Object.is(got[128 * 32 + 17], -0)).toBe(true); // code 8 is -0
  });

  it('encodes with the OCP rule: X = floor(log2(amax)) − 2, nearest E2M1, ties to even, saturating', () => {
    // One block holding every midpoint between E2M1 magnitudes, with amax 6 (X = 0, scale 1).
    const mids = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, 5.9, 0.26, -0.75, -5, 0, -0, 1, 2];
    const v = Float32Array.from({ length: 32 }, (_, i) => mids[i % mids.length]!);
    const e = K.encode(v, 1, 32, codec);
    expectSameEncoded(e, encodeRef(v, 1, 32, codec), 'midpoints');
    expect(e.scales![0]).toBe(127);
    const back = K.decode({ codec, rows: 1, cols: 32, data: e.data, scales: e.scales! });
    expect(Array.from(back.slice(0, 16))).toEqual([0, 1, 1, 2, 2, 4, 4, 6, 6, 0.5, -1, -4, 0, -0, 1, 2]);
    // amax 7.5: X = floor(log2 7.5) − 2 = 0, so 7.5 saturates to 6 (the spec's choice).
    const sat = Float32Array.from({ length: 32 }, (_, i) => (i === 0 ? 7.5 : i === 1 ? -7 : 0.1));
    const es = K.encode(sat, 1, 32, codec);
    expectSameEncoded(es, encodeRef(sat, 1, 32, codec), 'saturation');
    expect(Array.from(K.decode({ codec, rows: 1, cols: 32, data: es.data, scales: es.scales! }).slice(0, 2))).toEqual([6, -6]);
  });

  it('random values: encode equals the reference; NaN and ±inf are counted, an all-zero block gets exponent 0', () => {
    const r = rng(41);
    const v = values(r, 64 * 96);
    for (let i = 0; i < 32; i++) v[i] = 0; // an all-zero block
    const e = K.encode(v, 64, 96, codec);
    expectSameEncoded(e, encodeRef(v, 64, 96, codec), 'random');
    expect(e.scales![0]).toBe(0);
    expect(e.bad).toBe(Array.from(v).filter((x) => !Number.isFinite(x)).length);
  });

  it('round trip: decode ∘ encode ∘ decode = decode on finite MXFP4 stripes', () => {
    const r = rng(42);
    const rows = 48;
    const cols = 64;
    const data = Uint8Array.from({ length: (rows * cols) / 2 }, () => Math.floor(r() * 256));
    const scales = Uint8Array.from({ length: (rows * cols) / 32 }, () => Math.floor(r() * 250) + 2);
    const s: Stripe = { codec, rows, cols, data, scales };
    const d = K.decode(s);
    const e = K.encode(d, rows, cols, codec);
    expect(e.bad).toBe(0);
    expectSame(f32Bytes(K.decode({ codec, rows, cols, data: e.data, scales: e.scales! })), f32Bytes(d), 'round trip');
  });

  it('the reference E2M1 rounding agrees with its own table at every quarter step', () => {
    for (let q = -28; q <= 28; q++) {
      const x = q / 4;
      const c = nearestE2m1(x);
      const m = Math.abs(e2m1ToF32(c));
      const best = Math.min(...E2M1_VALUES.map((v) => Math.abs(v - Math.min(Math.abs(x), 6))));
      expect(Math.abs(m - Math.min(Math.abs(x), 6))).toBe(best);
    }
  });
});

describe('INT4 pack-quantized (compressed-tensors, symmetric)', () => {
  for (const scaleDtype of ['BF16', 'F32'] as const) {
    const codec: Codec = { kind: 'int4', scaleDtype, group: 32 };
    it(`decodes every code with ${scaleDtype} group scales as f32(q) · scale`, () => {
      const data = Uint8Array.from({ length: 32 }, (_, i) => ((i * 2 + 1) % 16 << 4) | (i * 2) % 16);
      const s: Stripe = { codec, rows: 1, cols: 64, data, scales: scaleBytes(scaleDtype, [0.0123, -3.3e-5]) };
      const got = K.decode(s);
      expectSame(f32Bytes(got), f32Bytes(decodeRef(s)), 'codes');
      expect(got[0]).toBe(-8 * Math.fround(scaleDtype === 'F32' ? Math.fround(0.0123) : decodeRef({ codec, rows: 1, cols: 64, data: new Uint8Array(32).fill(0x99), scales: s.scales! })[0]!));
    });

    it(`encodes (${scaleDtype}): s = amax/7 stored, q = clamp(round half even(x/s), −8, 7); ties, zero groups and NaN`, () => {
      const r = rng(scaleDtype.length * 7);
      const v = values(r, 16 * 96);
      for (let i = 32; i < 64; i++) v[i] = 0; // an all-zero group: scale 0, codes 8
      v[64] = 7;
      v[65] = 3.5; // a tie: 3.5/1 → 4 (even)
      v[66] = 2.5; // → 2
      v[67] = -0.5; // → -0 → 0
      for (let i = 68; i < 96; i++) v[i] = 1;
      const e = K.encode(v, 16, 96, codec);
      expectSameEncoded(e, encodeRef(v, 16, 96, codec), 'random + ties');
      const d = K.decode({ codec, rows: 16, cols: 96, data: e.data, scales: e.scales! });
      expect(Array.from(d.slice(64, 68))).toEqual([7, 4, 2, 0]);
    });

    it(`round trip (${scaleDtype}): decode ∘ encode ∘ decode = decode where each group holds ±7`, () => {
      const r = rng(99);
      const rows = 8;
      const cols = 64;
      const data = new Uint8Array((rows * cols) / 2);
      for (let i = 0; i < rows * cols; i++) {
        const q = i % 32 === 0 ? (r() < 0.5 ? 7 : -7) : Math.floor(r() * 15) - 7;
        data[i >> 1]! |= (q + 8) << ((i & 1) * 4);
      }
      const scales = scaleBytes(scaleDtype, Array.from({ length: rows * 2 }, () => 2 ** -(Math.floor(r() * 20) + 3)));
      const d = K.decode({ codec, rows, cols, data, scales });
      const e = K.encode(d, rows, cols, codec);
      expectSame(f32Bytes(K.decode({ codec, rows, cols, data: e.data, scales: e.scales! })), f32Bytes(d), 'round trip');
      expectSame(e.data, data, 'the codes themselves');
    });
  }
});

describe('strided copies of expert regions', () => {
  it('moves elements between strided 2-D views byte for byte, for each element size', () => {
    const m = K.module;
    const r = rng(5);
    for (const elem of [1, 2, 4, 8]) {
      for (const [nO, nI, sSo, sSi, dSo, dSi] of [[3, 5, 7, 1, 5, 1], [4, 3, 1, 4, 3, 1], [2, 6, 12, 2, 1, 2], [5, 1, 3, 1, 1, 1]] as const) {
        const srcLen = ((nO - 1) * sSo + (nI - 1) * sSi + 1) * elem;
        const dstLen = ((nO - 1) * dSo + (nI - 1) * dSi + 1) * elem;
        const src = Uint8Array.from({ length: srcLen }, () => Math.floor(r() * 256));
        const want = Uint8Array.from({ length: dstLen }, () => 0xee);
        for (let o = 0; o < nO; o++) for (let i = 0; i < nI; i++) for (let b = 0; b < elem; b++) want[(o * dSo + i * dSi) * elem + b] = src[(o * sSo + i * sSi) * elem + b]!;
        const sp = m.put('t.src', src);
        const dp = m.slot('t.dst', dstLen);
        m.u8(dp, dstLen).fill(0xee);
        expect(m.x.strided_copy(sp, dp, elem, nO, nI, sSo, sSi, dSo, dSi)).toBe(0);
        expectSame(m.u8(dp, dstLen).slice(), want, `elem ${elem} ${nO}x${nI}`);
      }
    }
    expect(m.x.strided_copy(0, 0, 3, 1, 1, 1, 1, 1, 1) >>> 0).toBe(0xffffffff);
  });
});

describe('the tiled mix straight into a plain output (mix_tiled)', () => {
  const plainOuts: Codec[] = (['F32', 'F16', 'BF16'] as const).map((dtype) => ({ kind: 'plain', dtype }));
  /** A stripe of random values in a codec, with its stored bytes, through the reference encoder. */
  const stripe = (r: () => number, c: Codec, rows: number, cols: number): Stripe => {
    const e = encodeRef(values(r, rows * cols, c.kind === 'mxfp4' || c.kind === 'int4'), rows, cols, c);
    const s: Stripe = { codec: c, rows, cols, data: e.data };
    if (e.scales) s.scales = e.scales;
    return s;
  };
  const inputs: Codec[] = [
    { kind: 'plain', dtype: 'BF16' }, { kind: 'plain', dtype: 'F16' }, { kind: 'plain', dtype: 'F32' },
    { kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' },
    { kind: 'mxfp4' }, { kind: 'int4', scaleDtype: 'BF16', group: 32 },
  ];
  it('equals the reference mix for every input format and plain output, 1 to 3 inputs, zero weights, odd lengths', () => {
    const r = rng(77);
    const m = K.module;
    for (const out of plainOuts) {
      for (const [rows, cols] of [[3, 64], [130, 96], [1, 1056]] as const) {
        for (let trial = 0; trial < 10; trial++) {
          const k = trial >= 8 ? 2 : 1 + (trial % 3);
          // Trials 8 and 9: two BF16 inputs, the fused register path when the output is BF16.
          const codecs = Array.from({ length: k }, (_, j) => (trial >= 8 ? inputs[0]! : inputs[(trial + j * 2) % inputs.length]!));
          const ss = codecs.map((c) => stripe(r, c, rows, cols));
          const weights = ss.map((_, j) => (trial === 5 && j === 0 ? 0 : Math.fround(0.1 + r())));
          const want = mixRef({ rows, cols, inputs: ss, weights, out });
          // Inputs into the module's memory, the mix straight into an output buffer.
          const ptrs = ss.map((s, j) => ({ data: m.put(`t.d${j}`, s.data), scales: m.put(`t.s${j}`, s.scales) }));
          const bytes = want.data.length;
          const dst = m.slot('t.out', Math.max(16, bytes));
          const rc = m.mixTiled(ss.map((s, j) => ({ codec: s.codec, data: ptrs[j]!.data, scales: ptrs[j]!.scales, weight: weights[j]! })), rows, cols, out, dst);
          expect(rc).toBe(0);
          expectSame(m.u8(dst, bytes).slice(), want.data, `${codecs.map(codecName).join(' + ')} → ${codecName(out)} ${rows}×${cols}`);
        }
      }
    }
  });
  it('two BF16 inputs into BF16 (the fused path): every BF16 code against random and special partners, weights that make -0, NaN and overflow, every tail length', () => {
    const r = rng(2024);
    const m = K.module;
    const BF16: Codec = { kind: 'plain', dtype: 'BF16' };
    const specials = [0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x0001, 0x8001, 0x7f7f, 0xff7f, 0x3f80, 0xbf80];
    const n = 65536 + 13;
    const a = new Uint16Array(n);
    const b = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = i & 0xffff;
      b[i] = r() < 0.2 ? specials[Math.floor(r() * specials.length)]! : Math.floor(r() * 65536);
    }
    const bytes = (h: Uint16Array) => new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    for (const [wa, wb] of [[0.5, 0.5], [0.3, 0.7], [-1, 1], [1, -0.25], [3e38, 3e38], [1e-40, 1]] as const) {
      for (const len of [n, 1, 7, 8, 15, 16, 17, 31, 33]) {
        const ins: Stripe[] = [a, b].map((h) => ({ codec: BF16, rows: 1, cols: len, data: bytes(h.subarray(0, len)) }));
        const want = mixRef({ rows: 1, cols: len, inputs: ins, weights: [wa, wb], out: BF16 });
        const dst = m.slot('t.out', Math.max(16, 2 * len));
        const rc = m.mixTiled(ins.map((st, j) => ({ codec: BF16, data: m.put(`t.d${j}`, st.data), scales: 0, weight: [wa, wb][j]! })), 1, len, BF16, dst);
        expect(rc).toBe(0);
        expectSame(m.u8(dst, 2 * len).slice(), want.data, `w ${wa}, ${wb}, ${len} values`);
      }
    }
  });
  it('refuses a quantized output (those need whole blocks: encode)', () => {
    const m = K.module;
    const s = m.put('t.q', new Uint8Array(64));
    expect(m.mixTiled([{ codec: { kind: 'plain', dtype: 'BF16' }, data: s, scales: 0, weight: 1 }], 1, 32, { kind: 'mxfp4' }, m.slot('t.o', 64))).toBe(0xffffffff);
  });
});
