// Safetensors headers: reading (exactly as strict as the reference reader) and building.
//
// File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data.
// Offsets in the JSON are relative to the data start (8 + N); the engine's TensorRecord holds
// absolute offsets.
//
// Reading mirrors the reference Rust reader (huggingface/safetensors, safetensors/src/tensor.rs
// `read_metadata` + `Metadata::validate`, parsing with serde_json), because a parent it refuses
// cannot be loaded by transformers either, and a child must never be built from bytes the engine
// guessed at:
//  - the JSON is parsed strictly (formats/strict-json.ts): no byte-order mark, no duplicate keys,
//    integers written as integers (`2.0` is refused), nothing after the value but whitespace;
//  - `__metadata__` is null or an object of strings; every other key is a tensor with a known
//    dtype, a shape of non-negative integers and a pair of data_offsets;
//  - sorted by data_offsets, the tensors lie back to back from 0 (no gap, no overlap), each holds
//    exactly shape × dtype bytes (a whole number of bytes for sub-byte dtypes), and the last one
//    ends exactly at the end of the file.
//
// Writing (buildSafetensorsHeader) as the reference writer (`prepare`): compact JSON,
// `__metadata__` first when given, then the tensors in data order as {"dtype","shape","data_offsets"},
// padded with spaces to a multiple of 8 bytes, tensors back to back in the order given
// (`referenceTensorOrder` gives the reference's own: descending dtype enum order, then name).
import type { ByteSource } from '../io.ts';
import { MoeError } from '../io.ts';
import type { TensorRecord } from '../model/types.ts';
import { DTYPE_BITS, DTYPE_ORDER, isKnownDtype, tensorBytes } from './dtype.ts';
import { jsonText, parseStrictJson, type JsonObject, type JsonValue } from './strict-json.ts';

/** Largest header accepted, as the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsHeader {
  /** Tensors in data order (ascending offset). `file` is the source's name. */
  tensors: TensorRecord[];
  /** `__metadata__`, or empty when absent or null. Keys from the file: a Map, never an object. */
  metadata: Map<string, string>;
  /** Absolute offset of the data section: 8 + header length. */
  dataStart: number;
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

