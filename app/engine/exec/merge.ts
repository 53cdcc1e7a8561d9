// Executes a merge plan: streams every shard front to back, chunk by chunk, with the arithmetic
// on a kernel pool, and writes the child so that nothing half-done looks done (index last).
// How each tensor's bytes are made lives in tensor-jobs.ts.
import { MoeError, writeWhole, type ByteSource, type OutputFile, type OutputFolder } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { CARD_FILE, INDEX_FILE, RECIPE_FILE, indexBytes } from '../plan/plan.ts';
import type { MergePlan, PlannedShard } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';
import { renderModelCard } from '../report/model-card.ts';
import { OrderedPipeline } from './ordered.ts';
import { CHUNK_ELEMENTS } from './tensor-view.ts';
import { COPY_BLOCK, tensorJob, type JobContext, type TensorJob, type ThresholdDecision } from './tensor-jobs.ts';

export { COPY_BLOCK, type ThresholdDecision };

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
      const made = await tensorJob(ctx, ctx.plan.tensors[i]!);
      report[made.made]++;
      if (made.threshold) report.threshold.push(made.threshold);
      job = made.job;
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
