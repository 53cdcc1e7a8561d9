// From a planned child tensor to units: which parent bytes to read, what to compute, where each
// output byte goes. Every unit is small (about a million values, or 16 MB of bytes to copy) and
// independent, so any number of runners can take them in any order.
//
// A child tensor is made
//  - whole, as a byte copy of one parent's stored tensors, where it is that parent's tensor as it is;
//  - else slab by slab: a slab that is one parent's slab as it is (an expert kept, moved or
//    transplanted between fused tensors; a router row) is a byte copy of that slab of every stored
//    tensor; any other slab is made in stripes of rows: values computed (mixed, converted, zeroed,
//    patched) and encoded in the child's codec, with copied regions moved as stored bytes over them
//    wherever the codec lets them (see movableAsBytes).
import { dataBytes, rowUnit, sameCodec, stripeScales, type Codec } from '../formats/codec.ts';
import { MoeError } from '../io.ts';
import { indicesInRows, movableAsBytes, placeIn, recordIsPerSlab, regionDims, regionRows, sameRegion } from '../model/regions.ts';
import type { TensorRecord, Weight } from '../model/types.ts';
import type { CellOp, PlannedCell, PlannedTensor, SourceCell, StoredTensor } from '../plan/types.ts';
import type { SourceIds } from './files.ts';
import type { Band, CopyUnit, DiffUnit, Piece, Place, Span, StripeUnit, Unit } from './units.ts';

/**
 * Values per stripe. A million keeps a two-parent mix near 12 MB in flight per runner (inputs, f32
 * values, output) while a kernel call still takes milliseconds, far above the cost of a message.
 */
export const CHUNK_ELEMENTS = 1024 * 1024;
/** Bytes per copy unit: large reads and writes, few messages. */
export const COPY_BLOCK = 16 * 1024 * 1024;

/** Where a child tensor's stored tensors go: their first byte in the output file `file`. */
export interface Placement {
  file: number;
  /** Absolute offset of each stored tensor (by index into `PlannedTensor.stored`). */
  offsets: number[];
}

export interface CompileOptions {
  chunkElements?: number;
  /** Cells the threshold turned into copies of the base. */
  kept?: ReadonlySet<PlannedCell>;
}

/** The op a cell runs with: a mix the threshold kept becomes a copy of the base's cell. */
export function effectiveOp(cell: PlannedCell, kept?: ReadonlySet<PlannedCell>): CellOp {
  return kept?.has(cell) && cell.thresholdBase ? { type: 'copy', from: cell.thresholdBase } : cell.op;
}

function recordOf(w: Weight, role: string): TensorRecord | undefined {
  return role === 'data' ? w.data : w.companions.find((c) => c.role === role)?.record;
}

/** A stored tensor's bytes for one slab (or the whole of it, when it is not per slab). */
function slabSpan(files: SourceIds, parent: string, w: Weight, role: string, slab: number): Span | undefined {
  const rec = recordOf(w, role);
  if (!rec) return undefined;
  const file = files.source(parent, rec.file);
  if (!recordIsPerSlab(w, role, rec.shape)) return { file, offset: rec.offset, length: rec.length };
  const per = rec.length / w.view.slabs;
  return { file, offset: rec.offset + slab * per, length: per };
}

/** Rows [a, b) of a source slab, widened to whole scale blocks of its codec. */
function bandOf(files: SourceIds, src: SourceCell, a: number, b: number): { band: Band; row0: number } {
  const w = src.weight;
  const { rows, cols } = w.view;
  const c = w.codec;
  const unit = rowUnit(c, rows);
  const block0 = Math.floor(a / unit) * unit;
  // Rows inside one scale block are read alone (a sampled diff's few rows of a 128-row FP8 block):
  // that block's one scale row decodes them. Otherwise whole blocks.
  const inOne = b > a && Math.floor((b - 1) / unit) * unit === block0;
  const a0 = inOne ? a : block0;
  const b0 = inOne ? b : Math.min(rows, Math.ceil(b / unit) * unit);
  const band: Band = {
    codec: c,
    rows: b0 - a0,
    cols,
    data: {
      file: files.source(src.parent, w.data.file),
      offset: w.data.offset + src.slab * dataBytes(c, rows, cols) + dataBytes(c, a0, cols),
      length: dataBytes(c, b0 - a0, cols),
    },
  };
  if (c.kind !== 'plain') {
    const rec = recordOf(w, 'scale');
    if (!rec) throw new MoeError(`has no scale tensor for its ${c.kind} values`, w.data.file, w.name);
    band.scales = {
      file: files.source(src.parent, rec.file),
      offset: rec.offset + src.slab * stripeScales(c, rows, cols).bytes + stripeScales(c, block0, cols).bytes,
      length: stripeScales(c, b0 - a0, cols).bytes,
    };
  }
  return { band, row0: a0 };
}

