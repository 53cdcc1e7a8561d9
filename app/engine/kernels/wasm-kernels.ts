// The WebAssembly SIMD kernels built from wasm-kernels/ (committed as public/moe_kernels.wasm).
// The module imports nothing and exports its memory, alloc/dealloc and pointer-based kernels.
//
// Two layers:
//  - `WasmModule`: the raw exports, with a growable arena of named buffers. The worker executor
//    (exec/unit-runner.ts) uses it directly: files are read straight into wasm memory, the
//    kernels run in place, results are written from wasm memory. Views of the memory must be
//    taken again after any allocation (memory may grow, which detaches old views).
//  - `Kernels` (createWasmKernels): stripes in, fresh arrays out, for tests and small jobs.
import { codecDescriptor, dataBytes, stripeScales, type Codec } from '../formats/codec.ts';
import type { DiffStats } from './types.ts';

/** Must equal `kernels_abi()` of the module. */
const KERNELS_ABI = 8;
/** wasm32 addresses 4 GiB; refuse single buffers that could not fit next to the others. */
const MAX_BUFFER_BYTES = 2 ** 31;

interface Exports {
  memory: WebAssembly.Memory;
  kernels_abi(): number;
  alloc(bytes: number): number;
  dealloc(ptr: number, bytes: number): void;
  fill_zero(ptr: number, n: number): void;
  decode(desc: number, data: number, scales: number, rows: number, cols: number, dst: number): number;
  accumulate(desc: number, data: number, scales: number, rows: number, cols: number, w: number, acc: number, init: number): number;
  encode(desc: number, src: number, rows: number, cols: number, dst: number, scalesOut: number): number;
  diff(aDesc: number, a: number, aScales: number, bDesc: number, b: number, bScales: number, rows: number, cols: number, out: number): number;
  strided_copy(src: number, dst: number, elem: number, nO: number, nI: number, sSo: number, sSi: number, dSo: number, dSi: number): number;
  accumulate_strided(src: number, sSo: number, sSi: number, acc: number, aSo: number, aSi: number, nO: number, nI: number, w: number): number;
  mix_tiled(count: number, descs: number, datas: number, scales: number, weights: number, rows: number, cols: number, outDesc: number, out: number): number;
  mix_e4m3(count: number, descs: number, datas: number, scales: number, weights: number, rows: number, cols: number, outDesc: number, out: number, outScales: number, tile: number): number;
  mix_e4m3_tile(): number;
  xxh3(p: number, len: number): bigint;
}

const REQUIRED_FUNCTIONS = ['kernels_abi', 'alloc', 'dealloc', 'fill_zero', 'decode', 'accumulate', 'encode', 'diff', 'strided_copy', 'accumulate_strided', 'mix_tiled', 'mix_e4m3', 'mix_e4m3_tile', 'xxh3'];

/** One input of a mix in wasm memory: its codec, data and scales pointers (0: none), and weight. */
export interface MixInput {
  codec: Codec;
  data: number;
  scales: number;
  weight: number;
}

/** A stripe of stored values: `rows` whole rows of `cols` values in some codec. */
export interface Stripe {
  codec: Codec;
  rows: number;
  cols: number;
  data: Uint8Array;
  /** The stripe's scale entries (quantized codecs), as stored. */
  scales?: Uint8Array;
}

export interface Encoded {
  data: Uint8Array;
  scales?: Uint8Array;
  /** Values the codec could not hold (NaN; ±inf for MXFP4 and INT4): an error for the caller to report. */
  bad: number;
}

export interface MixRequest {
  rows: number;
  cols: number;
  /** One stripe per parent, all rows × cols, in the recipe's parent order. */
  inputs: Stripe[];
  /** f64 weights as written in the recipe; each is rounded to f32 once. Zero weights are skipped. */
  weights: number[];
  out: Codec;
}

/** The per-element work, on copies: what tests and small jobs call. */
export interface Kernels {
  /** Decode to f32 (canonical NaN). */
  decode(s: Stripe): Float32Array;
  /** Encode f32 values (rows × cols); quantized codecs get fresh scales. */
  encode(values: Float32Array, rows: number, cols: number, out: Codec): Encoded;
  /** acc = 0; acc = acc + f32(w_i) * x_i for each input with w_i ≠ 0; then encode. */
  mix(req: MixRequest): Encoded;
  /** Difference statistics of b against a (same shape). */
  diff(a: Stripe, b: Stripe): DiffStats;
  /** XXH3-64 (seed 0) of the bytes: the checksum of a written span, for resume journals. */
  hash(bytes: Uint8Array): bigint;
  /** The raw module, for callers that work in wasm memory themselves. */
  readonly module: WasmModule;
}

