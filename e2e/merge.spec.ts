import { expect, test } from '@playwright/test';
import { dropFolders, openStudio, openWithInput, parentDirs } from './fixtures.ts';

test('builds an MEA recipe, selects experts into a rule, and merges into browser storage', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));

  // Preset: routed experts half base, half instruct.
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  await expect(page.getByTestId('rule')).toHaveCount(1);
  await expect(page.getByTestId('plan-sentence')).toContainText('mixed');

  // The threshold counts, from the comparison figures, the mixed tensors it would keep from the base.
  await page.getByTestId('threshold-on').check();
  await expect(page.getByTestId('threshold-count')).toContainText(/Keeps \d+ of 24 mixed tensors/);
  await page.getByLabel('threshold value').fill('1');
  await expect(page.getByTestId('threshold-count')).toContainText('Keeps 24 of 24');
  await page.getByLabel('threshold value').fill('0.0001');
  // Only the experts the two parents share unchanged (rms_diff 0) stay below a tiny threshold.
  await expect(page.getByTestId('threshold-count')).not.toContainText('Keeps 24 of 24');
  const kept = Number(/Keeps (\d+)/.exec((await page.getByTestId('threshold-count').textContent()) ?? '')?.[1]);
  expect(kept).toBeLessThan(24);

  // A heatmap selection becomes a rule at the top of the list.
  const canvas = page.getByTestId('heatmap-gate');
  const box = (await canvas.boundingBox())!;
  await page.mouse.move(box.x + 36, box.y + 20);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width - 4, box.y + box.height - 4, { steps: 4 });
  await page.mouse.up();
  await expect(page.getByTestId('selection')).toContainText('Layers');
  await page.getByTestId('selection-rule').click();
  await expect(page.getByTestId('rule')).toHaveCount(2);

  // The YAML view shows the recipe as the CLI reads it, and validates edits.
  await page.getByTestId('yaml-tab').click();
  const yaml = page.getByTestId('yaml');
  await expect(yaml).toHaveValue(/routed_expert/);
  await expect(yaml).toHaveValue(/weights: \{/);
  const good = await yaml.inputValue();
  await yaml.fill(good.replace('rules:', 'rulez:'));
  await expect(page.getByTestId('yaml-error')).toBeVisible();
  await yaml.fill(good);
  await expect(page.getByTestId('yaml-error')).toHaveCount(0);
  await page.screenshot({ path: info.outputPath('yaml-1280x800.png') });

  // Merge into the origin-private file system.
  await page.getByTestId('open-merge').click();
  const dialog = page.getByTestId('merge-dialog');
  await expect(dialog).toBeVisible();
  await expect(page.getByTestId('file-list')).toContainText('model.safetensors.index.json');
  await page.getByLabel('Browser storage folder').fill('e2e-child');
  await page.getByTestId('use-opfs').click();
  await expect(page.getByTestId('output-check')).toContainText('e2e-child');
  const overwrite = page.getByTestId('overwrite');
  if (await overwrite.count()) await overwrite.check();
  await page.getByTestId('run-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText('Done.', { timeout: 60_000 });
  // Where the kernel workers' time went, and the memory each held for its kernels.
  await expect(page.getByTestId('merge-runners')).toHaveText(/^\d+ workers? busy \d+% of [\d.]+s: (\w+ \d+%, ){3}\w+ \d+%; (each of \d+ workers|the worker) held at most [\d.]+ [KMG]B for its kernels\.$/);
  await page.screenshot({ path: info.outputPath('merged-1280x800.png') });

  const files = await page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle('e2e-child');
    const names: string[] = [];
    for await (const name of dir.keys()) names.push(name);
    return names.sort();
  });
  expect(files).toContain('model.safetensors.index.json');
  expect(files).toContain('config.json');
  expect(files.some((f) => f.endsWith('.safetensors'))).toBe(true);
  expect(files.some((f) => f.endsWith('.partial'))).toBe(false);
});

test('the recipe and recent parents survive a reload', async ({ page }, info) => {
  await openStudio(page);
  await dropFolders(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await expect(page.getByTestId('parent-card')).toHaveCount(2);
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await page.getByTestId('apply-chimera').click();
  await expect(page.getByTestId('rule')).toHaveCount(1);
  await page.reload();
  await expect(page.getByTestId('studio')).toBeVisible();
  await page.getByTestId('yaml-tab').click();
  await expect(page.getByTestId('yaml')).toHaveValue(/from: instruct/);
  // Dropped folders come back as recent handles; one click asks for read access again.
  await expect(page.getByTestId('recent')).toHaveCount(2);
  await expect(page.getByTestId('missing-parents')).toContainText('instruct');
  await page.screenshot({ path: info.outputPath('reloaded-1280x800.png') });
  await page.getByRole('button', { name: 'Reopen all' }).click();
  await expect(page.getByTestId('parent-card')).toHaveCount(2);
  await expect(page.getByTestId('parent-card').first().getByLabel('Parent name')).toHaveValue('base');
  await expect(page.getByTestId('parent-card').first().locator('.badge.base')).toBeVisible();
  await page.getByTestId('yaml-tab').click();
  await expect(page.getByTestId('yaml')).toHaveValue(/from: instruct/);
});
