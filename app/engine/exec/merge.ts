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
import { codecName } from '../formats/codec.ts';
import { LOCK_FILE, MoeError, type ByteSource, type LockOwner, type OutputFile, type OutputFolder, type OutputLock } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { addStats, emptyStats, type DiffStats } from '../kernels/types.ts';
import { CARD_FILE, INDEX_FILE, RECIPE_FILE, indexBytes } from '../plan/plan.ts';
import { itemName, wholeOf } from '../model/items.ts';
import type { MergePlan, PlannedCell, PlannedShard, PlannedTensor, SourceCell } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';
import { figuresOf } from '../report/metrics.ts';
import { renderModelCard } from '../report/model-card.ts';
import { formatBytes } from '../report/format.ts';
import { CHUNK_ELEMENTS, COPY_BLOCK, cellDiffUnits, compileTensor, type Placement } from './compile.ts';
import { runUnits } from './dispatch.ts';
import { FileTable } from './files.ts';
import {
  JOURNAL_FILE, JOURNAL_FORMAT, emptyShardReport, encodeSpans, fingerprintChange, planFingerprint, readJournal, rootChecksum, verifyShard, writeJournal,
  type Journal, type ShardRecord, type ShardReport,
} from './journal.ts';
import type { Unit } from './units.ts';

export { COPY_BLOCK };

