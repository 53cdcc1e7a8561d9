// Where the fixture parents live and small helpers the studio tests share.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { expect, type Page, type TestInfo } from '@playwright/test';

export const FIXTURE_DIR = path.resolve('.cache/e2e-fixtures');
export const PRESETS = [
  'mixtral-pair',
  'deepseek-v3-fp8-pair',
  'deepseek-v3-triple',
  'qwen2-moe-pair',
  'qwen3-moe-pair',
  'olmoe-pair',
  'deepseek-v2-pair',
  'kimi-k2-pair',
  'generic-pair',
  'mismatched-pair',
  'qwen3-moe-layouts',
  'gpt-oss-trio',
  'qwen3-moe-wide',
] as const;
export type Preset = (typeof PRESETS)[number];

interface Manifest {
  base: string;
  parents: Record<string, { dir: string }>;
}

/** Parent folders of a preset, base first. */
export function parentDirs(preset: Preset): { name: string; dir: string }[] {
  const m = JSON.parse(readFileSync(path.join(FIXTURE_DIR, preset, 'fixture-manifest.json'), 'utf8')) as Manifest;
  const names = Object.keys(m.parents).sort((a, b) => (a === m.base ? -1 : b === m.base ? 1 : 0));
  return names.map((name) => ({ name, dir: path.join(FIXTURE_DIR, preset, name) }));
}

/** Loads the studio on a clean origin state (no recipe, no recent folders). */
export async function openStudio(page: Page): Promise<void> {
  await page.goto('/');
  await page.evaluate(async () => {
    localStorage.clear();
    await new Promise<void>((res) => {
      const r = indexedDB.deleteDatabase('moe-studio');
      r.onsuccess = r.onerror = r.onblocked = () => res();
    });
  });
  await page.reload();
  await expect(page.getByTestId('studio')).toBeVisible();
  await expect(page.getByTestId('kernels')).toContainText(/kernel workers?$/);
}

/** Opens parent folders through the <input webkitdirectory> fallback, one folder per selection. */
export async function openWithInput(page: Page, dirs: string[]): Promise<void> {
  for (const [k, dir] of dirs.entries()) {
    await page.getByTestId('folder-input').setInputFiles(dir);
    await expect(page.getByTestId('parent-card')).toHaveCount(k + 1);
  }
}

/** A trusted drop of folders from disk, as a user dragging them from a file manager. */
export async function dropFolders(page: Page, paths: string[]): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop'] as const) {
    await cdp.send('Input.dispatchDragEvent', { type, x: 640, y: 400, data });
  }
  await cdp.detach();
}

