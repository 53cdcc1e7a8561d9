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
import { codecName, sameCodec } from '../formats/codec.ts';
import { LOCK_FILE, MoeError, type ByteSource, type LockOwner, type OutputFile, type OutputFolder, type OutputLock } from '../io.ts';
import type { KernelPool, Lane } from '../kernels/pool.ts';
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
import { FileTable, type SourceIds } from './files.ts';
import {
  JOURNAL_FILE, JOURNAL_FORMAT, emptyShardReport, encodeSpans, fingerprintChange, planFingerprint, readJournal, rootChecksum, verifyShard, writeJournal,
  type Journal, type ShardRecord, type ShardReport,
} from './journal.ts';
import { addRunnerUse, noRunnerUse, type RunnerTime, type RunnerUse, type Span, type StripeOutput, type StripeUnit, type Unit } from './units.ts';

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
  /** Shards computed side by side (each preferring its own runners); by default as many as runners, at most `SHARDS_IN_FLIGHT`. */
  shardsInFlight?: number;
  /** Values per stripe (tests use tiny stripes to cross stripe and block boundaries). */
  chunkElements?: number;
  /** Bytes of a shard written between two flushes to disk (tests use a few KB); 32 MiB by default. */
  flushEvery?: number;
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
  /**
   * The kernel runners' time on this run's units, summed over runners (a sweep's children share
   * one run, and each reports all of it): which of reading, computing, hashing and writing bounds
   * a merge on this machine.
   */
  runnerTime: RunnerTime;
  /**
   * The most WASM memory one kernel runner held, in bytes: the working memory each runner keeps,
   * sized by its units (stripes of CHUNK_ELEMENTS values, copies of COPY_BLOCK bytes) and the order
   * it ran them in, not by the model.
   */
  runnerMemory: number;
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

/** Bytes of a shard written between two flushes (where the platform has them). */
const FLUSH_EVERY = 32 * 1024 * 1024;

/**
 * Shards computed side by side at most, by default. Writers of one file take turns on its lock
 * (the page cache's copy is the one step that does not run in parallel), so a few files at once
 * let writing scale with cores; more would only lose more work to an interruption (a shard is
 * kept for resume once whole).
 */
export const SHARDS_IN_FLIGHT = 4;

/** How many shards to compute side by side with this pool. */
function shardLanes(pool: KernelPool, opts: MergeOptions): number {
  return Math.max(1, Math.min(pool.size, opts.shardsInFlight ?? SHARDS_IN_FLIGHT));
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
  /** The run's file ids by this plan's parent names. */
  ids: SourceIds;
  window: number;
  chunkElements: number;
  flushEvery: number;
  /** Shards kept from an interrupted run, and where each shard is on disk. */
  kept: Map<string, { name: string; rec: ShardRecord }>;
  onDisk: Map<string, string>;
  totals: ShardReport;
  /** Files created by this run, under the names they have now. */
  written: Set<string>;
  /** Files being written (a shard finishing while the next is written), aborted on failure. */
  open: Set<OutputFile>;
  journal: Journal | undefined;
  progress: MergeProgress;
  /** What the run's units took of the runners (one object, shared by a sweep's children). */
  runners: RunnerUse;
  checkCancel: () => void;
  emit: () => void;
}

export async function executeMerge(plan: MergePlan, out: OutputFolder, pool: KernelPool, opts: MergeOptions = {}): Promise<MergeReport> {
  return (await executeMerges([{ plan, out }], pool, opts))[0]!;
}

/** A child of a sweep: its plan and its output folder. */
export interface MergeJob {
  plan: MergePlan;
  out: OutputFolder;
}

/**
 * Several children of the same parents in one pass (a λ sweep): each parent byte is read once for
 * all children whose shards are laid out alike (a recipe that only changes weights); every child
 * keeps the promises of a single merge (its own lock, temporary names, index last, cleanup). A
 * failure stops every child. `resume` works on one child at a time.
 */
