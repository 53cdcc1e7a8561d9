// A merge in the studio that stops (Cancel, a closed tab, a crash) keeps its completed shards with
// a journal; Resume checks them and writes the rest, and the child equals the CLI's byte for byte.
// The merge is held after its second shard with the studio's pause hook, never with timing.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, test } from '@playwright/test';
import { clearOpfs, expectSameAsCli, FIXTURE_DIR, listOpfs, openStudio, openWithInput, parentDirs, snap } from './fixtures.ts';

declare global {
  interface Window {
    __moeStudio: { pauseMerge(point: string): Promise<void>; mergePaused(): Promise<boolean>; releaseMerge(): Promise<void> };
  }
}

test('a merge cancelled after two shards resumes from them, and the child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Swap experts (MEA)' }).click();
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  await page.getByLabel('Shard size').fill('300KB');
  await page.getByLabel('Shard size').press('Tab');
  await page.getByTestId('yaml-tab').click();
  const yaml = await page.getByTestId('yaml').inputValue();
  expect(yaml).toContain('shard_size: 300KB');
  const recipePath = path.join(FIXTURE_DIR, 'deepseek-v3-fp8-pair', 'e2e-resume.yaml');
  writeFileSync(recipePath, yaml);
  await page.getByRole('button', { name: 'Build', exact: true }).click();

  await clearOpfs(page, 'e2e-resume');
  await page.getByTestId('open-merge').click();
  const second = /model-00002-of-\d{5}\.safetensors/.exec((await page.getByTestId('file-list').textContent()) ?? '')![0];
  const total = Number(/of-(\d{5})/.exec(second)![1]);
  await page.getByLabel('Browser storage folder').fill('e2e-resume');
  await page.getByTestId('use-opfs').click();
  await expect(page.getByTestId('output-check')).toContainText('e2e-resume');
  await page.evaluate((p) => window.__moeStudio.pauseMerge(p), `shard-complete:${second}`);
  await page.getByTestId('run-merge').click();
  await expect.poll(() => page.evaluate(() => window.__moeStudio.mergePaused())).toBe(true);
  await page.getByTestId('cancel-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText(`2 of ${total} shards`);
  await expect(page.getByTestId('merge-summary')).toContainText('no index and no shard under its final name');
  const left = await listOpfs(page, 'e2e-resume');
  const first = second.replace('model-00002-', 'model-00001-');
  expect(left).toEqual(['.moe-studio-journal.json', `${first}.partial`, `${second}.partial`]);
  await expect(page.getByTestId('interrupted')).toContainText(`2 of ${total} shards complete`);
  await snap(page, info, 'interrupted');

  await page.getByTestId('resume-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText('Done.', { timeout: 60_000 });
  await expect(page.getByTestId('merge-summary')).toContainText('2 shards kept from the interrupted merge');
  await expectSameAsCli(page, info, recipePath, 'e2e-resume');
  expect((await listOpfs(page, 'e2e-resume')).filter((n) => n.endsWith('.partial') || n.startsWith('.moe-studio'))).toEqual([]);
});

test('a tab closed mid-merge: the next start tidies browser storage, takes over the stale lock, and Resume finishes the child', async ({ page, context }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await page.getByTestId('apply-chimera').click();
  await page.getByLabel('Shard size').fill('300KB');
  await page.getByLabel('Shard size').press('Tab');
  await page.getByTestId('yaml-tab').click();
  const recipePath = path.join(FIXTURE_DIR, 'deepseek-v3-fp8-pair', 'e2e-closed.yaml');
  writeFileSync(recipePath, await page.getByTestId('yaml').inputValue());
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await clearOpfs(page, 'e2e-closed');
  await page.getByTestId('open-merge').click();
  const second = /model-00002-of-\d{5}\.safetensors/.exec((await page.getByTestId('file-list').textContent()) ?? '')![0];
  await page.getByLabel('Browser storage folder').fill('e2e-closed');
  await page.getByTestId('use-opfs').click();
  await expect(page.getByTestId('output-check')).toContainText('e2e-closed');
  await page.evaluate((p) => window.__moeStudio.pauseMerge(p), `shard-complete:${second}`);
  await page.getByTestId('run-merge').click();
  await expect.poll(() => page.evaluate(() => window.__moeStudio.mergePaused())).toBe(true);

  // The tab goes away mid-merge (no cancel, no cleanup): its lock file stays in the folder.
  expect(await listOpfs(page, 'e2e-closed')).toContain('.moe-studio.lock');
  const other = await context.newPage();
  await page.close();

  // The next start says what it found and what it kept; the stale lock is gone.
  await other.goto('/');
  await expect(other.getByTestId('notice').filter({ hasText: 'e2e-closed' })).toContainText('2 completed shards are kept');
  await expect.poll(() => listOpfs(other, 'e2e-closed')).not.toContain('.moe-studio.lock');
  await openWithInput(other, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await other.getByTestId('yaml-tab').click();
  await other.getByTestId('recipe-file-input').setInputFiles(recipePath);
  await other.getByRole('button', { name: 'Build', exact: true }).click();
  await other.getByTestId('open-merge').click();
  await other.getByLabel('Browser storage folder').fill('e2e-closed');
  await other.getByTestId('use-opfs').click();
  await expect(other.getByTestId('interrupted')).toContainText('2 of');
  await other.getByTestId('resume-merge').click();
  await expect(other.getByTestId('merge-summary')).toContainText('Done.', { timeout: 60_000 });
  await expect(other.getByTestId('merge-summary')).toContainText('2 shards kept from the interrupted merge');
  await expectSameAsCli(other, info, recipePath, 'e2e-closed');
  await snap(other, info, 'resumed-after-close');
});
