// Where the fixture parents live and small helpers the studio tests share.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, type Page } from '@playwright/test';

export const FIXTURE_DIR = path.resolve('.cache/e2e-fixtures');
export const PRESETS = ['mixtral-pair', 'deepseek-v3-fp8-pair'] as const;
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
  await expect(page.getByTestId('kernels')).toContainText('kernel workers');
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
