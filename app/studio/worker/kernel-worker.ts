// One kernel Web Worker: units (reads, WASM SIMD kernels, writes) behind Comlink. The coordinator
// compiles the module once and posts it here (`init`), so each worker only instantiates it.
// Results are handed back by transfer (the engine's serveUnits does the bookkeeping).
import * as Comlink from 'comlink';
import { serveUnits } from '../../engine/kernels/bridge.ts';
import type { KernelEndpoint, RunFile } from '../../engine/kernels/pool.ts';
import type { Unit } from '../../engine/exec/units.ts';
import { instantiateKernels } from '../../engine/kernels/wasm-kernels.ts';
import { BrowserWorkerFiles } from './worker-files.ts';

let endpoint: KernelEndpoint | undefined;

function need(): KernelEndpoint {
  if (!endpoint) throw new Error('kernel worker used before init');
  return endpoint;
}

export const kernelWorkerApi = {
  async init(module: WebAssembly.Module): Promise<void> {
    endpoint = serveUnits(await instantiateKernels(module), new BrowserWorkerFiles(), Comlink.transfer);
  },
  openFiles: (files: RunFile[]) => need().openFiles(files),
  closeFiles: (ids: number[]) => need().closeFiles(ids),
  run: (units: Unit[]) => need().run(units),
  hashMany: (parts: Uint8Array[]) => need().hashMany(parts),
};

export type KernelWorkerApi = typeof kernelWorkerApi;

Comlink.expose(kernelWorkerApi);
