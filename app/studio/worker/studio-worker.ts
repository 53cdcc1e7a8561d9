// The studio's coordinator worker: owns the opened parent models and the pool of kernel workers,
// and implements StudioApi for the UI (through Comlink). Only plain data leaves this worker.
import * as Comlink from 'comlink';
import type { Model } from '../../engine/model/types.ts';
import { TENSOR_KINDS, PROJECTIONS } from '../../engine/model/types.ts';
import { itemsOf, type ModelItem } from '../../engine/model/items.ts';
import { openModel } from '../../engine/model/open-model.ts';
import { codecName } from '../../engine/formats/codec.ts';
import { formatSummary, summarizeModel } from '../../engine/model/inspect.ts';
import { runnerMemoryText, runnerTimeText } from '../../engine/report/format.ts';
import { checkCompatibility } from '../../engine/model/compat.ts';
import { parseRecipe, parseRecipeFile, recipeToYaml } from '../../engine/recipe/parse.ts';
import type { Recipe } from '../../engine/recipe/schema.ts';
import { planMerge } from '../../engine/plan/plan.ts';
import { MergeCancelled, TMP_SUFFIX, discardInterrupted, executeMerges, interruptedMerge, tidyInterrupted, type MergeJob, type PausePoint } from '../../engine/exec/merge.ts';
import { JOURNAL_FILE, parentFingerprint } from '../../engine/exec/journal.ts';
import { LOCK_FILE, type LockOwner } from '../../engine/io.ts';
import { diffModels } from '../../engine/exec/diff.ts';
import type { KernelPool } from '../../engine/kernels/pool.ts';
import type {
  Bindings,
  CompatReport,
  DiffEvent,
  DiffMode,
  DiffResult,
  MergeProgress,
  MergeResult,
  OutputCheck,
  OutputTarget,
  ParentId,
  ParentInfo,
  ParentSource,
  ParentSummary,
  PlanSummary,
  Result,
  StudioApi,
  StudioStatus,
  TensorIndex,
} from '../shared/studio-api.ts';
import { FileListModelFolder, HandleModelFolder, HandleOutputFolder, errorText, opfsOutputFolder } from './browser-io.ts';
import { getKernelPool, kernelStatus } from './kernel-pool.ts';
import { planSummary, summaryBuffers } from './plan-summary.ts';

/**
 * Opens a Hub parent. The Hub client (@huggingface/hub and ours) is loaded only when a Hub parent
 * is asked for: a studio used with local folders never fetches it. The endpoint is HF_ENDPOINT as
 * the build found it (vite.config.ts exposes it and allows it in the page's CSP).
 */
async function openHubParent(ref: string, token: string | undefined) {
  const hub = await import('../../hub/index.ts');
  return hub.openHubFolder(hub.parseHubRef(ref), {
    endpoint: import.meta.env.HF_ENDPOINT || hub.DEFAULT_ENDPOINT,
    ...(token ? { token } : {}),
    tokenHint: 'enter a token with read access under "From the Hub"',
  });
}

/**
 * Values per stripe in the browser: each File slice read costs ~1 ms whatever its size, so fewer,
 * larger ones. 8 M values read an FP8 expert of 4096 × 2048 with its scales in one slice per parent
 * (4 M split it in two stripes and three slices): the FP8 merge in `npm run bench:studio` went from
 * 1.87–2.09 to 1.51–1.63 × the floor, the BF16 one was no slower, for ~50 MB more page memory.
 */
const BROWSER_CHUNK_ELEMENTS = 8 * 1024 * 1024;

interface OpenParent {
  id: ParentId;
  model: Model;
  items?: ModelItem[];
  index?: Map<string, number>;
  fingerprint?: Promise<string>;
}

const parents = new Map<ParentId, OpenParent>();
const jobs = new Map<string, AbortController>();
let nextId = 1;

function parentOf(id: ParentId): OpenParent {
  const p = parents.get(id);
  if (!p) throw new Error(`parent ${id} is not open (reload it)`);
  return p;
}

