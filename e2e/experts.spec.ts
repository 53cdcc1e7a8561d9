// Experts as regions in the studio: a fused model's parent card shows its layout, the heatmaps
// have a cell per expert projection inside the fused tensors, and recipes that work inside fused
// tensors and change which experts the child has (remove, transplant, add) write into browser
// storage exactly the child the CLI writes.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, test } from '@playwright/test';
import { FIXTURE_DIR, exportRecipe, openStudio, openWithInput, parentDirs, sameChild, selectCells, snap, type FiguresSnapshot } from './fixtures.ts';

const layouts = () => parentDirs('qwen3-moe-layouts');
const dirOf = (name: string) => layouts().find((d) => d.name === name)!.dir;

test('a fused model: its layout on the card, a heatmap cell per expert region, a region recipe with expert changes equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, [dirOf('resaved'), dirOf('tuned')]);
  const card = page.getByTestId('parent-card').first();
  await expect(card.getByTestId('expert-layout')).toContainText('fused tensors');
  await expect(card.getByTestId('expert-layout')).toContainText('model.layers.L.mlp.experts.gate_up_proj [4, 64, 64]: gate, up halves');
  await expect(card.getByTestId('router-kind')).toContainText('no bias · mute, remove exact');
  await expect(page.getByTestId('compat').locator('.badge')).toHaveText('mergeable');
  // Figures arrive for every expert region of the fused tensors, by layer, expert and projection.
  await page.getByRole('button', { name: 'Exact pass' }).click();
  await expect(page.getByRole('tab').first()).toContainText('exact');
  const figures = (await page.evaluate(() => (window as unknown as { __moeStudio: { figures(): unknown } }).__moeStudio.figures())) as FiguresSnapshot;
  expect(figures.names).toContain('model.layers.1.mlp.experts.gate_up_proj[2].up');
  expect(figures.names).toContain('model.layers.0.mlp.experts.down_proj[3].down');
  await expect(page.getByTestId('heatmap-up')).toBeVisible();
  await snap(page, info, 'fused-heatmaps');

  const yaml = [
    'parents: {resaved: ./resaved, tuned: ./tuned}',
    'rules:',
    '  - select: {kind: routed_expert, layers: 1, experts: [1, 2], proj: up}',
    '    weights: {resaved: 0.5, tuned: 0.5}',
    'experts:',
    '  remove:',
    '    - {layers: all, experts: [0]}',
    '  transplant:',
    '    - {layer: 1, expert: 2, from: {parent: tuned, layer: 0, expert: 1}, router: source}',
    '  add:',
    '    - {layers: all, from: {parent: tuned, expert: 3}}',
    '',
  ].join('\n');
  const file = path.join(FIXTURE_DIR, 'qwen3-moe-layouts', 'e2e-regions.yaml');
  writeFileSync(file, yaml);
  await page.getByTestId('yaml-tab').click();
  await page.getByTestId('recipe-file-input').setInputFiles(file);
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await expect(page.getByTestId('expert-changes')).toContainText('Experts per layer 4 → 4');
  await expect(page.getByTestId('expert-changes')).toContainText('layer 1: expert 0 removed; expert 2 ← tuned L0/E1; new 3 ← tuned L1/E3');
  await sameChild(page, info, file, 'e2e-regions');
});

test('Remove experts from a heatmap selection: the pruned child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, [dirOf('resaved'), dirOf('tuned')]);
  await selectCells(page, 'down', 2, 4, [0, 1], [1, 1]); // layers 0-1, expert 1
  await expect(page.getByTestId('selection')).toContainText('Layers 0-1');
  await page.getByTestId('remove-experts').click();
  const recipe = await exportRecipe(page, 'qwen3-moe-layouts', 'e2e-prune.yaml');
  expect(recipe.text).toMatch(/experts:\n\s+remove:\n\s+- \{layers: 0-1, experts: 1\}/);
  await expect(page.getByTestId('expert-changes')).toContainText('Experts per layer 4 → 3');
  await sameChild(page, info, recipe.path, 'e2e-prune');
});

test('gpt-oss MXFP4: the card says its router bias is on the logits (on refused); a mixed MXFP4 child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  const dirs = parentDirs('gpt-oss-trio');
  await openWithInput(page, [dirs.find((d) => d.name === 'mxfp4')!.dir, dirs.find((d) => d.name === 'tuned')!.dir]);
  const card = page.getByTestId('parent-card').first();
  await expect(card.getByTestId('router-kind')).toContainText('logit bias · off, mute, remove exact');
  await selectCells(page, 'up', 2, 4, [1, 2], [1, 2]);
  await expect(page.getByRole('button', { name: 'on', exact: true })).toBeDisabled();
  await expect(page.getByTestId('edit-exactness')).toContainText("On: the bias is added to the logits before the softmax: a forced expert's weight would dominate.");
  await page.getByRole('button', { name: 'off', exact: true }).click();
  await page.getByRole('button', { name: 'Swap experts (MEA)' }).click();
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  const recipe = await exportRecipe(page, 'gpt-oss-trio', 'e2e-mxfp4.yaml');
  expect(recipe.text).toMatch(/\{layer: 1, expert: 2, action: off\}/);
  await sameChild(page, info, recipe.path, 'e2e-mxfp4');
});
