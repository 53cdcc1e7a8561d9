// The engine's I/O interfaces (app/engine/io.ts) over browser files: File System Access handles,
// File lists from drag-and-drop or <input webkitdirectory>, and the origin-private file system.
import { LOCK_FILE, MoeError, checkRead, type ByteSource, type LockOwner, type ModelFolder, type OutputFile, type OutputFolder, type OutputLock } from '../../engine/io.ts';

/** Chrome has FileSystemHandle.move(); older browsers and the spec's first version do not. */
interface Movable {
  move?(name: string): Promise<void>;
  move?(parent: FileSystemDirectoryHandle, name: string): Promise<void>;
}

function fileSource(file: File, name: string): ByteSource {
  return {
    name,
    size: file.size,
    identity: `${file.size}:${file.lastModified}`,
    // A File travels to a kernel worker, which reads its slices itself.
    workerRef: file,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRead({ name, size: file.size }, offset, length);
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

  private async drain(): Promise<void> {
    if (this.fill === 0) return;
    const data = this.buffer.slice(0, this.fill);
    this.fill = 0;
    await this.put(data);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.fill + bytes.length > WRITE_BUFFER) await this.drain();
    if (bytes.length >= WRITE_BUFFER / 2) return this.put(bytes);
    this.buffer.set(bytes, this.fill);
    this.fill += bytes.length;
  }

  /** Writes at any position (the file grows as needed); sequential writes then go on where they were. */
  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    if (position < 0) throw new MoeError(`writeAt at ${position} is not a file position`, this.name);
    const end = this.flushed + this.fill;
    if (position >= this.flushed && position + bytes.length <= end) {
      this.buffer.set(bytes, position - this.flushed);
      return;
    }
    await this.drain();
    try {
      await this.stream.write({ type: 'write', position, data: bytes as Uint8Array<ArrayBuffer> });
      await this.stream.seek(this.flushed);
    } catch (e) {
      throw new MoeError(`write failed: ${errorText(e)}`, this.name);
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    await this.drain();
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

/** Opens an OPFS file for positional writes that several workers may make at once. */
export async function openSyncHandle(fh: FileSystemFileHandle): Promise<FileSystemSyncAccessHandle> {
  const open = fh.createSyncAccessHandle as unknown as (opts?: { mode: string }) => Promise<FileSystemSyncAccessHandle>;
  return open.call(fh, { mode: 'readwrite-unsafe' });
}

/** Whether this context can write OPFS files through synchronous access handles (a dedicated worker). */
function syncHandlesAvailable(): boolean {
  const proto = (globalThis as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle?.prototype;
  return !!proto && 'createSyncAccessHandle' in proto && typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';
}

/**
 * An OPFS file written positionally through a synchronous access handle. Kernel workers open
 * their own handles on the same file (its `workerRef`) and write their units' ranges directly.
 */
class SyncOutputFile implements OutputFile {
  private pos = 0;
  private done = false;
  constructor(
    private readonly handle: FileSystemSyncAccessHandle,
    private readonly name: string,
    readonly workerRef: FileSystemFileHandle,
    private readonly removeFile: () => Promise<void>,
  ) {}

  private put(bytes: Uint8Array, at: number): void {
    if (this.done) throw new MoeError('write after close', this.name);
    let n: number;
    try {
      n = this.handle.write(bytes as Uint8Array<ArrayBuffer>, { at });
    } catch (e) {
      throw new MoeError(`write failed: ${errorText(e)}`, this.name);
    }
    if (n !== bytes.length) throw new MoeError(`wrote ${n} of ${bytes.length} bytes (browser storage full?)`, this.name);
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.put(bytes, this.pos);
    this.pos += bytes.length;
  }

  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    if (position < 0) throw new MoeError(`writeAt at ${position} is not a file position`, this.name);
    this.put(bytes, position);
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      this.handle.flush();
    } catch (e) {
      throw new MoeError(`could not finish the file: ${errorText(e)}`, this.name);
    } finally {
      this.handle.close();
    }
  }

  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      this.handle.close();
    }
    await this.removeFile().catch(() => {});
  }
}

/**
 * The output folder: a user-picked folder (readwrite) or a folder in the origin-private file
 * system. An OPFS folder is created by `prepare`, not before, and removed again by
 * `discardCreated` when a refused or failed merge left it empty.
 */