export async function executeMerges(jobs: MergeJob[], pool: KernelPool, opts: MergeOptions = {}): Promise<MergeReport[]> {
  if (jobs.length === 0) return [];
  if (jobs.length > 1 && opts.resume) throw new MoeError('resume continues one interrupted merge at a time: give one recipe with --resume');
  const started = performance.now();
  const signal = opts.signal;
  const checkCancel = () => {
    if (signal?.aborted) throw new MergeCancelled();
  };
  const notice = (t: string) => opts.onNotice?.(t);
  const total: MergeProgress = {
    bytesDone: 0, bytesTotal: 0, resumedBytes: 0, tensor: '', tensorsDone: 0, tensorsTotal: 0, file: '', elapsedMs: 0,
  };
  const emit = () => {
    total.elapsedMs = performance.now() - started;
    // A sweep reports all its children as one.
    total.bytesDone = states.reduce((n, st) => n + st.progress.bytesDone, 0);
    total.resumedBytes = states.reduce((n, st) => n + st.progress.resumedBytes, 0);
    total.tensorsDone = states.reduce((n, st) => n + st.progress.tensorsDone, 0);
    const cur = states.find((st) => st.progress.file !== '') ?? states[0]!;
    total.tensor = cur.progress.tensor;
    total.file = jobs.length > 1 ? `${cur.out.name}/${cur.progress.file}` : cur.progress.file;
    opts.onProgress?.({ ...total });
  };

  // Refusals that need nothing written.
  const outs = new Set<string>();
  for (const { plan, out } of jobs) {
    if (outs.has(out.name)) throw new MoeError('two children of one sweep would be written to the same folder', out.name);
    outs.add(out.name);
    for (const [name, model] of plan.parents) {
      if (await out.overlaps(model.folder)) {
        throw new MoeError(`the output folder is (or is inside) the folder of parent "${name}" (${model.folder.name}); parents are never written to`, out.name);
      }
    }
  }
  const owner: LockOwner = opts.owner ?? { tool: 'moe-studio', started: new Date().toISOString() };
  const files = new FileTable();
  const runners = noRunnerUse();
  const states: RunState[] = [];
  for (const { plan, out } of jobs) {
    const progress: MergeProgress = {
      bytesDone: 0, bytesTotal: plan.totalBytes, resumedBytes: 0, tensor: '', tensorsDone: 0, tensorsTotal: plan.tensors.length, file: '', elapsedMs: 0,
    };
    total.bytesTotal += plan.totalBytes;
    total.tensorsTotal += plan.tensors.length;
    states.push({
      plan, out, pool, files, ids: files.bound(plan.parents), window: opts.window ?? pool.size * 2, chunkElements: opts.chunkElements ?? CHUNK_ELEMENTS, flushEvery: opts.flushEvery ?? FLUSH_EVERY,
      written: new Set(), open: new Set(), journal: undefined, progress, runners, checkCancel, emit, kept: new Map(), onDisk: new Map(), totals: emptyShardReport(),
    });
  }
  const locks: OutputLock[] = [];
  const lanes = shardLanes(pool, opts);
  // The shards computed before, made durable and journaled in order meanwhile.
  let finishing: Promise<void> | undefined;
  /** Shards being computed, by lane: settled (never rejected) when done. */
  const busyLanes = new Map<number, Promise<void>>();
  /** Each started shard's finishing, settled (never rejected) in order; how many have settled. */
  const links: Promise<void>[] = [];
  let linksSettled = 0;
  let failure: { error: unknown } | undefined;
  try {
    for (const st of states) {
      const fingerprint = await planFingerprint(st.plan, pool);
      await st.out.prepare();
      const lock = await st.out.lock(owner);
      locks.push(lock);
      if (lock.replacedStale) {
        const s = lock.replacedStale;
        const who = s.pid !== undefined ? `pid ${s.pid} on ${s.host}, which is no longer running` : `${s.tool}${s.started ? ` (started ${s.started})` : ''}, which is gone`;
        notice(`took over a stale merge lock: ${LOCK_FILE} was left by ${who}`);
      }
      checkCancel();
      st.kept = await startOrResume(st, await st.out.list(), fingerprint, opts);
      await checkFreeSpace(st.plan, st.out, st.kept, lanes);
    }
    await opts.pause?.('started');
    checkCancel();

    for (const st of states) for (const [name, model] of st.plan.parents) await pool.openFiles(files.addModel(name, model));
    // Children laid out alike are written shard by shard together, each parent byte read once.
    const together = states.length > 1 && states.every((st) => sameLayout(st.plan, states[0]!.plan));
    if (states.length > 1 && !together) notice('the children are laid out differently (shards, tensors or formats): they are written one after another, each reading the parents');
    const groups = together ? [states] : states.map((st) => [st]);
    for (const group of groups) {
      const shards = group[0]!.plan.shards.length;
      // Up to `lanes` shards are computed side by side, each preferring its own runners (see
      // `Lane`), so a shard's file has fewer writers and no runner waits for a shard to drain.
      // Shards still finish one at a time, in order (flushed, checked, journaled, while later ones
      // are computed), so the journal only ever grows by whole shards, in order; a failure to
      // compute or finish one stops the run from starting another, and is raised once those
      // under way have settled.
      const stop = () => {
        checkCancel();
        if (failure) throw failure.error;
      };
      for (let i = 0; i < shards; i++) {
        const todo: RunState[] = [];
        for (const st of group) {
          const shard = st.plan.shards[i]!;
          const done = st.kept.get(shard.file);
          if (done) {
            st.onDisk.set(shard.file, done.name);
            addReport(st.totals, done.rec.report);
            st.progress.bytesDone += shard.bytes;
            st.progress.resumedBytes += shard.bytes;
            st.progress.tensorsDone += new Set(shard.entries.map((e) => e.tensor)).size;
          } else todo.push(st);
        }
        if (todo.length === 0) continue;
        while (busyLanes.size >= lanes) await Promise.race(busyLanes.values());
        // Shards computed but not yet finished stay few (each keeps its file open) when finishing
        // is slower than computing (a slow disk's flushes).
        while (links.length - linksSettled >= 2 * lanes) await links[linksSettled];
        stop();
        let lane = 0;
        while (busyLanes.has(lane)) lane++;
        // Streams side by side share the pool's window.
        const window = () => Math.ceil(todo[0]!.window / Math.max(1, busyLanes.size));
        const computed = writeShards(todo, i, { lane: { index: lane, of: lanes }, window, stop });
        busyLanes.set(
          lane,
          computed.then(
            () => void busyLanes.delete(lane),
            (error: unknown) => {
              failure ??= { error };
              busyLanes.delete(lane);
            },
          ),
        );
        const before = finishing;
        finishing = (async () => {
          // Every shard before this one settles first, finished or failed, whatever became of
          // this one: a failed run cleans up only once nothing is finishing.
          const made = await computed.then(
            (written) => ({ written }),
            (error: unknown) => ({ error }),
          );
          await before;
          if ('error' in made) throw made.error;
          const recs = await finishShards(made.written);
          for (const [k, st] of todo.entries()) {
            const shard = st.plan.shards[i]!;
            st.onDisk.set(shard.file, tmpName(st.out, shard.file));
            addReport(st.totals, recs[k]!.report);
            st.journal!.shards.push(recs[k]!);
            await writeJournal(st.out, st.journal!);
            await opts.pause?.(`shard-complete:${shard.file}`);
            checkCancel();
          }
        })();
        // Its failure stops the loop above, and is raised below.
        links.push(
          finishing.then(
            () => void linksSettled++,
            (error: unknown) => {
              failure ??= { error };
              linksSettled++;
            },
          ),
        );
      }
      await Promise.all(busyLanes.values());
    }
    await finishing?.catch(() => {});
    if (failure) throw failure.error;
    checkCancel();

    const reports: MergeReport[] = [];
    for (const st of states) reports.push(await finishChild(st, opts, started));
    emit();
    return reports;
  } catch (e) {
    // Shards still computed settle, and those finishing complete (kept for resume) or fail,
    // before anything is removed.
    await Promise.all(busyLanes.values());
    await finishing?.catch(() => {});
    // Shards computed but not finished: their writers close before their files are removed.
    await pool.closeFiles(files.outputIds()).catch(() => {});
    const kept = [];
    for (const st of states) kept.push(await cleanUp(st));
    const keptWork = kept.find((k) => k !== undefined);
    throw e instanceof MergeCancelled ? new MergeCancelled(keptWork) : keptWork ? new MergeInterrupted(e, keptWork) : e;
  } finally {
    for (const lock of locks) await lock.release().catch(() => {});
    await pool.closeFiles(files.all()).catch(() => {});
    for (const { out } of jobs) if ((await out.list().catch(() => ['?'])).length === 0) await out.discardCreated().catch(() => {});
  }
}

