// Micro benchmark of the WASM kernels against the scalar reference (not a test).
//   npx tsx scripts/bench-kernels.ts [rows] [cols]
// Times whole Kernels.mix calls (copies in and out of wasm memory included) for two BF16 inputs
// -> BF16 and two FP8 inputs -> FP8, and the scalar reference on a smaller chunk.

import { readFileSync } from 'node:fs';
import type { Chunk, MixRequest } from '../app/engine/kernels/types.ts';
import { createWasmKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { f32ToBf16Bits, f32ToE4m3, mixRef } from '../test/reference/scalar.ts';

const rows = Number(process.argv[2] ?? 4096);
const cols = Number(process.argv[3] ?? 4096);
const refRows = 512;
const refCols = 1024;

let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
};

function chunk(dtype: 'BF16' | 'F8_E4M3', r: number, c: number): Chunk {
  const n = r * c;
  if (dtype === 'BF16') {
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = f32ToBf16Bits(Math.fround(rand() * 0.04));
    return { dtype, rows: r, cols: c, bytes: new Uint8Array(h.buffer) };
  }
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = f32ToE4m3(Math.fround(rand() * 800));
  const scales = new Float32Array(Math.ceil(r / 128) * Math.ceil(c / 128)).map(() => Math.fround(1e-4 * (1 + rand())));
  return { dtype, rows: r, cols: c, bytes: b, scales };
}

function time(fn: () => void, reps: number): number {
  fn(); // warm up
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]! / 1000; // median, seconds
}

const fmt = (eps: number) => `${(eps / 1e6).toFixed(1)} M elements/s`;

const K = await createWasmKernelsFromBytes(new Uint8Array(readFileSync(new URL('../public/moe_kernels.wasm', import.meta.url))));
console.log(`node ${process.version}; wasm chunk ${rows}×${cols} (${rows * cols} elements), reference chunk ${refRows}×${refCols}`);

for (const dtype of ['BF16', 'F8_E4M3'] as const) {
  const req: MixRequest = { rows, cols, inputs: [chunk(dtype, rows, cols), chunk(dtype, rows, cols)], weights: [0.3, 0.7], out: dtype };
  const refReq: MixRequest = { rows: refRows, cols: refCols, inputs: [chunk(dtype, refRows, refCols), chunk(dtype, refRows, refCols)], weights: [0.3, 0.7], out: dtype };
  const tw = time(() => K.mix(req), 7);
  const tr = time(() => mixRef(refReq), 3);
  const w = (rows * cols) / tw;
  const r = (refRows * refCols) / tr;
  console.log(`mix 2×${dtype} -> ${dtype}: wasm ${fmt(w)} (${(tw * 1000).toFixed(1)} ms), scalar reference ${fmt(r)}, speed-up ×${(w / r).toFixed(0)}`);
}
