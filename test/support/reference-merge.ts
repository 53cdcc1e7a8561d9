// An independent, whole-slab, scalar re-statement of the merge spec, used to check every byte a
// merge writes. It shares with the engine only the model opening (weights, codecs, views and the
// expert regions openModel finds, tested on their own); rule matching, expert slots (remove,
// transplant, add), output formats, the threshold, edits, naming and all arithmetic are its own.
//
// The spec, as restated here:
//  - The child follows the base weight by weight. Each weight is cut into cells: a whole tensor,
//    one expert's projection (a per-expert tensor, or a region of a fused tensor's slab), or one
//    router row / bias entry. Expert indices are in the parents' numbering.
//  - A cell is decided by the first rule matching its (name, kind, layer, expert, projection), else
//    copied from the base; a parent's cell is found by (layer, expert, projection) or by name.
//  - `experts:` then gives every MoE layer its child slots: the base's experts minus the removed
//    ones, transplanted slots taking another expert's cells (router row from the rules, or with
//    `router: source` the source's), added ones appended (router row from the source).
//  - mute zeroes a down projection (and its bias); off / on set a router-bias entry to ∓1e4.
//  - The threshold copies a mixed cell from the base when every other mixed parent is within
//    `below` rms of it.
//  - Values are made in f32 (acc = +0, acc = f32(acc + f32(f32(w)·x))) and each child slab is
//    encoded in the child's format; copied cells keep their stored bytes where the format is the
//    source's and their scale blocks are their own.
//  - A child tensor that is one parent's tensor as it is (every cell copied from the same slab of
//    the same weight, laid out alike) is that tensor's stored bytes.
import { openSync, readSync, closeSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Codec } from '../../app/engine/formats/codec.ts';
import { openModel } from '../../app/engine/model/open-model.ts';
import type { Model, Region, TensorRecord, TensorRole, Weight } from '../../app/engine/model/types.ts';
import { openNodeModelFolder, type NodeModelFolder } from '../../app/cli/node-io.ts';
import { decodeValues, diffValuesRef, encodeRef } from '../reference/scalar.ts';

export interface TensorBytes {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

const SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, I32: 4, I64: 8, U8: 1 };
const OUT: Record<string, string> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };
const FLOAT = new Set(['F32', 'F16', 'BF16']);
const OFF = -1e4;
const ON = 1e4;

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

interface Parent {
  name: string;
  dir: string;
  model: Model;
}

/** A region of one slab of a parent's weight. */
interface Src {
  p: Parent;
  w: Weight;
  slab: number;
  region: Region;
}

type Op = { type: 'copy'; src: Src } | { type: 'mix'; inputs: { src: Src; weight: number }[]; base?: Src } | { type: 'zero' } | { type: 'value'; value: number };

interface Cell {
  region: Region;
  op: Op;
}

interface Slot {
  baseExpert?: number;
  how: 'kept' | 'transplanted' | 'added';
  source?: { parent: string; layer: number; expert: number };
  routerFromSource: boolean;
}

// ---------------------------------------------------------------------------------------------
// Recipe reading, on its own.

function indexSet(v: unknown, all: number[]): number[] {
  if (v === undefined) return all;
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v as number[];
  const t = String(v).trim();
  if (t === 'all') return all;
  const out: number[] = [];
  for (const part of t.split(',')) {
    const [a, b] = part.split('-').map((x) => Number(x.trim()));
    for (let i = a!; i <= (b ?? a)!; i++) out.push(i);
  }
  return out;
}

function inSet(v: unknown, i: number | undefined): boolean {
  if (v === undefined) return true;
  if (i === undefined) return false;
  return indexSet(v, []).includes(i);
}

