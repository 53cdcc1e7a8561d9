// The engine's I/O interfaces (app/engine/io.ts) over browser files: File System Access handles,
// File lists from drag-and-drop or <input webkitdirectory>, and the origin-private file system.
import { MoeError, type ByteSource, type ModelFolder, type OutputFile, type OutputFolder } from '../../engine/io.ts';

const MAX_READ = 1024 * 1024 * 1024;

/** Chrome has FileSystemHandle.move(); older browsers and the spec's first version do not. */
interface Movable {
  move?(name: string): Promise<void>;
  move?(parent: FileSystemDirectoryHandle, name: string): Promise<void>;
}

function fileSource(file: File, name: string): ByteSource {
  return {
    name,
    size: file.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (length > MAX_READ) throw new MoeError(`read of ${length} bytes exceeds the 1 GiB limit`, name);
      if (offset < 0 || offset + length > file.size)
        throw new MoeError(`read past the end (${offset}+${length} of ${file.size} bytes)`, name);
      const buf = await file.slice(offset, offset + length).arrayBuffer();
      return new Uint8Array(buf);
    },
  };
}

/** A parent folder behind a FileSystemDirectoryHandle (the picker, or a dropped folder). */
export class HandleModelFolder implements ModelFolder {
  readonly name: string;
  constructor(readonly handle: FileSystemDirectoryHandle) {
    this.name = handle.name;
  }
  async list(): Promise<string[]> {
    const out: string[] = [];
    for await (const [name, h] of this.handle.entries()) if (h.kind === 'file') out.push(name);
    return out.sort();
  }
  async open(file: string): Promise<ByteSource> {
    let fh: FileSystemFileHandle;
    try {
      fh = await this.handle.getFileHandle(file);
    } catch {
      throw new MoeError('file not found in the folder', `${this.name}/${file}`);
    }
    return fileSource(await fh.getFile(), `${this.name}/${file}`);
  }
}

/**
 * A parent folder given as loose files. Files from <input webkitdirectory> carry
 * webkitRelativePath "top/sub/file": the top folder is stripped and only files directly inside it
 * are kept (a model folder is flat). Loose dropped files have no relative path.
 */
export class FileListModelFolder implements ModelFolder {
  private readonly files = new Map<string, File>();
  constructor(
    readonly name: string,
    files: readonly File[],
  ) {
    for (const f of files) {
      const rel = f.webkitRelativePath || f.name;
      const parts = rel.split('/').filter(Boolean);
      const inner = parts.length > 1 ? parts.slice(1) : parts;
      if (inner.length !== 1) continue;
      this.files.set(inner[0]!, f);
    }
  }
  /** The folder name files from a directory input share ("top" of "top/x"), if any. */
  static folderNameOf(files: readonly File[]): string | undefined {
    const rel = files.find((f) => f.webkitRelativePath)?.webkitRelativePath;
    return rel?.split('/')[0];
  }
  async list(): Promise<string[]> {
    return [...this.files.keys()].sort();
  }
  async open(file: string): Promise<ByteSource> {
    const f = this.files.get(file);
    if (!f) throw new MoeError('file not found among the dropped files', `${this.name}/${file}`);
    return fileSource(f, `${this.name}/${file}`);
  }
}

/**
 * Each write() on a FileSystemWritableFileStream is a round trip to the browser process, so small
 * writes (headers, small tensors, scale placeholders) are gathered into one buffer and written
 * together; large ones go straight through.
 */
const WRITE_BUFFER = 8 * 1024 * 1024;

class WritableOutputFile implements OutputFile {
  private done = false;
  /** Bytes handed to the stream so far. */
  private flushed = 0;
  /** Bytes gathered, not yet handed to the stream (they follow `flushed`). */
  private readonly buffer = new Uint8Array(WRITE_BUFFER);
  private fill = 0;
  constructor(
    private readonly stream: FileSystemWritableFileStream,
    private readonly name: string,
  ) {}

  private async put(data: Uint8Array): Promise<void> {
    try {
      await this.stream.write(data as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new MoeError(`write failed: ${errorText(e)}`, this.name);
    }
    this.flushed += data.length;
  }

  private async flush(): Promise<void> {
    if (this.fill === 0) return;
    const data = this.buffer.slice(0, this.fill);
    this.fill = 0;
    await this.put(data);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.fill + bytes.length > WRITE_BUFFER) await this.flush();
    if (bytes.length >= WRITE_BUFFER / 2) return this.put(bytes);
    this.buffer.set(bytes, this.fill);
    this.fill += bytes.length;
  }

