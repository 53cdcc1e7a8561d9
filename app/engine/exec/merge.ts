// Executes a merge plan: streams every shard front to back, chunk by chunk, with the arithmetic
// on a kernel pool, and writes the child so that nothing half-done ever looks done.
// How each tensor's bytes are made lives in tensor-jobs.ts; the resume journal in journal.ts.
//
// What a merge promises about its output folder:
//  - Nothing is created before every refusal that needs no writing (a parent's folder, an earlier
//    child without overwrite, an interrupted merge without resume or overwrite); the folder itself
//    is created then, and removed again if the merge leaves it empty.
//  - The folder is locked (LOCK_FILE, created atomically) for the whole merge: a second merge into
//    it is refused, naming the holder, instead of deleting the first one's files.
//  - Every file is written under a temporary name (`….partial`). Only when the whole child is
//    written are the shards checked on disk (size and header), renamed to their final names, and
//    the index written last: a merge killed at any point, even by SIGKILL, leaves no index and no
//    shard under its final name.
//  - A failed or cancelled merge removes the files it created, except completed shards, which stay
//    with the resume journal so that `resume` continues where it stopped. It never deletes a file
//    it did not create (with overwrite: the earlier child's files, index first).
import { LOCK_FILE, MoeError, type ByteSource, type LockOwner, type OutputFile, type OutputFolder, type OutputLock } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { CARD_FILE, INDEX_FILE, RECIPE_FILE, indexBytes } from '../plan/plan.ts';
import type { MergePlan, PlannedShard } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';
import { renderModelCard } from '../report/model-card.ts';
import { formatBytes } from '../report/format.ts';
import {
  JOURNAL_FILE, JOURNAL_FORMAT, emptyShardReport, encodeSpans, fingerprintChange, planFingerprint, readJournal, rootChecksum, verifyShard, writeJournal,
  type Journal, type ShardRecord, type ShardReport,
} from './journal.ts';
import { OrderedPipeline } from './ordered.ts';
import { CHUNK_ELEMENTS } from './tensor-view.ts';
import { COPY_BLOCK, tensorJob, type JobContext, type TensorJob, type ThresholdDecision } from './tensor-jobs.ts';

export { COPY_BLOCK, type ThresholdDecision };

export interface MergeProgress {
  /** Bytes of the child done, shards kept from an interrupted run included. */
  bytesDone: number;
  bytesTotal: number;
  /** Of bytesDone, the shards kept from an interrupted run (not written again). */
  resumedBytes: number;
  /** The tensor being written. */
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  /** File being written. */
  file: string;
  elapsedMs: number;
}

/**
 * Places a merge can be held at by `MergeOptions.pause` (tests arrange races with it): `started`
 * once the folder is locked and the journal written, before any shard; after each shard; and
 * before the final names are given.
 */
export type PausePoint = 'started' | `shard-complete:${string}` | 'before-finalize';

export interface MergeOptions {
  signal?: AbortSignal;
  onProgress?: (p: MergeProgress) => void;
  /** Things worth a line to the user: a stale lock replaced, shards kept from an interrupted run. */
  onNotice?: (text: string) => void;
  /** Replace an earlier child, or an interrupted merge, in the output folder. */
  overwrite?: boolean;
  /** Continue an interrupted merge of the same plan in the output folder. */
  resume?: boolean;
  /** Who merges, for the lock file; the platform adds what it knows (pid, host). */
  owner?: LockOwner;
  /** Chunks in flight; defaults to twice the pool size plus two. */
  window?: number;
  /** Elements per chunk (tests use tiny chunks to cross stripe and chunk boundaries). */
  chunkElements?: number;
  /** Awaited at each pause point: a hook for tests, which hold a merge there while they act. */
  pause?: (point: PausePoint) => Promise<void>;
}

