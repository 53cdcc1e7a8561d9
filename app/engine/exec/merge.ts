// Executes a merge plan: streams every shard front to back, chunk by chunk, with the arithmetic
// on a kernel pool, and writes the child so that nothing half-done looks done (index last).
import { elementCount, isFloatDtype, type FloatDtype } from '../formats/dtype.ts';
import { MoeError, writeWhole, type ByteSource, type OutputFile, type OutputFolder } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { addStats, emptyStats, type Chunk, type DiffStats, type Encoded } from '../kernels/types.ts';
import type { Model, TensorRecord, Weight } from '../model/types.ts';
import { CARD_FILE, INDEX_FILE, RECIPE_FILE, indexBytes } from '../plan/plan.ts';
import type { MergePlan, PlannedShard, PlannedTensor } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';
import { figuresOf } from '../report/metrics.ts';
import { renderModelCard } from '../report/model-card.ts';
import { OrderedPipeline } from './ordered.ts';
import { CHUNK_ELEMENTS, chunkSpans, scaleRows, type ChunkSpan } from './tensor-view.ts';

/** Bytes per read (and write) when a tensor is copied as it is. */
export const COPY_BLOCK = 16 * 1024 * 1024;

export interface MergeProgress {
  bytesDone: number;
  bytesTotal: number;
  /** The tensor being written. */
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  /** File being written. */
  file: string;
  elapsedMs: number;
}

export interface MergeOptions {
  signal?: AbortSignal;
  onProgress?: (p: MergeProgress) => void;
  /** Replace an earlier child in the output folder (its index is removed first). */
  overwrite?: boolean;
  /** Chunks in flight; defaults to twice the pool size plus two. */
  window?: number;
  /** Elements per chunk (tests use tiny chunks to cross stripe and chunk boundaries). */
  chunkElements?: number;
}

export interface ThresholdDecision {
  name: string;
  /** Largest rms_diff from the base over the mixed parents (Infinity when non-finite values differ). */
  rmsDiff: number;
  kept: boolean;
}

export interface MergeReport {
  files: { name: string; bytes: number }[];
  totalBytes: number;
  elapsedMs: number;
  tensors: number;
  /** How each tensor was finally made. */
  copied: number;
  converted: number;
  mixed: number;
  muted: number;
  patched: number;
  threshold: ThresholdDecision[];
  thresholdKept: number;
}

export class MergeCancelled extends Error {
  constructor() {
    super('merge cancelled: nothing was left that looks complete (no index was written)');
    this.name = 'MergeCancelled';
  }
}

/** Shards are written under this suffix and renamed once complete. */
const SHARD_TMP_SUFFIX = '.partial';