/** Runs the built CLI (`node bin/moe-studio.mjs ARGS`): its stdout (and stderr after it, when asked); throws on failure. */
export function cli(args: string[], withStderr = false): string {
  const r = spawnSync(process.execPath, ['bin/moe-studio.mjs', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`moe-studio ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return withStderr ? r.stdout + r.stderr : r.stdout;
}

/** Screenshots of the page as it is, at 1280×800 and at 1920×1080 (then back to 1280×800). */
export async function snap(page: Page, info: TestInfo, name: string): Promise<void> {
  await page.screenshot({ path: info.outputPath(`${name}-1280x800.png`) });
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.screenshot({ path: info.outputPath(`${name}-1920x1080.png`) });
  await page.setViewportSize({ width: 1280, height: 800 });
}

export interface FileDigest {
  bytes: number;
  sha256: string;
}

/** Size and SHA-256 of every file of a folder on disk. */
export function digestDir(dir: string): Record<string, FileDigest> {
  const out: Record<string, FileDigest> = {};
  for (const name of readdirSync(dir).sort()) {
    const b = readFileSync(path.join(dir, name));
    out[name] = { bytes: b.length, sha256: createHash('sha256').update(b).digest('hex') };
  }
  return out;
}

/** Size and SHA-256 of every file of a folder ("a" or "a/b") in the page's origin-private file system. */
export async function digestOpfs(page: Page, folder: string): Promise<Record<string, FileDigest>> {
  return page.evaluate(async (folder) => {
    let dir = await navigator.storage.getDirectory();
    for (const part of folder.split('/')) dir = await dir.getDirectoryHandle(part);
    const out: Record<string, { bytes: number; sha256: string }> = {};
    const names: string[] = [];
    for await (const name of dir.keys()) names.push(name);
    for (const name of names.sort()) {
      const buf = await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer();
      const h = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
      out[name] = { bytes: buf.byteLength, sha256: [...h].map((x) => x.toString(16).padStart(2, '0')).join('') };
    }
    return out;
  }, folder);
}

/** The text of one file in the page's origin-private file system (for reporting a difference). */
export async function readOpfsText(page: Page, folder: string, name: string): Promise<string> {
  return page.evaluate(
    async ([folder, name]) => {
      let dir = await navigator.storage.getDirectory();
      for (const part of folder!.split('/')) dir = await dir.getDirectoryHandle(part);
      return (await (await dir.getFileHandle(name!)).getFile()).text();
    },
    [folder, name],
  );
}

/** Removes a folder of the origin-private file system, if it exists. */
export async function clearOpfs(page: Page, folder: string): Promise<void> {
  await page.evaluate(async (folder) => {
    const root = await navigator.storage.getDirectory();
    await root.removeEntry(folder, { recursive: true }).catch(() => undefined);
  }, folder);
}

/** Opens the merge sheet, writes the child into browser storage / `folder`, and waits for "Done.". */
export async function mergeToOpfs(page: Page, folder: string): Promise<void> {
  await clearOpfs(page, folder);
  await page.getByTestId('open-merge').click();
  await expect(page.getByTestId('merge-dialog')).toBeVisible();
  await page.getByLabel('Browser storage folder').fill(folder);
  await page.getByTestId('use-opfs').click();
  await expect(page.getByTestId('output-check')).toContainText(folder);
  await page.getByTestId('run-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText('Done.', { timeout: 60_000 });
}

/**
 * Runs the CLI on a recipe file and compares its child with the studio's child in browser storage
 * `folder`, BYTE FOR BYTE, every file; attaches both versions of any text file that differs.
 * Returns the files' names.
 */
export async function expectSameAsCli(page: Page, info: TestInfo, recipePath: string, folder: string): Promise<string[]> {
  const out = info.outputPath('cli-child');
  rmSync(out, { recursive: true, force: true });
  const log = cli(['merge', recipePath, '-o', out, '--workers', '0'], true);
  await info.attach('cli-merge.txt', { body: log, contentType: 'text/plain' });
  const want = digestDir(out);
  const got = await digestOpfs(page, folder);
  const differ: string[] = [];
  for (const name of new Set([...Object.keys(want), ...Object.keys(got)])) {
    const w = want[name];
    const g = got[name];
    if (w && g && w.sha256 === g.sha256 && w.bytes === g.bytes) continue;
    differ.push(`${name}: CLI ${w ? `${w.bytes} B` : 'missing'}, studio ${g ? `${g.bytes} B` : 'missing'}`);
    if (w && g && !name.endsWith('.safetensors')) {
      await info.attach(`cli-${name}`, { body: readFileSync(path.join(out, name)), contentType: 'text/plain' });
      await info.attach(`studio-${name}`, { body: await readOpfsText(page, folder, name), contentType: 'text/plain' });
    }
  }
  expect(differ, 'files that differ between the studio child and the CLI child').toEqual([]);
  return Object.keys(want).sort();
}

/** Names of the files of a folder of the page's origin-private file system (none when it does not exist). */
export async function listOpfs(page: Page, folder: string): Promise<string[]> {
  return page.evaluate(async (folder) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder).catch(() => undefined);
    if (!dir) return [];
    const names: string[] = [];
    for await (const name of dir.keys()) names.push(name);
    return names.sort();
  }, folder);
}

/** The studio's number formats (app/studio/shared/format.ts), restated: e2e type-checks apart from the app. */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${n < 0 ? '-' : ''}${i === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}
export function formatFigure(x: number): string {
  if (Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a < 1e-3 || a >= 1e5 ? x.toExponential(2) : x.toPrecision(3);
}

/** What the studio's test-only `window.__moeStudio.figures()` returns (app/studio/client/store.ts). */
export interface FiguresSnapshot {
  base: string | null;
  names: string[];
  diffs: Record<string, { mode: 'exact' | 'sampled' | null; complete: boolean; running: boolean; rms: number[]; rel: number[]; cos: number[]; sampled: number[] }>;
}

/** Exports the studio's recipe with its "Export recipe.yaml" button into the preset's folder. */
export async function exportRecipe(page: Page, preset: Preset, file: string): Promise<{ path: string; text: string }> {
  await page.getByTestId('yaml-tab').click();
  await expect(page.getByTestId('yaml')).toHaveValue(/parents:/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export recipe.yaml' }).click()]);
  expect(download.suggestedFilename()).toBe('recipe.yaml');
  const to = path.join(FIXTURE_DIR, preset, file);
  await download.saveAs(to);
  const text = readFileSync(to, 'utf8');
  expect(text).toBe(await page.getByTestId('yaml').inputValue());
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  return { path: to, text };
}

/** Runs the CLI on the exported recipe and the studio's merge into OPFS; every file must be equal. */
export async function sameChild(page: Page, info: TestInfo, recipePath: string, folder: string): Promise<string[]> {
  await mergeToOpfs(page, folder);
  await snap(page, info, `${folder}-merged`);
  const files = await expectSameAsCli(page, info, recipePath, folder);
  await page.getByTestId('merge-dialog').getByRole('button', { name: 'Close', exact: true }).click();
  return files;
}

/** Drags over a routed-expert heatmap from (layer row, expert) to (layer row, expert), inclusive. */
export async function selectCells(page: Page, proj: string, rows: number, cols: number, from: [number, number], to: [number, number]): Promise<void> {
  await dragCells(page, `heatmap-${proj}`, rows, cols, from, to);
}

/** Drags over a heatmap canvas (by test id) from cell [row, col] to cell [row, col]; with `add`, holding shift. */
export async function dragCells(page: Page, testId: string, rows: number, cols: number, from: [number, number], to: [number, number], add = false): Promise<void> {
  if (add) await page.keyboard.down('Shift');
  const c = page.getByTestId(testId);
  const b = (await c.boundingBox())!;
  const cw = (b.width - 30) / cols;
  const ch = (b.height - 14) / rows;
  await page.mouse.move(b.x + 30 + cw * (from[1] + 0.5), b.y + 14 + ch * (from[0] + 0.5));
  await page.mouse.down();
  await page.mouse.move(b.x + 30 + cw * (to[1] + 0.5), b.y + 14 + ch * (to[0] + 0.5), { steps: 3 });
  await page.mouse.up();
  if (add) await page.keyboard.up('Shift');
}
