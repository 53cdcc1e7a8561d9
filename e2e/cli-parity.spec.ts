// The studio and the CLI are one engine: a recipe built in the studio (presets, heatmap
// selections, expert edits, threshold) is exported as YAML, run by the CLI next to the fixture
// parents (the studio writes parent paths as folder names, relative to the recipe), and the child
// the studio writes into browser storage (OPFS) is compared with the CLI's BYTE FOR BYTE, every
// file. A recipe file written for the CLI imports into the studio with the same rules.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, test } from '@playwright/test';
import { cli, exportRecipe, openStudio, openWithInput, parentDirs, sameChild, selectCells, snap, FIXTURE_DIR } from './fixtures.ts';

test('MEA α=0.5 on Mixtral BF16 with a muted expert: off/on refused, the child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Swap experts (MEA)' }).click();
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  await expect(page.getByTestId('rule')).toHaveCount(1);
  await expect(page.getByTestId('plan-sentence')).toContainText('routed expert (24): 24 mixed');

  // Mixtral's router has no bias: off/on are disabled with the reason; mute works.
  await selectCells(page, 'gate', 2, 4, [1, 3], [1, 3]);
  await expect(page.getByTestId('selection')).toContainText('Layer 1 ');
  await expect(page.getByRole('button', { name: 'off', exact: true })).toBeDisabled();
  await expect(page.getByRole('button', { name: 'on', exact: true })).toBeDisabled();
  await expect(page.getByTestId('edit-exactness')).toContainText('Off: no router bias to switch it off with; mute or remove the expert instead.');
  await page.getByRole('button', { name: 'mute', exact: true }).click();
  await expect(page.getByText('Expert edits (1)')).toBeVisible();
  await expect(page.locator('.edit-chip')).toHaveText(/L1 E3 mute/);
  await snap(page, info, 'mea-mute');

  const recipe = await exportRecipe(page, 'mixtral-pair', 'e2e-mea.yaml');
  expect(recipe.text).toContain('parents:\n  base: base\n  instruct: instruct\n');
  expect(recipe.text).toMatch(/weights: \{base: 0.5, instruct: 0.5\}/);
  expect(recipe.text).toMatch(/\{layer: 1, expert: 3, action: mute\}/);
  const files = await sameChild(page, info, recipe.path, 'e2e-mea');
  expect(files).toEqual(expect.arrayContaining(['README.md', 'config.json', 'model.safetensors.index.json', 'moe-studio-recipe.yaml', 'tokenizer.json', 'tokenizer_config.json']));
});

test('Chimera on DeepSeek-V3 FP8 with off/mute edits (on refused under group-limited routing): the child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await page.getByTestId('apply-chimera').click();
  await expect(page.getByTestId('rule')).toHaveCount(1);
  await expect(page.getByTestId('plan-sentence')).toContainText('all from r1');
  // Rows: MoE layers 1-3 and the MTP layer 4; 8 experts.
  await selectCells(page, 'up', 4, 8, [0, 2], [1, 3]); // layers 1-2, experts 2-3
  await expect(page.getByTestId('selection')).toContainText('Layers 1-2');
  await page.getByRole('button', { name: 'off', exact: true }).click();
  // n_group 4, topk_group 2: forcing expert 6 on would force its group into the chosen two.
  await selectCells(page, 'up', 4, 8, [2, 6], [2, 6]); // layer 3, expert 6
  await expect(page.getByRole('button', { name: 'on', exact: true })).toBeDisabled();
  await expect(page.getByTestId('edit-exactness')).toContainText('Forcing expert 6 on would force group 3 (experts 6-7) into the 2 groups chosen per token, leaving 1 group slot for every other expert.');
  await page.getByRole('button', { name: 'off', exact: true }).click();
  await selectCells(page, 'down', 4, 8, [2, 0], [2, 0]); // layer 3, expert 0
  await page.getByRole('button', { name: 'mute', exact: true }).click();
  await expect(page.getByText('Expert edits (6)')).toBeVisible();
  const chips = await page.locator('.edit-chip').allTextContents();
  expect(chips.map((c) => c.replace('×', '').trim()).sort()).toEqual(['L1 E2 off', 'L1 E3 off', 'L2 E2 off', 'L2 E3 off', 'L3 E0 mute', 'L3 E6 off'].sort());
  await snap(page, info, 'chimera-edits');

  const recipe = await exportRecipe(page, 'deepseek-v3-fp8-pair', 'e2e-chimera.yaml');
  expect(recipe.text).toContain('from: r1');
  await sameChild(page, info, recipe.path, 'e2e-chimera');
});