export async function executeMerge(plan: MergePlan, out: OutputFolder, pool: KernelPool, opts: MergeOptions = {}): Promise<MergeReport> {
  const started = performance.now();
  const signal = opts.signal;
  const checkCancel = () => {
    if (signal?.aborted) throw new MergeCancelled();
  };
  await preflight(plan, out, opts.overwrite ?? false);

  const written: string[] = [];
  /** Bytes of each file written (the model card's size is only known at the end). */
  const sizes = new Map<string, number>();
  const report: MergeReport = {
    files: [], totalBytes: 0, elapsedMs: 0, tensors: plan.tensors.length,
    copied: 0, converted: 0, mixed: 0, muted: 0, patched: 0, threshold: [], thresholdKept: 0,
  };
  const progress: MergeProgress = {
    bytesDone: 0, bytesTotal: plan.totalBytes, tensor: '', tensorsDone: 0, tensorsTotal: plan.tensors.length, file: '', elapsedMs: 0,
  };
  const emit = () => {
    progress.elapsedMs = performance.now() - started;
    opts.onProgress?.({ ...progress });
  };

  const ctx: JobContext = { plan, pool, chunkElements: opts.chunkElements ?? CHUNK_ELEMENTS };
  const window = opts.window ?? pool.size * 2 + 2;
  const state: RunState = { out, written, open: undefined, progress, report, checkCancel, emit };
  try {
    for (const shard of plan.shards) await writeShard(ctx, shard, window, state);
    checkCancel();
    const base = plan.parents.get(plan.base)!;
    await writeTracked(out, 'config.json', plan.configBytes, written, progress);
    for (const f of plan.copiedFiles) {
      checkCancel();
      await copyFile(await base.folder.open(f), f, state);
    }
    const candidates = report.threshold.length;
    report.thresholdKept = report.threshold.filter((d) => d.kept).length;
    const encoder = new TextEncoder();
    await writeTracked(out, RECIPE_FILE, encoder.encode(recipeToYaml(plan.recipe)), written, progress);
    const card = renderModelCard(plan, plan.recipe.threshold ? { thresholdKept: report.thresholdKept, thresholdCandidates: candidates } : undefined);
    const cardBytes = encoder.encode(card);
    sizes.set(CARD_FILE, cardBytes.length);
    await writeTracked(out, CARD_FILE, cardBytes, written, progress);
    checkCancel();
    // The index is the mark of a complete child: last, and only once every other byte is on disk.
    await writeTracked(out, INDEX_FILE, indexBytes(plan), written, progress);
    emit();
  } catch (e) {
    if (state.open) await state.open.abort().catch(() => {});
    for (const f of written.reverse()) await out.remove(f).catch(() => {});
    throw e;
  }

  report.elapsedMs = performance.now() - started;
  report.files = plan.files.map((f) => ({ name: f.name, bytes: sizes.get(f.name) ?? f.bytes }));
  report.totalBytes = progress.bytesDone;
  return report;
}

/** What a running merge tracks across shards and files, so a failure can remove all it wrote. */
interface RunState {
  out: OutputFolder;
  /** Files created so far (temporary names until renamed). */
  written: string[];
  /** The file being written, aborted on failure. */
  open: OutputFile | undefined;
  progress: MergeProgress;
  report: MergeReport;
  checkCancel: () => void;
  emit: () => void;
}

/** One shard: header, then every tensor's bytes in order, under a temporary name until complete. */
async function writeShard(ctx: JobContext, shard: PlannedShard, window: number, state: RunState): Promise<void> {
  const { out, progress, checkCancel } = state;
  checkCancel();
  const tmp = out.canRename ? shard.file + SHARD_TMP_SUFFIX : shard.file;
  progress.file = shard.file;
  const file = await out.create(tmp);
  state.open = file;
  state.written.push(tmp);
  let position = 0;
  const pipeline = new OrderedPipeline<Uint8Array[]>(window, async (parts) => {
    for (const p of parts) {
      checkCancel();
      await file.write(p);
      position += p.length;
      progress.bytesDone += p.length;
    }
    state.emit();
  });
  try {
    await pipeline.add(async () => [shard.header]);
    await writeShardData(ctx, shard, pipeline, file, state);
  } catch (e) {
    await pipeline.settle();
    throw e;
  }
  if (position !== shard.bytes) throw new Error(`internal: ${shard.file} has ${position} bytes, planned ${shard.bytes}`);
  await file.close();
  state.open = undefined;
  if (out.canRename) {
    await out.rename(tmp, shard.file);
    state.written[state.written.length - 1] = shard.file;
  }
}

/** A file of the base copied as it is, block by block. */
async function copyFile(src: ByteSource, name: string, state: RunState): Promise<void> {
  state.progress.file = name;
  const file = await state.out.create(name);
  state.open = file;
  state.written.push(name);
  for (let o = 0; o < src.size; o += COPY_BLOCK) {
    const bytes = await src.read(o, Math.min(COPY_BLOCK, src.size - o));
    await file.write(bytes);
    state.progress.bytesDone += bytes.length;
  }
  await file.close();
  state.open = undefined;
}

async function writeTracked(out: OutputFolder, name: string, bytes: Uint8Array, written: string[], progress: MergeProgress): Promise<void> {
  progress.file = name;
  written.push(name);
  await writeWhole(out, name, bytes);
  progress.bytesDone += bytes.length;
}

