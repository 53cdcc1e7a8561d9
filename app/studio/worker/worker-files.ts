// How a kernel worker reaches the files of a run in the browser: parents' Files, read by slices
// (a queued unit's slices fetched while the unit before it computes);
// OPFS files, written through the worker's own synchronous access handle at each unit's offsets
// (mode "readwrite-unsafe", so several workers and the coordinator write one file at once). A
// file of a user-picked folder has no reference here: its bytes go back to the coordinator.
import { MoeError } from '../../engine/io.ts';
import type { FileRef, WorkerFiles } from '../../engine/kernels/bridge.ts';
import { errorText, openSyncHandle } from './browser-io.ts';

export class BrowserWorkerFiles implements WorkerFiles {
  private readonly refs = new Map<number, FileRef>();
  private readonly handles = new Map<number, Promise<FileSystemSyncAccessHandle>>();
  /** Slices of parents' Files being fetched for queued units, by "file:offset:length". */
  private readonly fetched = new Map<string, Promise<ArrayBuffer | Error>>();

  open(refs: FileRef[]): void {
    for (const r of refs) this.refs.set(r.id, r);
  }

  async close(ids: number[]): Promise<void> {
    const closing = new Set(ids.map(String));
    for (const key of this.fetched.keys()) if (closing.has(key.slice(0, key.indexOf(':')))) this.fetched.delete(key);
    for (const id of ids) {
      const h = this.handles.get(id);
      this.handles.delete(id);
      this.refs.delete(id);
      if (h) {
        const handle = await h.catch(() => undefined);
        if (handle) {
          handle.flush();
          handle.close();
        }
      }
    }
  }

  private ref(id: number): FileRef {
    const r = this.refs.get(id);
    if (!r) throw new Error(`internal: file ${id} was not opened in this worker`);
    return r;
  }

  private handle(id: number): Promise<FileSystemSyncAccessHandle> {
    let h = this.handles.get(id);
    if (!h) {
      const fh = this.ref(id).ref as FileSystemFileHandle;
      h = openSyncHandle(fh);
      this.handles.set(id, h);
    }
    return h;
  }

  private fetch(blob: Blob, offset: number, length: number): Promise<ArrayBuffer | Error> {
    return blob
      .slice(offset, offset + length)
      .arrayBuffer()
      .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  }

  prefetch(file: number, offset: number, length: number): void {
    const r = this.refs.get(file);
    const key = `${file}:${offset}:${length}`;
    if (r?.ref instanceof Blob && !this.fetched.has(key)) this.fetched.set(key, this.fetch(r.ref, offset, length));
  }

  async read(file: number, offset: number, length: number, dst: () => Uint8Array): Promise<void> {
    const r = this.ref(file);
    if (r.ref instanceof Blob) {
      const key = `${file}:${offset}:${length}`;
      const pending = this.fetched.get(key) ?? this.fetch(r.ref, offset, length);
      this.fetched.delete(key);
      const buf = await pending;
      if (buf instanceof Error) throw new MoeError(`read failed: ${errorText(buf)}`, (r.ref as File).name);
      if (buf.byteLength !== length) throw new MoeError(`file ended while reading [${offset}, ${offset + length}) (was it changed?)`, (r.ref as File).name);
      dst().set(new Uint8Array(buf));
      return;
    }
    const h = await this.handle(file);
    const n = h.read(dst(), { at: offset });
    if (n !== length) throw new MoeError(`read ${n} of ${length} bytes at ${offset}`, (r.ref as FileSystemFileHandle).name);
  }

  async write(file: number, offset: number, src: Uint8Array): Promise<boolean> {
    const r = this.ref(file);
    if (!r.write) throw new Error(`internal: file ${file} is not open for writing`);
    const h = await this.handle(file);
    let n: number;
    try {
      n = h.write(src, { at: offset });
    } catch (e) {
      throw new MoeError(`write failed: ${errorText(e)}`, (r.ref as FileSystemFileHandle).name);
    }
    if (n !== src.length) throw new MoeError(`wrote ${n} of ${src.length} bytes at ${offset} (browser storage full?)`, (r.ref as FileSystemFileHandle).name);
    return true;
  }
}
