// One kernel Web Worker: the WASM SIMD kernels behind Comlink. The coordinator compiles the
// module once and posts it here (`init`), so each worker only instantiates it. Results are
// handed back by transfer (the engine's serveKernels does the bookkeeping).
import * as Comlink from 'comlink';
import type { FloatDtype } from '../../engine/formats/dtype.ts';
import { serveKernels } from '../../engine/kernels/bridge.ts';
import type { KernelEndpoint } from '../../engine/kernels/pool.ts';
import type { Chunk, MixRequest } from '../../engine/kernels/types.ts';
import { createWasmKernels } from '../../engine/kernels/wasm-kernels.ts';

let endpoint: KernelEndpoint | undefined;

function need(): KernelEndpoint {
  if (!endpoint) throw new Error('kernel worker used before init');
  return endpoint;
}

export const kernelWorkerApi = {
  async init(module: WebAssembly.Module): Promise<void> {
    endpoint = serveKernels(await createWasmKernels(module), Comlink.transfer);
  },
  decode: (chunk: Chunk) => need().decode(chunk),
  encode: (values: Float32Array, rows: number, cols: number, out: FloatDtype) => need().encode(values, rows, cols, out),
  mix: (req: MixRequest) => need().mix(req),
  diff: (a: Chunk, b: Chunk) => need().diff(a, b),
  diffMany: (pairs: [Chunk, Chunk][]) => need().diffMany(pairs),
  hashMany: (parts: Uint8Array[]) => need().hashMany(parts),
};

export type KernelWorkerApi = typeof kernelWorkerApi;

Comlink.expose(kernelWorkerApi);