/** Refuses a parent's folder, and an earlier child unless `overwrite`; with it, removes the old index first. */
async function preflight(plan: MergePlan, out: OutputFolder, overwrite: boolean): Promise<void> {
  for (const [name, model] of plan.parents) {
    if (await out.overlaps(model.folder)) {
      throw new MoeError(`the output folder is (or is inside) the folder of parent "${name}" (${model.folder.name}); parents are never written to`, out.name);
    }
  }
  const existing = await out.list();
  const planned = new Set(plan.files.map((f) => f.name));
  const shardLike = /^model-\d{5}-of-\d{5}\.safetensors(\.partial)?$|^model\.safetensors$/;
  const clash = existing.filter((f) => planned.has(f) || shardLike.test(f));
  if (clash.length > 0) {
    if (!overwrite) {
      throw new MoeError(
        `the output folder already holds ${clash.slice(0, 5).join(', ')}${clash.length > 5 ? ` and ${clash.length - 5} more` : ''}; choose an empty folder or overwrite`,
        out.name,
      );
    }
    if (existing.includes(INDEX_FILE)) await out.remove(INDEX_FILE);
    for (const f of clash) if (f !== INDEX_FILE) await out.remove(f);
  }
  const free = await out.freeBytes?.();
  // A shard may need twice its size while written (the browser writes a swap file first).
  const need = plan.totalBytes + Math.max(0, ...plan.shards.map((s) => s.bytes));
  if (free !== undefined && free < need) {
    throw new MoeError(`not enough free space: the child needs ${need} bytes while written, ${free} are free`, out.name);
  }
}

type Task = () => Promise<Uint8Array[]>;

/** How one tensor's bytes are produced: weight tasks in write order, and its FP8 scale. */
interface TensorJob {
  weight: Task[];
  /** `read`: a task written in sequence. `later`: fresh scales, known once every weight chunk is done. */
  scale?: { kind: 'read'; task: Task } | { kind: 'later'; bytes: Promise<Uint8Array> };
}

/** What every tensor job needs. */
interface JobContext {
  plan: MergePlan;
  pool: KernelPool;
  chunkElements: number;
}

async function writeShardData(
  ctx: JobContext,
  shard: PlannedShard,
  pipeline: OrderedPipeline<Uint8Array[]>,
  file: OutputFile,
  state: RunState,
): Promise<void> {
  const { report, progress, checkCancel, emit } = state;
  const dataStart = shard.header.length;
  const jobs = new Map<number, TensorJob>();
  const patches: { position: number; length: number; bytes: Promise<Uint8Array> }[] = [];
  const jobOf = async (i: number) => {
    let job = jobs.get(i);
    if (!job) {
      job = await tensorJob(ctx, ctx.plan.tensors[i]!, report);
      jobs.set(i, job);
    }
    return job;
  };
  for (const entry of shard.entries) {
    checkCancel();
    const t = ctx.plan.tensors[entry.tensor]!;
    progress.tensor = t.name;
    const job = await jobOf(entry.tensor);
    if (entry.part === 'weight') {
      for (const task of job.weight) await pipeline.add(task);
      progress.tensorsDone++;
      emit();
    } else if (job.scale?.kind === 'read') {
      await pipeline.add(job.scale.task);
    } else if (job.scale?.kind === 'later') {
      // Zeros now, the real scales written in place once the weight is done.
      const length = entry.end - entry.begin;
      await pipeline.add(async () => [new Uint8Array(length)]);
      patches.push({ position: dataStart + entry.begin, length, bytes: job.scale.bytes });
    } else {
      throw new Error(`internal: no scale for ${t.name}`);
    }
  }
  await pipeline.drain();
  for (const p of patches) {
    const bytes = await p.bytes;
    if (bytes.length !== p.length) throw new Error(`internal: scales of ${p.length} bytes planned, ${bytes.length} made`);
    await file.writeAt(p.position, bytes);
  }
}

