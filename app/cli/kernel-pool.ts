// The CLI's kernel pool: N worker threads (or, with 0, the kernels in this thread).
import { readFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { callUnits, localEndpoint } from '../engine/kernels/bridge.ts';
import { createKernelPool, type KernelEndpoint, type KernelPool } from '../engine/kernels/pool.ts';
import { instantiateKernelsFromBytes } from '../engine/kernels/wasm-kernels.ts';

/** The kernels' .wasm: beside the bundled CLI, or in the repository's public/ when run from source. */
export function wasmPath(): string {
  const candidates = [new URL('./moe_kernels.wasm', import.meta.url), new URL('../../public/moe_kernels.wasm', import.meta.url)];
  for (const c of candidates) {
    const p = fileURLToPath(c);
    if (existsSync(p)) return p;
  }
  throw new Error(`moe_kernels.wasm not found (looked in ${candidates.map((c) => fileURLToPath(c)).join(', ')}); run npm run build`);
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

/**
 * `workers` 0 runs the units in-process (tests, debugging); otherwise that many threads, each
 * reading and writing the files itself.
 */
export async function createNodeKernelPool(workers: number): Promise<KernelPool> {
  const wasm = readFileSync(wasmPath());
  if (workers === 0) return createKernelPool([localEndpoint(await instantiateKernelsFromBytes(new Uint8Array(wasm)))], { inProcess: true });
  const script = new URL('./kernel-worker.mjs', import.meta.url);
  if (!existsSync(fileURLToPath(script))) {
    throw new Error(`worker script ${fileURLToPath(script)} not found: worker threads need the built CLI (npm run build), or use --workers 0`);
  }
  const threads: Worker[] = [];
  const endpoints: KernelEndpoint[] = [];
  for (let i = 0; i < workers; i++) {
    const bytes = wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength);
    const w = new Worker(script, { workerData: { wasm: bytes } });
    threads.push(w);
    endpoints.push(callUnits(Comlink.wrap<KernelEndpoint>(nodeEndpoint(w)) as unknown as KernelEndpoint, Comlink.transfer));
  }
  return createKernelPool(endpoints, {
    close: async () => {
      await Promise.all(threads.map((t) => t.terminate()));
    },
  });
}
