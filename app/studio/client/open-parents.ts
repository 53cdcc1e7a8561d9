// Getting parent model folders from the user: the directory picker, drag and drop, and the
// <input webkitdirectory> fallback. Each produces sources for openSources (store.ts).
import type { ParentSource } from '../shared/studio-api.ts';
import { baseParent, notify, openSources, setRecipe } from './store.ts';
import { studio } from './bridge.ts';
import { loadStatsFiles } from './routing-store.ts';

export const hasDirectoryPicker = typeof window !== 'undefined' && typeof window.showDirectoryPicker === 'function';

type Opening = { source: ParentSource; label: string; handle?: FileSystemDirectoryHandle };

/**
 * The Hub token the user typed: in this page's memory only (never stored, never in the recipe),
 * handed to the worker with each Hub parent and sent by it to the Hub's own origin only.
 */
let hubToken = '';

export function setHubToken(token: string): void {
  hubToken = token.trim();
}

/** "hf://ORG/NAME[@REV]", "ORG/NAME[@REV]" or a model page's URL, as hf://…; null when it is none of them. */
export function hubRefFrom(text: string): string | null {
  const t = text.trim();
  if (t === '') return null;
  if (t.startsWith('hf://')) return t;
  const page = /^https?:\/\/(?:www\.)?huggingface\.co\/([^/?#\s]+(?:\/[^/?#\s]+)?)(?:\/tree\/([^?#\s]+))?\/?$/.exec(t);
  if (page) return `hf://${page[1]}${page[2] ? `@${decodeURIComponent(page[2])}` : ''}`;
  if (/^[^\s/:@]+(?:\/[^\s/:@]+)?(?:@\S+)?$/.test(t)) return `hf://${t}`;
  return null;
}

/** Opens a model on the Hub as a parent (its headers by range requests; nothing is downloaded whole). */
export async function openFromHub(text: string, name?: string): Promise<void> {
  const ref = hubRefFrom(text);
  if (!ref) {
    notify('error', `"${text}" is not a Hub model: write ORG/NAME, hf://ORG/NAME@REVISION or the model page's address.`);
    return;
  }
  await openSources([{ source: { kind: 'hub', ref, ...(hubToken ? { token: hubToken } : {}) }, label: ref, ...(name ? { name } : {}) }]);
}

export async function pickParentFolder(): Promise<void> {
  if (!window.showDirectoryPicker) return;
  let handle: FileSystemDirectoryHandle;
  try {
    handle = await window.showDirectoryPicker({ id: 'moe-parent', mode: 'read' });
  } catch (e) {
    if ((e as { name?: string }).name !== 'AbortError') notify('error', `The folder could not be opened: ${String(e)}`);
    return;
  }
  await openSources([{ source: { kind: 'handle', handle }, label: handle.name, handle }]);
}

/** Files from <input webkitdirectory>: one folder, its top name stripped from each relative path. */
export async function openFromInput(list: FileList | null): Promise<void> {
  const files = list ? [...list] : [];
  if (files.length === 0) return;
  const name = files.find((f) => f.webkitRelativePath)?.webkitRelativePath.split('/')[0] ?? 'selected files';
  await openSources([{ source: { kind: 'files', files, name }, label: name }]);
}

/**
 * A drop: each dropped folder is a parent; loose files dropped together make one parent.
 * Handles and entries must be taken synchronously inside the drop event, before any await.
 */
export function openFromDrop(dt: DataTransfer): void {
  const items = [...dt.items].filter((i) => i.kind === 'file');
  const handlePromises = items.map((i) => (typeof i.getAsFileSystemHandle === 'function' ? i.getAsFileSystemHandle() : null));
  const entries = items.map((i) => (typeof i.webkitGetAsEntry === 'function' ? i.webkitGetAsEntry() : null));
  const plainFiles = [...dt.files];
  void (async () => {
    const out: Opening[] = [];
    const loose: File[] = [];
    for (let k = 0; k < items.length; k++) {
      const hp = handlePromises[k];
      const handle = hp ? await hp.catch(() => null) : null;
      if (handle && handle.kind === 'directory') {
        const dir = handle as FileSystemDirectoryHandle;
        out.push({ source: { kind: 'handle', handle: dir }, label: dir.name, handle: dir });
        continue;
      }
      if (handle && handle.kind === 'file') {
        loose.push(await (handle as FileSystemFileHandle).getFile());
        continue;
      }
      const entry = entries[k];
      if (entry?.isDirectory) {
        const files = await readDirectoryEntry(entry as FileSystemDirectoryEntry);
        out.push({ source: { kind: 'files', files, name: entry.name }, label: entry.name });
      } else if (entry?.isFile) {
        loose.push(await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej)));
      } else if (plainFiles[k]) {
        loose.push(plainFiles[k]!);
      }
    }
    // Routing statistics files dropped on their own: loaded into the Routing view, not opened as a model.
    const stats = out.length === 0 && loose.length > 0 && !loose.some((f) => f.name === 'config.json') ? await routingFiles(loose) : [];
    if (stats.length > 0) {
      const base = baseParent();
      for (const e of await loadStatsFiles(stats, base?.summary, base?.name ?? '')) notify('error', e);
      if (stats.length === loose.length) return;
      loose.splice(0, loose.length, ...loose.filter((f) => !stats.includes(f)));
    }
    // A recipe dropped on its own (YAML, or JSON with "parents"): imported, not opened as a model.
    if (out.length === 0 && loose.length === 1 && (await isRecipeFile(loose[0]!))) {
      await importRecipeFile(loose[0]!);
      return;
    }
    if (loose.length > 0) {
      const name = loose.some((f) => f.name === 'config.json') ? 'dropped-model' : 'dropped-files';
      out.push({ source: { kind: 'files', files: loose, name }, label: `${loose.length} dropped files` });
    }
    if (out.length === 0) notify('error', 'Nothing to open in that drop: drop model folders (or all the files of one model).');
    else await openSources(out);
  })();
}