/** Bands of a unit, each read once however many pieces use it. */
class Bands {
  readonly list: Band[] = [];
  private readonly byKey = new Map<string, number>();
  constructor(private readonly files: SourceIds) {}

  /** Band and place of values o ∈ [oa, ob), i ∈ [ia, ib) of a source cell. */
  of(src: SourceCell, oa: number, ob: number, ia: number, ib: number): { band: number; src: Place; row0: number } {
    const [a, b] = regionRows(src.region, oa, ob, ia, ib);
    const { band, row0 } = bandOf(this.files, src, a, b);
    const key = `${band.data.file}:${band.data.offset}:${band.data.length}`;
    let i = this.byKey.get(key);
    if (i === undefined) {
      i = this.list.length;
      this.list.push(band);
      this.byKey.set(key, i);
    }
    return { band: i, src: placeIn(src.region, row0, src.weight.view.cols, oa, ia), row0 };
  }
}

function sourcesOf(op: CellOp): SourceCell[] {
  return op.type === 'copy' ? [op.from] : op.type === 'mix' ? op.inputs.map((x) => x.from) : [];
}

/** The rows a stripe of this slab may start at: every source read in place along the same axis, at its block boundaries. */
function stripeUnit(t: PlannedTensor, s: number, kept?: ReadonlySet<PlannedCell>): number | undefined {
  let unit = rowUnit(t.codec, t.view.rows);
  for (const cell of t.slabs[s]!) {
    for (const src of sourcesOf(effectiveOp(cell, kept))) {
      if (src.region.transposed !== cell.region.transposed) return undefined;
      // Source rows follow child rows one to one only with the same step.
      if (src.region.rowStep !== cell.region.rowStep) return undefined;
      unit = Math.max(unit, rowUnit(src.weight.codec, src.weight.view.rows));
    }
  }
  return unit >= t.view.rows ? undefined : unit;
}

/** The pieces of one slab's rows [r0, r1), placed `base` values into the stripe. */
function slabPieces(bands: Bands, t: PlannedTensor, s: number, k: number, r0: number, r1: number, base: number, kept?: ReadonlySet<PlannedCell>): Piece[] {
  const pieces: Piece[] = [];
  const { cols } = t.view;
  for (const cell of t.slabs[s]!) {
    const R = cell.region;
    const dims = regionDims(R);
    let oa = 0;
    let ob = dims.out;
    let ia = 0;
    let ib = dims.in;
    if (R.transposed) [ia, ib] = indicesInRows(R, r0, r1);
    else [oa, ob] = indicesInRows(R, r0, r1);
    const nO = ob - oa;
    const nI = ib - ia;
    if (nO <= 0 || nI <= 0) continue;
    const dst = placeIn(R, r0, cols, oa, ia);
    dst.at += base;
    const op = effectiveOp(cell, kept);
    switch (op.type) {
      case 'zero':
        pieces.push({ kind: 'fill', nO, nI, dst, value: 0 });
        break;
      case 'value':
        pieces.push({ kind: 'fill', nO, nI, dst, value: op.value });
        break;
      case 'copy': {
        const src = op.from;
        const b = bands.of(src, oa, ob, ia, ib);
        if (sameCodec(src.weight.codec, t.codec) && movableAsBytes(t.codec, R, t.view, src.region, src.weight.view)) {
          if (t.codec.kind === 'plain') pieces.push({ kind: 'move', nO, nI, dst, band: b.band, src: b.src });
          else {
            pieces.push({
              kind: 'rows', band: b.band, slab: k, rows: nO,
              srcRow: src.region.row0 + oa * src.region.rowStep - b.row0, srcStep: src.region.rowStep,
              dstRow: R.row0 + oa * R.rowStep - r0, dstStep: R.rowStep,
            });
          }
        } else pieces.push({ kind: 'convert', nO, nI, dst, band: b.band, src: b.src });
        break;
      }
      case 'mix':
        pieces.push({
          kind: 'mix', nO, nI, dst,
          inputs: op.inputs.map((x) => {
            const b = bands.of(x.from, oa, ob, ia, ib);
            return { band: b.band, src: b.src, weight: x.weight };
          }),
        });
        break;
    }
  }
  return pieces;
}

