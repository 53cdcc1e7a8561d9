// Micro benchmark of the WASM kernels inside wasm memory (no copies in or out), against memcpy
// in the same module and the same run, and the scalar reference (not a test).
//   npx tsx scripts/bench-kernels.ts [elements]
// GB/s counts the bytes a kernel touches: a 2×BF16 → BF16 mix reads 4 and writes 2 bytes per
// value; memcpy of n bytes reads n and writes n; the checksum reads the 2 bytes of each value.
import { readFileSync } from 'node:fs';
import type { Codec } from '../app/engine/formats/codec.ts';
import { instantiateKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { f32ToBf16Bits, f32ToE4m3, mixRef } from '../test/reference/scalar.ts';

const n = Number(process.argv[2] ?? 16 * 1024 * 1024);
const m = await instantiateKernelsFromBytes(new Uint8Array(readFileSync(new URL('../public/moe_kernels.wasm', import.meta.url))));

let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
};

function time(fn: () => void, reps = 7): number {
  // Warm-up: V8 runs a wasm function first from its baseline compiler and swaps in the optimized
  // code once compiled in the background; the first few calls would time the baseline.
  for (let i = 0; i < 5; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]! / 1000;
}

const BF16: Codec = { kind: 'plain', dtype: 'BF16' };
const FP8: Codec = { kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' };
const cols = 4096;
const rows = n / cols;

// Inputs in wasm memory.
const a = m.slot('a', n * 2);
const b = m.slot('b', n * 2);
const out = m.slot('o', n * 2);
for (const p of [a, b]) {
  const v = new Uint16Array(m.x.memory.buffer, p, n);
  for (let i = 0; i < n; i++) v[i] = f32ToBf16Bits(Math.fround(rand() * 0.04));
}
const fa = m.slot('fa', n);
const fb = m.slot('fb', n);
const nsc = Math.ceil(rows / 128) * Math.ceil(cols / 128) * 4;
const sa = m.slot('sa', nsc);
const sb = m.slot('sb', nsc);
for (const [p, s] of [[fa, sa], [fb, sb]] as const) {
  const v = m.u8(p, n);
  for (let i = 0; i < n; i++) v[i] = f32ToE4m3(Math.fround(rand() * 800));
  new Float32Array(m.x.memory.buffer, s, nsc / 4).fill(1e-4);
}
const acc = m.slot('acc', n * 4);
const fout = m.slot('fo', n);
const fsc = m.slot('fs', nsc);

const results: [string, number, number][] = [];
const memcpy = time(() => m.x.strided_copy(a, out, 1, 1, n * 2, 0, 1, 0, 1));
results.push(['memcpy', memcpy, n * 2 * 2]);
const tiled = time(() => m.mixTiled([{ codec: BF16, data: a, scales: 0, weight: 0.3 }, { codec: BF16, data: b, scales: 0, weight: 0.7 }], rows, cols, BF16, out));
results.push(['mix 2×BF16 → BF16, tiled', tiled, n * 6]);
const untiled = time(() => {
  m.x.accumulate(m.desc('a', BF16), a, 0, rows, cols, Math.fround(0.3), acc, 1);
  m.x.accumulate(m.desc('a', BF16), b, 0, rows, cols, Math.fround(0.7), acc, 0);
  m.x.encode(m.desc('o', BF16), acc, rows, cols, out, 0);
});
results.push(['mix 2×BF16 → BF16, accumulate + encode', untiled, n * 6]);
const fp8tiled = time(() => m.mixTiled([{ codec: FP8, data: fa, scales: sa, weight: 0.3 }, { codec: FP8, data: fb, scales: sb, weight: 0.7 }], rows, cols, BF16, out));
results.push(['mix 2×FP8 → BF16, tiled', fp8tiled, n * 4]);
const fp8 = time(() => m.mixE4m3([{ codec: FP8, data: fa, scales: sa, weight: 0.3 }, { codec: FP8, data: fb, scales: sb, weight: 0.7 }], rows, cols, FP8, fout, fsc));
results.push(['mix 2×FP8 → FP8 (re-quantize), by blocks', fp8, n * 3]);
const fp8acc = time(() => {
  m.x.accumulate(m.desc('a', FP8), fa, sa, rows, cols, Math.fround(0.3), acc, 1);
  m.x.accumulate(m.desc('a', FP8), fb, sb, rows, cols, Math.fround(0.7), acc, 0);
  m.x.encode(m.desc('o', FP8), acc, rows, cols, fout, fsc);
});
results.push(['mix 2×FP8 → FP8, accumulate + encode', fp8acc, n * 3]);
// The journal's checksum of every written span, over the BF16 output (2 bytes a value, read once).
const hash = time(() => m.hashAt(out, n * 2));
results.push(['XXH3-64 checksum of the BF16 output', hash, n * 2]);

console.log(`node ${process.version}; ${n} values (${rows}×${cols}), one thread`);
for (const [name, s, bytes] of results) {
  const gbps = bytes / s / 1e9;
  console.log(`${name.padEnd(42)} ${(s * 1000).toFixed(1).padStart(7)} ms  ${(n / s / 1e6).toFixed(0).padStart(6)} M values/s  ${gbps.toFixed(2).padStart(6)} GB/s  ${(gbps / (results[0]![2] / results[0]![1] / 1e9)).toFixed(2)} × memcpy`);
}
// The scalar reference, on a smaller stripe.
const rr = 256;
const rc = 1024;
const stripe = () => {
  const h = new Uint16Array(rr * rc);
  for (let i = 0; i < h.length; i++) h[i] = f32ToBf16Bits(Math.fround(rand() * 0.04));
  return { codec: BF16, rows: rr, cols: rc, data: new Uint8Array(h.buffer) };
};
const req = { rows: rr, cols: rc, inputs: [stripe(), stripe()], weights: [0.3, 0.7], out: BF16 };
const ref = time(() => mixRef(req), 3);
console.log(`${'scalar reference, 2×BF16 → BF16'.padEnd(42)} ${(ref * 1000).toFixed(1).padStart(7)} ms  ${((rr * rc) / ref / 1e6).toFixed(0).padStart(6)} M values/s`);