/** Item name → position in the parent's TensorIndex (items: tensors, and fused experts' regions). */
function indexOf(p: OpenParent): Map<string, number> {
  if (!p.index) {
    p.index = new Map();
    itemsOfParent(p).forEach((it, i) => p.index!.set(it.name, i));
  }
  return p.index;
}

/** The parent's items, in the order of its TensorIndex (computed once). */
function itemsOfParent(p: OpenParent): ModelItem[] {
  return (p.items ??= itemsOf(p.model));
}

/** The engine's own summary of a model (as `moe-studio inspect` prints it), shaped for the parent card. */
function summaryOf(model: Model): ParentSummary {
  const s = summarizeModel(model);
  const summary: ParentSummary = {
    folderName: model.folder.name,
    arch: s.family,
    modelType: s.modelType ?? '',
    layers: s.layers,
    moeLayers: s.moeLayers,
    denseLayers: s.denseLayers,
    experts: s.experts,
    sharedExperts: s.sharedExperts,
    dtypes: Object.entries(s.dtypes)
      .map(([dtype, v]) => ({ dtype, ...v }))
      .sort((a, b) => b.bytes - a.bytes),
    sizeOnDisk: s.sizeOnDisk,
    tensorCount: s.weights,
    kinds: TENSOR_KINDS.filter((k) => s.kinds[k] > 0),
    shardCount: s.shards,
    routerBias: s.routerBias,
    edits: s.edits,
    expertLayout: s.expertLayout,
    fusedLayouts: s.fusedLayouts,
    formats: Object.entries(s.formats)
      .map(([format, v]) => ({ format, ...v }))
      .sort((a, b) => b.bytes - a.bytes),
    otherFiles: s.otherFiles,
    text: formatSummary(s),
  };
  if (s.expertsPerToken !== undefined) summary.expertsPerToken = s.expertsPerToken;
  if (s.groups !== undefined) summary.groups = s.groups;
  if (s.topkGroups !== undefined) summary.topkGroups = s.topkGroups;
  if (s.hiddenSize !== undefined) summary.hiddenSize = s.hiddenSize;
  return summary;
}

function bound(bindings: Bindings, recipe: Recipe): Map<string, Model> {
  const map = new Map<string, Model>();
  for (const name of Object.keys(recipe.parents)) {
    const id = bindings[name];
    if (id === undefined) throw new Error(`recipe parent "${name}" is not one of the open parents`);
    map.set(name, parentOf(id).model);
  }
  return map;
}

async function outputFolder(target: OutputTarget): Promise<HandleOutputFolder> {
  if (target.kind === 'opfs') return opfsOutputFolder(target.folder);
  return new HandleOutputFolder(target.handle as unknown as FileSystemDirectoryHandle, false);
}

async function overlapProblems(out: HandleOutputFolder, bindings: Bindings): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, id] of Object.entries(bindings)) {
    const p = parents.get(id);
    if (!p) continue;
    if (await out.overlaps(p.model.folder)) {
      problems.push(`"${out.name}" is the folder of parent "${name}" (or inside it): pick another folder, a merge must never write into a parent`);
    }
  }
  return problems;
}

/** A plain, cloneable copy of an engine report (drops functions, Maps become objects). */
function plain(value: unknown): unknown {
  try {
    return JSON.parse(
      JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : ArrayBuffer.isView(v) ? undefined : v)),
    );
  } catch {
    return undefined;
  }
}

/**
 * How often a merge's progress reaches the page: each update repaints the merge sheet, which on two
 * cores is time taken from the kernel workers (at 10 a second, the page's main thread was busy
 * 0.6 s of a 3.7 s merge).
 */
const PROGRESS_MS = 250;

/**
 * Runs one merge or a sweep (several recipes, the parents read once) into the given folders,
 * with throttled progress; a cancel answers with what was kept instead of an error.
 */
