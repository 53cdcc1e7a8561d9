// How the engine reaches files. The engine never touches fs or the DOM: the CLI supplies Node
// implementations (app/cli/node-io.ts) and the studio supplies File System Access / OPFS ones.

/** A read-only file. Reads are by absolute byte offset; a read may be at most 1 GiB. */
export interface ByteSource {
  /** Path or name shown in error messages. */
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A parent model's folder, opened read-only. */
export interface ModelFolder {
  /** Path or name shown in messages. */
  readonly name: string;
  /** File names directly inside the folder. */
  list(): Promise<string[]>;
  open(file: string): Promise<ByteSource>;
}

/**
 * A file being written. Writes are sequential; `writeAt` rewrites bytes already written (a shard's
 * FP8 scales come before their weight, and are only known once the weight is done) without moving
 * the sequential position. `close` makes the file durable, `abort` discards it.
 */
export interface OutputFile {
  write(bytes: Uint8Array): Promise<void>;
  writeAt(position: number, bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

/** The folder a child model is written to. */
export interface OutputFolder {
  readonly name: string;
  list(): Promise<string[]>;
  /** Creates (or truncates) a file. */
  create(file: string): Promise<OutputFile>;
  /** Renames within the folder, replacing `to`. Platforms that cannot rename set `canRename` false. */
  rename(from: string, to: string): Promise<void>;
  readonly canRename: boolean;
  remove(file: string): Promise<void>;
  /** True when this folder is, or is inside, the given parent folder. */
  overlaps(parent: ModelFolder): Promise<boolean>;
  /** Free bytes where the platform can tell. */
  freeBytes?(): Promise<number | undefined>;
}

export async function readAll(source: ByteSource): Promise<Uint8Array> {
  return source.read(0, source.size);
}

export async function readText(folder: ModelFolder, file: string): Promise<string> {
  const src = await folder.open(file);
  return new TextDecoder('utf-8', { fatal: true }).decode(await readAll(src));
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

/** Every error the engine raises on bad input: says which file, which tensor and what is wrong. */
export class MoeError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
  ) {
    super([file, tensor ? `tensor ${tensor}` : undefined, message].filter(Boolean).join(': '));
    this.name = 'MoeError';
  }
}
