// The Kernels interface over the WebAssembly SIMD module built from wasm-kernels/ (committed as
// public/moe_kernels.wasm). The module imports nothing and exports its memory, alloc/dealloc and
// pointer-based kernels; this wrapper validates the request, copies inputs into scratch buffers in
// wasm memory (grown only when a larger chunk arrives), runs the kernels and copies results out
// into fresh arrays (never views of wasm memory, which later calls reuse and may grow).
//
// Mixing streams the parents: acc = 0, then one `accumulate` per parent with a non-zero weight,
// each decoding its input straight into acc, then one `encode`.

import { FLOAT_DTYPES, type FloatDtype } from '../formats/dtype.ts';
import type { Chunk, DiffStats, Encoded, Kernels, MixRequest } from './types.ts';

/** Must equal `kernels_abi()` of the module. */
const KERNELS_ABI = 3;
const BLOCK = 128;
const DTYPE_CODE: Readonly<Record<FloatDtype, number>> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3 };
const ELEMENT_BYTES: Readonly<Record<FloatDtype, number>> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };
/** wasm32 addresses 4 GiB; refuse single buffers that could not fit next to the others. */
const MAX_BUFFER_BYTES = 2 ** 31;

interface Exports {
  memory: WebAssembly.Memory;
  kernels_abi(): number;
  alloc(bytes: number): number;
  dealloc(ptr: number, bytes: number): void;
  fill_zero(ptr: number, n: number): void;
  decode(dtype: number, src: number, scales: number, rows: number, cols: number, dst: number): number;
  accumulate(dtype: number, src: number, scales: number, rows: number, cols: number, w: number, acc: number, init: number): number;
  encode(dtype: number, src: number, rows: number, cols: number, dst: number, scalesOut: number): number;
  diff(
    aDtype: number, a: number, aScales: number,
    bDtype: number, b: number, bScales: number,
    rows: number, cols: number, out: number,
  ): number;
  xxh64(p: number, len: number, seed: bigint): bigint;
}

const REQUIRED_FUNCTIONS = ['kernels_abi', 'alloc', 'dealloc', 'fill_zero', 'decode', 'accumulate', 'encode', 'diff', 'xxh64'];

function blockCount(rows: number, cols: number): number {
  return Math.ceil(rows / BLOCK) * Math.ceil(cols / BLOCK);
}

function checkDtype(dtype: unknown, what: string): FloatDtype {
  if (typeof dtype !== 'string' || !(FLOAT_DTYPES as readonly string[]).includes(dtype)) {
    throw new Error(`${what}: dtype ${String(dtype)} is not one of ${FLOAT_DTYPES.join(', ')}`);
  }
  return dtype as FloatDtype;
}

function checkShape(rows: number, cols: number, what: string): number {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 0) {
    throw new Error(`${what}: shape ${rows} × ${cols} is not two non-negative integers`);
  }
  const n = rows * cols;
  if (n * 4 > MAX_BUFFER_BYTES) {
    throw new Error(`${what}: ${rows} × ${cols} elements is too large for one chunk (at most ${MAX_BUFFER_BYTES / 4})`);
  }
  return n;
}

function checkChunk(c: Chunk, what: string): number {
  const dtype = checkDtype(c.dtype, what);
  const n = checkShape(c.rows, c.cols, what);
  if (!(c.bytes instanceof Uint8Array)) throw new Error(`${what}: bytes must be a Uint8Array`);
  const want = n * ELEMENT_BYTES[dtype];
  if (c.bytes.byteLength !== want) {
    throw new Error(
      `${what}: ${dtype} ${c.rows} × ${c.cols} needs ${want} bytes, got ${c.bytes.byteLength}`,
    );
  }
  if (dtype === 'F8_E4M3') {
    const ns = blockCount(c.rows, c.cols);
    if (!(c.scales instanceof Float32Array)) {
      throw new Error(`${what}: F8_E4M3 chunk without scales (needs ${ns} f32 block scales)`);
    }
    if (c.scales.length !== ns) {
      throw new Error(
        `${what}: F8_E4M3 ${c.rows} × ${c.cols} needs ceil(rows/128) × ceil(cols/128) = ${ns} scales, got ${c.scales.length}`,
      );
    }
  }
  return n;
}

/** One reusable buffer in wasm memory. */
interface Slot {
  ptr: number;
  cap: number;
}