export class HandleOutputFolder implements OutputFolder {
  readonly name: string;
  readonly canRename: boolean;
  private handleP: FileSystemDirectoryHandle | undefined;
  private createdOpfs = false;
  constructor(
    handle: FileSystemDirectoryHandle | undefined,
    readonly isOpfs: boolean,
    /** The OPFS root and folder name, for a folder that may not exist yet. */
    private readonly opfs?: { root: FileSystemDirectoryHandle; folder: string },
  ) {
    this.handleP = handle;
    this.name = handle?.name || opfs?.folder || 'origin-private storage';
    const proto = (globalThis as { FileSystemFileHandle?: { prototype: Movable } }).FileSystemFileHandle?.prototype;
    // move() exists on every handle in Chrome 110+; outside the OPFS it needs Chrome 122+.
    // Where it is missing the engine writes final names directly.
    this.canRename = typeof proto?.move === 'function';
  }
  /** The folder's handle; an OPFS folder that does not exist yet has none. */
  private async existing(): Promise<FileSystemDirectoryHandle | undefined> {
    if (this.handleP) return this.handleP;
    if (!this.opfs) return undefined;
    try {
      this.handleP = await this.opfs.root.getDirectoryHandle(this.opfs.folder);
      return this.handleP;
    } catch {
      return undefined;
    }
  }
  private async dir(): Promise<FileSystemDirectoryHandle> {
    const h = await this.existing();
    if (!h) throw new MoeError('the output folder does not exist yet', this.name);
    return h;
  }
  get handle(): FileSystemDirectoryHandle | undefined {
    return this.handleP;
  }
  async list(): Promise<string[]> {
    const h = await this.existing();
    if (!h) return [];
    const out: string[] = [];
    for await (const [name, e] of h.entries()) if (e.kind === 'file') out.push(name);
    return out.sort();
  }
  async prepare(): Promise<void> {
    if (await this.existing()) return;
    if (!this.opfs) throw new MoeError('the output folder is gone', this.name);
    try {
      this.handleP = await this.opfs.root.getDirectoryHandle(this.opfs.folder, { create: true });
      this.createdOpfs = true;
    } catch (e) {
      throw new MoeError(`cannot create the folder in browser storage: ${errorText(e)}`, this.name);
    }
  }
  async discardCreated(): Promise<void> {
    if (!this.createdOpfs || !this.opfs) return;
    this.createdOpfs = false;
    if ((await this.list()).length > 0) return;
    await this.opfs.root.removeEntry(this.opfs.folder).catch(() => {});
    this.handleP = undefined;
  }
  /**
   * Web Locks keep two tabs of this browser apart; the lock file makes a CLI merge into the same
   * folder (and a browser one after a crash) see this one.
   */
  async lock(owner: LockOwner): Promise<OutputLock> {
    const dir = await this.dir();
    const key = `moe-studio-output:${this.isOpfs ? `opfs/${this.opfs?.folder ?? this.name}` : `folder/${this.name}`}`;
    let releaseWebLock: (() => void) | undefined;
    const locks = (navigator as { locks?: LockManager }).locks;
    if (locks) {
      const got = await new Promise<boolean>((resolve) => {
        void locks.request(key, { ifAvailable: true }, async (l) => {
          if (!l) return resolve(false);
          resolve(true);
          await new Promise<void>((done) => (releaseWebLock = done));
        });
      });
      if (!got) throw new MoeError('another merge in this browser is writing to this folder', this.name);
    }
    try {
      const held = await dir.getFileHandle(LOCK_FILE).then((h) => h.getFile()).then((f) => f.text()).catch(() => undefined);
      // In browser storage only this origin's pages write, and each studio merge holds the Web Lock
      // for as long as it runs: with the Web Lock ours, a lock file there was left by a page that
      // closed or reloaded mid-merge, and is taken over.
      let replacedStale: LockOwner | undefined;
      if (held !== undefined && this.isOpfs && locks) {
        try {
          replacedStale = { tool: 'MoE Studio (browser)', started: '', ...(JSON.parse(held) as Partial<LockOwner>) };
        } catch {
          replacedStale = { tool: 'MoE Studio (browser)', started: '' };
        }
      } else if (held !== undefined) {
        let holder: Partial<LockOwner> = {};
        try {
          holder = JSON.parse(held) as Partial<LockOwner>;
        } catch {
          /* unreadable: still a lock */
        }
        const who = holder.pid !== undefined ? `pid ${holder.pid}${holder.host ? ` on host ${holder.host}` : ''}` : (holder.tool ?? 'another merge');
        throw new MoeError(
          `another merge is writing here: ${LOCK_FILE} is held by ${who}${holder.started ? `, since ${holder.started}` : ''}; ` +
            'if no merge is running, remove that file (or use Discard in the studio)',
          this.name,
        );
      }
      const text = JSON.stringify(owner) + '\n';
      const out = await this.create(LOCK_FILE);
      await out.write(new TextEncoder().encode(text));
      await out.close();
      return {
        ...(replacedStale ? { replacedStale } : {}),
        release: async () => {
          const now = await dir.getFileHandle(LOCK_FILE).then((h) => h.getFile()).then((f) => f.text()).catch(() => undefined);
          if (now === text) await dir.removeEntry(LOCK_FILE).catch(() => {});
          releaseWebLock?.();
        },
      };
    } catch (e) {
      releaseWebLock?.();
      throw e;
    }
  }
  async create(file: string): Promise<OutputFile> {
    const name = `${this.name}/${file}`;
    try {
      const dir = await this.dir();
      const fh = await dir.getFileHandle(file, { create: true });
      if (this.isOpfs && syncHandlesAvailable()) {
        const handle = await openSyncHandle(fh);
        handle.truncate(0);
        return new SyncOutputFile(handle, name, fh, () => dir.removeEntry(file));
      }
      const stream = await fh.createWritable({ keepExistingData: false });
      return new WritableOutputFile(stream, name);
    } catch (e) {
      throw new MoeError(`cannot create the file: ${errorText(e)}`, name);
    }
  }
  async open(file: string): Promise<ByteSource> {
    try {
      const fh = await (await this.dir()).getFileHandle(file);
      return fileSource(await fh.getFile(), `${this.name}/${file}`);
    } catch (e) {
      throw new MoeError(`cannot be read back: ${errorText(e)}`, `${this.name}/${file}`);
    }
  }
  async rename(from: string, to: string): Promise<void> {
    const dir = await this.dir();
    const fh = (await dir.getFileHandle(from)) as FileSystemFileHandle & Movable;
    if (typeof fh.move !== 'function') throw new MoeError('this browser cannot rename files', `${this.name}/${from}`);
    try {
      await dir.removeEntry(to).catch(() => {});
      await fh.move(to);
    } catch (e) {
      throw new MoeError(`cannot rename to ${to}: ${errorText(e)}`, `${this.name}/${from}`);
    }
  }
  async remove(file: string): Promise<void> {
    const dir = await this.existing();
    if (!dir) return;
    await dir.removeEntry(file).catch((e: unknown) => {
      if ((e as { name?: string }).name !== 'NotFoundError') throw new MoeError(`cannot remove: ${errorText(e)}`, `${this.name}/${file}`);
    });
  }
  async overlaps(parent: ModelFolder): Promise<boolean> {
    if (!(parent instanceof HandleModelFolder)) return false;
    const h = await this.existing();
    if (!h) return false;
    if (await h.isSameEntry(parent.handle)) return true;
    // Inside the parent: the parent resolves a path down to us.
    const path = await parent.handle.resolve(h).catch(() => null);
    return path !== null;
  }
  /** Writable streams write a swap file first; sync access handles (OPFS, in a worker) write in place. */
  get swapsWhileWriting(): boolean {
    return !(this.isOpfs && syncHandlesAvailable());
  }
  async freeBytes(): Promise<number | undefined> {
    if (!this.isOpfs) return undefined;
    const est = await navigator.storage.estimate();
    if (est.quota === undefined || est.usage === undefined) return undefined;
    return Math.max(0, est.quota - est.usage);
  }
}

/** A folder in the origin-private file system; created when the merge prepares it. */
export async function opfsOutputFolder(folder: string): Promise<HandleOutputFolder> {
  const root = await navigator.storage.getDirectory();
  return new HandleOutputFolder(undefined, true, { root, folder });
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