export interface MergeReport {
  files: { name: string; bytes: number }[];
  /** Bytes of the child (shards kept from an interrupted run included). */
  totalBytes: number;
  /** Shards kept from an interrupted run, and their bytes. */
  resumedShards: number;
  resumedBytes: number;
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

/** Completed shards a stopped merge leaves for `resume`. */
export interface KeptWork {
  shards: number;
  of: number;
  bytes: number;
}

function keptText(k: KeptWork): string {
  return `${k.shards} of ${k.of} shards, ${formatBytes(k.bytes)}, are complete and kept for resume`;
}

export class MergeCancelled extends Error {
  constructor(readonly kept?: KeptWork) {
    super(
      'merge cancelled: nothing was left that looks complete (no index, no shard under its final name)' +
        (kept ? `; ${keptText(kept)}` : ''),
    );
    this.name = 'MergeCancelled';
  }
}

/** A merge that failed after completing some shards, which are kept for resume. */
export class MergeInterrupted extends Error {
  constructor(
    readonly error: unknown,
    readonly kept: KeptWork,
  ) {
    super(`${error instanceof Error ? error.message : String(error)} (${keptText(kept)})`);
    this.name = 'MergeInterrupted';
  }
}

/** Every file is written under this suffix and renamed when the whole child is complete. */
export const TMP_SUFFIX = '.partial';
/** Names of earlier children's shards and their temporary files. */
const SHARD_LIKE = /^model-\d{5}-of-\d{5}\.safetensors(\.partial)?$|^model\.safetensors(\.partial)?$/;

/** What a running merge tracks, so a failure can remove what it created and keep what may be resumed. */
interface RunState {
  plan: MergePlan;
  out: OutputFolder;
  pool: KernelPool;
  /** Files created by this run, under the names they have now. */
  written: Set<string>;
  /** The file being written, aborted on failure. */
  open: OutputFile | undefined;
  journal: Journal | undefined;
  progress: MergeProgress;
  checkCancel: () => void;
  emit: () => void;
}

export async function executeMerge(plan: MergePlan, out: OutputFolder, pool: KernelPool, opts: MergeOptions = {}): Promise<MergeReport> {
  const started = performance.now();
  const signal = opts.signal;
  const checkCancel = () => {
    if (signal?.aborted) throw new MergeCancelled();
  };
  const notice = (t: string) => opts.onNotice?.(t);
  const progress: MergeProgress = {
    bytesDone: 0, bytesTotal: plan.totalBytes, resumedBytes: 0, tensor: '', tensorsDone: 0, tensorsTotal: plan.tensors.length, file: '', elapsedMs: 0,
  };
  const emit = () => {
    progress.elapsedMs = performance.now() - started;
    opts.onProgress?.({ ...progress });
  };

  // Refusals that need nothing written.
  for (const [name, model] of plan.parents) {
    if (await out.overlaps(model.folder)) {
      throw new MoeError(`the output folder is (or is inside) the folder of parent "${name}" (${model.folder.name}); parents are never written to`, out.name);
    }
  }
  const fingerprint = await planFingerprint(plan, pool);
  const owner: LockOwner = opts.owner ?? { tool: 'moe-studio', started: new Date().toISOString() };
  const state: RunState = { plan, out, pool, written: new Set(), open: undefined, journal: undefined, progress, checkCancel, emit };
  let lock: OutputLock | undefined;
  try {
    await out.prepare();
    lock = await out.lock(owner);
    if (lock.replacedStale) {
      notice(`took over a stale merge lock: ${LOCK_FILE} was left by pid ${lock.replacedStale.pid} on ${lock.replacedStale.host}, which is no longer running`);
    }
    checkCancel();
    const existing = await out.list();
    const kept = await startOrResume(state, existing, fingerprint, opts);
    await checkFreeSpace(plan, out, kept);
    await opts.pause?.('started');
    checkCancel();

    const totals: ShardReport = emptyShardReport();
    const ctx: JobContext = { plan, pool, chunkElements: opts.chunkElements ?? CHUNK_ELEMENTS };
    const window = opts.window ?? pool.size * 2 + 2;
    const onDisk = new Map<string, string>();
    for (const shard of plan.shards) {
      const done = kept.get(shard.file);
      if (done) {
        onDisk.set(shard.file, done.name);
        addReport(totals, done.rec.report);
        progress.bytesDone += shard.bytes;
        progress.resumedBytes += shard.bytes;
        progress.tensorsDone += new Set(shard.entries.filter((e) => e.part === 'weight').map((e) => e.tensor)).size;
        continue;
      }
      const rec = await writeShard(ctx, shard, window, state);
      onDisk.set(shard.file, tmpName(out, shard.file));
      addReport(totals, rec.report);
      state.journal!.shards.push(rec);
      await writeJournal(out, state.journal!);
      await opts.pause?.(`shard-complete:${shard.file}`);
      checkCancel();
    }
    checkCancel();

    // The small files, also under temporary names.
    const base = plan.parents.get(plan.base)!;
    await writeSmall(state, 'config.json', plan.configBytes);
    for (const f of plan.copiedFiles) {
      checkCancel();
      await copyFile(await base.folder.open(f), f, state);
    }
    const threshold: ThresholdDecision[] = totals.threshold.map(([name, rms, keptFromBase]) => ({ name, rmsDiff: rms ?? Infinity, kept: keptFromBase }));
    const thresholdKept = threshold.filter((d) => d.kept).length;
    const encoder = new TextEncoder();
    await writeSmall(state, RECIPE_FILE, encoder.encode(recipeToYaml(plan.recipe)));
    const cardBytes = encoder.encode(renderModelCard(plan, plan.recipe.threshold ? { thresholdKept, thresholdCandidates: threshold.length } : undefined));
    await writeSmall(state, CARD_FILE, cardBytes);
    checkCancel();
    await opts.pause?.('before-finalize');
    checkCancel();

    // Every shard the index will name, checked on disk; then the final names, the index last.
    for (const shard of plan.shards) await checkShardOnDisk(out, onDisk.get(shard.file)!, shard);
    for (const shard of plan.shards) await finalName(state, onDisk.get(shard.file)!, shard.file);
    for (const f of ['config.json', ...plan.copiedFiles, RECIPE_FILE, CARD_FILE]) await finalName(state, tmpName(out, f), f);
    await writeSmall(state, INDEX_FILE, indexBytes(plan));
    await finalName(state, tmpName(out, INDEX_FILE), INDEX_FILE);
    await out.remove(JOURNAL_FILE);
    progress.file = '';
    emit();

    const report: MergeReport = {
      files: plan.files.map((f) => ({ name: f.name, bytes: f.name === CARD_FILE ? cardBytes.length : f.bytes })),
      totalBytes: progress.bytesDone,
      resumedShards: kept.size,
      resumedBytes: progress.resumedBytes,
      elapsedMs: performance.now() - started,
      tensors: plan.tensors.length,
      copied: totals.copied,
      converted: totals.converted,
      mixed: totals.mixed,
      muted: totals.muted,
      patched: totals.patched,
      threshold,
      thresholdKept,
    };
    return report;
  } catch (e) {
    const keptWork = await cleanUp(state);
    throw e instanceof MergeCancelled ? new MergeCancelled(keptWork) : keptWork ? new MergeInterrupted(e, keptWork) : e;
  } finally {
    await lock?.release().catch(() => {});
    if ((await out.list().catch(() => ['?'])).length === 0) await out.discardCreated().catch(() => {});
  }
}

function tmpName(out: OutputFolder, file: string): string {
  return out.canRename ? file + TMP_SUFFIX : file;
}

function addReport(into: ShardReport, r: ShardReport): void {
  into.copied += r.copied;
  into.converted += r.converted;
  into.mixed += r.mixed;
  into.muted += r.muted;
  into.patched += r.patched;
  into.threshold.push(...r.threshold);
}

/**
 * Decides, under the lock, what happens to what the folder already holds: an interrupted merge is
 * resumed (its verified shards kept) or discarded, an earlier child replaced or refused. Returns
 * the shards kept, and starts this run's journal.
 */
async function startOrResume(
  state: RunState,
  existing: string[],
  fingerprint: Journal['fingerprint'],
  opts: MergeOptions,
): Promise<Map<string, { name: string; rec: ShardRecord }>> {
  const { plan, out, pool } = state;
  const kept = new Map<string, { name: string; rec: ShardRecord }>();
  const planned = new Set(plan.files.map((f) => f.name));
  const ours = (f: string) => planned.has(f) || planned.has(f.replace(/\.partial$/, '')) || SHARD_LIKE.test(f) || f === JOURNAL_FILE || f === `${JOURNAL_FILE}.tmp`;
  let old: Journal | undefined;
  try {
    old = await readJournal(out, existing);
  } catch (e) {
    if (!opts.overwrite) throw new MoeError(`${e instanceof Error ? e.message : String(e)}; use overwrite to start over`, out.name);
  }
  const clash = existing.filter((f) => f !== LOCK_FILE && ours(f));
  const removeOld = async () => {
    // The earlier child stops looking complete before anything of it goes.
    if (existing.includes(INDEX_FILE)) await out.remove(INDEX_FILE);
    for (const f of clash) if (f !== INDEX_FILE) await out.remove(f);
  };

  if (old && !opts.overwrite) {
    const total = plan.shards.length;
    if (!opts.resume) {
      throw new MoeError(
        `the output folder holds an interrupted merge (${old.shards.length} of its shards complete): resume it, or overwrite to start over`,
        out.name,
      );
    }
    const why = fingerprintChange(old.fingerprint, fingerprint);
    if (why) {
      throw new MoeError(`cannot resume the interrupted merge: ${why}. Overwrite to start over (its ${old.shards.length} completed shards are discarded)`, out.name);
    }
    const byFile = new Map(plan.shards.map((s) => [s.file, s]));
    for (const rec of old.shards) {
      const shard = byFile.get(rec.file);
      if (!shard) continue;
      state.checkCancel();
      const v = await verifyShard(out, existing, rec, shard, tmpName(out, shard.file), pool);
      if (v.ok) kept.set(rec.file, { name: v.name, rec });
      else opts.onNotice?.(`shard ${rec.file} of the interrupted merge is written again: ${v.why}`);
    }
    // Everything else of the interrupted run goes: the shard it was writing, its small files.
    const keptNames = new Set([...kept.values()].map((k) => k.name));
    for (const f of clash) if (!keptNames.has(f) && f !== JOURNAL_FILE) await out.remove(f);
    opts.onNotice?.(`resuming: ${kept.size} of ${total} shards are kept from the interrupted merge`);
  } else if (clash.length > 0) {
    if (!opts.overwrite) {
      const shown = clash.slice(0, 5).join(', ') + (clash.length > 5 ? ` and ${clash.length - 5} more` : '');
      throw new MoeError(
        `the output folder already holds ${shown}` +
          (opts.resume ? ' (and no journal of an interrupted merge: nothing to resume)' : '') +
          '; choose an empty folder or overwrite',
        out.name,
      );
    }
    await removeOld();
  } else if (opts.resume) {
    opts.onNotice?.('nothing to resume in the output folder: starting from the beginning');
  }
  state.journal = {
    format: JOURNAL_FORMAT,
    started: new Date().toISOString(),
    fingerprint,
    shards: plan.shards.filter((s) => kept.has(s.file)).map((s) => kept.get(s.file)!.rec),
  };
  await writeJournal(out, state.journal);
  return kept;
}

async function checkFreeSpace(plan: MergePlan, out: OutputFolder, kept: Map<string, unknown>): Promise<void> {
  const free = await out.freeBytes?.();
  // A shard may need twice its size while written (the browser writes a swap file first).
  const toWrite = plan.totalBytes - plan.shards.filter((s) => kept.has(s.file)).reduce((n, s) => n + s.bytes, 0);
  const need = toWrite + plan.shards.reduce((m, s) => Math.max(m, s.bytes), 0);
  if (free !== undefined && free < need) {
    throw new MoeError(`not enough free space: the child needs ${need} bytes while written, ${free} are free`, out.name);
  }
}

/**
 * Removes what this run created, except completed shards and the journal when any shard is
 * complete. A run stopped before it wrote its journal created nothing: an interrupted merge found
 * in the folder (and its journal) is left exactly as it was.
 */
async function cleanUp(state: RunState): Promise<KeptWork | undefined> {
  const { out, journal, plan } = state;
  if (state.open) await state.open.abort().catch(() => {});
  if (!journal) return undefined;
  const keep = new Set<string>();
  if (journal.shards.length > 0) {
    keep.add(JOURNAL_FILE);
    for (const rec of journal.shards) {
      keep.add(tmpName(out, rec.file));
      keep.add(rec.file);
    }
  }
  for (const f of state.written) if (!keep.has(f)) await out.remove(f).catch(() => {});
  if (journal.shards.length === 0) {
    await out.remove(JOURNAL_FILE).catch(() => {});
    await out.remove(`${JOURNAL_FILE}.tmp`).catch(() => {});
    return undefined;
  }
  const bytes = journal.shards.reduce((n, r) => n + r.bytes, 0);
  return { shards: journal.shards.length, of: plan.shards.length, bytes };
}

/** Checks a shard on disk before the index names it: the planned size and header. */
async function checkShardOnDisk(out: OutputFolder, name: string, shard: PlannedShard): Promise<void> {
  const src = await out.open(name);
  try {
    if (src.size !== shard.bytes) throw new MoeError(`has ${src.size} bytes on disk, ${shard.bytes} were written; the index is not written`, `${out.name}/${name}`);
    const head = await src.read(0, shard.header.length);
    if (head.some((b, i) => b !== shard.header[i])) throw new MoeError('its header on disk is not the one written; the index is not written', `${out.name}/${name}`);
  } finally {
    await src.close?.();
  }
}

async function finalName(state: RunState, from: string, to: string): Promise<void> {
  if (from === to) return;
  await state.out.rename(from, to);
  state.written.delete(from);
  state.written.add(to);
}

/** Creates a file of the child under its temporary name, as the one being written (aborted on failure). */
async function startFile(state: RunState, name: string): Promise<OutputFile> {
  const tmp = tmpName(state.out, name);
  state.progress.file = name;
  const f = await state.out.create(tmp);
  state.open = f;
  state.written.add(tmp);
  return f;
}

async function endFile(state: RunState, f: OutputFile): Promise<void> {
  await f.close();
  state.open = undefined;
}

async function writeSmall(state: RunState, name: string, bytes: Uint8Array): Promise<void> {
  const f = await startFile(state, name);
  await f.write(bytes);
  await endFile(state, f);
  state.progress.bytesDone += bytes.length;
}

/** A file of the base copied as it is, block by block. */
async function copyFile(src: ByteSource, name: string, state: RunState): Promise<void> {
  const file = await startFile(state, name);
  for (let o = 0; o < src.size; o += COPY_BLOCK) {
    const bytes = await src.read(o, Math.min(COPY_BLOCK, src.size - o));
    await file.write(bytes);
    state.progress.bytesDone += bytes.length;
  }
  await endFile(state, file);
}

/** Bytes of spans hashed per kernel call: few messages, yet hashing keeps pace with writing. */
const HASH_BATCH = 8 * 1024 * 1024;

/**
 * The checksums of what a shard was written in. Buffers are hashed in the kernel workers after
 * they are written (handed over, not copied: the writer is done with them); a span rewritten in
 * place (fresh FP8 scales) is hashed again.
 */
class SpanHasher {
  /** `version` counts rewrites: a hash arriving for an older version of the span is dropped. */
  private readonly spans: { pos: number; len: number; version: number; hash?: bigint }[] = [];
  private readonly byPos = new Map<number, number>();
  private batch: { index: number; version: number; bytes: Uint8Array }[] = [];
  private batchBytes = 0;
  private readonly pending: Promise<void>[] = [];
  constructor(private readonly pool: KernelPool) {}