/** Decides a tensor's final op (the threshold may turn a mix into a copy of the base) and makes its tasks. */
async function tensorJob(ctx: JobContext, t: PlannedTensor, report: MergeReport): Promise<TensorJob> {
  const { plan } = ctx;
  let op = t.op;
  if (op.type === 'mix' && t.thresholdCandidate) {
    const decision = await thresholdDecision(ctx, t);
    report.threshold.push(decision);
    if (decision.kept) {
      const same = t.dtype === inputOf(plan, t, plan.base).data.dtype;
      op = same ? { type: 'copy', parent: plan.base } : { type: 'convert', parent: plan.base };
    }
  }
  if (t.patches) {
    report.patched++;
    return patchedJob(ctx, t, op);
  }
  switch (op.type) {
    case 'copy':
      report.copied++;
      return copyJob(plan, t, op.parent);
    case 'convert':
      report.converted++;
      return convertJob(ctx, t, op.parent);
    case 'mix':
      report.mixed++;
      return mixJob(ctx, t, op.weights);
    case 'zero':
      report.muted++;
      return zeroJob(ctx, t);
  }
}

/** A promise settled from outside; `promise` never counts as an unhandled rejection on its own. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Weight tasks that also collect each chunk's fresh FP8 scales into one scale tensor. */
function withFreshScales(count: number, make: (k: number) => Promise<Encoded>, check: (e: Encoded) => void = () => {}): TensorJob {
  const parts = Array.from({ length: count }, () => deferred<Float32Array>());
  const weight: Task[] = parts.map((part, k) => async () => {
    try {
      const e = await make(k);
      check(e);
      part.resolve(e.scales ?? new Float32Array(0));
      return [e.bytes];
    } catch (err) {
      part.reject(err);
      throw err;
    }
  });
  const bytes = Promise.all(parts.map((p) => p.promise)).then(concatScales);
  bytes.catch(() => {});
  return { weight, scale: { kind: 'later', bytes } };
}

function inputOf(plan: MergePlan, t: PlannedTensor, parent: string): Weight {
  return plan.parents.get(parent)!.byName.get(t.name)!;
}

function sourceOf(model: Model, rec: TensorRecord): ByteSource {
  const src = model.sources.get(rec.file);
  if (!src) throw new MoeError('shard is not open', rec.file, rec.name);
  return src;
}

function readRecord(model: Model, rec: TensorRecord, offset: number, length: number): Promise<Uint8Array> {
  return sourceOf(model, rec).read(rec.offset + offset, length);
}

function copyRecordTasks(model: Model, rec: TensorRecord): Task[] {
  const tasks: Task[] = [];
  for (let o = 0; o < rec.length; o += COPY_BLOCK) {
    const len = Math.min(COPY_BLOCK, rec.length - o);
    tasks.push(async () => [await readRecord(model, rec, o, len)]);
  }
  return tasks;
}

function copyJob(plan: MergePlan, t: PlannedTensor, parent: string): TensorJob {
  const model = plan.parents.get(parent)!;
  const w = model.byName.get(t.name)!;
  const weight = copyRecordTasks(model, w.data);
  if (!t.scale) return { weight };
  if (!w.scale) throw new MoeError(`F8_E4M3 weight in "${parent}" has no scale tensor to copy with it`, w.data.file, t.name);
  const scaleRec = w.scale;
  return { weight, scale: { kind: 'read', task: async () => [await readRecord(model, scaleRec, 0, scaleRec.length)] } };
}

/** Reads the chunk of one parent's tensor covering `span`, with its block scales when FP8. */
async function readChunk(model: Model, w: Weight, span: ChunkSpan, scales: Float32Array | undefined): Promise<Chunk> {
  const dtype = w.data.dtype as FloatDtype;
  const size = dtype === 'F32' ? 4 : dtype === 'F8_E4M3' ? 1 : 2;
  const bytes = await readRecord(model, w.data, span.start * size, span.count * size);
  const chunk: Chunk = { dtype, rows: span.rows, cols: span.cols, bytes };
  if (dtype === 'F8_E4M3') {
    const { first, count, perRow } = scaleRows(span, span.cols);
    chunk.scales = scales!.slice(first * perRow, (first + count) * perRow);
  }
  return chunk;
}