async function runMerges(
  job: string,
  children: { recipe: Recipe; out: () => Promise<HandleOutputFolder> }[],
  bindings: Bindings,
  target: OutputTarget,
  options: { overwrite: boolean; resume: boolean },
  listen: (p: MergeProgress) => void,
): Promise<Result<MergeResult[]>> {
  const ctrl = new AbortController();
  jobs.set(job, ctrl);
  const started = performance.now();
  let last: MergeProgress | undefined;
  let sent = 0;
  const notices: string[] = [];
  const cancelled = (kept?: MergeResult['kept']): Result<MergeResult[]> => {
    const value: MergeResult = {
      cancelled: true, resumedShards: 0, notices, elapsedMs: performance.now() - started, bytesWritten: last?.bytesDone ?? 0,
      files: [], folder: target.kind === 'opfs' ? target.folder : '', report: undefined, warnings: [],
    };
    if (kept) value.kept = kept;
    return { ok: true, value: children.map(() => value) };
  };
  try {
    const jobsOut: MergeJob[] = [];
    for (const c of children) {
      const plan = await planMerge(c.recipe, bound(bindings, c.recipe));
      const out = await c.out();
      const problems = await overlapProblems(out, bindings);
      if (problems.length > 0) return { ok: false, error: problems.join('; ') };
      jobsOut.push({ plan, out });
    }
    const pool = await getKernelPool().catch(() => undefined);
    const reports = await executeMerges(jobsOut, pool ?? unavailablePool(), {
      chunkElements: BROWSER_CHUNK_ELEMENTS,
      signal: ctrl.signal,
      overwrite: options.overwrite,
      resume: options.resume,
      owner: studioOwner(),
      onNotice: (t) => notices.push(t),
      pause: (point) => testPauseAt(point, ctrl.signal),
      onProgress: (p) => {
        const cur: MergeProgress = { ...p };
        last = cur;
        const now = performance.now();
        if (now - sent > PROGRESS_MS) {
          sent = now;
          Promise.resolve(listen(cur)).catch(() => {});
        }
      },
    });
    const final = last;
    if (final) Promise.resolve(listen(final)).catch(() => {});
    return {
      ok: true,
      value: reports.map((report, k) => {
        const { plan, out } = jobsOut[k]!;
        return {
          cancelled: false,
          resumedShards: report.resumedShards,
          notices,
          elapsedMs: performance.now() - started,
          bytesWritten: report.totalBytes,
          files: report.files.map((f) => ({ name: f.name, bytes: f.bytes, what: plan.files.find((p) => p.name === f.name)?.what ?? 'copy' })),
          folder: out.name,
          report: plain(report),
          runners: `${runnerTimeText(report.runnerTime, report.elapsedMs, pool?.size ?? 0)}; ${runnerMemoryText(report.runnerMemory, pool?.size ?? 0)}`,
          warnings: [...plan.warnings],
        };
      }),
    };
  } catch (e) {
    if (e instanceof MergeCancelled || ctrl.signal.aborted) return cancelled(e instanceof MergeCancelled ? e.kept : undefined);
    return { ok: false, error: errorText(e) };
  } finally {
    jobs.delete(job);
  }
}

