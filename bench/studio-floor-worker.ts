// The studio's copy-only floor, run in dedicated workers of the studio's page (see
// studio-bench.ts), as fast as the platform moves these bytes: each of `parts` workers takes every
// `parts`-th COPY_BLOCK range, reads it from both parents' .safetensors files (File slices from a
// folder input; a mix reads all of both parents) and writes the child's bytes in it into one
// origin-private file system file at its offset through its own synchronous access handle
// (`readwrite-unsafe`, as the merge's workers do). No arithmetic.
//
// This file is not bundled: studio-bench.ts sends `floorWorkerSource()` (the function below,
// stringified) to the page, which starts it from a blob: URL.

export interface FloorRequest {
  base: File[];
  donor: File[];
  childBytes: number;
  block: number;
  folder: string;
  part: number;
  parts: number;
}

export interface FloorResult {
  ms: number;
  read: number;
  written: number;
}

/** What a dedicated worker's `createSyncAccessHandle` gives (worker-only, so not in the DOM types). */
interface SyncHandle {
  write(data: Uint8Array, opts: { at: number }): number;
  flush(): void;
  close(): void;
}

/** The worker's whole program; it must not reference anything outside itself. */
function floorWorkerMain(): void {
  self.onmessage = async (ev: MessageEvent<FloorRequest>) => {
    try {
      const { base, donor, childBytes, block, folder, part, parts } = ev.data;
      const started = performance.now();
      const shards = (files: File[]) => files.filter((f) => f.name.endsWith('.safetensors')).sort((x, y) => (x.name < y.name ? -1 : 1));
      // Byte range [at, at + n) of a parent's shards, concatenated in name order.
      const reader = (files: File[]) => {
        const fs = shards(files);
        return async (at: number, n: number): Promise<number> => {
          let got = 0;
          let o = 0;
          for (const f of fs) {
            if (at + got < o + f.size && got < n) {
              const from = at + got - o;
              const len = Math.min(n - got, f.size - from);
              got += (await f.slice(from, from + len).arrayBuffer()).byteLength;
            }
            o += f.size;
          }
          return got;
        };
      };
      const readBase = reader(base);
      const readDonor = reader(donor);
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle(folder, { create: true });
      const fh = await dir.getFileHandle('floor.bin', { create: true });
      const out = await (fh as unknown as { createSyncAccessHandle(o: { mode: string }): Promise<SyncHandle> }).createSyncAccessHandle({ mode: 'readwrite-unsafe' });
      const buf = new Uint8Array(block);
      let read = 0;
      let written = 0;
      const bytes = (files: File[]) => shards(files).reduce((s, f) => s + f.size, 0);
      const total = Math.max(childBytes, bytes(base), bytes(donor));
      for (let at = part * block; at < total; at += parts * block) {
        const [a, b] = await Promise.all([readBase(at, block), readDonor(at, block)]);
        read += a + b;
        const n = Math.max(0, Math.min(block, childBytes - at));
        if (n > 0) written += out.write(buf.subarray(0, n), { at });
      }
      out.flush();
      out.close();
      (self as unknown as Worker).postMessage({ ok: true, result: { ms: performance.now() - started, read, written } });
    } catch (e) {
      (self as unknown as Worker).postMessage({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    }
  };
}

/** JavaScript source of the worker, for a blob: URL. */
export function floorWorkerSource(): string {
  // tsx (esbuild keepNames) may wrap functions in __name(): give the worker a no-op one.
  return `var __name = (f) => f;\n(${floorWorkerMain.toString()})();`;
}