/** Do two plans write the same shards with the same tensors in the same places (a sweep over weights)? */
function sameLayout(a: MergePlan, b: MergePlan): boolean {
  if (a.shards.length !== b.shards.length || a.tensors.length !== b.tensors.length) return false;
  for (let i = 0; i < a.shards.length; i++) {
    const x = a.shards[i]!;
    const y = b.shards[i]!;
    if (x.file !== y.file || x.bytes !== y.bytes || x.header.length !== y.header.length || x.entries.length !== y.entries.length) return false;
    if (x.entries.some((e, k) => e.tensor !== y.entries[k]!.tensor || e.begin !== y.entries[k]!.begin || e.end !== y.entries[k]!.end)) return false;
  }
  return a.tensors.every((t, i) => t.name === b.tensors[i]!.name && sameCodec(t.codec, b.tensors[i]!.codec));
}

/** The small files, the checks on disk, the final names and the index of one child. */
async function finishChild(st: RunState, opts: MergeOptions, started: number): Promise<MergeReport> {
  const { plan, out, progress, checkCancel, totals } = st;
  const base = plan.parents.get(plan.base)!;
  await writeSmall(st, 'config.json', plan.configBytes);
  for (const f of plan.copiedFiles) {
    checkCancel();
    await copyFile(await base.folder.open(f), f, st);
  }
  const threshold: ThresholdDecision[] = totals.threshold.map(([name, rms, keptFromBase]) => ({ name, rmsDiff: rms ?? Infinity, kept: keptFromBase }));
  const thresholdKept = threshold.filter((d) => d.kept).length;
  const encoder = new TextEncoder();
  await writeSmall(st, RECIPE_FILE, encoder.encode(recipeToYaml(plan.recipe)));
  const cardBytes = encoder.encode(renderModelCard(plan, plan.recipe.threshold ? { thresholdKept, thresholdCandidates: threshold.length } : undefined));
  await writeSmall(st, CARD_FILE, cardBytes);
  checkCancel();
  await opts.pause?.('before-finalize');
  checkCancel();

  // Every shard the index will name, checked on disk; then the final names, the index last.
  for (const shard of plan.shards) await checkShardOnDisk(out, st.onDisk.get(shard.file)!, shard);
  for (const shard of plan.shards) await finalName(st, st.onDisk.get(shard.file)!, shard.file);
  for (const f of ['config.json', ...plan.copiedFiles, RECIPE_FILE, CARD_FILE]) await finalName(st, tmpName(out, f), f);
  await writeSmall(st, INDEX_FILE, indexBytes(plan));
  await finalName(st, tmpName(out, INDEX_FILE), INDEX_FILE);
  await out.remove(JOURNAL_FILE);
  progress.file = '';
  return {
    files: plan.files.map((f) => ({ name: f.name, bytes: f.name === CARD_FILE ? cardBytes.length : f.bytes })),
    totalBytes: progress.bytesDone,
    resumedShards: st.kept.size,
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
    runnerTime: { ...st.runners.time },
    runnerMemory: st.runners.memory,
  };
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

async function checkFreeSpace(plan: MergePlan, out: OutputFolder, kept: Map<string, unknown>, lanes: number): Promise<void> {
  const free = await out.freeBytes?.();
  const left = plan.shards.filter((s) => !kept.has(s.file));
  const toWrite = plan.totalBytes - plan.shards.filter((s) => kept.has(s.file)).reduce((n, s) => n + s.bytes, 0);
  // Where a file takes its size twice while written (a swap file), the `lanes` largest shards
  // being written at once may.
  const swap = out.swapsWhileWriting ? left.map((s) => s.bytes).sort((a, b) => b - a).slice(0, lanes).reduce((n, b) => n + b, 0) : 0;
  const need = toWrite + swap;
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
  for (const f of state.open) await f.abort().catch(() => {});
  state.open.clear();
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
  state.open.add(f);
  state.written.add(tmp);
  return f;
}

async function endFile(state: RunState, f: OutputFile): Promise<void> {
  await f.close();
  state.open.delete(f);
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
    const list = cellDiffUnits(state.ids, a, b, name, state.chunkElements);
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
    addRunnerUse(state.runners, r);
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

/** A shard of one child being written: its file, the ranges written so far, its report. */
interface ShardTarget {
  st: RunState;
  shard: PlannedShard;
  file: OutputFile;
  id: number;
  spans: { offset: number; length: number; hash: bigint }[];
  /** Bytes written since the last flush began; the flush under way (it never rejects: see `flushFailed`). */
  unflushed: number;
  flushing: Promise<void> | undefined;
  flushBusy: boolean;
  flushFailed?: unknown;
  report: ShardReport;
  /** Units left per tensor, for progress. */
  remaining: Map<string, number>;
  byName: Map<string, PlannedTensor>;
}

/** Bands equal in every span: the same parent bytes. */
function sameBands(a: StripeUnit, b: StripeUnit): boolean {
  const span = (x?: Span, y?: Span) => (!x && !y) || (!!x && !!y && x.file === y.file && x.offset === y.offset && x.length === y.length);
  return (
    a.slabs === b.slabs && a.rows === b.rows && a.cols === b.cols && a.bands.length === b.bands.length &&
    a.bands.every((x, i) => {
      const y = b.bands[i]!;
      return x.rows === y.rows && x.cols === y.cols && sameCodec(x.codec, y.codec) && span(x.data, y.data) && span(x.scales, y.scales);
    })
  );
}

/**
 * The same unit of several children, made as one: a stripe computes each child's output from one
 * read of its bands; a copy reads its source ranges once (the runner reads equal ranges once) and
 * writes every child's. Units that do not line up stay apart.
 */
function zipUnits(lists: Unit[][]): Unit[] {
  if (lists.length === 1) return lists[0]!;
  const n = lists[0]!.length;
  if (lists.some((l) => l.length !== n)) return lists.flat();
  const out: Unit[] = [];
  for (let i = 0; i < n; i++) {
    const us = lists.map((l) => l[i]!);
    const u0 = us[0]!;
    if (u0.kind === 'stripe' && us.every((u) => u.kind === 'stripe' && sameBands(u0, u))) {
      const more: StripeOutput[] = us.slice(1).map((u) => {
        const s = u as StripeUnit;
        const o: StripeOutput = { tensor: s.tensor, out: s.out, pieces: s.pieces, data: s.data };
        if (s.scales) o.scales = s.scales;
        return o;
      });
      out.push({ ...u0, more });
    } else if (u0.kind === 'copy' && us.every((u) => u.kind === 'copy')) {
      out.push({ kind: 'copy', tensor: u0.tensor, parts: us.flatMap((u) => (u as Extract<Unit, { kind: 'copy' }>).parts) });
    } else out.push(...us);
  }
  return out;
}

/** How a shard is computed beside others: its runners, its share of the window, what stops it. */
interface ShardSide {
  lane: Lane;
  window: () => number;
  /** Throws when the run is cancelled or another shard failed. */
  stop: () => void;
}

/**
 * Shard `index` of each child (several children of a sweep laid out alike), written by the units
 * that make it, each at its own offsets, under temporary names; returned with every unit done, for
 * `finishShards`.
 */
async function writeShards(states: RunState[], index: number, side: ShardSide): Promise<ShardTarget[]> {
  const { pool, files } = states[0]!;
  side.stop();
  const targets: ShardTarget[] = [];
  const byFile = new Map<number, ShardTarget>();
  try {
    for (const st of states) {
      const shard = st.plan.shards[index]!;
      const file = await startFile(st, shard.file);
      const entry = files.addOutput(file);
      await pool.openFiles([entry]);
      const t: ShardTarget = { st, shard, file, id: entry.id, spans: [], unflushed: 0, flushing: undefined, flushBusy: false, report: emptyShardReport(), remaining: new Map(), byName: new Map() };
      targets.push(t);
      byFile.set(entry.id, t);
    }
    const kept = new Map<ShardTarget, Set<PlannedCell>>();
    for (const t of targets) {
      const set = new Set<PlannedCell>();
      await decideThreshold(t.st, [...new Set(t.shard.entries.map((e) => e.tensor))], set, t.report);
      kept.set(t, set);
    }
    const tensorLists = targets.map((t) => [...new Set(t.shard.entries.map((e) => e.tensor))]);
    // Where each tensor's stored parts go in its shard: one map per shard, not one per tensor (a
    // shard of n tensors would cost n² otherwise).
    const where = targets.map((t) => placements(t.shard, t.id));
    function* units(): Generator<Unit> {
      // The header belongs to the plan: sent as a copy, since units may be handed to a worker.
      for (const t of targets) yield { kind: 'bytes', tensor: t.shard.file, to: { file: t.id, offset: 0, length: t.shard.header.length }, bytes: t.shard.header.slice() };
      const n = tensorLists[0]!.length;
      for (let k = 0; k < n; k++) {
        const lists = targets.map((t, j) => {
          const ti = tensorLists[j]![k]!;
          const tensor = t.st.plan.tensors[ti]!;
          const list = compileTensor(t.st.ids, tensor, where[j]!.get(ti)!, { chunkElements: t.st.chunkElements, kept: kept.get(t)! });
          t.report[madeOf(tensor, kept.get(t)!)]++;
          t.byName.set(tensor.name, tensor);
          t.remaining.set(tensor.name, list.length);
          if (list.length === 0) t.st.progress.tensorsDone++;
          return list;
        });
        yield* zipUnits(lists);
      }
    }
    await runUnits(pool, files, units(), async (u, r) => {
      addRunnerUse(states[0]!.runners, r);
      for (const w of r.written) {
        const t = byFile.get(w.file);
        if (!t) throw new Error(`internal: a unit wrote file ${w.file}, which no shard of this pass is`);
        if (w.bytes) await t.file.writeAt(w.offset, w.bytes);
        t.spans.push({ offset: w.offset, length: w.length, hash: w.hash });
        t.st.progress.bytesDone += w.length;
        t.unflushed += w.length;
        flushSoFar(t);
      }
      if (r.bad > 0) {
        const tensor = targets.map((t) => t.byName.get(u.tensor)).find((x) => x !== undefined);
        throw new MoeError(
          `mixing gives ${r.bad} value${r.bad > 1 ? 's' : ''} that ${tensor ? codecName(tensor.codec) : 'the output format'} cannot store (NaN${tensor && tensor.codec.kind !== 'fp8' ? ' or ±inf' : ''}; a parent holds such values here)`,
          undefined,
          u.tensor,
        );
      }
      // Progress: the unit is done for every child it wrote (children name the tensor alike).
      for (const t of new Set(r.written.map((w) => byFile.get(w.file)!))) {
        const left = t.remaining.get(u.tensor);
        if (left === undefined) continue;
        t.remaining.set(u.tensor, left - 1);
        t.st.progress.tensor = u.tensor;
        if (left === 1) t.st.progress.tensorsDone++;
      }
      states[0]!.emit();
    }, { window: side.window, check: side.stop, lane: side.lane });
  } catch (e) {
    await closeTargets(targets);
    throw e;
  }
  return targets;
}

/**
 * Starts making a shard's bytes so far durable, when enough were written and no flush is under
 * way: the disk writes back while the workers go on, and the shard's close waits only for the
 * rest (flushing a whole shard at its end would leave the workers idle for as long). A failed
 * flush is raised at the next unit's result, or when the shard finishes.
 */
function flushSoFar(t: ShardTarget): void {
  if (t.flushFailed !== undefined) throw t.flushFailed;
  if (!t.file.flush || t.flushBusy || t.unflushed < t.st.flushEvery) return;
  t.unflushed = 0;
  t.flushBusy = true;
  t.flushing = t.file.flush().then(
    () => void (t.flushBusy = false),
    (e) => {
      t.flushFailed = e;
      t.flushBusy = false;
    },
  );
}

/** Closes the shards' writers in the workers (the coordinator's handles stay open). */
async function closeTargets(targets: ShardTarget[]): Promise<void> {
  for (const t of targets) {
    await t.st.pool.closeFiles([t.id]).catch(() => {});
    t.st.files.dropOutput(t.id);
  }
}

/**
 * Shards whose units are all done, finished: their writers closed, their ranges checked to tile
 * each file, their checksums computed, and each file flushed to disk and closed.
 */
async function finishShards(targets: ShardTarget[]): Promise<ShardRecord[]> {
  await closeTargets(targets);
  const recs: ShardRecord[] = [];
  for (const t of targets) {
    const pool = t.st.pool;
    // The units' ranges must tile the file exactly: header, then every byte once.
    t.spans.sort((a, b) => a.offset - b.offset);
    let pos = 0;
    const kept: typeof t.spans = [];
    for (const sp of t.spans) {
      if (sp.length === 0) continue;
      if (sp.offset !== pos) throw new Error(`internal: ${t.shard.file} has ${sp.offset > pos ? 'a gap' : 'an overlap'} at byte ${Math.min(pos, sp.offset)}`);
      pos += sp.length;
      kept.push(sp);
    }
    if (pos !== t.shard.bytes) throw new Error(`internal: ${t.shard.file} has ${pos} bytes, planned ${t.shard.bytes}`);
    const checksum = await rootChecksum(pool, kept.map((sp) => sp.hash));
    await t.flushing;
    if (t.flushFailed !== undefined) throw t.flushFailed;
    await endFile(t.st, t.file);
    recs.push({ file: t.shard.file, bytes: t.shard.bytes, spans: encodeSpans(kept.map((sp) => sp.length)), checksum, report: t.report });
  }
  return recs;
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
 * What an interrupted merge left that no resume can use: `.partial` files its journal does not
 * list as complete (the shard being written when it stopped), an unreadable journal, a half-written
 * journal. Completed shards and the journal stay, for Resume. Returns the files removed and how
 * many completed shards remain; nothing is touched while another merge holds the folder's lock.
 */
export async function tidyInterrupted(out: OutputFolder, owner: LockOwner): Promise<{ removed: string[]; resumable: number }> {
  const lock = await out.lock(owner);
  try {
    const files = await out.list();
    const journal = await readJournal(out, files).catch(() => null);
    // The journal names shards by their final names; on disk they are the temporary ones.
    const listed = new Set(journal?.shards.map((s) => tmpName(out, s.file)) ?? []);
    const removed = files.filter((f) => (f.endsWith(TMP_SUFFIX) && !listed.has(f)) || f === `${JOURNAL_FILE}.tmp` || (f === JOURNAL_FILE && journal === null));
    for (const f of removed) await out.remove(f);
    return { removed, resumable: [...listed].filter((f) => files.includes(f)).length };
  } finally {
    await lock.release();
  }
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