class WasmKernels implements Kernels {
  private readonly x: Exports;
  private readonly slots = new Map<string, Slot>();

  constructor(x: Exports) {
    this.x = x;
  }

  /** Pointer to a buffer of at least `bytes` bytes (16-byte aligned), reusing the slot's buffer. */
  private slot(name: string, bytes: number): number {
    let s = this.slots.get(name);
    if (s && s.cap >= bytes) return s.ptr;
    if (s) {
      this.x.dealloc(s.ptr, s.cap);
      this.slots.delete(name);
    }
    // Round up so a slightly larger chunk does not reallocate again.
    const cap = Math.max(64, Math.ceil((bytes * 1.125) / 65536) * 65536);
    const ptr = this.x.alloc(cap) >>> 0;
    if (ptr === 0) {
      throw new Error(`wasm kernels: out of memory allocating ${cap} bytes (wasm32 memory is at most 4 GiB)`);
    }
    s = { ptr, cap };
    this.slots.set(name, s);
    return ptr;
  }

  /** Copies bytes into the input slot; returns where they are. */
  stage(bytes: Uint8Array): number {
    const ptr = this.slot('in', bytes.byteLength);
    this.u8(ptr, bytes.byteLength).set(bytes);
    return ptr;
  }

  hash(bytes: Uint8Array): bigint {
    return hashBytes(this, this.x, bytes);
  }

