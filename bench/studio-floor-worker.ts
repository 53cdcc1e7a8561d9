// The studio's copy-only floor, run in a dedicated worker of the studio's page (see
// studio-bench.ts): read every byte of both parents' .safetensors files (File objects from a
// folder input, in COPY_BLOCK slices, with the merge's in-flight window) and write a file of the
// child's size into the origin-private file system with createWritable. No arithmetic.
//
// This file is not bundled: studio-bench.ts sends `floorWorkerSource()` (the function below,
// stringified) to the page, which starts it from a blob: URL.

export interface FloorRequest {
  base: File[];
  donor: File[];
  childBytes: number;
  window: number;
  block: number;
  folder: string;
}

export interface FloorResult {
  ms: number;
  read: number;
  written: number;
}

/** The worker's whole program; it must not reference anything outside itself. */
function floorWorkerMain(): void {
  self.onmessage = async (ev: MessageEvent<FloorRequest>) => {
    try {
      const { base, donor, childBytes, window, block, folder } = ev.data;
      const started = performance.now();
      const shards = (files: File[]) => files.filter((f) => f.name.endsWith('.safetensors')).sort((x, y) => (x.name < y.name ? -1 : 1));
      const blocks = (files: File[]) =>
        files.flatMap((f) => Array.from({ length: Math.ceil(f.size / block) }, (_, i) => () => f.slice(i * block, Math.min(f.size, (i + 1) * block)).arrayBuffer()));
      const a = blocks(shards(base));
      const b = blocks(shards(donor));
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle(folder, { create: true });
      const fh = await dir.getFileHandle('floor.bin', { create: true });
      const out = await fh.createWritable({ keepExistingData: false });
      let read = 0;
      let written = 0;
      // Ordered pipeline: up to `window` block pairs in flight, written in order.
      const pending: Promise<(ArrayBuffer | undefined)[]>[] = [];
      const consume = async () => {
        const [x, y] = await pending.shift()!;
        read += (x?.byteLength ?? 0) + (y?.byteLength ?? 0);
        const src = (x ?? y)!;
        const n = Math.max(0, Math.min(src.byteLength, childBytes - written));
        if (n > 0) await out.write(new Uint8Array(src, 0, n));
        written += n;
      };
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        while (pending.length >= window) await consume();
        pending.push(Promise.all([a[i]?.(), b[i]?.()]));
      }
      while (pending.length > 0) await consume();
      while (written < childBytes) {
        const n = Math.min(block, childBytes - written);
        await out.write(new Uint8Array(n));
        written += n;
      }
      await out.close();
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
