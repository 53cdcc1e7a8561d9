// Differences between two parents, item by item: for `moe-studio diff`, the studio's heatmaps and
// the threshold preview. An item is a tensor, or one expert's projection wherever it lives: the
// region of a fused tensor (`…experts.gate_up_proj[5].up`) or a per-expert tensor; experts are
// matched by (layer, expert, projection), so a per-expert model and a fused re-save compare.
// `exact` reads every byte; `sampled` reads a spread of row blocks of every item, fetched with
// coalesced reads, and says how much it read and how far off it may be.
import { isDecodable } from '../formats/codec.ts';
import { sameShape } from '../formats/dtype.ts';
import { MoeError } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { addStats, emptyStats, type DiffStats } from '../kernels/types.ts';
import { counterpart, itemsOf } from '../model/items.ts';
import { regionDims } from '../model/regions.ts';
import type { Model, TensorRole, Weight } from '../model/types.ts';
import type { SourceCell } from '../plan/types.ts';
import { figuresOf, type DiffFigures } from '../report/metrics.ts';
import { cellDiffUnits } from './compile.ts';
import { runUnits } from './dispatch.ts';
import { FileTable } from './files.ts';
import { coalesceFor, readRanges } from './ranges.ts';
import type { DiffUnit, Span, Unit } from './units.ts';

export type DiffMode = 'exact' | 'sampled';

export interface TensorDiff extends DiffFigures {
  /** The tensor, or for an expert region of a fused tensor "NAME[expert].proj". */
  name: string;
  role: TensorRole;
  /** Shape of the values compared: the tensor's, or the region's [out, in]. */
  shape: number[];
  stats: DiffStats;
  /** True when the figures are an estimate from sampled rows. */
  sampled: boolean;
  /** Share of the item's values that were read (1 for exact). */
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
  /** Sampled mode: row blocks per item and bytes per block (per parent). */
  sampleBlocks?: number;
  sampleBytes?: number;
}

export interface DiffResult {
  tensors: TensorDiff[];
  skipped: SkippedTensor[];
}

/** Row blocks per item in sampled mode, spread evenly over its rows. */
export const SAMPLE_BLOCKS = 4;
/**
 * Row blocks per item when a parent is read over the network (a Hub repo): every block is a
 * request of its own, so half as many; two still give the estimate its error.
 */
export const REMOTE_SAMPLE_BLOCKS = 2;
/** Bytes of each sample block, per parent (rounded to whole rows, at most one 128-row block). */
export const SAMPLE_BYTES = 16 * 1024;
/** Sampled mode reads this many items' samples in one batch of coalesced reads. */
const SAMPLE_BATCH = 2048;
/** Rows of a scale block: sample blocks stay inside one, so one scale row covers each. */
const BLOCK_ROWS = 128;

interface Item {
  name: string;
  role: TensorRole;
  shape: number[];
  a: SourceCell;
  b: SourceCell;
}

/** The items of `a` and their counterparts in `b`; what cannot be compared, and why. */
export function diffItems(a: Model, b: Model, select?: (w: Weight) => boolean): { items: Item[]; skipped: SkippedTensor[] } {
  const items: Item[] = [];
  const skipped: SkippedTensor[] = [];
  const bItems = itemsOf(b);
  const byName = new Map(bItems.map((i) => [i.name, i]));
  const codecText = (w: Weight) => (w.codec.kind === 'plain' ? w.codec.dtype : w.codec.kind);
  for (const it of itemsOf(a)) {
    if (select && !select(it.weight)) continue;
    const other = counterpart(b, it, byName);
    let why: string | undefined;
    if (!other) why = `not in ${b.name}`;
    else if (!isDecodable(it.weight.codec) || !isDecodable(other.weight.codec)) {
      why = `stored as ${[it.weight, other.weight].filter((w) => !isDecodable(w.codec)).map(codecText).join('/')}, which is not decoded`;
    } else {
      const da = regionDims(it.region);
      const db = regionDims(other.region);
      if (da.out !== db.out || da.in !== db.in || (it.region.rowCount === it.weight.view.rows && !sameShape(it.shape, other.shape))) {
        why = `shape [${it.shape}] vs [${other.shape}]`;
      }
    }
    if (why) {
      skipped.push({ name: it.name, reason: why });
      continue;
    }
    items.push({
      name: it.name, role: it.role, shape: it.shape,
      a: { parent: a.name, weight: it.weight, slab: it.slab, region: it.region },
      b: { parent: b.name, weight: other!.weight, slab: other!.slab, region: other!.region },
    });
  }
  return { items, skipped };
}