/** Is this slab one parent's slab as it is? Then its source weight and slab. */
function slabCopySource(t: PlannedTensor, s: number, kept?: ReadonlySet<PlannedCell>): SourceCell | undefined {
  const cells = t.slabs[s]!;
  const first = effectiveOp(cells[0]!, kept);
  if (first.type !== 'copy') return undefined;
  const w = first.from.weight;
  if (!sameCodec(w.codec, t.codec) || w.view.rows !== t.view.rows || w.view.cols !== t.view.cols) return undefined;
  const partsOfSource = w.experts?.kind === 'slabs' ? w.experts.parts.length : 1;
  if (cells.length !== partsOfSource) return undefined;
  for (const c of cells) {
    const op = effectiveOp(c, kept);
    if (op.type !== 'copy' || op.from.weight !== w || op.from.slab !== first.from.slab || !sameRegion(op.from.region, c.region)) return undefined;
  }
  return first.from;
}

/** Where a stored companion of slab `s` is copied from: the slab's own source if it has one, else the base's. */
function companionSpan(files: SourceIds, t: PlannedTensor, st: StoredTensor, s: number, kept?: ReadonlySet<PlannedCell>): Span {
  const same = slabCopySource(t, s, kept) ?? (() => {
    const ops = t.slabs[s]!.map((c) => effectiveOp(c, kept));
    const f = ops[0]!.type === 'copy' ? ops[0]!.from : undefined;
    return f && ops.every((o) => o.type === 'copy' && o.from.weight === f.weight && o.from.slab === f.slab) ? f : undefined;
  })();
  if (same) {
    const sp = slabSpan(files, same.parent, same.weight, st.role, same.slab);
    if (sp && sp.length === st.bytes / (st.perSlab ? t.view.slabs : 1)) return sp;
  }
  const tw = t.template.weight;
  const slot = t.slots?.[s];
  const slab = tw.view.slabs > 1 ? (slot?.baseExpert ?? 0) : 0;
  const sp = slabSpan(files, t.template.parent, tw, st.role, slab);
  if (!sp) throw new MoeError(`needs its ${st.role.replace('_', ' ')} companion, which no source of slab ${s} has`, undefined, t.name);
  return sp;
}

/** Copy parts cut to COPY_BLOCK and packed into units of about that size. */
class CopyPacker {
  readonly units: Unit[] = [];
  private parts: CopyUnit['parts'] = [];
  private bytes = 0;
  constructor(private readonly tensor: string) {}
  add(from: Span, to: Span): void {
    for (let o = 0; o < from.length; o += COPY_BLOCK) {
      const len = Math.min(COPY_BLOCK, from.length - o);
      if (this.bytes + len > COPY_BLOCK) this.flush();
      this.parts.push({ from: { file: from.file, offset: from.offset + o, length: len }, to: { file: to.file, offset: to.offset + o, length: len } });
      this.bytes += len;
    }
  }
  flush(): void {
    if (this.parts.length === 0) return;
    this.units.push({ kind: 'copy', tensor: this.tensor, parts: this.parts });
    this.parts = [];
    this.bytes = 0;
  }
}