function check(rc: number, what: string): void {
  if (rc === 0xffffffff || rc === -1) throw new Error(`wasm kernels: ${what} rejected its codec`);
}

/** The module's exports, with named scratch buffers that grow as needed and are reused. */
export class WasmModule {
  private readonly slots = new Map<string, { ptr: number; cap: number }>();
  constructor(readonly x: Exports) {}

  /** Pointer to a buffer of at least `bytes` bytes (16-byte aligned), reusing the slot's buffer. */
  slot(name: string, bytes: number): number {
    if (bytes > MAX_BUFFER_BYTES) throw new Error(`wasm kernels: a buffer of ${bytes} bytes is more than one piece of work may use (${MAX_BUFFER_BYTES})`);
    const s = this.slots.get(name);
    if (s && s.cap >= bytes) return s.ptr;
    if (s) {
      this.x.dealloc(s.ptr, s.cap);
      this.slots.delete(name);
    }
    // Round up so a slightly larger request does not reallocate again.
    const cap = Math.max(64, Math.ceil((bytes * 1.125) / 65536) * 65536);
    const ptr = this.x.alloc(cap) >>> 0;
    if (ptr === 0) throw new Error(`wasm kernels: out of memory allocating ${cap} bytes (wasm32 memory is at most 4 GiB)`);
    this.slots.set(name, { ptr, cap });
    return ptr;
  }

  /** A view of wasm memory; taken again after any `slot` call (memory may have grown). */
  u8(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.x.memory.buffer, ptr, len);
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.x.memory.buffer, ptr, n);
  }

  /** The codec descriptor in a slot of its own. */
  desc(name: string, c: Codec): number {
    const d = codecDescriptor(c);
    const p = this.slot(`desc.${name}`, 16);
    new Uint32Array(this.x.memory.buffer, p, 4).set(d);
    return p;
  }

  /** Copies bytes into a slot; returns the pointer. */
  put(name: string, bytes: Uint8Array | undefined): number {
    if (!bytes || bytes.length === 0) return 0;
    const p = this.slot(name, bytes.byteLength);
    this.u8(p, bytes.byteLength).set(bytes);
    return p;
  }

  /**
   * out = encode(Σ f32(w_j) · decode(input_j)) over rows × cols contiguous values, straight into a
   * plain output (`mix_tiled`): inputs are [codec, data pointer, scales pointer (0: none), weight].
   */
  mixTiled(inputs: MixInput[], rows: number, cols: number, out: Codec, dst: number): number {
    const a = this.mixArgs(inputs);
    return this.x.mix_tiled(inputs.length, a.descs, a.datas, a.scales, a.weights, rows, cols, this.desc('mix.out', out), dst) >>> 0;
  }

  /** Does `mixE4m3` take this output: E4M3 blocks that fit the kernel's tile? */
  mixesE4m3(out: Codec, rows: number, cols: number): boolean {
    return out.kind === 'fp8' && Math.min(out.blockRows, rows) * Math.min(out.blockCols, cols) <= this.x.mix_e4m3_tile();
  }

  /**
   * The same mix into an E4M3 output with fresh block scales, block by block (`mix_e4m3`; see
   * `mixesE4m3`): codes at `dst`, scales at `dstScales`. Returns the values E4M3 could not hold, or
   * 0xFFFFFFFF for a codec the kernel refused.
   */
  mixE4m3(inputs: MixInput[], rows: number, cols: number, out: Codec, dst: number, dstScales: number): number {
    if (out.kind !== 'fp8') return 0xffffffff;
    const a = this.mixArgs(inputs);
    // The kernel's tile holds at most a row of blocks, and never more than mix_e4m3_tile() values.
    const block = Math.min(out.blockRows, rows) * Math.min(out.blockCols, cols);
    const values = Math.min(this.x.mix_e4m3_tile(), block * Math.ceil(cols / Math.min(out.blockCols, cols)));
    const tile = this.slot('mix.tile', Math.max(16, values * 4));
    return this.x.mix_e4m3(inputs.length, a.descs, a.datas, a.scales, a.weights, rows, cols, this.desc('mix.out', out), dst, dstScales, tile) >>> 0;
  }

  /** The inputs of a mix as the kernels take them: descriptors, and data, scales and weight arrays. */
  private mixArgs(inputs: MixInput[]): { descs: number; datas: number; scales: number; weights: number } {
    const k = inputs.length;
    const descs = this.slot('mix.descs', Math.max(16, 16 * k));
    const ptrs = this.slot('mix.ptrs', Math.max(16, 12 * k));
    const dv = new Uint32Array(this.x.memory.buffer, descs, 4 * k);
    inputs.forEach((inp, j) => dv.set(codecDescriptor(inp.codec), 4 * j));
    const pv = new Uint32Array(this.x.memory.buffer, ptrs, 3 * k);
    const wv = new Float32Array(this.x.memory.buffer, ptrs + 8 * k, k);
    inputs.forEach((inp, j) => {
      pv[j] = inp.data;
      pv[k + j] = inp.scales;
      wv[j] = Math.fround(inp.weight);
    });
    return { descs, datas: ptrs, scales: ptrs + 4 * k, weights: ptrs + 8 * k };
  }

  hashAt(ptr: number, len: number): bigint {
    return BigInt.asUintN(64, this.x.xxh3(ptr, len));
  }
}