export async function diffModels(a: Model, b: Model, pool: KernelPool, options: DiffOptions): Promise<DiffResult> {
  // Only network sources (a Hub repo) say what reading through a gap is worth (io.ts).
  const remote = [a, b].some((m) => [...m.sources.values()].some((s) => s.readThrough !== undefined));
  const opts = options.sampleBlocks === undefined && remote ? { ...options, sampleBlocks: REMOTE_SAMPLE_BLOCKS } : options;
  const { items, skipped } = diffItems(a, b, opts.select);
  const files = new FileTable();
  await pool.openFiles([...files.addModel(a.name, a), ...files.addModel(b.name, b)]);
  const tensors: TensorDiff[] = [];
  let next = 0;
  const done: (TensorDiff | undefined)[] = new Array(items.length);
  const emitReady = () => {
    while (next < items.length && done[next]) {
      const d = done[next]!;
      done[next] = undefined;
      tensors.push(d);
      opts.onTensor?.(d);
      next++;
    }
    opts.onProgress?.(tensors.length, items.length);
  };
  const check = () => {
    if (opts.signal?.aborted) throw new MoeError('diff cancelled');
  };
  try {
    if (opts.mode === 'exact') {
      const perItem: { units: DiffUnit[]; stats: DiffStats[]; left: number }[] = [];
      const owner = new Map<Unit, [number, number]>();
      function* all(): Generator<Unit> {
        for (let i = 0; i < items.length; i++) {
          const it = items[i]!;
          const units = cellDiffUnits(files, it.a, it.b, it.name);
          perItem[i] = { units, stats: new Array(units.length), left: units.length };
          units.forEach((u, k) => owner.set(u, [i, k]));
          if (units.length === 0) finish(i);
          yield* units;
        }
      }
      const finish = (i: number) => {
        const p = perItem[i]!;
        let stats = emptyStats();
        for (const s of p.stats) stats = addStats(stats, s);
        const it = items[i]!;
        done[i] = { name: it.name, role: it.role, shape: it.shape, stats, ...figuresOf(stats), sampled: false, fraction: 1, relError: 0 };
        perItem[i] = { units: [], stats: [], left: 0 };
        emitReady();
      };
      await runUnits(pool, files, all(), (u, r) => {
        const [i, k] = owner.get(u)!;
        owner.delete(u);
        const p = perItem[i]!;
        p.stats[k] = r.stats!;
        if (--p.left === 0) finish(i);
      }, { check });
    } else {
      for (let i = 0; i < items.length; i += SAMPLE_BATCH) {
        check();
        const batch = items.slice(i, i + SAMPLE_BATCH);
        const results = await sampleBatch(files, pool, batch, opts);
        results.forEach((d, k) => (done[i + k] = d));
        emitReady();
      }
    }
  } finally {
    await pool.closeFiles(files.all()).catch(() => {});
  }
  return { tensors, skipped };
}

interface SampleBlock {
  /** First index along the region's row axis, and how many. */
  at: number;
  count: number;
}

/**
 * Blocks to read along an item's row axis (`along` rows of `other` values each): evenly spread,
 * each inside one 128-row block so one scale row covers it. An item no larger than the sample
 * would be is read whole.
 */