/**
 * A parent's whole block-scale tensor (small: one f32 per 128×128 block). Read eagerly, before any
 * task awaits it, so a failure is held for those tasks rather than reported as unhandled.
 */
function readScales(model: Model, w: Weight): Promise<Float32Array | undefined> {
  if (w.data.dtype !== 'F8_E4M3') return Promise.resolve(undefined);
  const rec = w.scale!;
  const p = readRecord(model, rec, 0, rec.length).then(
    (bytes) => new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
  );
  p.catch(() => {});
  return p;
}

function usesStripes(dtypes: string[]): boolean {
  return dtypes.includes('F8_E4M3');
}

function convertJob({ plan, pool, chunkElements }: JobContext, t: PlannedTensor, parent: string): TensorJob {
  const model = plan.parents.get(parent)!;
  const w = model.byName.get(t.name)!;
  const spans = chunkSpans(t.shape, usesStripes([w.data.dtype, t.dtype]), chunkElements);
  const scales = readScales(model, w);
  const out = t.dtype as FloatDtype;
  const weight = spans.map((span) => async () => {
    const chunk = await readChunk(model, w, span, await scales);
    const values = await pool.decode(chunk);
    const e = await pool.encode(values, span.rows, span.cols, out);
    return [e.bytes];
  });
  return { weight };
}

function mixJob({ plan, pool, chunkElements }: JobContext, t: PlannedTensor, weights: { parent: string; weight: number }[]): TensorJob {
  const inputs = weights.map(({ parent }) => {
    const model = plan.parents.get(parent)!;
    const w = model.byName.get(t.name)!;
    return { model, w, scales: readScales(model, w) };
  });
  const out = t.dtype as FloatDtype;
  const spans = chunkSpans(t.shape, usesStripes([...inputs.map((i) => i.w.data.dtype), out]), chunkElements);
  const mix = async (k: number) => {
    const span = spans[k]!;
    const chunks = await Promise.all(inputs.map(async (i) => readChunk(i.model, i.w, span, await i.scales)));
    return pool.mix({ rows: span.rows, cols: span.cols, inputs: chunks, weights: weights.map((x) => x.weight), out });
  };
  const check = (e: Encoded) => {
    if (e.nanCount > 0) {
      throw new MoeError(`mixing gives ${e.nanCount} NaN value(s), which F8_E4M3 cannot store (a parent holds NaN or ±inf here)`, undefined, t.name);
    }
  };
  if (t.scale) return withFreshScales(spans.length, mix, check);
  return {
    weight: spans.map((_, k) => async () => {
      const e = await mix(k);
      check(e);
      return [e.bytes];
    }),
  };
}

function zeroJob({ pool, chunkElements }: JobContext, t: PlannedTensor): TensorJob {
  const out = t.dtype;
  if (!isFloatDtype(out)) {
    const n = t.bytes;
    const weight: Task[] = [];
    for (let o = 0; o < n; o += COPY_BLOCK) weight.push(async () => [new Uint8Array(Math.min(COPY_BLOCK, n - o))]);
    return { weight };
  }
  // Through the kernels, so a muted FP8 expert gets exactly the scale an all-zero block is given.
  const spans = chunkSpans(t.shape, out === 'F8_E4M3', chunkElements);
  const zero = (k: number) => pool.encode(new Float32Array(spans[k]!.count), spans[k]!.rows, spans[k]!.cols, out);
  if (t.scale) return withFreshScales(spans.length, zero);
  return { weight: spans.map((_, k) => async () => [(await zero(k)).bytes]) };
}

