import { expect, test } from '@playwright/test';
import { dropFolders, openStudio, openWithInput, parentDirs } from './fixtures.ts';

test('opens a Mixtral pair with the folder input and compares it', async ({ page }, info) => {
  await openStudio(page);
  const dirs = parentDirs('mixtral-pair');
  await openWithInput(page, dirs.map((d) => d.dir));
  const cards = page.getByTestId('parent-card');
  await expect(cards.first()).toContainText('mixtral');
  await expect(cards.first()).toContainText('base');
  await expect(page.getByTestId('compat')).toBeVisible();
  // The sampled estimate starts by itself; the expert heatmaps are drawn on canvases.
  await expect(page.getByTestId('heatmap-gate')).toBeVisible();
  await expect(page.getByTestId('heatmap-down')).toBeVisible();
  await expect(page.getByRole('tab').first()).toContainText('estimate');
  await page.screenshot({ path: info.outputPath('mixtral-1280x800.png') });
});

test('opens a DeepSeek-V3 FP8 pair by a trusted drag and drop of both folders', async ({ page }, info) => {
  await openStudio(page);
  const dirs = parentDirs('deepseek-v3-fp8-pair');
  await dropFolders(page, dirs.map((d) => d.dir));
  const cards = page.getByTestId('parent-card');
  await expect(cards).toHaveCount(2);
  await expect(cards.first()).toContainText('deepseek_v3');
  await expect(cards.first()).toContainText('F8_E4M3');
  await expect(page.getByTestId('heatmap-up')).toBeVisible();
  await expect(page.getByTestId('heatmap-layers')).toBeVisible();
  // The exact pass reads every byte of both parents.
  await page.getByRole('button', { name: 'Exact pass' }).click();
  await expect(page.getByRole('tab').first()).toContainText('exact');
  // Hovering a cell names its tensor.
  const canvas = page.getByTestId('heatmap-gate');
  const box = (await canvas.boundingBox())!;
  await page.mouse.move(box.x + 40, box.y + 20);
  await expect(page.getByTestId('heat-tooltip')).toContainText('experts');
  await page.screenshot({ path: info.outputPath('deepseek-1280x800.png') });

  // Select layers 1-2 × experts 2-5 of the up projection and switch them off (exact on DeepSeek-V3).
  const up = page.getByTestId('heatmap-up');
  const ub = (await up.boundingBox())!;
  const cw = (ub.width - 30) / 8;
  const chH = (ub.height - 14) / 4; // MoE layers 1-3 and the MTP layer 4
  await page.mouse.move(ub.x + 30 + cw * 2.5, ub.y + 14 + chH * 0.5);
  await page.mouse.down();
  await page.mouse.move(ub.x + 30 + cw * 5.5, ub.y + 14 + chH * 1.5, { steps: 3 });
  await page.mouse.up();
  await expect(page.getByTestId('selection')).toContainText('Layers 1-2');
  await expect(page.getByTestId('selection')).toContainText('experts 2-5');
  await page.getByRole('button', { name: 'off', exact: true }).click();
  await expect(page.getByText('Expert edits (8)')).toBeVisible();
  await page.getByTestId('threshold-on').check();
  await expect(page.getByTestId('threshold-count')).toContainText('mixed tensors');
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.screenshot({ path: info.outputPath('deepseek-1920x1080.png') });
});

test('gives a sampled estimate for an FP8 pair whose weights end in partial 128-row blocks', async ({ page }) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await expect(page.getByRole('tab').first()).toContainText(/estimate|error/);
  await expect(page.getByText('Comparison failed')).toHaveCount(0);
  await expect(page.getByRole('tab').first()).toContainText('estimate');
});
