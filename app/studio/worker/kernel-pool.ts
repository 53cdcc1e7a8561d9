// The coordinator's pool of kernel workers: the WASM module is compiled once here and the
// compiled Module is posted to every worker; calls transfer their buffers instead of copying.
import * as Comlink from 'comlink';
import { callUnits } from '../../engine/kernels/bridge.ts';
import { createKernelPool, type KernelEndpoint, type KernelPool } from '../../engine/kernels/pool.ts';
import type { KernelWorkerApi } from './kernel-worker.ts';
import { errorText } from './browser-io.ts';

export const WASM_URL = `${import.meta.env.BASE_URL}moe_kernels.wasm`;

let pool: Promise<KernelPool> | undefined;
let state = { status: 'not started', workers: 0 };

export function kernelStatus(): { status: string; workers: number } {
  return state;
}

/** One kernel worker per core: they read and write the files themselves; the coordinator hands out units. */
export function workerCount(): number {
  return Math.min(8, Math.max(1, navigator.hardwareConcurrency || 2));
}

async function compileKernels(): Promise<WebAssembly.Module> {
  const url = new URL(WASM_URL, self.location.href).href;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${WASM_URL}: HTTP ${res.status}`);
  try {
    return await WebAssembly.compileStreaming(res.clone());
  } catch {
    // A server that does not send application/wasm: compile from the bytes instead.
    return WebAssembly.compile(await res.arrayBuffer());
  }
}

function endpointOf(remote: Comlink.Remote<KernelWorkerApi>): KernelEndpoint {
  const r: KernelEndpoint = {
    openFiles: (files) => remote.openFiles(files),
    closeFiles: (ids) => remote.closeFiles(ids),
    run: (units) => remote.run(units),
    hashMany: (parts) => remote.hashMany(parts),
  };
  // Only file references cross; inputs are handed over (transferred), not copied.
  return callUnits(r, Comlink.transfer);
}

async function start(): Promise<KernelPool> {
  state = { status: 'loading', workers: 0 };
  try {
    const module = await compileKernels();
    const n = workerCount();
    const workers: Worker[] = [];
    const remotes: Comlink.Remote<KernelWorkerApi>[] = [];
    for (let i = 0; i < n; i++) {
      const w = new Worker(new URL('./kernel-worker.ts', import.meta.url), { type: 'module', name: `moe-kernels-${i}` });
      workers.push(w);
      remotes.push(Comlink.wrap<KernelWorkerApi>(w));
    }
    await Promise.all(remotes.map((r) => r.init(module)));
    const endpoints = remotes.map(endpointOf);
    state = { status: 'ready', workers: n };
    return createKernelPool(endpoints, {
      close: async () => {
        for (const w of workers) w.terminate();
      },
    });
  } catch (e) {
    state = { status: `unavailable: ${errorText(e)}`, workers: 0 };
    pool = undefined;
    throw e;
  }
}

/** The pool, started on first use; a failed start is retried on the next call. */
export function getKernelPool(): Promise<KernelPool> {
  pool ??= start();
  return pool;
}