function isNonNegInt(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function intList(v: JsonValue | undefined): number[] | undefined {
  return Array.isArray(v) && v.every(isNonNegInt) ? (v as number[]) : undefined;
}

/** Validates header JSON bytes (the N bytes after the length) of a file of `fileSize` bytes. */
export function parseSafetensorsHeader(file: string, fileSize: number, headerBytes: Uint8Array): SafetensorsHeader {
  const n = headerBytes.length;
  const dataStart = 8 + n;
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, where the JSON parser refuses it (as serde_json).
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new MoeError('header is not valid UTF-8', file);
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    throw new MoeError(`header is not valid JSON (${e instanceof Error ? e.message : String(e)})`, file);
  }
  if (!(json instanceof Map)) throw new MoeError('header JSON is not an object', file);

  const metadata = new Map<string, string>();
  const tensors: TensorRecord[] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, entry] of json as JsonObject) {
    if (name === '__metadata__') {
      if (entry === null) continue;
      if (!(entry instanceof Map)) throw new MoeError('__metadata__ is not an object of strings', file);
      for (const [k, v] of entry) {
        if (typeof v !== 'string') throw new MoeError(`__metadata__ value for ${JSON.stringify(k)} is ${jsonText(v)}, not a string`, file);
        metadata.set(k, v);
      }
      continue;
    }
    if (!(entry instanceof Map)) throw new MoeError('header entry is not an object', file, name);
    const dtype = entry.get('dtype');
    if (typeof dtype !== 'string' || !isKnownDtype(dtype)) {
      throw new MoeError(`unknown dtype ${jsonText(dtype)}`, file, name);
    }
    const shape = intList(entry.get('shape'));
    if (!shape) throw new MoeError(`shape ${jsonText(entry.get('shape'))} is not a list of non-negative integers`, file, name);
    const offsets = intList(entry.get('data_offsets'));
    if (!offsets || offsets.length !== 2) {
      throw new MoeError(`data_offsets ${jsonText(entry.get('data_offsets'))} is not a pair of non-negative integers`, file, name);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new MoeError(`data_offsets [${begin}, ${end}] begin after end`, file, name);
    let elements = 1;
    for (const d of shape) elements *= d;
    const bytes = tensorBytes(dtype, elements);
    if (bytes === undefined) {
      throw new MoeError(`shape ${JSON.stringify(shape)} of ${dtype} (${DTYPE_BITS.get(dtype)} bits) is too large or not a whole number of bytes`, file, name);
    }
    if (bytes !== end - begin) {
      throw new MoeError(
        `shape ${JSON.stringify(shape)} × ${dtype} (${DTYPE_BITS.get(dtype)} bits) = ${bytes} bytes, ` +
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
    tensors.push({ name, dtype, shape: [...shape], file, offset: dataStart + begin, length: end - begin });
  }

  // Back to back from the start of the data section, in data_offsets order, to its very end.
  tensors.sort((a, b) => a.offset - b.offset || a.length - b.length);
  let pos = dataStart;
  let prev: TensorRecord | undefined;
  const rel = (r: TensorRecord) => `[${r.offset - dataStart}, ${r.offset - dataStart + r.length}]`;
  for (const t of tensors) {
    if (t.offset < pos) {
      throw new MoeError(`data_offsets ${rel(t)} overlap tensor ${prev!.name} ${rel(prev!)}`, file, t.name);
    }
    if (t.offset > pos) {
      throw new MoeError(
        `data_offsets ${rel(t)} leave a gap of ${t.offset - pos} bytes after ${prev ? `tensor ${prev.name} ${rel(prev)}` : 'the header'} ` +
          '(the reference reader needs tensors back to back)',
        file,
        t.name,
      );
    }
    pos = t.offset + t.length;
    prev = t;
  }
  if (pos !== fileSize) {
    throw new MoeError(
      `${fileSize - pos} bytes after the last tensor's data (data ends at ${pos}, the file has ${fileSize}); the reference reader refuses them`,
      file,
    );
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
}

export interface BuiltHeader {
  /** 8-byte length + JSON padded with spaces to a multiple of 8. Write it first. */
  header: Uint8Array;
  /** In the given order (= data order). */
  offsets: HeaderOffset[];
  /** Bytes after the header: every tensor, back to back. File size = header.length + dataLength. */
  dataLength: number;
}

/**
 * Builds a header for tensors laid out back to back in the given order (see the conventions at
 * the top). The JSON is assembled key by key, so any name (`__proto__` too) is written as given.
 */
export function buildSafetensorsHeader(entries: readonly HeaderEntry[], metadata?: ReadonlyMap<string, string> | Readonly<Record<string, string>>): BuiltHeader {
  const seen = new Set<string>();
  const offsets: HeaderOffset[] = [];
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta = metadata instanceof Map ? [...metadata] : Object.entries(metadata);
    for (const [k, v] of meta) {
      if (typeof v !== 'string') throw new MoeError(`__metadata__ value for ${JSON.stringify(k)} is not a string`);
    }
    parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  let pos = 0;
  for (const e of entries) {
    if (e.name === '__metadata__') throw new MoeError('"__metadata__" cannot be a tensor name', undefined, e.name);
    if (seen.has(e.name)) throw new MoeError('tensor name appears twice', undefined, e.name);
    seen.add(e.name);
    if (!isKnownDtype(e.dtype)) throw new MoeError(`unknown dtype ${JSON.stringify(e.dtype)}`, undefined, e.name);
    let elements = 1;
    for (const d of e.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new MoeError(`shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`, undefined, e.name);
      elements *= d;
    }
    const bytes = tensorBytes(e.dtype, elements);
    if (bytes !== e.length) {
      throw new MoeError(`shape ${JSON.stringify(e.shape)} × ${e.dtype} = ${bytes ?? 'not a whole number of'} bytes, but length is ${e.length}`, undefined, e.name);
    }
    const begin = pos;
    const end = begin + e.length;
    offsets.push({ name: e.name, begin, end });
    parts.push(`${JSON.stringify(e.name)}:{"dtype":${JSON.stringify(e.dtype)},"shape":[${e.shape.join(',')}],"data_offsets":[${begin},${end}]}`);
    pos = end;
  }
  const body = new TextEncoder().encode(`{${parts.join(',')}}`);
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

/** Compares strings by Unicode code points, which is how Rust orders them (UTF-8 bytes). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (a code point above U+FFFF) sorts after every BMP character in code-point order.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The order the reference writer uses: descending position in its Dtype enum (which goes by
 * alignment, so every tensor stays aligned to its own element size back to back), then by name.
 */
export function referenceTensorOrder<T extends { name: string; dtype: string }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => {
    const d = (DTYPE_ORDER.get(b.dtype) ?? -1) - (DTYPE_ORDER.get(a.dtype) ?? -1);
    return d !== 0 ? d : compareCodePoints(a.name, b.name);
  });
}
