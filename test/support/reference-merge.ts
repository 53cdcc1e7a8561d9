// An independent, whole-tensor, scalar re-statement of the merge spec, used to check every byte a
// merge writes. It shares with the engine only the model opening and tensor classification (tested
// on their own); rule matching, dtype choice, threshold, edits and all arithmetic are its own.
import { openSync, readSync, closeSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { FloatDtype } from '../../app/engine/formats/dtype.ts';
import { openModel } from '../../app/engine/model/open-model.ts';
import type { Model, TensorRecord, Weight } from '../../app/engine/model/types.ts';
import { openNodeModelFolder, type NodeModelFolder } from '../../app/cli/node-io.ts';
import { decodeRef, diffRef, encodeRef, mixRef } from '../reference/scalar.ts';
import type { Chunk } from '../../app/engine/kernels/types.ts';

export interface TensorBytes {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

const SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };
const FLOATS = new Set(['F32', 'F16', 'BF16', 'F8_E4M3']);
const OUT: Record<string, string> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

function readRecord(dir: string, rec: TensorRecord): Buffer {
  const fd = openSync(path.join(dir, rec.file), 'r');
  try {
    const buf = Buffer.alloc(rec.length);
    let done = 0;
    while (done < rec.length) done += readSync(fd, buf, done, rec.length - done, rec.offset + done);
    return buf;
  } finally {
    closeSync(fd);
  }
}

function u8(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function f32(b: Buffer): Float32Array {
  return new Float32Array(u8(b).buffer);
}

function rowsCols(shape: number[]): [number, number] {
  return shape.length === 2 ? [shape[0]!, shape[1]!] : [1, shape.reduce((a, b) => a * b, 1)];
}

interface Parent {
  name: string;
  dir: string;
  model: Model;
}

function wholeChunk(p: Parent, w: Weight): Chunk {
  const [rows, cols] = rowsCols(w.data.shape);
  const c: Chunk = { dtype: w.data.dtype as FloatDtype, rows, cols, bytes: u8(readRecord(p.dir, w.data)) };
  if (w.data.dtype === 'F8_E4M3') c.scales = f32(readRecord(p.dir, w.scale!));
  return c;
}

function inSet(v: unknown, i: number | undefined): boolean {
  if (v === undefined) return true;
  if (i === undefined) return false;
  if (typeof v === 'number') return v === i;
  if (Array.isArray(v)) return v.includes(i);
  const [a, b] = String(v).split('-').map((x) => Number(x.trim()));
  return i >= a! && i <= b!;
}

function oneOf(v: unknown, x: string | undefined): boolean {
  if (v === undefined) return true;
  if (x === undefined) return false;
  return Array.isArray(v) ? v.includes(x) : v === x;
}

/** The child a recipe file must produce, tensor by tensor (scale tensors included). */
export async function expectedChild(recipeFile: string): Promise<Map<string, TensorBytes>> {
  const recipe = parseYaml(readFileSync(recipeFile, 'utf8'));
  const order = Object.keys(recipe.parents);
  const parents = new Map<string, Parent>();
  const folders: NodeModelFolder[] = [];
  for (const name of order) {
    const dir = path.resolve(path.dirname(recipeFile), recipe.parents[name]);
    const folder = await openNodeModelFolder(dir);
    folders.push(folder);
    parents.set(name, { name, dir, model: await openModel(folder) });
  }
  try {
    return computeChild(recipe, order, parents);
  } finally {
    await Promise.all(folders.map((f) => f.close()));
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function computeChild(recipe: any, order: string[], parents: Map<string, Parent>): Map<string, TensorBytes> {
  const baseName: string = recipe.base ?? order[0];
  const base = parents.get(baseName)!;
  const outName: string = recipe.output?.dtype ?? 'keep';
  const edits: { layer: number; expert: number; action: string }[] = recipe.edits ?? [];
  const out = new Map<string, TensorBytes>();

  for (const w of base.model.weights) {
    const rule = (recipe.rules ?? []).find((r: { select: Record<string, unknown> }) => {
      const s = r.select;
      return (
        oneOf(s.kind, w.role.kind) && oneOf(s.proj, w.role.proj) && inSet(s.layers, w.role.layer) && inSet(s.experts, w.role.expert) &&
        (s.name === undefined || new RegExp(String(s.name)).test(w.name))
      );
    });
    let weights: [string, number][] = rule ? (rule.from !== undefined ? [[rule.from, 1]] : Object.entries(rule.weights as Record<string, number>)) : [[baseName, 1]];
    weights = order.filter((p) => weights.some(([q, x]) => q === p && x !== 0)).map((p) => [p, weights.find(([q]) => q === p)![1]]);
    const single = weights.length === 1 ? weights[0]![0] : undefined;
    const target = (src: Weight) => (outName === 'keep' || !FLOATS.has(src.data.dtype) || w.role.kind === 'router_bias' ? src.data.dtype : OUT[outName]!);
    const [rows, cols] = rowsCols(w.data.shape);

    const fromParent = (pname: string) => {
      const p = parents.get(pname)!;
      const src = p.model.byName.get(w.name)!;
      const dtype = target(src);
      if (dtype === src.data.dtype) {
        out.set(w.name, { dtype, shape: w.data.shape, bytes: readRecord(p.dir, src.data) });
        if (src.scale) out.set(src.scale.name, { dtype: 'F32', shape: src.scale.shape, bytes: readRecord(p.dir, src.scale) });
      } else {
        const values = decodeRef(wholeChunk(p, src));
        out.set(w.name, { dtype, shape: w.data.shape, bytes: Buffer.from(encodeRef(values, rows, cols, dtype as FloatDtype).bytes) });
      }
    };

    const muted = w.role.kind === 'routed_expert' && w.role.proj === 'down' && edits.some((e) => e.action === 'mute' && e.layer === w.role.layer && e.expert === w.role.expert);
    if (muted) {
      const src = single ? parents.get(single)!.model.byName.get(w.name)! : w;
      const dtype = single ? target(src) : target(w);
      const e = encodeRef(new Float32Array(rows * cols), rows, cols, dtype as FloatDtype);
      out.set(w.name, { dtype, shape: w.data.shape, bytes: Buffer.from(e.bytes) });
      if (e.scales) out.set(`${w.name}_scale_inv`, { dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)], bytes: Buffer.from(e.scales.buffer) });
    } else if (single) {
      fromParent(single);
    } else {
      let keep = false;
      if (recipe.threshold) {
        let worst = 0;
        for (const [pname] of weights) {
          if (pname === baseName) continue;
          const s = diffRef(wholeChunk(base, w), wholeChunk(parents.get(pname)!, parents.get(pname)!.model.byName.get(w.name)!));
          worst = Math.max(worst, s.nonFinite > 0 ? Infinity : Math.sqrt(s.sumSqDiff / (s.count - s.nonFinite)));
        }
        keep = worst < recipe.threshold.below;
      }
      if (keep) fromParent(baseName);
      else {
        const dtype = target(w) as FloatDtype;
        const e = mixRef({
          rows, cols, out: dtype,
          inputs: order.map((p) => wholeChunk(parents.get(p)!, parents.get(p)!.model.byName.get(w.name)!)),
          weights: order.map((p) => weights.find(([q]) => q === p)?.[1] ?? 0),
        });
        if (e.nanCount > 0) throw new Error(`reference: NaN in FP8 output of ${w.name}`);
        out.set(w.name, { dtype, shape: w.data.shape, bytes: Buffer.from(e.bytes) });
        if (e.scales) out.set(w.scale?.name ?? `${w.name}_scale_inv`, { dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)], bytes: Buffer.from(e.scales.buffer) });
      }
    }

    if (w.role.kind === 'router_bias') {
      const mine = edits.filter((e) => (e.action === 'off' || e.action === 'on') && e.layer === w.role.layer);
      if (mine.length > 0) {
        const t = out.get(w.name)!;
        const values = decodeRef({ dtype: t.dtype as FloatDtype, rows: 1, cols: rows * cols, bytes: u8(t.bytes) });
        for (const e of mine) values[e.expert] = e.action === 'off' ? -1e4 : 1e4;
        t.bytes = Buffer.from(encodeRef(values, 1, rows * cols, t.dtype as FloatDtype).bytes);
      }
    }
  }
  return out;
}