  /** A span was written; `bytes` is handed over (the caller must not use it afterwards). */
  add(pos: number, bytes: Uint8Array): void {
    this.byPos.set(pos, this.spans.length);
    this.spans.push({ pos, len: bytes.length, version: 0 });
    this.queue(this.spans.length - 1, bytes);
  }

  /** The span written at `pos` was rewritten with `bytes` (same length, handed over). */
  replace(pos: number, bytes: Uint8Array): void {
    const i = this.byPos.get(pos);
    const span = i === undefined ? undefined : this.spans[i];
    if (!span || span.len !== bytes.length) throw new Error(`internal: no span of ${bytes.length} bytes at ${pos} to rewrite`);
    span.version++;
    span.hash = undefined;
    this.queue(i!, bytes);
  }

  private queue(index: number, bytes: Uint8Array): void {
    this.batch.push({ index, version: this.spans[index]!.version, bytes });
    this.batchBytes += bytes.length;
    if (this.batchBytes >= HASH_BATCH) this.flush();
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const hashes = this.pool.hashMany(batch.map((b) => b.bytes));
    const settled = hashes.then((hs) => {
      batch.forEach((b, k) => {
        const span = this.spans[b.index]!;
        if (span.version === b.version) span.hash = hs[k]!;
      });
    });
    settled.catch(() => {});
    this.pending.push(settled);
  }

