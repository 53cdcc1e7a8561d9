// Per-tensor differences between two parents: for `moe-studio diff`, the studio's heatmaps and the
// threshold preview. `exact` reads every byte; `sampled` reads a spread of row blocks of every
// tensor, fetched with coalesced reads, and says how much it read and how far off it may be.
import { DTYPE_SIZE, FP8_BLOCK, elementCount, isFloatDtype, sameShape, type FloatDtype } from '../formats/dtype.ts';
import { MoeError } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { addStats, emptyStats, type Chunk, type DiffStats } from '../kernels/types.ts';
import type { Model, TensorRole, Weight } from '../model/types.ts';
import { figuresOf, type DiffFigures } from '../report/metrics.ts';
import { diffTensor } from './tensor-read.ts';
import { DEFAULT_COALESCE, readRanges, type Range } from './ranges.ts';
import { matrixShape } from './tensor-view.ts';

export type DiffMode = 'exact' | 'sampled';

export interface TensorDiff extends DiffFigures {
  name: string;
  role: TensorRole;
  stats: DiffStats;
  /** True when the figures are an estimate from sampled rows. */
  sampled: boolean;
  /** Share of the tensor's elements that were read (1 for exact). */
  fraction: number;
  /**
   * Sampled only: estimated relative standard error of rmsDiff, from the spread between the sample
   * blocks (0 for exact figures).
   */
  relError: number;
}

export interface SkippedTensor {
  name: string;
  reason: string;
}

export interface DiffOptions {
  mode: DiffMode;
  signal?: AbortSignal;
  /** Only these weights (by the base's weight); default all. */
  select?: (w: Weight) => boolean;
  /** Called in the base's file order as figures become known. */
  onTensor?: (d: TensorDiff) => void;
  onProgress?: (done: number, total: number) => void;
  /** Sampled mode: row blocks per tensor and bytes per block (per parent). */
  sampleBlocks?: number;
  sampleBytes?: number;
}

export interface DiffResult {
  tensors: TensorDiff[];
  skipped: SkippedTensor[];
}

/** Row blocks per tensor in sampled mode, spread evenly over its rows. */
export const SAMPLE_BLOCKS = 4;
/** Bytes of each sample block, per parent (rounded to whole rows, at most one 128-row stripe). */
export const SAMPLE_BYTES = 16 * 1024;
/** Sampled mode reads this many tensors' samples in one batch of coalesced reads. */
const SAMPLE_BATCH = 2048;
/** Sample bytes per kernel call (both parents): few messages, yet every worker gets a share of a batch. */
const CALL_BYTES = 1024 * 1024;

export async function diffModels(a: Model, b: Model, pool: KernelPool, opts: DiffOptions): Promise<DiffResult> {
  const skipped: SkippedTensor[] = [];
  const pairs: { wa: Weight; wb: Weight }[] = [];
  for (const wa of a.weights) {
    if (opts.select && !opts.select(wa)) continue;
    const wb = b.byName.get(wa.name);
    const why = !wb
      ? `not in ${b.name}`
      : !sameShape(wa.data.shape, wb.data.shape)
        ? `shape [${wa.data.shape}] vs [${wb.data.shape}]`
        : !isFloatDtype(wa.data.dtype) || !isFloatDtype(wb.data.dtype)
          ? `dtype ${wa.data.dtype}/${wb.data.dtype} is not a float dtype`
          : (wa.data.dtype === 'F8_E4M3' && !wa.scale) || (wb.data.dtype === 'F8_E4M3' && !wb.scale)
            ? 'F8_E4M3 weight without a scale'
            : undefined;
    if (why) skipped.push({ name: wa.name, reason: why });
    else pairs.push({ wa, wb: wb! });
  }
  const tensors: TensorDiff[] = [];
  const emit = (d: TensorDiff) => {
    tensors.push(d);
    opts.onTensor?.(d);
    opts.onProgress?.(tensors.length, pairs.length);
  };
  if (opts.mode === 'exact') {
    for (const { wa, wb } of pairs) {
      if (opts.signal?.aborted) throw new MoeError('diff cancelled');
      const stats = await diffTensor(a, wa, b, wb, pool);
      emit({ name: wa.name, role: wa.role, stats, ...figuresOf(stats), sampled: false, fraction: 1, relError: 0 });
    }
  } else {
    for (let i = 0; i < pairs.length; i += SAMPLE_BATCH) {
      if (opts.signal?.aborted) throw new MoeError('diff cancelled');
      const batch = pairs.slice(i, i + SAMPLE_BATCH);
      for (const d of await sampleBatch(a, b, batch, pool, opts)) emit(d);
    }
  }
  return { tensors, skipped };
}

interface SampleBlock {
  row0: number;
  rows: number;
}

/** Row blocks to read from a tensor: evenly spread, each inside one 128-row stripe so one scale row covers it. */
export function sampleBlocks(shape: number[], elemBytes: number, blocks = SAMPLE_BLOCKS, bytes = SAMPLE_BYTES): SampleBlock[] {
  const { rows, cols } = matrixShape(shape);
  const rowsPer = Math.max(1, Math.min(FP8_BLOCK, Math.floor(bytes / Math.max(1, cols * elemBytes))));
  // A tensor no larger than the sample would be is read whole.
  if (rows <= rowsPer * blocks) return [{ row0: 0, rows }];
  const out: SampleBlock[] = [];
  for (let k = 0; k < blocks; k++) {
    const centre = Math.floor(((k + 0.5) * rows) / blocks);
    const stripe = Math.floor(centre / FP8_BLOCK) * FP8_BLOCK;
    const stripeEnd = Math.min(rows, stripe + FP8_BLOCK);
    const row0 = Math.max(stripe, Math.min(centre - Math.floor(rowsPer / 2), stripeEnd - rowsPer));
    out.push({ row0, rows: Math.min(rowsPer, stripeEnd - row0) });
  }
  return out;
}