/**
 * Reads a child through its index, checking each shard the way the reference safetensors reader
 * does: header padded to 8, tensors back to back from 0 with no gaps, and the last end at the end of the file.
 */
export function readChild(dir: string): { tensors: Map<string, TensorBytes>; index: { metadata: { total_size: number }; weight_map: Record<string, string> } } {
  const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  const tensors = new Map<string, TensorBytes>();
  const shards = [...new Set(Object.values(index.weight_map as Record<string, string>))];
  for (const shard of shards) {
    const file = path.join(dir, shard);
    const all = readFileSync(file);
    const n = Number(all.readBigUInt64LE(0));
    if (n % 8 !== 0) throw new Error(`${shard}: header length ${n} is not a multiple of 8`);
    const header = JSON.parse(all.subarray(8, 8 + n).toString('utf8'));
    const entries = Object.entries(header).filter(([k]) => k !== '__metadata__') as [string, { dtype: string; shape: number[]; data_offsets: [number, number] }][];
    entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
    let pos = 0;
    for (const [name, e] of entries) {
      if (e.data_offsets[0] !== pos) throw new Error(`${shard}: ${name} starts at ${e.data_offsets[0]}, expected ${pos} (gap or overlap)`);
      const size = SIZE[e.dtype] ?? 1;
      if (e.data_offsets[0] % size !== 0) throw new Error(`${shard}: ${name} is not aligned to its element size`);
      pos = e.data_offsets[1];
      if (index.weight_map[name] !== shard) throw new Error(`${shard}: ${name} is mapped to ${index.weight_map[name]} in the index`);
      tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: all.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
    }
    if (8 + n + pos !== statSync(file).size) throw new Error(`${shard}: data ends at ${8 + n + pos}, file has ${statSync(file).size} bytes`);
  }
  return { tensors, index };
}

/** Names whose bytes, dtype or shape differ (empty when the child is exactly as expected). */
export function compareChild(expected: Map<string, TensorBytes>, actual: Map<string, TensorBytes>): string[] {
  const problems: string[] = [];
  for (const [name, e] of expected) {
    const a = actual.get(name);
    if (!a) problems.push(`${name}: missing`);
    else if (a.dtype !== e.dtype) problems.push(`${name}: dtype ${a.dtype}, expected ${e.dtype}`);
    else if (a.shape.join('x') !== e.shape.join('x')) problems.push(`${name}: shape [${a.shape}], expected [${e.shape}]`);
    else if (Buffer.compare(a.bytes, e.bytes) !== 0) {
      let i = 0;
      while (a.bytes[i] === e.bytes[i]) i++;
      problems.push(`${name}: bytes differ (first at byte ${i})`);
    }
  }
  for (const name of actual.keys()) if (!expected.has(name)) problems.push(`${name}: not expected`);
  return problems;
}