const api: StudioApi = {
  async status(): Promise<StudioStatus> {
    await getKernelPool().catch(() => undefined);
    const k = kernelStatus();
    return {
      crossOriginIsolated: self.crossOriginIsolated,
      kernelWorkers: k.workers,
      kernels: k.status,
      hardwareConcurrency: navigator.hardwareConcurrency || 1,
    };
  },

  async openParent(source: ParentSource): Promise<Result<ParentInfo>> {
    try {
      const folder =
        source.kind === 'hub'
          ? await openHubParent(source.ref, source.token)
          : source.kind === 'handle'
            ? new HandleModelFolder(source.handle as unknown as FileSystemDirectoryHandle)
            : new FileListModelFolder(source.name, source.files as unknown as File[]);
      const model = await openModel(folder).catch(async (e: unknown) => {
        if ('close' in folder) await (folder as { close(): Promise<void> }).close();
        throw e;
      });
      const id = `p${nextId++}`;
      parents.set(id, { id, model });
      return { ok: true, value: { id, summary: summaryOf(model) } };
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  },

  async removeParent(id: ParentId): Promise<void> {
    const p = parents.get(id);
    parents.delete(id);
    // A Hub parent's requests in flight stop with it.
    const folder = p?.model.folder as { close?: () => Promise<void> } | undefined;
    await folder?.close?.();
  },

  async tensorIndex(id: ParentId): Promise<TensorIndex> {
    const p = parentOf(id);
    const model = p.model;
    const items = itemsOfParent(p);
    const n = items.length;
    const out: TensorIndex = {
      parent: id,
      names: new Array<string>(n),
      kind: new Uint8Array(n),
      layer: new Int16Array(n),
      expert: new Int32Array(n),
      proj: new Int8Array(n),
      elements: new Float64Array(n),
      shapes: new Array<string>(n),
      format: new Uint8Array(n),
      formats: [],
      mtpLayers: [...(model.layout.mtpLayers ?? [])],
    };
    const formatIds = new Map<string, number>();
    items.forEach((it, i) => {
      out.shapes[i] = it.shape.join('×');
      const f = codecName(it.weight.codec);
      let id = formatIds.get(f);
      if (id === undefined) formatIds.set(f, (id = out.formats.push(f) - 1));
      out.format[i] = id;
      out.names[i] = it.name;
      out.kind[i] = TENSOR_KINDS.indexOf(it.role.kind);
      out.layer[i] = it.role.layer ?? -1;
      out.expert[i] = it.role.expert ?? -1;
      // A projection's bias is not a cell of the heatmaps: only weights are.
      out.proj[i] = it.role.proj && !it.role.bias ? PROJECTIONS.indexOf(it.role.proj) : -1;
      out.elements[i] = it.shape.reduce((a, b) => a * b, 1);
    });
    return Comlink.transfer(out, [out.kind.buffer, out.layer.buffer, out.expert.buffer, out.proj.buffer, out.elements.buffer, out.format.buffer]);
  },

  async compatibility(list, baseName): Promise<CompatReport> {
    try {
      const report = checkCompatibility(
        list.map((p) => ({ name: p.name, model: parentOf(p.id).model })),
        baseName,
      );
      return {
        ok: report.ok,
        problems: report.problems.map((p) => {
          const out: CompatReport['problems'][number] = { severity: p.severity, parent: p.parent, message: p.message };
          if (p.tensor !== undefined) out.tensor = p.tensor;
          return out;
        }),
      };
    } catch (e) {
      return { ok: false, problems: [{ severity: 'error', parent: baseName, message: errorText(e) }] };
    }
  },

  async diff(job: string, baseId: ParentId, otherId: ParentId, mode: DiffMode, listen: (e: DiffEvent) => void): Promise<DiffResult> {
    const base = parentOf(baseId);
    const other = parentOf(otherId);
    const index = indexOf(base);
    const ctrl = new AbortController();
    jobs.set(job, ctrl);
    const started = performance.now();
    let pending: { i: number; rms: number; rel: number; cos: number; sampled: boolean }[] = [];
    let progress: { done: number; total: number } | undefined;
    let count = 0;
    // Batches travel on the listener's own channel, the result on this worker's: the result must
    // not overtake the last batches, so it waits until the UI has taken every one.
    const delivered: Promise<unknown>[] = [];
    const send = (e: DiffEvent, transfer: Transferable[] = []) => {
      delivered.push(Promise.resolve(listen(Comlink.transfer(e, transfer))).catch(() => {}));
    };
    const flush = () => {
      if (pending.length > 0) {
        const n = pending.length;
        const batch = {
          other: otherId,
          index: new Int32Array(n),
          rms: new Float32Array(n),
          rel: new Float32Array(n),
          cos: new Float32Array(n),
          sampled: new Uint8Array(n),
        };
        pending.forEach((p, k) => {
          batch.index[k] = p.i;
          batch.rms[k] = p.rms;
          batch.rel[k] = p.rel;
          batch.cos[k] = p.cos;
          batch.sampled[k] = p.sampled ? 1 : 0;
        });
        pending = [];
        send({ type: 'batch', batch }, [batch.index.buffer, batch.rms.buffer, batch.rel.buffer, batch.cos.buffer, batch.sampled.buffer]);
      }
      if (progress) {
        send({ type: 'progress', ...progress, elapsedMs: performance.now() - started });
        progress = undefined;
      }
    };
    const timer = setInterval(flush, 100);
    try {
      const pool = await getKernelPool();
      const result = await diffModels(base.model, other.model, pool, {
        mode,
        signal: ctrl.signal,
        onTensor: (d) => {
          const i = index.get(d.name);
          if (i === undefined) return;
          count++;
          pending.push({ i, rms: d.rmsDiff, rel: d.relDiff, cos: d.cosine, sampled: d.sampled });
        },
        onProgress: (done, total) => {
          progress = { done, total };
        },
      });
      return { tensors: count, elapsedMs: performance.now() - started, cancelled: false, skipped: result.skipped.length };
    } catch (e) {
      if (ctrl.signal.aborted) return { tensors: count, elapsedMs: performance.now() - started, cancelled: true, skipped: 0 };
      throw new Error(errorText(e));
    } finally {
      clearInterval(timer);
      flush();
      await Promise.all(delivered);
      jobs.delete(job);
    }
  },

  async cancel(job: string): Promise<void> {
    jobs.get(job)?.abort(new DOMException('cancelled by the user', 'AbortError'));
  },

  async parseRecipe(text: string, fileName?: string): Promise<Result<Recipe>> {
    try {
      return { ok: true, value: parseRecipe(text, fileName) };
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  },

  async importRecipe(text: string, fileName: string): Promise<Result<{ recipe: Recipe; notes: string[] }>> {
    try {
      return { ok: true, value: parseRecipeFile(text, fileName) };
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  },

  async recipeToYaml(recipe: Recipe): Promise<string> {
    return recipeToYaml(recipe);
  },

  async plan(recipe: Recipe, bindings: Bindings): Promise<Result<PlanSummary>> {
    try {
      const plan = await planMerge(recipe, bound(bindings, recipe));
      const baseId = bindings[plan.base];
      const base = baseId !== undefined ? parentOf(baseId) : undefined;
      const s = planSummary(plan, base ? itemsOfParent(base) : [], base ? indexOf(base) : new Map());
      return Comlink.transfer({ ok: true, value: s }, summaryBuffers(s));
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  },

  async checkOutput(target: OutputTarget, bindings: Bindings, recipe?: Recipe): Promise<OutputCheck> {
    try {
      const out = await outputFolder(target);
      const problems = await overlapProblems(out, bindings);
      const check: OutputCheck = {
        ok: problems.length === 0,
        name: out.name,
        problems,
        existing: await out.list(),
        canRename: out.canRename,
      };
      const free = await out.freeBytes();
      if (free !== undefined) check.freeBytes = free;
      if (recipe && check.existing.length > 0) {
        const plan = await planMerge(recipe, bound(bindings, recipe)).catch(() => undefined);
        const pool = await getKernelPool().catch(() => undefined);
        const found = plan && pool ? await interruptedMerge(plan, out, pool) : undefined;
        if (found) check.interrupted = found;
      }
      return check;
    } catch (e) {
      return { ok: false, name: '', problems: [errorText(e)], existing: [], canRename: false };
    }
  },

  async merge(job, recipe, bindings, target, options, listen: (p: MergeProgress) => void): Promise<Result<MergeResult>> {
    const res = await runMerges(job, [{ recipe, out: () => outputFolder(target) }], bindings, target, options, listen);
    return res.ok ? { ok: true, value: res.value[0]! } : res;
  },

  async sweep(job, children, bindings, target, options, listen: (p: MergeProgress) => void): Promise<Result<MergeResult[]>> {
    // Each child in a subfolder of the target, created when its merge prepares it.
    const root = async () =>
      target.kind === 'opfs'
        ? (await navigator.storage.getDirectory()).getDirectoryHandle(target.folder, { create: true })
        : (target.handle as unknown as FileSystemDirectoryHandle);
    return runMerges(
      job,
      children.map((c) => ({ recipe: c.recipe, out: async () => new HandleOutputFolder(undefined, target.kind === 'opfs', { root: await root(), folder: c.name }) })),
      bindings,
      target,
      { ...options, resume: false },
      listen,
    );
  },

  async fingerprint(id: ParentId): Promise<string> {
    const p = parentOf(id);
    return (p.fingerprint ??= getKernelPool().then((pool) => parentFingerprint(p.model, pool)));
  },

  async tidyBrowserStorage(): Promise<{ folder: string; removed: number; resumable: number }[]> {
    const out: { folder: string; removed: number; resumable: number }[] = [];
    let root: FileSystemDirectoryHandle;
    try {
      root = await navigator.storage.getDirectory();
    } catch {
      return out;
    }
    // Each folder of browser storage, and the children of a sweep one level down.
    const visit = async (dir: FileSystemDirectoryHandle, parent: FileSystemDirectoryHandle, path: string, depth: number) => {
      const files: string[] = [];
      for await (const [name, h] of dir.entries()) {
        if (h.kind === 'file') files.push(name);
        else if (depth === 0) await visit(h as FileSystemDirectoryHandle, dir, `${path}/${name}`, 1);
      }
      if (!files.some((f) => f === LOCK_FILE || f === JOURNAL_FILE || f.endsWith(TMP_SUFFIX))) return;
      try {
        const r = await tidyInterrupted(new HandleOutputFolder(undefined, true, { root: parent, folder: dir.name }), studioOwner());
        out.push({ folder: path, removed: r.removed.length, resumable: r.resumable });
      } catch {
        /* a merge in another tab holds it: not ours to touch */
      }
    };
    for await (const [name, h] of root.entries()) if (h.kind === 'directory') await visit(h as FileSystemDirectoryHandle, root, name, 0);
    return out;
  },

  async discardInterrupted(target: OutputTarget): Promise<Result<number>> {
    try {
      return { ok: true, value: await discardInterrupted(await outputFolder(target), studioOwner()) };
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  },

  async setTestPause(point: string | null): Promise<void> {
    testPause = point === null ? undefined : { point, waiting: false };
  },
  async testPaused(): Promise<boolean> {
    return testPause?.waiting ?? false;
  },
  async releaseTestPause(): Promise<void> {
    testPause?.release?.();
  },
};

function studioOwner(): LockOwner {
  return { tool: 'MoE Studio (browser)', started: new Date().toISOString() };
}

/** The test hook's state: where to hold the next merge, whether one waits there, how to let it go. */
let testPause: { point: string; waiting: boolean; release?: () => void } | undefined;

async function testPauseAt(point: PausePoint, signal: AbortSignal): Promise<void> {
  const t = testPause;
  if (!t || t.point !== point) return;
  t.waiting = true;
  await new Promise<void>((resolve) => {
    t.release = resolve;
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  t.waiting = false;
  testPause = undefined;
}

/** A pool standing in for missing kernels: any use says why they are missing. */
function unavailablePool(): KernelPool {
  const fail = async (): Promise<never> => {
    throw new Error(`the WASM kernels are not available (${kernelStatus().status}): nothing can be merged`);
  };
  return {
    size: 1, reads: () => false, writes: () => false, openFiles: fail, closeFiles: async () => {}, run: fail, hashMany: fail, close: async () => {},
  };
}

Comlink.expose(api);
