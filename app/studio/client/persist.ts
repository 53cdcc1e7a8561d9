// What survives a reload: recent parent folder handles (IndexedDB, as handles cannot go in
// localStorage) and the recipe with a few view settings (localStorage).
import { createStore, del, get, set } from 'idb-keyval';
import type { Recipe } from '../shared/studio-api.ts';

const store = createStore('moe-studio', 'handles');
const RECENTS = 'recents';
const RECIPE_KEY = 'moe-studio:recipe';
const VIEW_KEY = 'moe-studio:view';
const MAX_RECENTS = 12;

export interface RecentParent {
  /** The short name the parent had in the recipe. */
  name: string;
  folderName: string;
  handle: FileSystemDirectoryHandle;
  openedAt: number;
}

export async function loadRecents(): Promise<RecentParent[]> {
  try {
    return ((await get<RecentParent[]>(RECENTS, store)) ?? []).filter((r) => r.handle && r.handle.kind === 'directory');
  } catch {
    return [];
  }
}

/** Adds or refreshes a recent parent (same folder: by isSameEntry). */
export async function rememberParent(entry: RecentParent): Promise<RecentParent[]> {
  const list = await loadRecents();
  const kept: RecentParent[] = [];
  for (const r of list) {
    const same = await r.handle.isSameEntry(entry.handle).catch(() => false);
    if (!same) kept.push(r);
  }
  const next = [entry, ...kept].slice(0, MAX_RECENTS);
  await set(RECENTS, next, store).catch(() => {});
  return next;
}

export async function renameRecent(handle: FileSystemDirectoryHandle, name: string): Promise<void> {
  const list = await loadRecents();
  for (const r of list) if (await r.handle.isSameEntry(handle).catch(() => false)) r.name = name;
  await set(RECENTS, list, store).catch(() => {});
}

export async function forgetRecent(handle: FileSystemDirectoryHandle): Promise<RecentParent[]> {
  const list = await loadRecents();
  const kept: RecentParent[] = [];
  for (const r of list) if (!(await r.handle.isSameEntry(handle).catch(() => false))) kept.push(r);
  if (kept.length) await set(RECENTS, kept, store).catch(() => {});
  else await del(RECENTS, store).catch(() => {});
  return kept;
}

export function loadRecipe(): Recipe | undefined {
  try {
    const text = localStorage.getItem(RECIPE_KEY);
    return text ? (JSON.parse(text) as Recipe) : undefined;
  } catch {
    return undefined;
  }
}

export function saveRecipe(recipe: Recipe): void {
  try {
    localStorage.setItem(RECIPE_KEY, JSON.stringify(recipe));
  } catch {
    /* storage full or disabled: the recipe just won't survive a reload */
  }
}

export interface ViewSettings {
  metric?: string;
  overlay?: boolean;
  /** Parent names (not ids: ids change on reload) in the order they were open. */
  order?: string[];
}

export function loadView(): ViewSettings {
  try {
    return JSON.parse(localStorage.getItem(VIEW_KEY) ?? '{}') as ViewSettings;
  } catch {
    return {};
  }
}

export function saveView(v: ViewSettings): void {
  try {
    localStorage.setItem(VIEW_KEY, JSON.stringify(v));
  } catch {
    /* ignore */
  }
}

// Exact comparison figures, kept per (base, other) pair across reloads: an exact pass over a
// DeepSeek-sized pair reads every byte of both, which nobody wants to repeat after a reload. The
// key is the two parents' fingerprints (shard files and tensor headers), so a changed parent
// never shows another's figures. At most MAX_FIGURES pairs are kept, the oldest dropped.

const FIGURES_PREFIX = 'figures:';
const FIGURES_INDEX = 'figures-index';
const MAX_FIGURES = 6;

export interface StoredFigures {
  count: number;
  rms: Float32Array;
  rel: Float32Array;
  cos: Float32Array;
  elapsedMs: number;
  savedAt: number;
}

/** Whether any figures are kept at all (a cheap look before fingerprinting parents for a lookup). */
export async function hasFigures(): Promise<boolean> {
  try {
    return ((await get<string[]>(FIGURES_INDEX, store)) ?? []).length > 0;
  } catch {
    return false;
  }
}

const figuresKey = (base: string, other: string) => `${FIGURES_PREFIX}${base}:${other}`;

export async function loadFigures(base: string, other: string): Promise<StoredFigures | undefined> {
  try {
    return await get<StoredFigures>(figuresKey(base, other), store);
  } catch {
    return undefined;
  }
}

export async function saveFigures(base: string, other: string, f: StoredFigures): Promise<void> {
  const key = figuresKey(base, other);
  try {
    const index = ((await get<string[]>(FIGURES_INDEX, store)) ?? []).filter((k) => k !== key);
    index.push(key);
    for (const old of index.splice(0, Math.max(0, index.length - MAX_FIGURES))) await del(old, store);
    await set(key, f, store);
    await set(FIGURES_INDEX, index, store);
  } catch {
    /* storage full or disabled: the figures just won't survive a reload */
  }
}