function checkStripe(s: Stripe, what: string): void {
  if (!Number.isSafeInteger(s.rows) || s.rows < 0 || !Number.isSafeInteger(s.cols) || s.cols < 0) {
    throw new Error(`${what}: shape ${s.rows} × ${s.cols} is not two non-negative integers`);
  }
  const want = dataBytes(s.codec, s.rows, s.cols);
  if (s.data.byteLength !== want) throw new Error(`${what}: ${s.rows} × ${s.cols} needs ${want} data bytes, got ${s.data.byteLength}`);
  const sc = stripeScales(s.codec, s.rows, s.cols).bytes;
  if ((s.scales?.byteLength ?? 0) !== sc) throw new Error(`${what}: needs ${sc} scale bytes, got ${s.scales?.byteLength ?? 0}`);
}

class CopyingKernels implements Kernels {
  constructor(readonly module: WasmModule) {}

  decode(s: Stripe): Float32Array {
    checkStripe(s, 'decode');
    const m = this.module;
    const n = s.rows * s.cols;
    if (n === 0) return new Float32Array(0);
    const dst = m.slot('acc', n * 4);
    const data = m.put('in', s.data);
    const scales = m.put('in.scales', s.scales);
    check(m.x.decode(m.desc('in', s.codec), data, scales, s.rows, s.cols, dst), 'decode');
    return m.f32(dst, n).slice();
  }

  encode(values: Float32Array, rows: number, cols: number, out: Codec): Encoded {
    const n = rows * cols;
    if (values.length !== n) throw new Error(`encode: ${rows} × ${cols} needs ${n} values, got ${values.length}`);
    const src = this.module.slot('acc', n * 4);
    if (n > 0) this.module.f32(src, n).set(values);
    return this.encodeAt(src, rows, cols, out);
  }

  private encodeAt(src: number, rows: number, cols: number, out: Codec): Encoded {
    const m = this.module;
    const bytes = dataBytes(out, rows, cols);
    const sc = stripeScales(out, rows, cols).bytes;
    const dst = m.slot('out', bytes);
    const scales = sc > 0 ? m.slot('out.scales', sc) : 0;
    const desc = m.desc('out', out);
    const rc = rows * cols === 0 ? 0 : m.x.encode(desc, src, rows, cols, dst, scales) >>> 0;
    check(rc, 'encode');
    const e: Encoded = { data: m.u8(dst, bytes).slice(), bad: rc };
    if (sc > 0) e.scales = m.u8(scales, sc).slice();
    return e;
  }