/** Router bias with off/on edits: the tensor is small, so it is made whole, decoded, patched and re-encoded. */
async function patchedJob({ plan, pool }: JobContext, t: PlannedTensor, op: PlannedTensor['op']): Promise<TensorJob> {
  const out = t.dtype as FloatDtype;
  if (out === 'F8_E4M3') throw new MoeError('expert edits need a router bias stored as F32, BF16 or F16, not F8_E4M3', undefined, t.name);
  const n = elementCount(t.shape);
  const span: ChunkSpan = { start: 0, count: n, rows: 1, cols: n, row0: 0 };
  let values: Float32Array;
  if (op.type === 'mix') {
    const chunks = await Promise.all(op.weights.map(async ({ parent }) => {
      const model = plan.parents.get(parent)!;
      const w = model.byName.get(t.name)!;
      return readChunk(model, w, span, undefined);
    }));
    const mixed = await pool.mix({ rows: 1, cols: n, inputs: chunks, weights: op.weights.map((x) => x.weight), out: 'F32' });
    values = new Float32Array(mixed.bytes.buffer.slice(mixed.bytes.byteOffset, mixed.bytes.byteOffset + mixed.bytes.byteLength));
  } else if (op.type === 'zero') {
    values = new Float32Array(n);
  } else {
    const model = plan.parents.get(op.parent)!;
    values = await pool.decode(await readChunk(model, model.byName.get(t.name)!, span, undefined));
  }
  for (const p of t.patches!) {
    if (p.expert >= n) throw new MoeError(`router bias has ${n} entries; cannot edit expert ${p.expert}`, undefined, t.name);
    values[p.expert] = p.value;
  }
  const e = await pool.encode(values, 1, n, out);
  return { weight: [async () => [e.bytes]] };
}

function concatScales(parts: Float32Array[]): Uint8Array {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const all = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return new Uint8Array(all.buffer);
}

/**
 * The AoE threshold: rms_diff of every other parent with a non-zero weight against the base, over
 * the whole tensor (summed in chunk order, so the figure does not depend on the number of workers).
 * Kept (taken from the base) only when all are below `below` and no non-finite values were met.
 */
async function thresholdDecision({ plan, pool, chunkElements }: JobContext, t: PlannedTensor): Promise<ThresholdDecision> {
  const below = plan.recipe.threshold!.below;
  const op = t.op as Extract<PlannedTensor['op'], { type: 'mix' }>;
  const baseModel = plan.parents.get(plan.base)!;
  const baseW = baseModel.byName.get(t.name)!;
  const others = op.weights.filter((x) => x.weight !== 0 && x.parent !== plan.base);
  let worst = 0;
  for (const { parent } of others) {
    const model = plan.parents.get(parent)!;
    const w = model.byName.get(t.name)!;
    const stats = await diffTensor(baseModel, baseW, model, w, pool, chunkElements);
    const rms = stats.nonFinite > 0 ? Infinity : figuresOf(stats).rmsDiff;
    worst = Math.max(worst, rms);
    if (!(worst < below)) break;
  }
  return { name: t.name, rmsDiff: worst, kept: worst < below };
}

/** Exact difference statistics of two parents' copies of one tensor. */
export async function diffTensor(aModel: Model, a: Weight, bModel: Model, b: Weight, pool: KernelPool, chunkElements = CHUNK_ELEMENTS): Promise<DiffStats> {
  const spans = chunkSpans(a.data.shape, usesStripes([a.data.dtype, b.data.dtype]), chunkElements);
  const window = pool.size * 2;
  const [sa, sb] = await Promise.all([readScales(aModel, a), readScales(bModel, b)]);
  let total = emptyStats();
  const pipeline = new OrderedPipeline<DiffStats>(Math.max(1, window), async (s) => {
    total = addStats(total, s);
  });
  try {
    for (const span of spans) {
      await pipeline.add(async () => {
        const [ca, cb] = await Promise.all([readChunk(aModel, a, span, sa), readChunk(bModel, b, span, sb)]);
        return pool.diff(ca, cb);
      });
    }
    await pipeline.drain();
  } catch (e) {
    await pipeline.settle();
    throw e;
  }
  return total;
}