test('Mix 3 FP8 parents with per-kind weights and a threshold: the child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-triple').map((d) => d.dir));
  await expect(page.getByRole('tab')).toHaveCount(2);
  await page.getByRole('button', { name: 'Mix N parents' }).click();
  const w = (group: string, parent: string) => page.getByLabel(`${group} weight of ${parent}`, { exact: true });
  await w('Routed experts', 'v3').fill('0.2');
  await w('Routed experts', 'r1').fill('0.5');
  await w('Routed experts', 'v3-0324').fill('0.3');
  await w('Shared experts', 'r1').fill('0');
  await w('Shared experts', 'v3-0324').fill('0');
  await w('Dense MLP', 'v3').fill('0');
  await w('Dense MLP', 'r1').fill('0');
  await w('Attention', 'v3-0324').fill('0');
  await snap(page, info, 'mix-weights');
  await page.getByRole('button', { name: 'Apply: replace the rules' }).click();
  await expect(page.getByTestId('rule')).toHaveCount(6);
  // The threshold keeps, from exact figures, the mixed tensors within rms_diff of the base.
  for (const tab of await page.getByRole('tab').all()) {
    await tab.click();
    await page.getByRole('button', { name: 'Exact pass' }).click();
    await expect(tab).toContainText('exact');
  }
  await page.getByTestId('threshold-on').check();
  await page.getByLabel('threshold value').fill('0.0009');
  await expect(page.getByTestId('threshold-count')).toContainText(/Keeps [1-9]\d* of \d+ mixed tensors/);
  await snap(page, info, 'mix-threshold');

  const recipe = await exportRecipe(page, 'deepseek-v3-triple', 'e2e-mix.yaml');
  expect(recipe.text).toContain('parents:\n  v3: v3\n  r1: r1\n  v3-0324: v3-0324\n');
  expect(recipe.text).toMatch(/kind: routed_expert\}\n\s+weights: \{v3: 0.2, r1: 0.5, v3-0324: 0.3\}/);
  expect(recipe.text).toMatch(/kind: shared_expert\}\n\s+from: v3\n/);
  expect(recipe.text).toMatch(/kind: dense_mlp\}\n\s+from: v3-0324\n/);
  // Rows are normalized exactly: 0.5 and 0.25 are two thirds and one third.
  expect(recipe.text).toContain(`kind: attention}\n    weights: {v3: ${2 / 3}, r1: ${1 / 3}}`);
  expect(recipe.text).toContain('threshold: {metric: rms_diff, below: 0.0009}');
  await sameChild(page, info, recipe.path, 'e2e-mix');
  // The studio's count of kept tensors is what the CLI reports.
  const kept = /Keeps (\d+) of (\d+)/.exec((await page.getByTestId('threshold-count').textContent()) ?? '')!;
  const log = (info.attachments.find((a) => a.name === 'cli-merge.txt')!.body as Buffer).toString();
  expect(log).toContain(`${kept[1]} of ${kept[2]} tensors kept`);
});

test('a recipe file written for the CLI imports into the studio with the same rules', async ({ page }, info) => {
  const yaml = [
    'parents: {v3: ./v3, r1: ./r1}',
    'base: v3',
    'rules:',
    '  - select: {kind: routed_expert, layers: "2-3", proj: down}',
    '    weights: {v3: 0.3, r1: 0.7}',
    '  - select: {kind: routed_expert}',
    '    from: r1',
    'threshold: {metric: rms_diff, below: 0.0005}',
    'edits:',
    '  - {layer: 3, expert: 5, action: off}',
    'output: {dtype: keep, shard_size: 2MB}',
    '',
  ].join('\n');
  const file = path.join(FIXTURE_DIR, 'deepseek-v3-fp8-pair', 'e2e-import.yaml');
  writeFileSync(file, yaml);
  const log = cli(['merge', file, '-o', info.outputPath('cli-child')], true);
  expect(log).toContain('Router edits: L3/E5 off');

  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((d) => d.dir));
  await page.getByTestId('yaml-tab').click();
  await page.getByTestId('recipe-file-input').setInputFiles(file);
  await expect(page.getByText('Recipe imported from e2e-import.yaml.')).toBeVisible();
  await expect(page.getByTestId('yaml')).toHaveValue(/from: r1/);
  await snap(page, info, 'imported-yaml');
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  const rules = page.getByTestId('rule');
  await expect(rules).toHaveCount(2);
  await expect(rules.nth(0).locator('.chip-btn.on')).toHaveText(['routed expert', 'down']);
  await expect(rules.nth(0).getByRole('textbox').first()).toHaveValue('2-3');
  expect(await rules.nth(0).locator('.weights input').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value))).toEqual(['0.3', '0.7']);
  await expect(rules.nth(1).getByLabel('From parent')).toHaveValue('r1');
  await expect(page.locator('.edit-chip')).toHaveText([/L3 E5 off/]);
  await expect(page.getByTestId('threshold-on')).toBeChecked();
  await expect(page.getByLabel('threshold value')).toHaveValue('0.0005');
  await expect(page.getByLabel('Shard size')).toHaveValue('2MB');
  // The parents the file names by path are the open parents, so the plan runs; the sentence is the CLI's.
  const sentence = /^A v3-based child[^\n]*/m.exec(log)![0];
  await expect(page.getByTestId('plan-sentence')).toContainText(sentence.slice(0, sentence.indexOf(' in 3 shards')));
  await snap(page, info, 'imported-build');
});