/** Every unit that makes a child tensor's bytes. */
export function compileTensor(files: SourceIds, t: PlannedTensor, place: Placement, opts: CompileOptions = {}): Unit[] {
  const chunk = opts.chunkElements ?? CHUNK_ELEMENTS;
  const kept = opts.kept;
  const out = place.file;
  const copies = new CopyPacker(t.name);
  const units: Unit[] = [];
  const to = (k: number, offset: number, length: number): Span => ({ file: out, offset: place.offsets[k]! + offset, length });

  if (t.wholeCopy) {
    const w = t.template.weight;
    t.stored.forEach((st, k) => {
      const rec = recordOf(w, st.role);
      if (!rec) throw new Error(`internal: ${st.name} has no ${st.role} tensor in its source`);
      if (rec.length !== st.bytes) throw new Error(`internal: ${st.name} planned ${st.bytes} bytes, its source has ${rec.length}`);
      copies.add({ file: files.source(t.template.parent, rec.file), offset: rec.offset, length: rec.length }, to(k, 0, st.bytes));
    });
    copies.flush();
    return copies.units;
  }

  const { slabs, rows, cols } = t.view;
  const c: Codec = t.codec;
  const slabData = dataBytes(c, rows, cols);
  const slabScales = stripeScales(c, rows, cols).bytes;
  const dataK = t.stored.findIndex((s) => s.role === 'data');
  const scaleK = c.kind === 'plain' ? -1 : t.stored.findIndex((s) => s.role === 'scale');
  if (c.kind !== 'plain' && scaleK < 0) throw new Error(`internal: ${t.name} is ${c.kind} without a scale tensor`);
  const others = t.stored.map((st, k) => ({ st, k })).filter(({ k }) => k !== dataK && k !== scaleK);

  // Companions that belong to the whole weight come from the template.
  for (const { st, k } of others) {
    if (st.perSlab) continue;
    copies.add(companionSpan(files, t, st, 0, kept), to(k, 0, st.bytes));
  }

  const stripeAt = (slab0: number, count: number, r0: number, r1: number): StripeUnit => {
    const bands = new Bands(files);
    const pieces: Piece[] = [];
    const n = r1 - r0;
    for (let k = 0; k < count; k++) pieces.push(...slabPieces(bands, t, slab0 + k, k, r0, r1, k * n * cols, kept));
    const u: StripeUnit = {
      kind: 'stripe', tensor: t.name, out: c, slabs: count, rows: n, cols,
      data: to(dataK, slab0 * slabData + dataBytes(c, r0, cols), count * dataBytes(c, n, cols)),
      bands: bands.list,
      pieces,
    };
    if (scaleK >= 0) u.scales = to(scaleK, slab0 * slabScales + stripeScales(c, r0, cols).bytes, count * stripeScales(c, n, cols).bytes);
    return u;
  };

  // Slabs made whole as one stripe are grouped while small, so a router's rows are one unit.
  let group: number[] = [];
  const flushGroup = () => {
    if (group.length > 0) units.push(stripeAt(group[0]!, group.length, 0, rows));
    group = [];
  };
  for (let s = 0; s < slabs; s++) {
    const src = slabCopySource(t, s, kept);
    if (src) {
      flushGroup();
      copies.add(slabSpan(files, src.parent, src.weight, 'data', src.slab)!, to(dataK, s * slabData, slabData));
      if (scaleK >= 0) copies.add(slabSpan(files, src.parent, src.weight, 'scale', src.slab)!, to(scaleK, s * slabScales, slabScales));
      for (const { st, k } of others) if (st.perSlab) copies.add(companionSpan(files, t, st, s, kept), to(k, s * (st.bytes / slabs), st.bytes / slabs));
      continue;
    }
    for (const { st, k } of others) if (st.perSlab) copies.add(companionSpan(files, t, st, s, kept), to(k, s * (st.bytes / slabs), st.bytes / slabs));
    const unit = stripeUnit(t, s, kept);
    const slabValues = rows * cols;
    if (unit === undefined || slabValues <= chunk) {
      if (group.length > 0 && (group[group.length - 1] !== s - 1 || (group.length + 1) * slabValues > chunk)) flushGroup();
      group.push(s);
      if (slabValues > chunk) flushGroup();
      continue;
    }
    flushGroup();
    const per = Math.max(unit, Math.floor(chunk / Math.max(1, cols) / unit) * unit);
    for (let r0 = 0; r0 < rows; r0 += per) units.push(stripeAt(s, 1, r0, Math.min(rows, r0 + per)));
  }
  flushGroup();
  copies.flush();
  // Copies first: they are the largest and simplest units, and keep the disk busy from the start.
  return [...copies.units, ...units];
}

/**
 * Units measuring how region `b` differs from region `a` (same dims), in chunks along the rows so
 * memory stays bounded whatever the tensor's size. Their statistics add up in order.
 */
export function cellDiffUnits(files: SourceIds, a: SourceCell, b: SourceCell, tensor: string, chunk = CHUNK_ELEMENTS): DiffUnit[] {
  const dims = regionDims(a.region);
  const along = a.region.transposed ? dims.in : dims.out;
  const other = a.region.transposed ? dims.out : dims.in;
  const sameAxis = a.region.transposed === b.region.transposed && a.region.rowStep === b.region.rowStep;
  // Chunks of whole scale blocks (128 rows), so neither side reads a block twice.
  const per = sameAxis ? Math.max(128, Math.floor(chunk / Math.max(1, other) / 128) * 128) : along;
  const units: DiffUnit[] = [];
  for (let x0 = 0; x0 < along; x0 += per) {
    const x1 = Math.min(along, x0 + per);
    const [oa, ob, ia, ib] = a.region.transposed ? [0, dims.out, x0, x1] : [x0, x1, 0, dims.in];
    const bands = new Bands(files);
    const pa = bands.of(a, oa, ob, ia, ib);
    const pb = bands.of(b, oa, ob, ia, ib);
    units.push({ kind: 'diff', tensor, bands: bands.list, nO: ob - oa, nI: ib - ia, a: { band: pa.band, src: pa.src }, b: { band: pb.band, src: pb.src } });
  }
  return units;
}