  /** Rewrites bytes already written: in the buffer if they are still there, else in the file (then back to the end). */
  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    const end = this.flushed + this.fill;
    if (position < 0 || position + bytes.length > end) {
      throw new MoeError(`writeAt past the written part (${position}+${bytes.length} > ${end})`, this.name);
    }
    if (position >= this.flushed) {
      this.buffer.set(bytes, position - this.flushed);
      return;
    }
    if (position + bytes.length > this.flushed) await this.flush();
    try {
      await this.stream.write({ type: 'write', position, data: bytes as Uint8Array<ArrayBuffer> });
      await this.stream.seek(this.flushed);
    } catch (e) {
      throw new MoeError(`write failed: ${errorText(e)}`, this.name);
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    await this.flush();
    this.done = true;
    try {
      await this.stream.close();
    } catch (e) {
      throw new MoeError(`could not finish the file: ${errorText(e)}`, this.name);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.fill = 0;
    await this.stream.abort().catch(() => {});
  }
}

/** The output folder: a user-picked folder (readwrite) or a folder in the origin-private file system. */
export class HandleOutputFolder implements OutputFolder {
  readonly name: string;
  readonly canRename: boolean;
  constructor(
    readonly handle: FileSystemDirectoryHandle,
    readonly isOpfs: boolean,
    /** The OPFS root, to tell whether a folder lies inside another. */
    private readonly opfsRoot?: FileSystemDirectoryHandle,
  ) {
    this.name = handle.name || 'origin-private storage';
    const proto = (globalThis as { FileSystemFileHandle?: { prototype: Movable } }).FileSystemFileHandle?.prototype;
    // move() exists on every handle in Chrome 110+; outside the OPFS it needs Chrome 122+.
    // Where it is missing the engine writes final names directly.
    this.canRename = typeof proto?.move === 'function';
  }
  async list(): Promise<string[]> {
    const out: string[] = [];
    for await (const [name, h] of this.handle.entries()) if (h.kind === 'file') out.push(name);
    return out.sort();
  }
  async create(file: string): Promise<OutputFile> {
    const name = `${this.name}/${file}`;
    try {
      const fh = await this.handle.getFileHandle(file, { create: true });
      const stream = await fh.createWritable({ keepExistingData: false });
      return new WritableOutputFile(stream, name);
    } catch (e) {
      throw new MoeError(`cannot create the file: ${errorText(e)}`, name);
    }
  }
  async rename(from: string, to: string): Promise<void> {
    const fh = (await this.handle.getFileHandle(from)) as FileSystemFileHandle & Movable;
    if (typeof fh.move !== 'function') throw new MoeError('this browser cannot rename files', `${this.name}/${from}`);
    try {
      await this.handle.removeEntry(to).catch(() => {});
      await fh.move(to);
    } catch (e) {
      throw new MoeError(`cannot rename to ${to}: ${errorText(e)}`, `${this.name}/${from}`);
    }
  }
  async remove(file: string): Promise<void> {
    await this.handle.removeEntry(file).catch((e: unknown) => {
      if ((e as { name?: string }).name !== 'NotFoundError') throw new MoeError(`cannot remove: ${errorText(e)}`, `${this.name}/${file}`);
    });
  }
  async overlaps(parent: ModelFolder): Promise<boolean> {
    if (!(parent instanceof HandleModelFolder)) return false;
    if (await this.handle.isSameEntry(parent.handle)) return true;
    // Inside the parent: the parent resolves a path down to us.
    const path = await parent.handle.resolve(this.handle).catch(() => null);
    return path !== null;
  }
  async freeBytes(): Promise<number | undefined> {
    if (!this.isOpfs || !this.opfsRoot) return undefined;
    const est = await navigator.storage.estimate();
    if (est.quota === undefined || est.usage === undefined) return undefined;
    return Math.max(0, est.quota - est.usage);
  }
}

export async function opfsOutputFolder(folder: string): Promise<HandleOutputFolder> {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(folder, { create: true });
  return new HandleOutputFolder(dir, true, root);
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
