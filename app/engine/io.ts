// How the engine reaches files. The engine never touches fs or the DOM: the CLI supplies Node
// implementations (app/cli/node-io.ts) and the studio supplies File System Access / OPFS ones.

/** A read-only file. Reads are by absolute byte offset; a read may be at most 1 GiB. */
export interface ByteSource {
  /** Path or name shown in error messages. */
  readonly name: string;
  readonly size: number;
  /**
   * What changes when the file may have changed (size and modification time, or a server's ETag);
   * a resumed merge refuses parents whose identity differs from the interrupted run's.
   */
  readonly identity?: string;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Frees what the source holds (a file handle), where it is the caller's to free. */
  close?(): Promise<void>;
  /**
   * How a worker reaches this file by itself, to read it positionally without the coordinator: a
   * path in Node, a File in the browser. Absent: the coordinator reads for the workers.
   */
  readonly workerRef?: unknown;
  /**
   * Bytes between two wanted ranges below which reading straight through is cheaper than another
   * read (a network source: a request costs what megabytes of transfer do). Absent: local I/O.
   */
  readonly readThrough?: number;
}

/** Where a parent on the Hugging Face Hub came from, for the child's model card. */
export interface HubOrigin {
  /** ORG/NAME. */
  repo: string;
  /** The revision asked for (a branch, tag or commit; "main" when none was named). */
  revision: string;
  /** The commit it resolved to, which every file was read at. */
  commit: string;
}

/** A parent model's folder, opened read-only. */
export interface ModelFolder {
  /** Path or name shown in messages. */
  readonly name: string;
  /** Set when the folder is a Hub repository. */
  readonly hub?: HubOrigin;
  /** File names directly inside the folder. */
  list(): Promise<string[]>;
  open(file: string): Promise<ByteSource>;
}

/**
 * A file being written. `write` appends at the sequential position (small files); `writeAt` writes
 * at any position, growing the file as needed, without moving the sequential position (a shard's
 * ranges are written by whichever unit makes them, in any order). `close` makes the file durable,
 * `abort` discards it.
 */
export interface OutputFile {
  write(bytes: Uint8Array): Promise<void>;
  writeAt(position: number, bytes: Uint8Array): Promise<void>;
  /** Makes every byte written so far durable, and closes the file. */
  close(): Promise<void>;
  abort(): Promise<void>;
  /**
   * Makes the bytes written so far (by anyone: workers too) durable while the writing goes on, so
   * `close` waits only for what came after. Absent where the platform cannot (the browser).
   */
  flush?(): Promise<void>;
  /**
   * How a worker reaches this file by itself, to write its ranges positionally: a path in Node, an
   * OPFS file handle in the browser. Absent: workers hand their bytes to the coordinator.
   */
  readonly workerRef?: unknown;
}

/** Who holds an output folder's merge lock, as written into the lock file. */
export interface LockOwner {
  /** "moe-studio merge" or "MoE Studio (browser)". */
  tool: string;
  /** Process id and host name where the platform has them (the CLI); the browser has neither. */
  pid?: number;
  host?: string;
  /** ISO time the merge started. */
  started: string;
}

/** A held merge lock. */
export interface OutputLock {
  /** A lock left by a merge that is provably gone (same host, its process not running), which this one replaced. */
  readonly replacedStale?: LockOwner;
  /** Gives the lock up (only if the lock file is still this merge's). */
  release(): Promise<void>;
}

/** The lock file every merge holds in its output folder for as long as it writes there. */
export const LOCK_FILE = '.moe-studio.lock';

/** The folder a child model is written to. Nothing is created in it before `prepare`. */
export interface OutputFolder {
  readonly name: string;
  /** Files directly inside the folder; none when it does not exist yet. */
  list(): Promise<string[]>;
  /** Creates the folder (and missing parents) when needed, remembering what it created. */
  prepare(): Promise<void>;
  /** Removes the folders `prepare` created that are empty again (after a refused, failed or cancelled merge). */
  discardCreated(): Promise<void>;
  /**
   * Takes the folder's merge lock, created atomically where the platform allows. Throws a MoeError
   * naming the holder while another merge holds it.
   */
  lock(owner: LockOwner): Promise<OutputLock>;
  /** Creates (or truncates) a file. */
  create(file: string): Promise<OutputFile>;
  /** Reads a file of the folder back (verifying shards before the index, resuming). */
  open(file: string): Promise<ByteSource>;
  /** Renames within the folder, replacing `to`. Platforms that cannot rename set `canRename` false. */
  rename(from: string, to: string): Promise<void>;
  readonly canRename: boolean;
  remove(file: string): Promise<void>;
  /** True when this folder is, or is inside, the given parent folder. */
  overlaps(parent: ModelFolder): Promise<boolean>;
  /** Free bytes where the platform can tell. */
  freeBytes?(): Promise<number | undefined>;
  /**
   * Whether a file being written takes its size twice until it is closed (the browser's writable
   * streams write a swap file first); absent: no.
   */
  readonly swapsWhileWriting?: boolean;
}

/** The largest single read a ByteSource serves. */
export const MAX_READ = 1 << 30;

/** Refuses a read a ByteSource must not serve: not whole numbers, over MAX_READ, or past the end. */
export function checkRead(source: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new MoeError(`bad read (offset ${offset}, length ${length})`, source.name);
  }
  if (length > MAX_READ) throw new MoeError(`read of ${length} bytes is over the 1 GiB limit`, source.name);
  if (offset + length > source.size) {
    throw new MoeError(`read [${offset}, ${offset + length}) past end of file (size ${source.size})`, source.name);
  }
}

export async function readAll(source: ByteSource): Promise<Uint8Array> {
  return source.read(0, source.size);
}

export async function writeWhole(folder: OutputFolder, file: string, bytes: Uint8Array): Promise<void> {
  const out = await folder.create(file);
  try {
    await out.write(bytes);
    await out.close();
  } catch (e) {
    await out.abort().catch(() => {});
    throw e;
  }
}

/** Longest error text shown; longer ones keep their start and end (a 10 MB pattern must not make a 10 MB line). */
const MAX_MESSAGE = 2000;

/**
 * Text from files or recipes made safe to print on one line: control characters (newlines, ANSI
 * escapes, …) are written as escapes, and very long text keeps its start and end.
 */
export function printable(text: string, max = MAX_MESSAGE): string {
  // C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators.
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
  if (escaped.length <= max) return escaped;
  const keep = Math.floor((max - 40) / 2);
  return `${escaped.slice(0, keep)} … (${escaped.length - 2 * keep} characters left out) … ${escaped.slice(-keep)}`;
}

/** Every error the engine raises on bad input: says which file, which tensor and what is wrong. */
export class MoeError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
  ) {
    super(printable([file, tensor !== undefined ? `tensor ${tensor}` : undefined, message].filter(Boolean).join(': ')));
    this.name = 'MoeError';
  }
}
