// Safetensors headers: reading (with every check a hostile or broken file needs) and building.
//
// File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data.
// Offsets in the JSON are relative to the data start (8 + N); the engine's TensorRecord holds
// absolute offsets.
//
// Writing conventions (buildSafetensorsHeader), compared with the reference Rust writer
// (huggingface/safetensors, safetensors/src/tensor.rs `prepare`):
//  - JSON is compact (no spaces), `__metadata__` first (only when given), then the tensors in
//    data order, each as {"dtype","shape","data_offsets"} in that key order: as the reference.
//  - The JSON is padded with spaces to a multiple of 8 bytes, so the data section starts
//    8-byte aligned: as the reference.
//  - Tensors are laid out in the order the caller gives. The reference instead sorts by
//    descending dtype alignment, then by name (`referenceTensorOrder` reproduces that order for
//    callers who want it); the engine keeps its plan's order so shards stay predictable.
//  - Gaps. The reference *reader* (`Metadata::validate`) refuses any gap between tensors
//    (each begin must equal the previous end, and the last end must be the end of the file),
//    so a file with padding between tensors cannot be loaded by `safetensors`/transformers.
//    The default is therefore `align: 1`: tensors back to back, no padding, loadable
//    everywhere (a tensor may then start at an address that is not a multiple of its element
//    size; every reader we know copies or tolerates that). `align: 8` gives each tensor an
//    8-byte aligned start with zero bytes in between, for consumers that mmap and want
//    alignment and do not use the reference reader. Either way each offset says how many zero
//    bytes the writer must emit before the tensor (`paddingBefore`), and `dataLength` counts them.
//
// Reading is deliberately more lenient than the reference reader on layout (gaps and unread
// trailing bytes are accepted: many tools write them) and strict on everything that could make
// the engine read the wrong bytes (sizes, bounds, overlaps).
import type { ByteSource } from '../io.ts';
import { MoeError } from '../io.ts';
import type { TensorRecord } from '../model/types.ts';
import { DTYPE_SIZE, isKnownDtype } from './dtype.ts';

/** Largest header accepted, as the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsHeader {
  /** Tensors in data order (ascending offset). `file` is the source's name. */
  tensors: TensorRecord[];
  /** `__metadata__`, or {} when absent. */
  metadata: Record<string, string>;
  /** Absolute offset of the data section: 8 + header length. */
  dataStart: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads and validates the header of a safetensors file. Throws MoeError(reason, file, tensor?). */
export async function readSafetensorsHeader(source: ByteSource): Promise<SafetensorsHeader> {
  const file = source.name;
  const size = source.size;
  if (size < 8) throw new MoeError(`file is ${size} bytes, too small for a safetensors header (at least 8)`, file);
  const lenBytes = await source.read(0, 8);
  if (lenBytes.length !== 8) throw new MoeError(`short read of the header length (${lenBytes.length} of 8 bytes)`, file);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo; // exact up to 2^53; anything that large fails the checks below
  if (n > MAX_HEADER_BYTES) {
    throw new MoeError(`header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit`, file);
  }
  if (8 + n > size) {
    throw new MoeError(`header length ${n} runs past end of file (size ${size})`, file);
  }
  const headerBytes = n === 0 ? new Uint8Array(0) : await source.read(8, n);
  if (headerBytes.length !== n) throw new MoeError(`short read of the header (${headerBytes.length} of ${n} bytes)`, file);
  return parseSafetensorsHeader(file, size, headerBytes);
}

