// The studio's state (zustand) and the actions that talk to the coordinator worker.
import { create } from 'zustand';
import type {
  CompatReport,
  DiffBatch,
  DiffMetric,
  DiffMode,
  ParentId,
  ParentSource,
  ParentSummary,
  PlanSummary,
  Recipe,
  StudioStatus,
  TensorIndex,
} from '../shared/studio-api.ts';
import { dropParent, emptyRecipe, NO_SELECTION, renameParent as renameInRecipe, type ExpertSelection } from '../shared/recipe-tools.ts';
import { listener, newJobId, studio } from './bridge.ts';
import { forgetRecent, hasFigures, loadFigures, loadRecents, loadRecipe, loadView, rememberParent, renameRecent, saveFigures, saveRecipe, saveView, type RecentParent, type StoredFigures } from './persist.ts';

export interface ParentEntry {
  id: ParentId;
  /** Short name used in the recipe. */
  name: string;
  summary: ParentSummary;
  handle?: FileSystemDirectoryHandle;
}

export interface DiffData {
  other: ParentId;
  rms: Float32Array;
  rel: Float32Array;
  cos: Float32Array;
  sampled: Uint8Array;
  /** Tensors with figures. */
  have: number;
  mode: DiffMode | null;
  running: boolean;
  job?: string;
  done: number;
  total: number;
  elapsedMs: number;
  error?: string;
  /** True once a pass finished (not cancelled). */
  complete: boolean;
  /** Exact figures kept from an earlier session (when they were computed), not computed now. */
  keptFrom?: number;
}

export interface Notice {
  id: number;
  /** info goes by itself after a few seconds; a note (something to read: what an import left out) and an error stay. */
  kind: 'error' | 'info' | 'note';
  text: string;
}

export interface StudioState {
  status: StudioStatus | null;
  parents: ParentEntry[];
  opening: string[];
  recents: RecentParent[];
  notices: Notice[];
  compat: CompatReport | null;
  index: TensorIndex | null;
  diffs: Record<ParentId, DiffData>;
  /** Bumped whenever figures arrive, so canvases redraw. */
  diffVersion: number;
  viewOther: ParentId | null;
  metric: DiffMetric;
  overlay: boolean;
  selection: ExpertSelection;
  hover: number | null;
  recipe: Recipe;
  plan: PlanSummary | null;
  planError: string | null;
  /** The YAML tab's text does not parse: the recipe in use is the last valid one, and Merge waits. */
  yamlError: string | null;
  planning: boolean;
  mergeOpen: boolean;
}

const initialView = loadView();

export const useStudio = create<StudioState>(() => ({
  status: null,
  parents: [],
  opening: [],
  recents: [],
  notices: [],
  compat: null,
  index: null,
  diffs: {},
  diffVersion: 0,
  viewOther: null,
  metric: (['rms_diff', 'rel_diff', 'cosine'] as const).find((m) => m === initialView.metric) ?? 'rms_diff',
  overlay: initialView.overlay ?? true,
  selection: NO_SELECTION,
  hover: null,
  recipe: emptyRecipe([], undefined),
  plan: null,
  planError: null,
  yamlError: null,
  planning: false,
  mergeOpen: false,
}));

const set = useStudio.setState;
const get = useStudio.getState;

let noticeId = 1;
export function notify(kind: Notice['kind'], text: string): void {
  const id = noticeId++;
  set((s) => ({ notices: [...s.notices, { id, kind, text }] }));
  if (kind === 'info') setTimeout(() => dismiss(id), 6000);
}
export function dismiss(id: number): void {
  set((s) => ({ notices: s.notices.filter((n) => n.id !== id) }));
}

export function baseParent(s: StudioState = get()): ParentEntry | undefined {
  return s.parents.find((p) => p.name === s.recipe.base) ?? s.parents[0];
}