/** The files directly inside a dropped folder (webkitGetAsEntry), read in the API's batches. */
async function readDirectoryEntry(dir: FileSystemDirectoryEntry): Promise<File[]> {
  const reader = dir.createReader();
  const entries: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
    if (batch.length === 0) break;
    entries.push(...batch);
  }
  const files: File[] = [];
  for (const e of entries) {
    if (!e.isFile) continue;
    files.push(await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej)));
  }
  return files;
}

/** A recipe file: YAML, or JSON that has "parents" (a recipe) or "merge_method" (a mergekit config) in its first 64 KB. */
async function isRecipeFile(f: File): Promise<boolean> {
  if (/\.ya?ml$/i.test(f.name)) return true;
  return f.name !== 'config.json' && f.name.endsWith('.json') && /"(parents|merge_method)"\s*:/.test(await f.slice(0, 65536).text());
}

/** Reads a recipe file (or a mergekit config) into the studio (the YAML tab's Import does the same). */
export async function importRecipeFile(f: File): Promise<void> {
  const res = await studio.importRecipe(await f.text(), f.name);
  if (!res.ok) {
    notify('error', res.error);
    return;
  }
  setRecipe(res.value.recipe);
  if (res.value.notes.length === 0) notify('info', `Recipe imported from ${f.name}.`);
  // A mergekit config: what it maps onto, and what it does not, stays on screen until dismissed.
  else notify('note', `${f.name} (a mergekit config) was imported as a recipe. ${res.value.notes.join(' ')}`);
}

/** The files among `files` that are routing statistics: JSON naming the moe-studio.routing format in its first 64 KB. */
async function routingFiles(files: File[]): Promise<File[]> {
  const out: File[] = [];
  for (const f of files) {
    if (!f.name.endsWith('.json')) continue;
    if (/"format"\s*:\s*"moe-studio\.routing\//.test(await f.slice(0, 65536).text())) out.push(f);
  }
  return out;
}
