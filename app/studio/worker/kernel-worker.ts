// One kernel Web Worker: the WASM SIMD kernels behind Comlink. The coordinator compiles the
// module once and posts it here (`init`), so each worker only instantiates it.
import * as Comlink from 'comlink';
import type { FloatDtype } from '../../engine/formats/dtype.ts';
import type { Chunk, Kernels, MixRequest } from '../../engine/kernels/types.ts';
import { createWasmKernels } from '../../engine/kernels/wasm-kernels.ts';

let kernels: Kernels | undefined;

function need(): Kernels {
  if (!kernels) throw new Error('kernel worker used before init');
  return kernels;
}

/**
 * A view that owns its whole (non-shared) buffer, so it can be transferred; a view into a larger
 * buffer (WASM memory) is copied first, or structured cloning would copy that whole buffer.
 */
function own<T extends Float32Array | Uint8Array>(v: T): T {
  if (v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) return v;
  return v.slice() as T;
}

function transferOut<T extends object>(value: T, ...views: (ArrayBufferView | undefined)[]): T {
  const list = views.filter((b): b is ArrayBufferView => b !== undefined).map((b) => b.buffer as ArrayBuffer);
  return Comlink.transfer(value, [...new Set(list)]);
}

export const kernelWorkerApi = {
  async init(module: WebAssembly.Module): Promise<void> {
    kernels = await createWasmKernels(module);
  },
  decode(chunk: Chunk): Float32Array {
    const out = own(need().decode(chunk));
    return transferOut(out, out);
  },
  encode(values: Float32Array, rows: number, cols: number, out: FloatDtype) {
    const e = need().encode(values, rows, cols, out);
    const enc = { ...e, bytes: own(e.bytes), scales: e.scales && own(e.scales) };
    return transferOut(enc, enc.bytes, enc.scales);
  },
  mix(req: MixRequest) {
    const e = need().mix(req);
    const enc = { ...e, bytes: own(e.bytes), scales: e.scales && own(e.scales) };
    return transferOut(enc, enc.bytes, enc.scales);
  },
  diff(a: Chunk, b: Chunk) {
    return need().diff(a, b);
  },
};

export type KernelWorkerApi = typeof kernelWorkerApi;

Comlink.expose(kernelWorkerApi);