interface PendingRead {
  model: Model;
  file: string;
  range: Range;
  bytes?: Uint8Array;
}

/** One batch of sampled tensors: plan every range, read them coalesced per file, then diff. */
async function sampleBatch(a: Model, b: Model, batch: { wa: Weight; wb: Weight }[], pool: KernelPool, opts: DiffOptions): Promise<TensorDiff[]> {
  const reads: PendingRead[] = [];
  const want = (model: Model, file: string, offset: number, length: number) => {
    const r: PendingRead = { model, file, range: { offset, length } };
    reads.push(r);
    return r;
  };
  const plans = batch.map(({ wa, wb }) => {
    const size = Math.max(DTYPE_SIZE[wa.data.dtype]!, DTYPE_SIZE[wb.data.dtype]!);
    const blocks = sampleBlocks(wa.data.shape, size, opts.sampleBlocks, opts.sampleBytes);
    const { cols } = matrixShape(wa.data.shape);
    const side = (model: Model, w: Weight) =>
      blocks.map((blk) => {
        const es = DTYPE_SIZE[w.data.dtype]!;
        const data = want(model, w.data.file, w.data.offset + blk.row0 * cols * es, blk.rows * cols * es);
        let scale: PendingRead | undefined;
        if (w.data.dtype === 'F8_E4M3') {
          // Every scale row the block touches (a block inside one stripe touches one; a whole small tensor, all).
          const perRow = Math.ceil(cols / FP8_BLOCK);
          const first = Math.floor(blk.row0 / FP8_BLOCK);
          const count = Math.ceil((blk.row0 + blk.rows) / FP8_BLOCK) - first;
          scale = want(model, w.scale!.file, w.scale!.offset + first * perRow * 4, count * perRow * 4);
        }
        return { data, scale };
      });
    return { wa, wb, blocks, cols, sa: side(a, wa), sb: side(b, wb) };
  });

  // Coalesce per (model, file).
  const byFile = new Map<string, PendingRead[]>();
  for (const r of reads) {
    const key = `${r.model === a ? 'a' : 'b'}\u0000${r.file}`;
    const list = byFile.get(key) ?? [];
    list.push(r);
    byFile.set(key, list);
  }
  await Promise.all(
    [...byFile.values()].map(async (list) => {
      const src = list[0]!.model.sources.get(list[0]!.file)!;
      const got = await readRanges(src, list.map((r) => r.range), DEFAULT_COALESCE);
      list.forEach((r, i) => (r.bytes = got[i]));
    }),
  );

  const chunk = (w: Weight, rows: number, cols: number, part: { data: PendingRead; scale?: PendingRead }): Chunk => {
    const c: Chunk = { dtype: w.data.dtype as FloatDtype, rows, cols, bytes: part.data.bytes! };
    if (part.scale) {
      const s = part.scale.bytes!;
      c.scales = new Float32Array(s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength));
    }
    return c;
  };

  // Kernel calls of many blocks each, spread over the pool, results kept in tensor order.
  const calls: { tensor: number; pairs: [Chunk, Chunk][] }[][] = [];
  let call: { tensor: number; pairs: [Chunk, Chunk][] }[] = [];
  let callBytes = 0;
  plans.forEach((p, i) => {
    const pairs = p.blocks.map((blk, k): [Chunk, Chunk] => [chunk(p.wa, blk.rows, p.cols, p.sa[k]!), chunk(p.wb, blk.rows, p.cols, p.sb[k]!)]);
    call.push({ tensor: i, pairs });
    callBytes += pairs.reduce((s, [a, b]) => s + a.bytes.length + b.bytes.length, 0);
    if (callBytes >= CALL_BYTES) {
      calls.push(call);
      call = [];
      callBytes = 0;
    }
  });
  if (call.length > 0) calls.push(call);
  const perTensor: DiffStats[][] = plans.map(() => []);
  await Promise.all(
    calls.map(async (c) => {
      const stats = await pool.diffMany(c.flatMap((t) => t.pairs));
      let k = 0;
      for (const t of c) perTensor[t.tensor] = stats.slice(k, (k += t.pairs.length));
    }),
  );
  return plans.map((p, i) => {
    const perBlock = perTensor[i]!;
    let stats = emptyStats();
    for (const s of perBlock) stats = addStats(stats, s);
    const total = elementCount(p.wa.data.shape);
    const fraction = total > 0 ? stats.count / total : 1;
    return {
      name: p.wa.name,
      role: p.wa.role,
      stats,
      ...figuresOf(stats),
      sampled: fraction < 1,
      fraction,
      relError: fraction < 1 ? relativeError(perBlock) : 0,
    };
  });
}

/**
 * Relative standard error of the sampled rms_diff: the blocks' mean squared differences vary; the
 * standard error of their mean, relative to it, halved (rms is a square root).
 */
function relativeError(blocks: DiffStats[]): number {
  const ms = blocks.filter((b) => b.count - b.nonFinite > 0).map((b) => b.sumSqDiff / (b.count - b.nonFinite));
  if (ms.length < 2) return 0;
  const mean = ms.reduce((s, x) => s + x, 0) / ms.length;
  if (mean === 0) return 0;
  const variance = ms.reduce((s, x) => s + (x - mean) ** 2, 0) / (ms.length - 1);
  return Math.sqrt(variance / ms.length) / mean / 2;
}