/** The AoE threshold's verdict on one mixed tensor or expert region. */
export interface ThresholdDecision {
  /** The tensor, and for a region its expert and projection ("…experts.gate_up_proj[5].up"). */
  name: string;
  /** Largest rms_diff from the base over the mixed parents (Infinity when non-finite values differ). */
  rmsDiff: number;
  kept: boolean;
}

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
  /** Batches of units in flight; defaults to twice the pool size. */
  window?: number;
  /** Values per stripe (tests use tiny stripes to cross stripe and block boundaries). */
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
  assembled: number;
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
  files: FileTable;
  window: number;
  chunkElements: number;
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
  const files = new FileTable();
  const state: RunState = {
    plan, out, pool, files, window: opts.window ?? pool.size * 2, chunkElements: opts.chunkElements ?? CHUNK_ELEMENTS,
    written: new Set(), open: undefined, journal: undefined, progress, checkCancel, emit,
  };
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
    for (const [name, model] of plan.parents) await pool.openFiles(files.addModel(name, model));
    const onDisk = new Map<string, string>();
    for (const shard of plan.shards) {
      const done = kept.get(shard.file);
      if (done) {
        onDisk.set(shard.file, done.name);
        addReport(totals, done.rec.report);
        progress.bytesDone += shard.bytes;
        progress.resumedBytes += shard.bytes;
        progress.tensorsDone += new Set(shard.entries.map((e) => e.tensor)).size;
        continue;
      }
      const rec = await writeShard(shard, state);
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
      assembled: totals.assembled,
      threshold,
      thresholdKept,
    };
    return report;
  } catch (e) {
    const keptWork = await cleanUp(state);
    throw e instanceof MergeCancelled ? new MergeCancelled(keptWork) : keptWork ? new MergeInterrupted(e, keptWork) : e;
  } finally {
    await lock?.release().catch(() => {});
    await pool.closeFiles(files.all()).catch(() => {});
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
  into.assembled += r.assembled;
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

/** Where each stored tensor of the shard's child tensors starts in the shard file. */
function placements(shard: PlannedShard, file: number): Map<number, Placement> {
  const out = new Map<number, Placement>();
  const dataStart = shard.header.length;
  for (const e of shard.entries) {
    let p = out.get(e.tensor);
    if (!p) out.set(e.tensor, (p = { file, offsets: [] }));
    p.offsets[e.stored] = dataStart + e.begin;
  }
  return out;
}

/** A cell's name in threshold reports: the tensor, and for a slab of several its index and projection. */
function cellName(t: PlannedTensor, slab: number, cell: PlannedCell): string {
  if (t.view.slabs <= 1 && t.slabs[0]!.length <= 1) return t.name;
  return itemName(t.name, slab, cell.proj, !!cell.bias);
}

/**
 * The AoE threshold for the shard's mixed cells: rms_diff of every other parent with a non-zero
 * weight against the base, over the whole cell (summed in unit order, so the figure does not
 * depend on the number of runners). Kept (copied from the base) only when all are below `below`
 * and no non-finite values were met.
 */
async function decideThreshold(state: RunState, tensors: number[], kept: Set<PlannedCell>, report: ShardReport): Promise<void> {
  const { plan, pool, files } = state;
  const below = plan.recipe.threshold?.below;
  if (below === undefined) return;
  // A decision covers an item as diffs show it: an expert's projection, or a whole tensor (a
  // router's rows are decided together, as one tensor).
  const groups: { name: string; cells: PlannedCell[]; pairs: { first: number; count: number }[] }[] = [];
  const units: Unit[] = [];
  const pairUnits = (a: SourceCell, b: SourceCell, name: string) => {
    const list = cellDiffUnits(files, a, b, name, state.chunkElements);
    const r = { first: units.length, count: list.length };
    units.push(...list);
    return r;
  };
  for (const i of tensors) {
    const t = plan.tensors[i]!;
    if (!t.thresholdCandidate) continue;
    const mixed = t.slabs.flatMap((cells, slab) => cells.filter((c) => c.thresholdBase && c.op.type === 'mix').map((cell) => ({ cell, slab })));
    if (t.role.kind !== 'routed_expert' && t.view.slabs > 1) {
      const others = new Set<string>();
      for (const { cell } of mixed) for (const x of (cell.op as Extract<PlannedCell['op'], { type: 'mix' }>).inputs) if (x.weight !== 0 && x.from.parent !== plan.base) others.add(x.from.parent);
      const baseW = plan.parents.get(plan.base)!.byName.get(t.baseName)!;
      const pairs = [...others].map((p) => {
        const w = plan.parents.get(p)!.byName.get(t.baseName)!;
        return pairUnits({ parent: plan.base, ...wholeOf(baseW) }, { parent: p, ...wholeOf(w) }, t.name);
      });
      groups.push({ name: t.name, cells: mixed.map((m) => m.cell), pairs });
      continue;
    }
    for (const { cell, slab } of mixed) {
      const pairs = (cell.op as Extract<PlannedCell['op'], { type: 'mix' }>).inputs
        .filter((x) => x.weight !== 0 && x.from.parent !== plan.base)
        .map((x) => pairUnits(cell.thresholdBase!, x.from, t.name));
      groups.push({ name: cellName(t, slab, cell), cells: [cell], pairs });
    }
  }
  if (groups.length === 0) return;
  const stats = new Array<DiffStats>(units.length);
  const index = new Map(units.map((u, i) => [u, i]));
  await runUnits(pool, files, units, (u, r) => {
    stats[index.get(u)!] = r.stats!;
  }, { window: state.window, check: state.checkCancel });
  for (const g of groups) {
    let worst = 0;
    for (const p of g.pairs) {
      let total = emptyStats();
      for (let k = p.first; k < p.first + p.count; k++) total = addStats(total, stats[k]!);
      worst = Math.max(worst, total.nonFinite > 0 ? Infinity : figuresOf(total).rmsDiff);
    }
    const keep = worst < below;
    if (keep) for (const c of g.cells) kept.add(c);
    report.threshold.push([g.name, Number.isFinite(worst) ? worst : null, keep]);
  }
}

/** How a tensor was finally made, once the threshold has spoken. */
function madeOf(t: PlannedTensor, kept: ReadonlySet<PlannedCell>): keyof Omit<ShardReport, 'threshold'> {
  if (t.made === 'mixed' && t.slabs.every((cells) => cells.every((c) => c.op.type !== 'mix' || kept.has(c)))) {
    return t.slabs.length === 1 && t.slabs[0]!.length === 1 ? 'copied' : 'assembled';
  }
  return t.made;
}

/** One shard, written by the units that make it, each at its own offsets, under its temporary name. */
async function writeShard(shard: PlannedShard, state: RunState): Promise<ShardRecord> {
  const { plan, pool, files, progress, checkCancel } = state;
  checkCancel();
  const file = await startFile(state, shard.file);
  const entry = files.addOutput(file);
  await pool.openFiles([entry]);
  const report = emptyShardReport();
  const spans: { offset: number; length: number; hash: bigint }[] = [];
  try {
    const tensors = [...new Set(shard.entries.map((e) => e.tensor))];
    const kept = new Set<PlannedCell>();
    await decideThreshold(state, tensors, kept, report);
    const place = placements(shard, entry.id);
    const remaining = new Map<string, number>();
    const byName = new Map<string, PlannedTensor>();
    function* units(): Generator<Unit> {
      // The header belongs to the plan: sent as a copy, since units may be handed to a worker.
      yield { kind: 'bytes', tensor: shard.file, to: { file: entry.id, offset: 0, length: shard.header.length }, bytes: shard.header.slice() };
      for (const i of tensors) {
        const t = plan.tensors[i]!;
        const list = compileTensor(files, t, place.get(i)!, { chunkElements: state.chunkElements, kept });
        report[madeOf(t, kept)]++;
        byName.set(t.name, t);
        remaining.set(t.name, list.length);
        if (list.length === 0) progress.tensorsDone++;
        yield* list;
      }
    }
    await runUnits(pool, files, units(), async (u, r) => {
      for (const w of r.written) {
        if (w.bytes) await file.writeAt(w.offset, w.bytes);
        spans.push({ offset: w.offset, length: w.length, hash: w.hash });
        progress.bytesDone += w.length;
      }
      if (r.bad > 0) {
        const t = byName.get(u.tensor);
        throw new MoeError(
          `mixing gives ${r.bad} value${r.bad > 1 ? 's' : ''} that ${t ? codecName(t.codec) : 'the output format'} cannot store (NaN${t && t.codec.kind !== 'fp8' ? ' or ±inf' : ''}; a parent holds such values here)`,
          undefined,
          u.tensor,
        );
      }
      const left = remaining.get(u.tensor);
      if (left !== undefined) {
        remaining.set(u.tensor, left - 1);
        progress.tensor = u.tensor;
        if (left === 1) progress.tensorsDone++;
      }
      state.emit();
    }, { window: state.window, check: checkCancel });
  } finally {
    await pool.closeFiles([entry.id]).catch(() => {});
    files.dropOutput(entry.id);
  }
  // The units' ranges must tile the file exactly: header, then every byte once.
  spans.sort((a, b) => a.offset - b.offset);
  let pos = 0;
  const kept: typeof spans = [];
  for (const sp of spans) {
    if (sp.length === 0) continue;
    if (sp.offset !== pos) throw new Error(`internal: ${shard.file} has ${sp.offset > pos ? 'a gap' : 'an overlap'} at byte ${Math.min(pos, sp.offset)}`);
    pos += sp.length;
    kept.push(sp);
  }
  if (pos !== shard.bytes) throw new Error(`internal: ${shard.file} has ${pos} bytes, planned ${shard.bytes}`);
  const checksum = await rootChecksum(pool, kept.map((sp) => sp.hash));
  await endFile(state, file);
  return { file: shard.file, bytes: shard.bytes, spans: encodeSpans(kept.map((sp) => sp.length)), checksum, report };
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