export function bindings(s: StudioState = get()): Record<string, ParentId> {
  return Object.fromEntries(s.parents.map((p) => [p.name, p.id]));
}

/** A recipe parent name from a folder name: letters, digits, _ . - only, unique among the parents. */
export function shortName(folder: string, taken: string[]): string {
  // A Hub parent is called by its repo's name: hf://ORG/NAME@REV → NAME.
  const named = folder.startsWith('hf://') ? (folder.slice(5).split('@')[0]!.split('/').pop() ?? folder) : folder;
  let base = named.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '') || 'parent';
  if (base.length > 28) base = base.slice(0, 28).replace(/-+$/, '');
  let name = base;
  for (let i = 2; taken.includes(name); i++) name = `${base}-${i}`;
  return name;
}

// ---------------------------------------------------------------------------------------------
// Start-up and persistence

export async function startStudio(): Promise<void> {
  const [status, recents] = await Promise.all([studio.status(), loadRecents()]);
  set({ status, recents });
  void studio.tidyBrowserStorage().then((found) => {
    for (const f of found) {
      const removed = f.removed ? `removed ${f.removed} unfinished file${f.removed === 1 ? '' : 's'}` : 'nothing to remove';
      const kept = f.resumable
        ? `; ${f.resumable} completed shard${f.resumable === 1 ? ' is' : 's are'} kept: choose “${f.folder}” in the merge sheet to resume or discard`
        : '';
      notify('note', `An interrupted merge in browser storage (“${f.folder}”): ${removed}${kept}.`);
    }
  });
  const saved = loadRecipe();
  if (saved) {
    const checked = await studio.parseRecipe(JSON.stringify(saved), 'saved recipe');
    if (checked.ok) set({ recipe: checked.value });
  }
}

useStudio.subscribe((s, prev) => {
  if (s.recipe !== prev.recipe) saveRecipe(s.recipe);
  if (s.metric !== prev.metric || s.overlay !== prev.overlay) saveView({ metric: s.metric, overlay: s.overlay });
});

// ---------------------------------------------------------------------------------------------
// Parents