  private u8(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.x.memory.buffer, ptr, len);
  }

  /** Copies a chunk (and its FP8 scales) into the named slots; returns [bytesPtr, scalesPtr]. */
  private put(c: Chunk, name: string): [number, number] {
    const bytesPtr = this.slot(name, c.bytes.byteLength);
    let scalesPtr = 0;
    if (c.dtype === 'F8_E4M3') {
      const s = c.scales!;
      scalesPtr = this.slot(`${name}.scales`, s.byteLength);
      this.u8(scalesPtr, s.byteLength).set(new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
    }
    this.u8(bytesPtr, c.bytes.byteLength).set(c.bytes);
    return [bytesPtr, scalesPtr];
  }

  private check(rc: number, what: string): void {
    if (rc === 0xffffffff || rc === -1) throw new Error(`wasm kernels: ${what} rejected its dtype`);
  }

  decode(chunk: Chunk): Float32Array {
    const n = checkChunk(chunk, 'decode');
    if (n === 0) return new Float32Array(0);
    const dst = this.slot('acc', n * 4);
    const [src, scales] = this.put(chunk, 'in');
    this.check(this.x.decode(DTYPE_CODE[chunk.dtype], src, scales, chunk.rows, chunk.cols, dst), 'decode');
    return new Float32Array(this.x.memory.buffer, dst, n).slice();
  }

  encode(values: Float32Array, rows: number, cols: number, out: FloatDtype): Encoded {
    checkDtype(out, 'encode');
    const n = checkShape(rows, cols, 'encode');
    if (!(values instanceof Float32Array)) throw new Error('encode: values must be a Float32Array');
    if (values.length !== n) {
      throw new Error(`encode: ${rows} × ${cols} needs ${n} values, got ${values.length}`);
    }
    const src = this.slot('acc', n * 4);
    if (n > 0) this.u8(src, n * 4).set(new Uint8Array(values.buffer, values.byteOffset, n * 4));
    return this.encodeFrom(src, rows, cols, out);
  }

  /** Encodes the n f32 at `src` (wasm memory) into fresh output arrays. */
  private encodeFrom(src: number, rows: number, cols: number, out: FloatDtype): Encoded {
    const n = rows * cols;
    const outBytes = n * ELEMENT_BYTES[out];
    const fp8 = out === 'F8_E4M3';
    const ns = fp8 ? blockCount(rows, cols) : 0;
    if (n === 0) {
      return fp8 ? { bytes: new Uint8Array(0), scales: new Float32Array(ns), nanCount: 0 } : { bytes: new Uint8Array(0), nanCount: 0 };
    }
    const dst = this.slot('out', outBytes);
    const scales = fp8 ? this.slot('out.scales', ns * 4) : 0;
    const rc = this.x.encode(DTYPE_CODE[out], src, rows, cols, dst, scales) >>> 0;
    this.check(rc, 'encode');
    const bytes = this.u8(dst, outBytes).slice();
    if (!fp8) return { bytes, nanCount: 0 };
    return { bytes, scales: new Float32Array(this.x.memory.buffer, scales, ns).slice(), nanCount: rc };
  }

  mix(req: MixRequest): Encoded {
    const { rows, cols, inputs, weights } = req;
    checkDtype(req.out, 'mix');
    const n = checkShape(rows, cols, 'mix');
    if (!Array.isArray(inputs) || !Array.isArray(weights)) throw new Error('mix: inputs and weights must be arrays');
    if (weights.length !== inputs.length) {
      throw new Error(`mix: ${inputs.length} inputs but ${weights.length} weights`);
    }
    inputs.forEach((c, i) => {
      checkChunk(c, `mix input ${i}`);
      if (c.rows !== rows || c.cols !== cols) {
        throw new Error(`mix input ${i}: shape ${c.rows} × ${c.cols} differs from the request's ${rows} × ${cols}`);
      }
      if (typeof weights[i] !== 'number') throw new Error(`mix: weight ${i} is not a number`);
    });
    const acc = this.slot('acc', n * 4);
    if (n > 0) {
      let first = true; // the first accumulate takes acc as +0 without reading it
      inputs.forEach((c, i) => {
        const w = weights[i]!;
        if (w === 0) return; // skipped exactly: 0 · inf would be NaN
        const [src, scales] = this.put(c, 'in');
        const rc = this.x.accumulate(DTYPE_CODE[c.dtype], src, scales, rows, cols, Math.fround(w), acc, first ? 1 : 0);
        this.check(rc, 'accumulate');
        first = false;
      });
      if (first) this.x.fill_zero(acc, n);
    }
    return this.encodeFrom(acc, rows, cols, req.out);
  }

  diff(a: Chunk, b: Chunk): DiffStats {
    const n = checkChunk(a, 'diff a');
    checkChunk(b, 'diff b');
    if (a.rows !== b.rows || a.cols !== b.cols) {
      throw new Error(`diff: shapes differ (${a.rows} × ${a.cols} vs ${b.rows} × ${b.cols})`);
    }
    if (n === 0) return { count: 0, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
    const [pa, sa] = this.put(a, 'in');
    const [pb, sb] = this.put(b, 'in2');
    const out = this.slot('stats', 64);
    this.check(
      this.x.diff(DTYPE_CODE[a.dtype], pa, sa, DTYPE_CODE[b.dtype], pb, sb, a.rows, a.cols, out),
      'diff',
    );
    const s = new Float64Array(this.x.memory.buffer, out, 7);
    return {
      count: s[0]!, nonFinite: s[1]!, sumSqDiff: s[2]!, sumSqA: s[3]!, sumSqB: s[4]!, dot: s[5]!, maxAbsDiff: s[6]!,
    };
  }
}

/** XXH64 of a byte array: copied into wasm memory, hashed there; the i64 result arrives as a BigInt. */
function hashBytes(k: WasmKernels, x: Exports, bytes: Uint8Array): bigint {
  if (!(bytes instanceof Uint8Array)) throw new Error('hash: bytes must be a Uint8Array');
  const ptr = bytes.length === 0 ? 0 : k.stage(bytes);
  return BigInt.asUintN(64, x.xxh64(ptr, bytes.length, 0n));
}

/** Instantiates the kernels from the compiled module (Node reads public/moe_kernels.wasm, the browser fetches it). */
export async function createWasmKernels(module: WebAssembly.Module): Promise<Kernels> {
  const instance = await WebAssembly.instantiate(module, {});
  const ex = instance.exports;
  for (const name of REQUIRED_FUNCTIONS) {
    if (typeof ex[name] !== 'function') throw new Error(`wasm kernels: the module does not export ${name}()`);
  }
  if (typeof ex['memory'] !== 'object' || ex['memory'] === null) throw new Error('wasm kernels: the module does not export its memory');
  const x = ex as unknown as Exports;
  const abi = x.kernels_abi();
  if (abi !== KERNELS_ABI) {
    throw new Error(`wasm kernels: module ABI ${abi}, this wrapper expects ${KERNELS_ABI} (rebuild with npm run kernels:build)`);
  }
  return new WasmKernels(x);
}

export async function createWasmKernelsFromBytes(bytes: Uint8Array): Promise<Kernels> {
  return createWasmKernels(await WebAssembly.compile(bytes));
}