  async finish(): Promise<{ spans: [number, number][]; checksum: string }> {
    this.flush();
    await Promise.all(this.pending);
    const hashes = this.spans.map((s) => {
      if (s.hash === undefined) throw new Error(`internal: the span at ${s.pos} was never hashed`);
      return s.hash;
    });
    return { spans: encodeSpans(this.spans.map((s) => s.len)), checksum: await rootChecksum(this.pool, hashes) };
  }
}

/** One shard: header, then every tensor's bytes in order, under its temporary name. */
async function writeShard(ctx: JobContext, shard: PlannedShard, window: number, state: RunState): Promise<ShardRecord> {
  const { progress, checkCancel } = state;
  checkCancel();
  const file = await startFile(state, shard.file);
  const hasher = new SpanHasher(ctx.pool);
  const report = emptyShardReport();
  let position = 0;
  const pipeline = new OrderedPipeline<Uint8Array[]>(window, async (parts) => {
    for (const p of parts) {
      checkCancel();
      const len = p.length; // read first: the hasher takes the buffer over
      await file.write(p);
      hasher.add(position, p);
      position += len;
      progress.bytesDone += len;
    }
    state.emit();
  });
  try {
    // The header belongs to the plan: written from a copy, since written buffers go to the hasher.
    await pipeline.add(async () => [shard.header.slice()]);
    await writeShardData(ctx, shard, pipeline, file, state, hasher, report);
  } catch (e) {
    await pipeline.settle();
    throw e;
  }
  if (position !== shard.bytes) throw new Error(`internal: ${shard.file} has ${position} bytes, planned ${shard.bytes}`);
  const sums = await hasher.finish();
  await endFile(state, file);
  return { file: shard.file, bytes: shard.bytes, spans: sums.spans, checksum: sums.checksum, report };
}

async function writeShardData(
  ctx: JobContext,
  shard: PlannedShard,
  pipeline: OrderedPipeline<Uint8Array[]>,
  file: OutputFile,
  state: RunState,
  hasher: SpanHasher,
  report: ShardReport,
): Promise<void> {
  const { progress, checkCancel, emit } = state;
  const dataStart = shard.header.length;
  const jobs = new Map<number, TensorJob>();
  const patches: { position: number; length: number; bytes: Promise<Uint8Array> }[] = [];
  const jobOf = async (i: number) => {
    let job = jobs.get(i);
    if (!job) {
      const made = await tensorJob(ctx, ctx.plan.tensors[i]!);
      report[made.made]++;
      if (made.threshold) report.threshold.push([made.threshold.name, Number.isFinite(made.threshold.rmsDiff) ? made.threshold.rmsDiff : null, made.threshold.kept]);
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
    hasher.replace(p.position, bytes);
  }
}

/** An interrupted merge found in an output folder, seen from the plan about to run there. */
export interface InterruptedMerge {
  /** Shards its journal records as complete, and how many the plan has. */
  shards: number;
  of: number;
  /** Whether this plan can resume it; if not, why (a changed recipe or parent, …). */
  resumable: boolean;
  why?: string;
}

/** What `resume` would find in the folder (the shards themselves are checked when it runs). */
export async function interruptedMerge(plan: MergePlan, out: OutputFolder, pool: KernelPool): Promise<InterruptedMerge | undefined> {
  let journal: Journal | undefined;
  try {
    journal = await readJournal(out, await out.list());
  } catch (e) {
    return { shards: 0, of: plan.shards.length, resumable: false, why: e instanceof Error ? e.message : String(e) };
  }
  if (!journal) return undefined;
  const why = fingerprintChange(journal.fingerprint, await planFingerprint(plan, pool));
  const r: InterruptedMerge = { shards: journal.shards.length, of: plan.shards.length, resumable: why === undefined };
  if (why) r.why = why;
  return r;
}

/**
 * Removes an interrupted merge from a folder, under the lock: its journal and the temporary files
 * of a merge (`….partial` and the journal's shards); nothing else. Returns how many files went.
 */
export async function discardInterrupted(out: OutputFolder, owner: LockOwner): Promise<number> {
  const lock = await out.lock(owner);
  try {
    const files = await out.list();
    const journal = await readJournal(out, files).catch(() => undefined);
    const listed = new Set(journal?.shards.map((s) => s.file) ?? []);
    const gone = files.filter((f) => f.endsWith(TMP_SUFFIX) || f === JOURNAL_FILE || f === `${JOURNAL_FILE}.tmp` || (listed.has(f) && !files.includes(INDEX_FILE)));
    for (const f of gone) await out.remove(f);
    return gone.length;
  } finally {
    await lock.release();
  }
}