  mix(req: MixRequest): Encoded {
    const { rows, cols, inputs, weights } = req;
    if (weights.length !== inputs.length) throw new Error(`mix: ${inputs.length} inputs but ${weights.length} weights`);
    const m = this.module;
    const n = rows * cols;
    inputs.forEach((s, i) => {
      checkStripe(s, `mix input ${i}`);
      if (s.rows !== rows || s.cols !== cols) throw new Error(`mix input ${i}: shape ${s.rows} × ${s.cols} differs from ${rows} × ${cols}`);
    });
    if (n > 0 && m.mixesE4m3(req.out, rows, cols)) {
      // Block by block, as the engine mixes into E4M3 (zero weights are skipped by the kernel).
      const placed = inputs.map((s, i) => ({ codec: s.codec, data: m.put(`in${i}`, s.data), scales: m.put(`in${i}.scales`, s.scales), weight: weights[i]! }));
      const bytes = dataBytes(req.out, rows, cols);
      const sc = stripeScales(req.out, rows, cols).bytes;
      const dst = m.slot('out', bytes);
      const scales = m.slot('out.scales', sc);
      const rc = m.mixE4m3(placed, rows, cols, req.out, dst, scales);
      check(rc, 'mix_e4m3');
      return { data: m.u8(dst, bytes).slice(), scales: m.u8(scales, sc).slice(), bad: rc };
    }
    const acc = m.slot('acc', n * 4);
    if (n > 0) {
      let first = true; // the first accumulate takes acc as +0 without reading it
      inputs.forEach((s, i) => {
        const w = weights[i]!;
        if (w === 0) return; // skipped exactly: 0 · inf would be NaN
        const data = m.put('in', s.data);
        const scales = m.put('in.scales', s.scales);
        check(m.x.accumulate(m.desc('in', s.codec), data, scales, rows, cols, Math.fround(w), acc, first ? 1 : 0), 'accumulate');
        first = false;
      });
      if (first) m.x.fill_zero(acc, n);
    }
    return this.encodeAt(acc, rows, cols, req.out);
  }

  diff(a: Stripe, b: Stripe): DiffStats {
    checkStripe(a, 'diff a');
    checkStripe(b, 'diff b');
    if (a.rows !== b.rows || a.cols !== b.cols) throw new Error(`diff: shapes differ (${a.rows} × ${a.cols} vs ${b.rows} × ${b.cols})`);
    const m = this.module;
    if (a.rows * a.cols === 0) return { count: 0, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
    const pa = m.put('in', a.data);
    const sa = m.put('in.scales', a.scales);
    const pb = m.put('in2', b.data);
    const sb = m.put('in2.scales', b.scales);
    const out = m.slot('stats', 64);
    check(m.x.diff(m.desc('a', a.codec), pa, sa, m.desc('b', b.codec), pb, sb, a.rows, a.cols, out), 'diff');
    const s = new Float64Array(m.x.memory.buffer, out, 7);
    return { count: s[0]!, nonFinite: s[1]!, sumSqDiff: s[2]!, sumSqA: s[3]!, sumSqB: s[4]!, dot: s[5]!, maxAbsDiff: s[6]! };
  }

  hash(bytes: Uint8Array): bigint {
    if (!(bytes instanceof Uint8Array)) throw new Error('hash: bytes must be a Uint8Array');
    const p = bytes.length === 0 ? 0 : this.module.put('in', bytes);
    return this.module.hashAt(p, bytes.length);
  }
}

/** Instantiates the module (Node reads public/moe_kernels.wasm, the browser fetches it). */
export async function instantiateKernels(module: WebAssembly.Module): Promise<WasmModule> {
  const instance = await WebAssembly.instantiate(module, {});
  const ex = instance.exports;
  for (const name of REQUIRED_FUNCTIONS) {
    if (typeof ex[name] !== 'function') throw new Error(`wasm kernels: the module does not export ${name}()`);
  }
  if (typeof ex['memory'] !== 'object' || ex['memory'] === null) throw new Error('wasm kernels: the module does not export its memory');
  const x = ex as unknown as Exports;
  const abi = x.kernels_abi();
  if (abi !== KERNELS_ABI) throw new Error(`wasm kernels: module ABI ${abi}, this wrapper expects ${KERNELS_ABI} (rebuild with npm run kernels:build)`);
  return new WasmModule(x);
}

export async function instantiateKernelsFromBytes(bytes: Uint8Array): Promise<WasmModule> {
  return instantiateKernels(await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>));
}

export async function createWasmKernels(module: WebAssembly.Module): Promise<Kernels> {
  return new CopyingKernels(await instantiateKernels(module));
}

export async function createWasmKernelsFromBytes(bytes: Uint8Array): Promise<Kernels> {
  return createWasmKernels(await WebAssembly.compile(bytes));
}
