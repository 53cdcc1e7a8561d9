// Node implementations of the engine's file interfaces (app/engine/io.ts).
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { MoeError, type ByteSource, type ModelFolder, type OutputFile, type OutputFolder } from '../engine/io.ts';

/** Largest single read the engine may ask for (io.ts: at most 1 GiB). */
const MAX_READ = 1 << 30;

function checkPlainName(file: string, where: string): void {
  if (file === '' || file === '.' || file === '..' || file.includes('/') || file.includes('\\') || file.includes('\0')) {
    throw new MoeError(`"${file}" is not a plain file name inside the folder`, where);
  }
}

/** realpath of `p`, or of its nearest existing ancestor with the rest appended. */
async function realpathLoose(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch {
    const parent = path.dirname(abs);
    if (parent === abs) return abs;
    return path.join(await realpathLoose(parent), path.basename(abs));
  }
}

/** Files directly inside `dir` (symlinks to files count: the Hugging Face cache is made of them). */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.isFile()) out.push(e.name);
    else if (e.isSymbolicLink()) {
      const st = await fsp.stat(path.join(dir, e.name)).catch(() => undefined);
      if (st?.isFile()) out.push(e.name);
    }
  }
  return out.sort();
}

class NodeByteSource implements ByteSource {
  constructor(
    readonly name: string,
    readonly size: number,
    readonly handle: FileHandle,
  ) {}

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new MoeError(`bad read (offset ${offset}, length ${length})`, this.name);
    }
    if (length > MAX_READ) throw new MoeError(`read of ${length} bytes is over the 1 GiB limit`, this.name);
    if (offset + length > this.size) {
      throw new MoeError(`read [${offset}, ${offset + length}) past end of file (size ${this.size})`, this.name);
    }
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new MoeError(`file ended at ${offset + done} while reading [${offset}, ${offset + length}) (was it truncated?)`, this.name);
      }
      done += bytesRead;
    }
    return buf;
  }
}

/** A model folder on disk, opened read-only. Handles are cached until `close()`. */
export class NodeModelFolder implements ModelFolder {
  readonly name: string;
  private readonly handles = new Map<string, Promise<NodeByteSource>>();

  constructor(readonly path: string) {
    this.name = path;
  }

  list(): Promise<string[]> {
    return listFiles(this.path);
  }

  open(file: string): Promise<ByteSource> {
    try {
      checkPlainName(file, this.path);
    } catch (e) {
      return Promise.reject(e);
    }
    let p = this.handles.get(file);
    if (!p) {
      const full = path.join(this.path, file);
      p = (async () => {
        const handle = await fsp.open(full, 'r').catch((e: NodeJS.ErrnoException) => {
          throw new MoeError(e.code === 'ENOENT' ? 'file not found' : `cannot open (${e.message})`, full);
        });
        try {
          const st = await handle.stat();
          if (!st.isFile()) throw new MoeError('is not a regular file', full);
          return new NodeByteSource(full, st.size, handle);
        } catch (e) {
          await handle.close().catch(() => {});
          throw e;
        }
      })();
      this.handles.set(file, p);
      p.catch(() => this.handles.delete(file));
    }
    return p;
  }

  /** Closes every cached handle. Sources opened before must not be used afterwards. */
  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(
      all.map(async (p) => {
        const src = await p.catch(() => undefined);
        if (src) await src.handle.close().catch(() => {});
      }),
    );
  }
}

export async function openNodeModelFolder(dir: string): Promise<NodeModelFolder> {
  const abs = path.resolve(dir);
  const st = await fsp.stat(abs).catch(() => undefined);
  if (!st) throw new MoeError('folder not found', abs);
  if (!st.isDirectory()) throw new MoeError('is not a folder', abs);
  return new NodeModelFolder(abs);
}

class NodeOutputFile implements OutputFile {
  private closed = false;
  /** Sequential write position. */
  private pos = 0;
  constructor(
    private readonly handle: FileHandle,
    private readonly full: string,
  ) {}

  private async writeFully(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done);
      if (bytesWritten <= 0) throw new MoeError('write made no progress (disk full?)', this.full);
      done += bytesWritten;
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new MoeError('write after close', this.full);
    const at = this.pos;
    this.pos += bytes.length;
    await this.writeFully(bytes, at);
  }

  /** Rewrites bytes already written; the sequential position stays where it is. */
  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new MoeError('write after close', this.full);
    if (!Number.isSafeInteger(position) || position < 0 || position + bytes.length > this.pos) {
      throw new MoeError(`writeAt [${position}, ${position + bytes.length}) is outside the ${this.pos} bytes written so far`, this.full);
    }
    await this.writeFully(bytes, position);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.handle.datasync();
    } finally {
      await this.handle.close();
    }
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => {});
    }
    await fsp.rm(this.full, { force: true });
  }
}

/** The folder a child model is written to. Created when missing. */
export class NodeOutputFolder implements OutputFolder {
  readonly name: string;
  readonly canRename = true;

  constructor(readonly path: string) {
    this.name = path;
  }

  private full(file: string): string {
    checkPlainName(file, this.path);
    return path.join(this.path, file);
  }

  list(): Promise<string[]> {
    return listFiles(this.path);
  }

  async create(file: string): Promise<OutputFile> {
    const full = this.full(file);
    await fsp.mkdir(this.path, { recursive: true });
    const handle = await fsp.open(full, 'w');
    return new NodeOutputFile(handle, full);
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(this.full(from), this.full(to));
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(this.full(file), { force: true });
  }

  async overlaps(parent: ModelFolder): Promise<boolean> {
    const parentPath = parent instanceof NodeModelFolder ? parent.path : parent.name;
    const out = await realpathLoose(this.path);
    const par = await realpathLoose(parentPath);
    if (out === par) return true;
    const rel = path.relative(par, out);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  }

  async freeBytes(): Promise<number | undefined> {
    const statfs = (fsp as { statfs?: (p: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }> }).statfs;
    if (!statfs) return undefined;
    try {
      const s = await statfs(this.path);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      return undefined;
    }
  }
}

/** Opens (creating when missing) an output folder. */
export async function openNodeOutputFolder(dir: string): Promise<NodeOutputFolder> {
  const abs = path.resolve(dir);
  await fsp.mkdir(abs, { recursive: true });
  await fsp.access(abs, fsConstants.W_OK).catch(() => {
    throw new MoeError('folder is not writable', abs);
  });
  return new NodeOutputFolder(abs);
}