export function sampleBlocks(along: number, other: number, elemBytes: number, blocks = SAMPLE_BLOCKS, bytes = SAMPLE_BYTES): SampleBlock[] {
  const rowsPer = Math.max(1, Math.min(BLOCK_ROWS, Math.floor(bytes / Math.max(1, other * elemBytes))));
  if (along <= rowsPer * blocks) return [{ at: 0, count: along }];
  const out: SampleBlock[] = [];
  for (let k = 0; k < blocks; k++) {
    const centre = Math.floor(((k + 0.5) * along) / blocks);
    const stripe = Math.floor(centre / BLOCK_ROWS) * BLOCK_ROWS;
    const stripeEnd = Math.min(along, stripe + BLOCK_ROWS);
    const at = Math.max(stripe, Math.min(centre - Math.floor(rowsPer / 2), stripeEnd - rowsPer));
    out.push({ at, count: Math.min(rowsPer, stripeEnd - at) });
  }
  return out;
}

/** One batch of sampled items: every block a diff unit, their bytes read coalesced per file first. */
async function sampleBatch(files: FileTable, pool: KernelPool, batch: Item[], opts: DiffOptions): Promise<TensorDiff[]> {
  const plans = batch.map((it) => {
    const dims = regionDims(it.a.region);
    const along = it.a.region.transposed ? dims.in : dims.out;
    const other = it.a.region.transposed ? dims.out : dims.in;
    const blocks = sampleBlocks(along, other, 2, opts.sampleBlocks, opts.sampleBytes);
    const axis = it.a.region.transposed ? 'i' : 'o';
    const units = blocks.flatMap((blk) =>
      cellDiffUnits(files, restrict(it.a, axis, blk), restrict(it.b, axis, blk), it.name, Number.MAX_SAFE_INTEGER),
    );
    return { it, units, total: dims.out * dims.in };
  });
  // Read every span of the batch, nearby ranges of one file together.
  const spans: Span[] = [];
  for (const p of plans) for (const u of p.units) for (const b of u.bands) spans.push(b.data, ...(b.scales ? [b.scales] : []));
  const byFile = new Map<number, Span[]>();
  for (const s of spans) byFile.set(s.file, [...(byFile.get(s.file) ?? []), s]);
  await Promise.all(
    [...byFile.entries()].map(async ([file, list]) => {
      const src = files.sourceOf(file);
      const got = await readRanges(src, list.map((s) => ({ offset: s.offset, length: s.length })), coalesceFor(src));
      list.forEach((s, i) => (s.bytes = got[i]));
    }),
  );
  const all = plans.flatMap((p) => p.units);
  const index = new Map<Unit, number>(all.map((u, i) => [u, i]));
  const stats = new Array<DiffStats>(all.length);
  await runUnits(pool, files, all, (u, r) => {
    stats[index.get(u)!] = r.stats!;
  }, { check: () => {
    if (opts.signal?.aborted) throw new MoeError('diff cancelled');
  } });
  let k = 0;
  return plans.map((p) => {
    const perBlock = stats.slice(k, (k += p.units.length));
    let s = emptyStats();
    for (const b of perBlock) s = addStats(s, b);
    const fraction = p.total > 0 ? s.count / p.total : 1;
    return {
      name: p.it.name,
      role: p.it.role,
      shape: p.it.shape,
      stats: s,
      ...figuresOf(s),
      sampled: fraction < 1,
      fraction,
      relError: fraction < 1 ? relativeError(perBlock) : 0,
    };
  });
}

/** The part of a source cell's region whose `axis` index (o or i) lies in a sample block. */
function restrict(c: SourceCell, axis: 'o' | 'i', blk: SampleBlock): SourceCell {
  const r = { ...c.region };
  // o runs along the rows of a region stored as is, i along the rows of a transposed one.
  if ((axis === 'o') !== r.transposed) {
    r.row0 += blk.at * r.rowStep;
    r.rowCount = blk.count;
  } else {
    r.col0 += blk.at * r.colStep;
    r.colCount = blk.count;
  }
  return { ...c, region: r };
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