/** Validates header JSON bytes (the N bytes after the length) of a file of `fileSize` bytes. */
export function parseSafetensorsHeader(file: string, fileSize: number, headerBytes: Uint8Array): SafetensorsHeader {
  const n = headerBytes.length;
  const dataStart = 8 + n;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new MoeError('header is not valid UTF-8', file);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new MoeError(`header is not valid JSON (${why})`, file);
  }
  if (!isPlainObject(json)) throw new MoeError('header JSON is not an object', file);

  const metadata: Record<string, string> = {};
  const tensors: TensorRecord[] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) throw new MoeError('__metadata__ is not an object of strings', file);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          throw new MoeError(`__metadata__ value for "${k}" is ${JSON.stringify(v)}, not a string`, file);
        }
        metadata[k] = v;
      }
      continue;
    }
    if (!isPlainObject(entry)) throw new MoeError('header entry is not an object', file, name);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !isKnownDtype(dtype)) {
      throw new MoeError(`unknown dtype ${JSON.stringify(dtype)}`, file, name);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new MoeError(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`, file, name);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      throw new MoeError(`data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`, file, name);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new MoeError(`data_offsets [${begin}, ${end}] begin after end`, file, name);
    let elements = 1;
    for (const d of shape as number[]) elements *= d;
    const bytes = elements * DTYPE_SIZE[dtype]!;
    if (!Number.isSafeInteger(bytes)) {
      throw new MoeError(`shape ${JSON.stringify(shape)} is too large`, file, name);
    }
    if (bytes !== end - begin) {
      throw new MoeError(
        `shape ${JSON.stringify(shape)} × ${dtype} (${DTYPE_SIZE[dtype]} bytes) = ${bytes} bytes, ` +
          `but data_offsets [${begin}, ${end}] hold ${end - begin}`,
        file,
        name,
      );
    }
    if (end > dataSize) {
      throw new MoeError(
        `data_offsets [${begin}, ${end}] end past end of file (size ${fileSize}, data section ${dataSize} bytes from ${dataStart})`,
        file,
        name,
      );
    }
    tensors.push({ name, dtype, shape: [...(shape as number[])], file, offset: dataStart + begin, length: end - begin });
  }

  tensors.sort((a, b) => a.offset - b.offset || a.length - b.length);
  let prev: TensorRecord | undefined;
  for (const t of tensors) {
    if (t.length === 0) continue;
    if (prev && t.offset < prev.offset + prev.length) {
      const rel = (r: TensorRecord) => `[${r.offset - dataStart}, ${r.offset - dataStart + r.length}]`;
      throw new MoeError(`data_offsets ${rel(t)} overlap tensor ${prev.name} ${rel(prev)}`, file, t.name);
    }
    if (!prev || t.offset + t.length > prev.offset + prev.length) prev = t;
  }
  return { tensors, metadata, dataStart };
}

/** One tensor to place in a new file. `length` is its byte length (checked against shape × dtype). */
export interface HeaderEntry {
  name: string;
  dtype: string;
  shape: readonly number[];
  length: number;
}

export interface HeaderOffset {
  name: string;
  /** Offset relative to the data start, as written in data_offsets. */
  begin: number;
  end: number;
  /** Zero bytes the writer must emit just before this tensor's data. */
  paddingBefore: number;
}

export interface BuiltHeader {
  /** 8-byte length + JSON padded with spaces to a multiple of 8. Write it first. */
  header: Uint8Array;
  /** In the given order (= data order). */
  offsets: HeaderOffset[];
  /** Bytes after the header: every tensor plus padding. File size = header.length + dataLength. */
  dataLength: number;
}

export interface BuildOptions {
  /**
   * Alignment of each tensor's start within the data section. 1 (default): back to back, the
   * only layout the reference reader accepts. 8: zero padding so each tensor starts 8-aligned.
   */
  align?: number;
}

/** Builds a header for tensors laid out in the given order. See the conventions at the top. */
export function buildSafetensorsHeader(
  entries: readonly HeaderEntry[],
  metadata?: Record<string, string>,
  options: BuildOptions = {},
): BuiltHeader {
  const align = options.align ?? 1;
  if (!Number.isSafeInteger(align) || align < 1) throw new MoeError(`alignment ${align} is not a positive integer`);
  const seen = new Set<string>();
  const offsets: HeaderOffset[] = [];
  const json: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new MoeError(`__metadata__ value for "${k}" is not a string`);
    }
    json['__metadata__'] = { ...metadata };
  }
  let pos = 0;
  for (const e of entries) {
    if (e.name === '__metadata__') throw new MoeError('"__metadata__" cannot be a tensor name', undefined, e.name);
    if (seen.has(e.name)) throw new MoeError('tensor name appears twice', undefined, e.name);
    seen.add(e.name);
    if (!isKnownDtype(e.dtype)) throw new MoeError(`unknown dtype ${JSON.stringify(e.dtype)}`, undefined, e.name);
    let elements = 1;
    for (const d of e.shape) {
      if (!isNonNegInt(d)) throw new MoeError(`shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`, undefined, e.name);
      elements *= d;
    }
    if (elements * DTYPE_SIZE[e.dtype]! !== e.length) {
      throw new MoeError(
        `shape ${JSON.stringify(e.shape)} × ${e.dtype} = ${elements * DTYPE_SIZE[e.dtype]!} bytes, but length is ${e.length}`,
        undefined,
        e.name,
      );
    }
    const aligned = Math.ceil(pos / align) * align;
    const paddingBefore = aligned - pos;
    const begin = aligned;
    const end = begin + e.length;
    offsets.push({ name: e.name, begin, end, paddingBefore });
    json[e.name] = { dtype: e.dtype, shape: [...e.shape], data_offsets: [begin, end] };
    pos = end;
  }
  const body = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(body.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new MoeError(`header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const header = new Uint8Array(8 + padded);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  header.set(body, 8);
  header.fill(0x20, 8 + body.length);
  return { header, offsets, dataLength: pos };
}

/**
 * The order the reference writer uses: descending dtype alignment (element size), then name.
 * With back-to-back layout this keeps every tensor aligned to its own element size.
 */
export function referenceTensorOrder<T extends { name: string; dtype: string }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => {
    const d = (DTYPE_SIZE[b.dtype] ?? 0) - (DTYPE_SIZE[a.dtype] ?? 0);
    if (d !== 0) return d;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}

/** The zero bytes to emit before a tensor (`offset.paddingBefore`). */
export function paddingBytes(n: number): Uint8Array {
  return new Uint8Array(n);
}
