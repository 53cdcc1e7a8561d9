// Node implementations of the engine's file interfaces (app/engine/io.ts).
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { LOCK_FILE, MoeError, checkRead, type ByteSource, type LockOwner, type ModelFolder, type OutputFile, type OutputFolder, type OutputLock } from '../engine/io.ts';


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

/** An errno error as one readable phrase: "no space left on the device (ENOSPC)". */
export function ioReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const phrases: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'the disk quota is used up',
    EROFS: 'the file system is read-only',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOENT: 'no such file or folder',
    EIO: 'an input/output error from the device',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
  };
  if (err?.code && phrases[err.code]) return `${phrases[err.code]} (${err.code})`;
  return err?.message ?? String(e);
}

class NodeByteSource implements ByteSource {
  constructor(
    readonly name: string,
    readonly size: number,
    readonly handle: FileHandle,
    readonly identity?: string,
  ) {}

  /** Worker threads open the file by its path and read it themselves. */
  get workerRef(): string {
    return this.name;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(this, offset, length);
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
          return new NodeByteSource(full, st.size, handle, `${st.size}:${st.mtimeMs}`);
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
      let bytesWritten: number;
      try {
        ({ bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done));
      } catch (e) {
        throw new MoeError(`write failed: ${ioReason(e)}`, this.full);
      }
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

  /** Writes at any position (the file grows as needed); the sequential position stays where it is. */
  async writeAt(position: number, bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new MoeError('write after close', this.full);
    if (!Number.isSafeInteger(position) || position < 0) throw new MoeError(`writeAt at ${position} is not a file position`, this.full);
    await this.writeFully(bytes, position);
  }

  /** Worker threads open the file by its path and write their ranges themselves. */
  get workerRef(): string {
    return this.full;
  }

  async flush(): Promise<void> {
    if (this.closed) return;
    try {
      await this.handle.datasync();
    } catch (e) {
      throw new MoeError(`could not be flushed to disk: ${ioReason(e)}`, this.full);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.handle.datasync();
    } catch (e) {
      throw new MoeError(`could not be flushed to disk: ${ioReason(e)}`, this.full);
    } finally {
      await this.handle.close().catch(() => {});
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

/** Is a process of this machine still running? (Signal 0 checks without signalling.) */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describeOwner(o: Partial<LockOwner>): string {
  const who = o.pid !== undefined ? `pid ${o.pid}${o.host ? ` on host ${o.host}` : ''}` : (o.tool ?? 'another merge');
  return `${who}${o.tool && o.pid !== undefined ? ` (${o.tool})` : ''}${o.started ? `, since ${o.started}` : ''}`;
}

/**
 * The folder a child model is written to. Nothing is created before `prepare`, so a refused merge
 * leaves no folder behind, and `discardCreated` takes away the folders a failed merge created.
 */
export class NodeOutputFolder implements OutputFolder {
  readonly name: string;
  readonly canRename = true;
  /** Folders `prepare` created, outermost first. */
  private created: string[] = [];

  constructor(readonly path: string) {
    this.name = path;
  }

  private full(file: string): string {
    checkPlainName(file, this.path);
    return path.join(this.path, file);
  }

  async list(): Promise<string[]> {
    const st = await fsp.stat(this.path).catch(() => undefined);
    if (!st) return [];
    return listFiles(this.path);
  }

  async prepare(): Promise<void> {
    const missing: string[] = [];
    let dir = this.path;
    for (;;) {
      const st = await fsp.stat(dir).catch(() => undefined);
      if (st) {
        if (!st.isDirectory()) throw new MoeError(`cannot create the output folder: ${dir} is a file, not a folder`, this.path);
        break;
      }
      missing.unshift(dir);
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    for (const d of missing) {
      try {
        await fsp.mkdir(d);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
        // A read-only mount can answer ENOENT to mkdir; name the folder that would not take a new entry.
        throw new MoeError(`cannot create the output folder: ${path.dirname(d)} does not accept a new folder (${ioReason(e)})`, this.path);
      }
      this.created.push(d);
    }
    await fsp.access(this.path, fsConstants.W_OK).catch((e) => {
      throw new MoeError(`the output folder is not writable (${ioReason(e)})`, this.path);
    });
  }

  async discardCreated(): Promise<void> {
    for (const d of [...this.created].reverse()) {
      // rmdir refuses a folder that is not empty: only what this merge created and left empty goes.
      await fsp.rmdir(d).catch(() => {});
    }
    this.created = [];
  }

  async lock(owner: LockOwner): Promise<OutputLock> {
    const file = this.full(LOCK_FILE);
    const mine: LockOwner = { ...owner, pid: process.pid, host: hostname() };
    const text = JSON.stringify(mine) + '\n';
    let replacedStale: LockOwner | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        // 'wx': created only if it does not exist, atomically; two merges cannot both succeed.
        const fh = await fsp.open(file, 'wx');
        try {
          await fh.writeFile(text);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        const lock: OutputLock = {
          release: async () => {
            const now = await fsp.readFile(file, 'utf8').catch(() => undefined);
            if (now === text) await fsp.rm(file, { force: true });
          },
        };
        return replacedStale ? { ...lock, replacedStale } : lock;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new MoeError(`cannot create the merge lock: ${ioReason(e)}`, file);
      }
      const held = await fsp.readFile(file, 'utf8').catch(() => '');
      let holder: Partial<LockOwner> | undefined;
      try {
        holder = JSON.parse(held) as Partial<LockOwner>;
      } catch {
        holder = undefined;
      }
      if (!holder || typeof holder !== 'object') {
        throw new MoeError(`another merge may be writing here: the lock ${file} cannot be read; if no merge is running, remove it`, this.path);
      }
      const sameHost = holder.host === hostname();
      const gone = sameHost && typeof holder.pid === 'number' && !processAlive(holder.pid);
      if (!gone || attempt > 0) {
        throw new MoeError(
          `another merge is writing here: ${LOCK_FILE} is held by ${describeOwner(holder)}` +
            (sameHost ? '' : '; if no merge is running there, remove the lock file'),
          this.path,
        );
      }
      // Stale: its process is gone. Take it over, and say so.
      replacedStale = holder as LockOwner;
      await fsp.rm(file, { force: true });
    }
    throw new MoeError('could not take the merge lock', file);
  }

  async create(file: string): Promise<OutputFile> {
    const full = this.full(file);
    let handle: FileHandle;
    try {
      handle = await fsp.open(full, 'w');
    } catch (e) {
      throw new MoeError(`cannot create the file: ${ioReason(e)}`, full);
    }
    return new NodeOutputFile(handle, full);
  }

  async open(file: string): Promise<ByteSource> {
    const full = this.full(file);
    const handle = await fsp.open(full, 'r').catch((e) => {
      throw new MoeError(`cannot be read back: ${ioReason(e)}`, full);
    });
    const st = await handle.stat();
    return new ClosingByteSource(full, st.size, handle);
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(this.full(from), this.full(to)).catch((e) => {
      throw new MoeError(`cannot be renamed to ${to}: ${ioReason(e)}`, this.full(from));
    });
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(this.full(file), { force: true });
  }

  async overlaps(parent: ModelFolder): Promise<boolean> {
    // A Hub repository is nowhere on this disk.
    if (parent.hub) return false;
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
    // The nearest existing folder: the output folder itself may not exist yet.
    let dir = this.path;
    while (!(await fsp.stat(dir).catch(() => undefined)) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    try {
      const s = await statfs(dir);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      return undefined;
    }
  }
}

/** A file read back once: its handle is closed after each read's caller is done (`close`). */
class ClosingByteSource extends NodeByteSource {
  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

/** An output folder at `dir` (resolved); nothing is created until the merge prepares it. */
export function openNodeOutputFolder(dir: string): NodeOutputFolder {
  return new NodeOutputFolder(path.resolve(dir));
}
