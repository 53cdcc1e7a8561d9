// DeepSeek-V3's full tensor layout (61 layers, 58 MoE × 256 experts × 3 projections, ~92,000
// tensors per parent, 163 shards) at tiny shapes: the studio must open it and draw it quickly.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { expect, test } from '@playwright/test';
import { clearOpfs, dropFolders, FIXTURE_DIR, listOpfs, openStudio, snap } from './fixtures.ts';

const DIR = path.join(FIXTURE_DIR, 'full');

test.beforeAll(() => {
  if (existsSync(path.join(DIR, 'deepseek-v3-full', 'fixture-manifest.json'))) return;
  execFileSync(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'app/fixtures/cli.ts', DIR, '--full-count'], { stdio: 'inherit' });
});

test('opens and draws a DeepSeek-V3-sized pair (58 × 256 experts, ~92,000 tensors)', async ({ page }, info) => {
  test.setTimeout(240_000);
  await openStudio(page);
  const t0 = Date.now();
  await dropFolders(page, ['v3', 'r1'].map((p) => path.join(DIR, 'deepseek-v3-full', p)));
  await expect(page.getByTestId('parent-card')).toHaveCount(2, { timeout: 120_000 });
  await expect(page.getByTestId('heatmap-gate')).toBeVisible();
  const opened = Date.now() - t0;
  await expect(page.getByTestId('parent-card').first()).toContainText('256 routed');
  const label = await page.getByTestId('heatmap-gate').getAttribute('aria-label');
  // MoE layers 3-60, plus the multi-token-prediction layer 61, which has routed experts too.
  expect(label).toMatch(/: 5[89] layers by 256 experts/);
  // Hovering stays responsive on the full grid.
  const down = page.getByTestId('heatmap-down');
  const box = (await down.boundingBox())!;
  await down.hover({ position: { x: box.width / 2, y: box.height / 2 } });
  await expect(page.getByTestId('heat-tooltip')).toContainText('mlp.experts.');
  // The sampled estimate reaches every tensor: no batch of figures is lost between the worker and the page.
  type Hook = { __moeStudio: { figures(): { diffs: Record<string, { complete: boolean; rms: number[] }> } } };
  await expect
    .poll(() => page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']?.complete ?? false), { timeout: 120_000 })
    .toBe(true);
  const missing = await page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']!.rms.filter((x) => Number.isNaN(x)).length);
  expect(missing).toBe(0);
  info.annotations.push({ type: 'opened-ms', description: String(opened) });
  console.log(`full-size pair opened and drawn in ${opened} ms`);
  await page.screenshot({ path: info.outputPath('full-1280x800.png') });
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.screenshot({ path: info.outputPath('full-1920x1080.png') });
  await page.setViewportSize({ width: 1280, height: 800 });

  // A merge of ~46,000 weights in 163 sources can be cancelled midway: nothing looks finished,
  // the completed shards stay for resume, and Discard takes them away.
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await page.getByTestId('apply-chimera').click();
  await clearOpfs(page, 'e2e-full');
  await page.getByTestId('open-merge').click();
  await page.getByLabel('Browser storage folder').fill('e2e-full');
  await page.getByTestId('use-opfs').click();
  await expect(page.getByTestId('output-check')).toContainText('e2e-full');
  await page.getByTestId('run-merge').click();
  await expect(page.getByTestId('merge-progress')).toContainText('tensors');
  await expect(page.getByTestId('merge-progress')).not.toContainText(' 0 / 46,');
  await page.getByTestId('cancel-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText('Cancelled');
  const left = await listOpfs(page, 'e2e-full');
  expect(left).not.toContain('model.safetensors.index.json');
  // Only temporary names: completed shards (kept for resume) and the journal; no config, card or recipe.
  expect(left.filter((n) => !n.endsWith('.partial') && n !== '.moe-studio-journal.json')).toEqual([]);
  if (left.length > 0) {
    await expect(page.getByTestId('interrupted')).toBeVisible();
    await page.getByTestId('discard-merge').click();
    await expect(page.getByTestId('interrupted')).toHaveCount(0);
  }
  expect(await listOpfs(page, 'e2e-full')).toEqual([]);
  await snap(page, info, 'cancelled');
});