function oneOf(v: unknown, x: string | undefined): boolean {
  if (v === undefined) return true;
  if (x === undefined) return false;
  return Array.isArray(v) ? v.includes(x) : v === x;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyRecipe = any;

function ruleFor(recipe: AnyRecipe, name: string, role: TensorRole): { from?: string; weights?: Record<string, number> } | undefined {
  return (recipe.rules ?? []).find((r: { select: Record<string, unknown> }) => {
    const s = r.select;
    return (
      oneOf(s.kind, role.kind) && oneOf(s.proj, role.proj) && inSet(s.layers, role.layer) && inSet(s.experts, role.expert) &&
      (s.name === undefined || new RegExp(String(s.name)).test(name))
    );
  });
}

/** The child's slots of every layer with experts. */
function slotsOf(recipe: AnyRecipe, base: Model): Map<number, Slot[]> {
  const layers = [...base.experts.keys()].sort((a, b) => a - b);
  const E = base.layout.experts;
  const all = Array.from({ length: E }, (_, i) => i);
  const out = new Map<number, Slot[]>();
  const ex = recipe.experts ?? {};
  for (const l of layers) {
    const slots: Slot[] = all.map((e) => ({ baseExpert: e, how: 'kept', routerFromSource: false }));
    const removed = new Set<number>();
    for (const r of ex.remove ?? []) if (indexSet(r.layers ?? r.layer, layers).includes(l)) for (const e of indexSet(r.experts ?? r.expert, all)) removed.add(e);
    for (const t of ex.transplant ?? []) {
      if (!indexSet(t.layers ?? t.layer, layers).includes(l)) continue;
      for (const e of indexSet(t.experts ?? t.expert, all)) {
        slots[e] = { baseExpert: e, how: 'transplanted', source: { parent: t.from.parent, layer: t.from.layer ?? l, expert: t.from.expert ?? e }, routerFromSource: t.router === 'source' };
      }
    }
    const kept = slots.filter((s) => !removed.has(s.baseExpert!));
    for (const a of ex.add ?? []) {
      if (indexSet(a.layers ?? a.layer, layers).includes(l)) kept.push({ how: 'added', source: { parent: a.from.parent, layer: a.from.layer ?? l, expert: a.from.expert }, routerFromSource: true });
    }
    out.set(l, kept);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Values and bytes of parents.

function recordOf(w: Weight, role: string): TensorRecord | undefined {
  return role === 'data' ? w.data : w.companions.find((c) => c.role === role)?.record;
}

/** Does this stored tensor hold one share per slab? Data and scales do; another companion when its first dimension counts the slabs. */
function perSlab(w: Weight, role: string, rec: TensorRecord): boolean {
  if (role === 'data' || role === 'scale') return true;
  return w.view.slabs > 1 && rec.shape[0] === w.view.slabs;
}

function slabBytes(p: Parent, w: Weight, role: string, slab: number): Buffer {
  const rec = recordOf(w, role)!;
  const all = readRecord(p.dir, rec);
  if (!perSlab(w, role, rec)) return all;
  const per = all.length / w.view.slabs;
  return all.subarray(slab * per, (slab + 1) * per);
}

function u8(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function slabValues(src: Src): Float64Array {
  const { rows, cols } = src.w.view;
  const stripe = { codec: src.w.codec, rows, cols, data: u8(slabBytes(src.p, src.w, 'data', src.slab)) } as Parameters<typeof decodeValues>[0];
  if (src.w.codec.kind !== 'plain') stripe.scales = u8(slabBytes(src.p, src.w, 'scale', src.slab));
  return decodeValues(stripe);
}

/** Slab element index of value (o, i) of a region (cols: the slab's columns). */
function at(r: Region, cols: number, o: number, i: number): number {
  return r.transposed ? (r.row0 + i * r.rowStep) * cols + r.col0 + o * r.colStep : (r.row0 + o * r.rowStep) * cols + r.col0 + i * r.colStep;
}

function dims(r: Region): [number, number] {
  return r.transposed ? [r.colCount, r.rowCount] : [r.rowCount, r.colCount];
}

function cellValues(src: Src): Float64Array {
  const v = slabValues(src);
  const [no, ni] = dims(src.region);
  const out = new Float64Array(no * ni);
  for (let o = 0; o < no; o++) for (let i = 0; i < ni; i++) out[o * ni + i] = v[at(src.region, src.w.view.cols, o, i)]!;
  return out;
}

/** Every value of a weight, all its slabs as one matrix. */
function wholeValues(p: Parent, w: Weight): Float64Array {
  const stripe = { codec: w.codec, rows: w.view.slabs * w.view.rows, cols: w.view.cols, data: u8(readRecord(p.dir, w.data)) } as Parameters<typeof decodeValues>[0];
  if (w.codec.kind !== 'plain') stripe.scales = u8(readRecord(p.dir, recordOf(w, 'scale')!));
  return decodeValues(stripe);
}

function sameCodec(a: Codec, b: Codec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

// ---------------------------------------------------------------------------------------------
// The child.

/** The child a recipe file must produce, tensor by tensor (companions included). */
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

function computeChild(recipe: AnyRecipe, order: string[], parents: Map<string, Parent>): Map<string, TensorBytes> {
  const baseName: string = recipe.base ?? order[0];
  const base = parents.get(baseName)!;
  const outName: string = recipe.output?.dtype ?? 'keep';
  const edits: { layer: number; expert: number; action: string }[] = recipe.edits ?? [];
  const slots = slotsOf(recipe, base.model);
  const out = new Map<string, TensorBytes>();

  const expertCell = (p: Parent, layer: number, expert: number, proj: string, bias: boolean): Src => {
    const part = p.model.experts.get(layer)!.parts[expert]!.find((q) => q.proj === proj && q.bias === bias)!;
    return { p, w: part.weight, slab: part.slab, region: part.region };
  };
  const routerCell = (p: Parent, w: Weight, layer: number, slab: number): Src => {
    let rw = p.model.byName.get(w.name);
    if (!rw || rw.role.layer !== layer) rw = p.model.experts.get(layer)!.routers.find((r) => r.role.kind === w.role.kind)!;
    return { p, w: rw, slab, region: rw.experts!.kind === 'slabs' ? rw.experts!.parts[0]!.region : whole(rw) };
  };
  const whole = (w: Weight): Region => ({ row0: 0, rowCount: w.view.rows, rowStep: 1, col0: 0, colCount: w.view.cols, colStep: 1, transposed: false });
  const ruleOp = (name: string, role: TensorRole, find: (p: Parent) => Src): Op => {
    const rule = ruleFor(recipe, name, role);
    let weights: [string, number][] = rule ? (rule.from !== undefined ? [[rule.from, 1]] : Object.entries(rule.weights!)) : [[baseName, 1]];
    weights = order.filter((p) => weights.some(([q, x]) => q === p && x !== 0)).map((p) => [p, weights.find(([q]) => q === p)![1]]);
    if (weights.length === 1) return { type: 'copy', src: find(parents.get(weights[0]![0])!) };
    const op: Op = { type: 'mix', inputs: weights.map(([p, x]) => ({ src: find(parents.get(p)!), weight: x })) };
    if (recipe.threshold) op.base = find(base);
    return op;
  };
  const muted = (layer: number, e: number | undefined) => e !== undefined && edits.some((x) => x.action === 'mute' && x.layer === layer && x.expert === e);
  const biasEdit = (layer: number, e: number | undefined) => edits.find((x) => (x.action === 'off' || x.action === 'on') && x.layer === layer && x.expert === e);

  for (const w of base.model.weights) {
    const r = w.role;
    const L = r.layer;
    const ls = L !== undefined ? slots.get(L) : undefined;
    // Per-expert tensors.
    if (w.experts?.kind === 'single' && w.experts.proj && ls && L !== undefined) {
      const e = w.experts.expert;
      const proj = w.experts.proj;
      const region = base.model.experts.get(L)!.parts[e]!.find((q) => q.weight === w)!.region;
      ls.forEach((slot, j) => {
        if ((slot.baseExpert ?? 0) !== e) return;
        let op: Op;
        if (slot.how !== 'kept') {
          const s = slot.source!;
          op = { type: 'copy', src: expertCell(parents.get(s.parent)!, s.layer, s.expert, proj, !!r.bias) };
        } else op = ruleOp(w.name, r, (p) => expertCell(p, L, e, proj, !!r.bias));
        if (proj === 'down' && muted(L, slot.baseExpert)) op = { type: 'zero' };
        const name = w.name.replace(/\.experts\.\d+\./, `.experts.${j}.`);
        emit(w, name, [[{ region, op }]], (n) => n.replace(/\.experts\.\d+\./, `.experts.${j}.`), 1);
      });
      continue;
    }
    // Fused expert tensors.
    if (w.experts?.kind === 'slabs' && r.kind === 'routed_expert' && ls && L !== undefined) {
      const parts = w.experts.parts;
      const bias = !!w.fused?.bias;
      const slabs = ls.map((slot) =>
        parts.map((part): Cell => {
          let op: Op;
          if (slot.how !== 'kept') {
            const s = slot.source!;
            op = { type: 'copy', src: expertCell(parents.get(s.parent)!, s.layer, s.expert, part.proj!, bias) };
          } else {
            const role: TensorRole = { kind: 'routed_expert', layer: L, expert: slot.baseExpert!, proj: part.proj! };
            op = ruleOp(w.name, role, (p) => expertCell(p, L, slot.baseExpert!, part.proj!, bias));
          }
          if (part.proj === 'down' && muted(L, slot.baseExpert)) op = { type: 'zero' };
          return { region: part.region, op };
        }),
      );
      emit(w, w.name, slabs, (n) => n, ls.length);
      continue;
    }
    // Router rows and bias entries.
    if (w.experts?.kind === 'slabs' && ls && L !== undefined) {
      const region = w.experts.parts[0]!.region;
      const slabs = ls.map((slot): Cell[] => {
        let op: Op;
        if (slot.routerFromSource) {
          const s = slot.source!;
          op = { type: 'copy', src: routerCell(parents.get(s.parent)!, w, s.layer, s.expert) };
        } else op = ruleOp(w.name, r, (p) => routerCell(p, w, L, slot.baseExpert!));
        const edit = r.kind === 'router_bias' ? biasEdit(L, slot.baseExpert) : undefined;
        if (edit) op = { type: 'value', value: edit.action === 'off' ? OFF : ON };
        return [{ region, op }];
      });
      emit(w, w.name, slabs, (n) => n, ls.length);
      continue;
    }
    emit(w, w.name, [[{ region: whole(w), op: ruleOp(w.name, r, (p) => ({ p, w: p.model.byName.get(w.name)!, slab: 0, region: whole(p.model.byName.get(w.name)!) })) }]], (n) => n, 1);
  }
  return out;

  /** The child codec of a base weight: keep → its own; a float dtype → every decodable float but the router bias. */
  function targetCodec(w: Weight): Codec {
    if (outName === 'keep') return w.codec;
    if (w.codec.kind === 'plain' && (!FLOAT.has(w.codec.dtype) || w.role.kind === 'router_bias')) return w.codec;
    return { kind: 'plain', dtype: OUT[outName]! };
  }

  function emit(w: Weight, name: string, slabs: Cell[][], rename: (n: string) => string, slabCount: number): void {
    // Threshold: per expert region; a router's rows are decided together, as one tensor.
    if (w.experts?.kind === 'slabs' && w.role.kind !== 'routed_expert') {
      const mixes = slabs.flat().filter((c) => c.op.type === 'mix' && c.op.base);
      if (mixes.length > 0) {
        const others = new Set<Parent>();
        for (const c of mixes) for (const x of (c.op as { inputs: { src: Src }[] }).inputs) if (x.src.p.name !== baseName) others.add(x.src.p);
        let worst = 0;
        for (const p of others) {
          const s = diffValuesRef(wholeValues(base, w), wholeValues(p, p.model.byName.get(w.name)!));
          worst = Math.max(worst, s.nonFinite > 0 ? Infinity : Math.sqrt(s.sumSqDiff / (s.count - s.nonFinite)));
        }
        if (worst < recipe.threshold.below) for (const c of mixes) c.op = { type: 'copy', src: (c.op as { base: Src }).base };
      }
    }
    for (const cells of slabs) {
      for (const c of cells) {
        if (c.op.type !== 'mix' || !c.op.base) continue;
        let worst = 0;
        const bv = cellValues(c.op.base);
        for (const x of c.op.inputs) {
          if (x.src.p.name === baseName) continue;
          const ov = cellValues(x.src);
          const s = diffValuesRef(bv, ov);
          worst = Math.max(worst, s.nonFinite > 0 ? Infinity : Math.sqrt(s.sumSqDiff / (s.count - s.nonFinite)));
        }
        if (worst < recipe.threshold.below) c.op = { type: 'copy', src: c.op.base };
      }
    }
    let codec = targetCodec(w);
    // gpt-oss stores its MXFP4 experts [E, out, in] and BF16 ones transposed [E, in, out].
    let view = { ...w.view, slabs: slabCount };
    let transposeLayout = false;
    if (codec.kind !== w.codec.kind && base.model.arch.name === 'gpt_oss' && w.fused && !w.fused.bias) {
      transposeLayout = true;
      view = { slabs: slabCount, rows: w.view.cols, cols: w.view.rows };
      for (const cells of slabs) for (const c of cells) c.region = transposed(c.region);
    }
    // A whole copy?
    const first = slabs[0]![0]!.op;
    if (first.type === 'copy') {
      const src = first.src;
      const alike = src.w.view.slabs === slabs.length && src.w.view.rows === view.rows && src.w.view.cols === view.cols &&
        slabs.every((cells, s) => cells.every((c) => c.op.type === 'copy' && c.op.src.w === src.w && c.op.src.slab === s && JSON.stringify(c.op.src.region) === JSON.stringify(c.region)));
      const roles = (x: Weight) => ['data', ...x.companions.map((c) => c.role)].sort().join(',');
      if (alike && sameCodec(src.w.codec, codec) && roles(src.w) === roles(w)) {
        for (const [role, rec] of records(w)) out.set(rename(rec.name), { dtype: rec.dtype, shape: rec.shape, bytes: readRecord(src.p.dir, recordOf(src.w, role)!) });
        return;
      }
      if (alike && outName === 'keep' && rename(src.w.name) === name) {
        for (const [, rec] of records(src.w)) out.set(rename(rec.name), { dtype: rec.dtype, shape: rec.shape, bytes: readRecord(src.p.dir, rec) });
        return;
      }
    }
    // Slab by slab: values, encoded, with copied cells' stored bytes over them where they can be.
    const { rows, cols } = view;
    const dataParts: Buffer[] = [];
    const scaleParts: Buffer[] = [];
    slabs.forEach((cells, s) => {
      const values = new Float64Array(rows * cols);
      for (const c of cells) {
        const [no, ni] = dims(c.region);
        let v: Float64Array;
        if (c.op.type === 'copy') v = cellValues(c.op.src);
        else if (c.op.type === 'zero') v = new Float64Array(no * ni);
        else if (c.op.type === 'value') v = new Float64Array(no * ni).fill((c.op as { value: number }).value);
        else {
          v = new Float64Array(no * ni);
          for (const x of c.op.inputs) {
            const xv = cellValues(x.src);
            const wf = Math.fround(x.weight);
            for (let k = 0; k < v.length; k++) v[k] = Math.fround(v[k]! + Math.fround(wf * xv[k]!));
          }
        }
        for (let o = 0; o < no; o++) for (let i = 0; i < ni; i++) values[at(c.region, cols, o, i)] = v[o * ni + i]!;
      }
      const enc = encodeRef(values, rows, cols, codec);
      if (enc.bad > 0) throw new Error(`reference: ${enc.bad} values of ${name} do not fit ${codec.kind}`);
      const data = Buffer.from(enc.data);
      const scales = enc.scales ? Buffer.from(enc.scales) : undefined;
      for (const c of cells) if (c.op.type === 'copy') overlay(c, data, scales, codec, view);
      dataParts.push(data);
      if (scales) scaleParts.push(scales);
    });
    const childShape = (shape: number[], role: string, rec: TensorRecord) => {
      const sh = [...shape];
      if (perSlab(w, role, rec) && w.view.slabs > 1 && slabCount !== w.view.slabs) {
        if (w.fused) sh[0] = (sh[0]! / w.view.slabs) * slabCount;
        else sh[sh.findIndex((d) => d !== 1)] = slabCount;
      }
      return sh;
    };
    if (sameCodec(codec, w.codec)) {
      for (const [role, rec] of records(w)) {
        const shape = childShape(rec.shape, role, rec);
        let bytes: Buffer;
        if (role === 'data') bytes = Buffer.concat(dataParts);
        else if (role === 'scale' && codec.kind !== 'plain') bytes = Buffer.concat(scaleParts);
        else if (!perSlab(w, role, rec)) bytes = readRecord(base.dir, rec);
        else {
          bytes = Buffer.concat(slabs.map((cells, s) => {
            const ops = cells.map((c) => c.op);
            const one = ops.every((o) => o.type === 'copy' && o.src.w === (ops[0] as { src: Src }).src.w && o.src.slab === (ops[0] as { src: Src }).src.slab) ? (ops[0] as { src: Src }).src : undefined;
            if (one && recordOf(one.w, role)) return slabBytes(one.p, one.w, role, one.slab);
            return slabBytes(base, w, role, ls0(s));
          }));
        }
        out.set(rename(rec.name), { dtype: rec.dtype, shape, bytes });
      }
    } else {
      let shape = childShape(w.shape, 'data', w.data);
      if (transposeLayout) shape = [...shape.slice(0, -2), shape[shape.length - 1]!, shape[shape.length - 2]!];
      out.set(name, { dtype: (codec as { dtype: string }).dtype, shape, bytes: Buffer.concat(dataParts) });
    }

    function ls0(s: number): number {
      const l = w.role.layer !== undefined ? slots.get(w.role.layer) : undefined;
      return w.view.slabs > 1 ? (l?.[s]?.baseExpert ?? 0) : 0;
    }
  }

  /** A copied cell's stored bytes over the encoded slab, where the child's format is the source's and its blocks are its own. */
  function overlay(c: Cell, data: Buffer, scales: Buffer | undefined, codec: Codec, view: { rows: number; cols: number }): void {
    if (c.op.type !== 'copy') return;
    const src = c.op.src;
    if (!sameCodec(src.w.codec, codec)) return;
    const sd = slabBytes(src.p, src.w, 'data', src.slab);
    const [no, ni] = dims(c.region);
    if (codec.kind === 'plain') {
      const es = SIZE[codec.dtype]!;
      for (let o = 0; o < no; o++) {
        for (let i = 0; i < ni; i++) {
          const d = at(c.region, view.cols, o, i) * es;
          const s0 = at(src.region, src.w.view.cols, o, i) * es;
          sd.copy(data, d, s0, s0 + es);
        }
      }
      return;
    }
    // Quantized: whole rows (not transposed, every column), with their scales.
    const R = c.region;
    const S = src.region;
    if (R.transposed || S.transposed || R.col0 !== 0 || S.col0 !== 0 || R.colCount !== view.cols || S.colCount !== src.w.view.cols || view.cols !== src.w.view.cols) return;
    const blockRows = codec.kind === 'fp8' ? (codec.blockRows === 0x7fffffff ? view.rows : codec.blockRows) : 1;
    if (blockRows > 1) {
      const srcBlock = codec.kind === 'fp8' && codec.blockRows === 0x7fffffff ? src.w.view.rows : blockRows;
      if (srcBlock !== blockRows || R.rowStep !== 1 || S.rowStep !== 1 || R.row0 % blockRows !== 0 || S.row0 % blockRows !== 0) return;
      if (R.rowCount % blockRows !== 0 && !(R.row0 + R.rowCount === view.rows && S.row0 + R.rowCount === src.w.view.rows)) return;
    }
    const rowData = data.length / view.rows;
    const ss = slabBytes(src.p, src.w, 'scale', src.slab);
    const perBlockRow = scales ? scales.length / Math.ceil(view.rows / blockRows) : 0;
    for (let o = 0; o < no; o++) {
      const dr = R.row0 + o * R.rowStep;
      const sr = S.row0 + o * S.rowStep;
      sd.copy(data, dr * rowData, sr * rowData, (sr + 1) * rowData);
      if (scales && (blockRows === 1 || dr % blockRows === 0)) {
        const db = Math.floor(dr / blockRows);
        const sb = Math.floor(sr / blockRows);
        ss.copy(scales, db * perBlockRow, sb * perBlockRow, (sb + 1) * perBlockRow);
      }
    }
  }
}

function records(w: Weight): [string, TensorRecord][] {
  return [['data', w.data], ...w.companions.map((c) => [c.role, c.record] as [string, TensorRecord])];
}

function transposed(r: Region): Region {
  return { row0: r.col0, rowCount: r.colCount, rowStep: r.colStep, col0: r.row0, colCount: r.rowCount, colStep: r.rowStep, transposed: !r.transposed };
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
