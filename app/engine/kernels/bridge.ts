// Both sides of a unit runner behind any message channel, and the in-process runner. The platform
// passes in its transfer function (Comlink.transfer), so buffers move between threads instead of
// being copied, and how a worker reaches files (Node paths, browser File and OPFS handles), so the
// worker entry points stay a few lines each.
import { prefetchUnit, runUnit, type RunnerFiles } from '../exec/run-unit.ts';
import type { Unit, UnitResult } from '../exec/units.ts';
import type { ByteSource, OutputFile } from '../io.ts';
import { resultTransferables, unitTransferables, type KernelEndpoint, type RunFile } from './pool.ts';
import type { WasmModule } from './wasm-kernels.ts';

export type Transfer = <T>(value: T, buffers: ArrayBuffer[]) => T;

/** A file as a worker is told of it: the platform's reference (a path, a File, a file handle). */
export interface FileRef {
  id: number;
  ref: unknown;
  write: boolean;
}

/** A worker's own access to files, from their references (see app/cli and app/studio/worker). */
export interface WorkerFiles extends RunnerFiles {
  open(refs: FileRef[]): Promise<void> | void;
  close(ids: number[]): Promise<void> | void;
}

/**
 * Runs batches one after another on one module: a unit's buffers live in the module's memory
 * across its reads and writes, so a second call arriving meanwhile waits its turn — with its
 * reads already under way where the platform fetches asynchronously.
 */
function serial(m: WasmModule, files: RunnerFiles): (units: Unit[]) => Promise<UnitResult[]> {
  let queue: Promise<unknown> = Promise.resolve();
  return (units) => {
    for (const u of units) prefetchUnit(files, u);
    const next = queue.then(async () => {
      const out: UnitResult[] = [];
      for (const u of units) out.push(await runUnit(m, files, u));
      return out;
    });
    queue = next.catch(() => {});
    return next;
  };
}

/** Inside a worker: units run against the worker's own files, results' buffers handed back. */
export function serveUnits(m: WasmModule, files: WorkerFiles, transfer: Transfer): KernelEndpoint {
  const run = serial(m, files);
  return {
    openFiles: async (refs) => files.open(refs as unknown as FileRef[]),
    closeFiles: async (ids) => files.close(ids),
    run: async (units) => {
      const r = await run(units);
      return transfer(r, resultTransferables(r));
    },
    hashMany: async (parts) => parts.map((p) => m.hashAt(m.put('in', p), p.length)),
  };
}

/** Outside: a remote runner, told of files by reference, whose calls hand their buffers over. */
export function callUnits(remote: KernelEndpoint, transfer: Transfer): KernelEndpoint {
  return {
    // Only references cross: the remote opens the files itself.
    openFiles: (files: RunFile[]) => {
      const refs: FileRef[] = [];
      for (const f of files) {
        const ref = f.output?.workerRef ?? f.source?.workerRef;
        if (ref !== undefined) refs.push({ id: f.id, ref, write: f.output !== undefined });
      }
      return remote.openFiles(refs as unknown as RunFile[]);
    },
    closeFiles: (ids) => remote.closeFiles(ids),
    run: (units) => remote.run(transfer(units, unitTransferables(units))),
    hashMany: (parts) => remote.hashMany(transfer(parts, parts.map((p) => p.buffer as ArrayBuffer))),
  };
}

/** The runner in this thread, reaching files through the engine's own objects (tests, `--workers 0`). */
export function localEndpoint(m: WasmModule): KernelEndpoint {
  const sources = new Map<number, ByteSource>();
  const outputs = new Map<number, OutputFile>();
  const files: RunnerFiles = {
    async read(file, offset, length, dst) {
      const s = sources.get(file);
      if (!s) throw new Error(`internal: file ${file} is not open for reading`);
      const bytes = await s.read(offset, length);
      dst().set(bytes);
    },
    async write(file, offset, src) {
      const o = outputs.get(file);
      if (!o) throw new Error(`internal: file ${file} is not open for writing`);
      // A copy: wasm memory is reused by the next unit while the write may still be pending.
      await o.writeAt(offset, src.slice());
      return true;
    },
  };
  const run = serial(m, files);
  return {
    openFiles: async (list) => {
      for (const f of list) {
        if (f.source) sources.set(f.id, f.source);
        if (f.output) outputs.set(f.id, f.output);
      }
    },
    closeFiles: async (ids) => {
      for (const id of ids) {
        sources.delete(id);
        outputs.delete(id);
      }
    },
    run,
    hashMany: async (parts) => parts.map((p) => m.hashAt(m.put('in', p), p.length)),
  };
}