export async function openSources(sources: { source: ParentSource; label: string; handle?: FileSystemDirectoryHandle; name?: string }[]): Promise<void> {
  for (const { source, label, handle, name } of sources) {
    if (get().parents.length >= 8) {
      notify('error', `At most 8 parents: "${label}" was not opened.`);
      return;
    }
    const sameHub = source.kind === 'hub' ? get().parents.find((p) => p.summary.folderName === source.ref) : undefined;
    if (sameHub) {
      notify('info', `"${label}" is already open as ${sameHub.name}.`);
      continue;
    }
    if (handle) {
      let dup: ParentEntry | undefined;
      for (const p of get().parents) {
        if (p.handle && (await p.handle.isSameEntry(handle).catch(() => false))) dup = p;
      }
      if (dup) {
        notify('info', `"${label}" is already open as ${dup.name}.`);
        continue;
      }
    }
    set((s) => ({ opening: [...s.opening, label] }));
    try {
      const res = await studio.openParent(source);
      if (!res.ok) {
        notify('error', `Could not open "${label}": ${res.error}`);
        continue;
      }
      const info = res.value;
      const taken = get().parents.map((p) => p.name);
      // A reopened recent keeps its recipe name; otherwise the name the recipe already uses for
      // this folder, or one made from the folder name.
      const fromRecipe = Object.entries(get().recipe.parents).find(([n, path]) => path === info.summary.folderName && !taken.includes(n))?.[0];
      const finalName = name && !taken.includes(name) ? name : (fromRecipe ?? shortName(info.summary.folderName, taken));
      const entry: ParentEntry = { id: info.id, name: finalName, summary: info.summary };
      if (handle) entry.handle = handle;
      set((s) => {
        const parents = [...s.parents, entry];
        const recipe: Recipe = {
          ...s.recipe,
          parents: { ...s.recipe.parents, [finalName]: s.recipe.parents[finalName] ?? info.summary.folderName },
        };
        // A restored recipe keeps its base even before that parent is reopened.
        if (recipe.base === undefined) recipe.base = finalName;
        return { parents, recipe };
      });
      if (handle) {
        const recents = await rememberParent({ name: finalName, folderName: info.summary.folderName, handle, openedAt: Date.now() });
        set({ recents });
      }
      afterParentsChanged();
    } catch (e) {
      notify('error', `Could not open "${label}": ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      set((s) => {
        const i = s.opening.indexOf(label);
        return { opening: i < 0 ? s.opening : [...s.opening.slice(0, i), ...s.opening.slice(i + 1)] };
      });
    }
  }
}

export async function reopenRecent(r: RecentParent): Promise<boolean> {
  try {
    const perm = (await r.handle.queryPermission?.({ mode: 'read' })) ?? 'granted';
    if (perm !== 'granted') {
      const asked = (await r.handle.requestPermission?.({ mode: 'read' })) ?? 'granted';
      if (asked !== 'granted') {
        notify('error', `Read access to "${r.folderName}" was not granted.`);
        return false;
      }
    }
  } catch (e) {
    notify('error', `"${r.folderName}" can no longer be opened: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
  await openSources([{ source: { kind: 'handle', handle: r.handle }, label: r.folderName, handle: r.handle, name: r.name }]);
  return true;
}

export async function forget(r: RecentParent): Promise<void> {
  set({ recents: await forgetRecent(r.handle) });
}

export function removeParent(id: ParentId): void {
  const p = get().parents.find((x) => x.id === id);
  if (!p) return;
  for (const d of Object.values(get().diffs)) if (d.job && (d.other === id || baseParent()?.id === id)) void studio.cancel(d.job);
  set((s) => {
    const parents = s.parents.filter((x) => x.id !== id);
    let recipe = dropParent(s.recipe, p.name);
    if (recipe.base === undefined && parents[0]) recipe = { ...recipe, base: parents[0].name };
    const diffs = { ...s.diffs };
    delete diffs[id];
    return { parents, recipe, diffs, viewOther: s.viewOther === id ? null : s.viewOther };
  });
  void studio.removeParent(id);
  afterParentsChanged();
}

export function renameParent(id: ParentId, name: string): string | null {
  const s = get();
  const p = s.parents.find((x) => x.id === id);
  if (!p) return 'no such parent';
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) return 'use letters, digits, _ . - only';
  if (s.parents.some((x) => x.id !== id && x.name === name)) return 'another parent has this name';
  if (name === p.name) return null;
  set({
    parents: s.parents.map((x) => (x.id === id ? { ...x, name } : x)),
    recipe: renameInRecipe(s.recipe, p.name, name),
  });
  if (p.handle) void renameRecent(p.handle, name);
  void refreshCompat();
  return null;
}

export function setBase(id: ParentId): void {
  const p = get().parents.find((x) => x.id === id);
  if (!p) return;
  set((s) => ({ recipe: { ...s.recipe, base: p.name } }));
  afterParentsChanged();
}

let lastBaseId: ParentId | undefined;

function afterParentsChanged(): void {
  void refreshCompat();
  const base = baseParent();
  if (base?.id !== lastBaseId) {
    lastBaseId = base?.id;
    for (const d of Object.values(get().diffs)) if (d.job) void studio.cancel(d.job);
    set({ diffs: {}, index: null, viewOther: null, selection: NO_SELECTION });
    if (base) void loadIndex(base.id);
  } else {
    startSampledDiffs();
  }
}

async function loadIndex(baseId: ParentId): Promise<void> {
  try {
    const index = await studio.tensorIndex(baseId);
    if (baseParent()?.id !== baseId) return;
    set({ index });
    startSampledDiffs();
  } catch (e) {
    notify('error', `Could not list the base's tensors: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function refreshCompat(): Promise<void> {
  const s = get();
  const base = baseParent(s);
  if (!base || s.parents.length < 2) {
    set({ compat: null });
    return;
  }
  const report = await studio.compatibility(
    s.parents.map((p) => ({ id: p.id, name: p.name })),
    base.name,
  );
  set({ compat: report });
}

// ---------------------------------------------------------------------------------------------
// Differences

function emptyDiff(other: ParentId, n: number): DiffData {
  return {
    other,
    rms: new Float32Array(n).fill(NaN),
    rel: new Float32Array(n).fill(NaN),
    cos: new Float32Array(n).fill(NaN),
    sampled: new Uint8Array(n),
    have: 0,
    mode: null,
    running: false,
    done: 0,
    total: 0,
    elapsedMs: 0,
    complete: false,
  };
}

/** Parents whose figures are being looked up in the cache (so a lookup is not started twice). */
const lookingUp = new Set<ParentId>();

/** Every other parent without figures gets the exact ones kept from an earlier pass, else a sampled estimate. */
function startSampledDiffs(): void {
  const s = get();
  const base = baseParent(s);
  if (!base || !s.index || s.status?.kernels !== 'ready') return;
  for (const p of s.parents) {
    if (p.id === base.id || s.diffs[p.id] || lookingUp.has(p.id)) continue;
    lookingUp.add(p.id);
    void keptFigures(base.id, p.id)
      .then((kept) => {
        const now = get();
        if (baseParent(now)?.id !== base.id || now.diffs[p.id] || !now.index) return;
        if (kept && kept.count === now.index.names.length) {
          let have = 0;
          for (const v of kept.rms) if (!Number.isNaN(v)) have++;
          const d: DiffData = { ...emptyDiff(p.id, kept.count), rms: kept.rms, rel: kept.rel, cos: kept.cos, have, mode: 'exact', complete: true, elapsedMs: kept.elapsedMs, keptFrom: kept.savedAt };
          set((st) => ({ diffs: { ...st.diffs, [p.id]: d }, diffVersion: st.diffVersion + 1 }));
        } else void runDiff(p.id, 'sampled');
      })
      .finally(() => lookingUp.delete(p.id));
  }
  if (!get().viewOther) {
    const other = s.parents.find((p) => p.id !== base.id);
    if (other) set({ viewOther: other.id });
  }
}

/** The two parents' fingerprints, which key their kept figures. */
function pairFingerprints(base: ParentId, other: ParentId): Promise<[string, string]> {
  return Promise.all([studio.fingerprint(base), studio.fingerprint(other)]);
}

/** The exact figures kept for this pair of parents from an earlier session, if any. */
async function keptFigures(base: ParentId, other: ParentId): Promise<StoredFigures | undefined> {
  try {
    // Fingerprinting a DeepSeek-sized parent takes a quarter of a second: not when nothing is kept.
    if (!(await hasFigures())) return undefined;
    return await loadFigures(...(await pairFingerprints(base, other)));
  } catch {
    return undefined;
  }
}

async function keepFigures(base: ParentId, other: ParentId, d: DiffData, elapsedMs: number): Promise<void> {
  try {
    await saveFigures(...(await pairFingerprints(base, other)), { count: d.rms.length, rms: d.rms.slice(), rel: d.rel.slice(), cos: d.cos.slice(), elapsedMs, savedAt: Date.now() });
  } catch {
    /* a parent closed meanwhile: nothing to keep */
  }
}

export async function runDiff(other: ParentId, mode: DiffMode): Promise<void> {
  const s = get();
  const base = baseParent(s);
  if (!base || !s.index) return;
  const prev = s.diffs[other];
  if (prev?.job) await studio.cancel(prev.job);
  const job = newJobId('diff');
  const n = s.index.names.length;
  const data: DiffData = prev && prev.rms.length === n ? { ...prev } : emptyDiff(other, n);
  Object.assign(data, { mode, running: true, job, done: 0, total: 0, elapsedMs: 0, complete: false });
  delete data.error;
  set((st) => ({ diffs: { ...st.diffs, [other]: data } }));
  const baseId = base.id;
  const apply = (b: DiffBatch) => {
    const d = get().diffs[other];
    if (!d || d.job !== job) return;
    for (let k = 0; k < b.index.length; k++) {
      const i = b.index[k]!;
      if (Number.isNaN(d.rms[i]!)) d.have++;
      d.rms[i] = b.rms[k]!;
      d.rel[i] = b.rel[k]!;
      d.cos[i] = b.cos[k]!;
      d.sampled[i] = b.sampled[k]!;
    }
    publish();
  };
  // Figures and progress land in the arrays at once but reach React at most once per frame: on
  // the full-size pair a batch arrives every few milliseconds, and each render re-draws the grids.
  let frame = false;
  const publish = () => {
    if (frame) return;
    frame = true;
    requestAnimationFrame(() => {
      frame = false;
      const d = get().diffs[other];
      if (d && d.job === job) set((st) => ({ diffVersion: st.diffVersion + 1, diffs: { ...st.diffs, [other]: { ...d } } }));
    });
  };
  try {
    const result = await studio.diff(
      job,
      baseId,
      other,
      mode,
      listener((e) => {
        if (e.type === 'batch') apply(e.batch);
        else {
          const d = get().diffs[other];
          if (d && d.job === job) {
            Object.assign(d, { done: e.done, total: e.total, elapsedMs: e.elapsedMs });
            publish();
          }
        }
      }),
    );
    const d = get().diffs[other];
    if (d && d.job === job) {
      set((st) => ({
        diffs: { ...st.diffs, [other]: { ...d, running: false, job: undefined, complete: !result.cancelled, elapsedMs: result.elapsedMs } as DiffData },
      }));
      if (mode === 'exact' && !result.cancelled) void keepFigures(baseId, other, d, result.elapsedMs);
    }
  } catch (e) {
    const d = get().diffs[other];
    if (d && d.job === job) {
      set((st) => ({
        diffs: { ...st.diffs, [other]: { ...d, running: false, job: undefined, error: e instanceof Error ? e.message : String(e) } as DiffData },
      }));
    }
  }
}

export function cancelDiff(other: ParentId): void {
  const d = get().diffs[other];
  if (d?.job) void studio.cancel(d.job);
}

/** The figures of one metric, indexed like the base's TensorIndex. */
export function metricArray(d: DiffData, metric: DiffMetric): Float32Array {
  return metric === 'rms_diff' ? d.rms : metric === 'rel_diff' ? d.rel : d.cos;
}

// ---------------------------------------------------------------------------------------------
// Recipe and plan

export function setRecipe(recipe: Recipe): void {
  set({ recipe });
}

export function updateRecipe(fn: (r: Recipe) => Recipe): void {
  set((s) => ({ recipe: fn(s.recipe) }));
}

let planTimer: ReturnType<typeof setTimeout> | undefined;
let planSeq = 0;

function schedulePlan(): void {
  clearTimeout(planTimer);
  // The plan on screen is the previous recipe's from now until the new one arrives.
  if (get().parents.length > 0 && !get().planning) set({ planning: true });
  planTimer = setTimeout(() => void replan(), 200);
}

async function replan(): Promise<void> {
  const s = get();
  const seq = ++planSeq;
  if (s.parents.length === 0) {
    set({ plan: null, planError: null, planning: false });
    return;
  }
  set({ planning: true });
  try {
    const res = await studio.plan(s.recipe, bindings(s));
    if (seq !== planSeq) return;
    if (res.ok) set({ plan: res.value, planError: null, planning: false });
    else set({ plan: null, planError: res.error, planning: false });
  } catch (e) {
    if (seq === planSeq) set({ plan: null, planError: e instanceof Error ? e.message : String(e), planning: false });
  }
}

useStudio.subscribe((s, prev) => {
  if (s.recipe !== prev.recipe || s.parents !== prev.parents) schedulePlan();
  if (s.status?.kernels === 'ready' && prev.status?.kernels !== 'ready') startSampledDiffs();
});

// ---------------------------------------------------------------------------------------------
// Threshold

export interface ThresholdView {
  /** 1 where the threshold keeps the base's tensor; indexed like the base's TensorIndex. */
  keep: Uint8Array;
  kept: number;
  candidates: number;
  /** Candidates lacking figures against some parent they mix. */
  unknown: number;
  /** Smallest and largest finite rms_diff among candidates, for the slider. */
  min: number;
  max: number;
}

export function thresholdView(s: StudioState, below: number): ThresholdView | null {
  const { plan, index } = s;
  if (!plan || !index) return null;
  const keep = new Uint8Array(index.names.length);
  const diffsByBit = plan.parents.map((name) => {
    const p = s.parents.find((x) => x.name === name);
    return p ? s.diffs[p.id] : undefined;
  });
  let kept = 0;
  let unknown = 0;
  let min = Infinity;
  let max = 0;
  const { index: ci, mask } = plan.candidates;
  for (let k = 0; k < ci.length; k++) {
    const i = ci[k]!;
    const m = mask[k]!;
    let worst = 0;
    let missing = false;
    for (let b = 0; b < diffsByBit.length; b++) {
      if (!(m & (1 << b))) continue;
      const d = diffsByBit[b];
      const v = d ? d.rms[i]! : NaN;
      if (!Number.isFinite(v)) {
        missing = true;
        break;
      }
      if (v > worst) worst = v;
    }
    if (missing) {
      unknown++;
      continue;
    }
    if (worst > 0 && worst < min) min = worst;
    if (worst > max) max = worst;
    if (worst < below) {
      keep[i] = 1;
      kept++;
    }
  }
  return { keep, kept, candidates: ci.length, unknown, min: Number.isFinite(min) ? min : 0, max };
}

// ---------------------------------------------------------------------------------------------
// Test hooks. `window.__moeStudio.figures()` returns copies of the comparison figures the heatmaps
// draw, by recipe parent name, in the base's tensor order; the end-to-end tests
// (e2e/figures.spec.ts) compare them with `moe-studio diff --json`. `pauseMerge(point)` holds the
// next merge at an engine pause point (as the CLI's MOE_STUDIO_TEST_PAUSE_AT does) until
// `releaseMerge()` or Cancel; `mergePaused()` says whether one waits there (e2e/resume.spec.ts).

export interface FiguresSnapshot {
  base: string | null;
  names: string[];
  diffs: Record<string, { mode: DiffMode | null; complete: boolean; running: boolean; rms: number[]; rel: number[]; cos: number[]; sampled: number[] }>;
}

if (typeof window !== 'undefined') {
  Object.defineProperty(window, '__moeStudio', {
    configurable: false,
    value: Object.freeze({
      figures(): FiguresSnapshot {
        const s = get();
        const out: FiguresSnapshot = { base: baseParent(s)?.name ?? null, names: s.index ? [...s.index.names] : [], diffs: {} };
        for (const [id, d] of Object.entries(s.diffs)) {
          const name = s.parents.find((p) => p.id === id)?.name ?? id;
          Object.defineProperty(out.diffs, name, { enumerable: true, value: { mode: d.mode, complete: d.complete, running: d.running, rms: [...d.rms], rel: [...d.rel], cos: [...d.cos], sampled: [...d.sampled] } });
        }
        return out;
      },
      pauseMerge: (point: string): Promise<void> => studio.setTestPause(point),
      mergePaused: (): Promise<boolean> => studio.testPaused(),
      releaseMerge: (): Promise<void> => studio.releaseTestPause(),
    }),
  });
}
