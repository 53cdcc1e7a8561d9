// The studio's verdicts on a recipe and what a user takes home (issue 11): presets that fit the
// model, one verdict on the recipe (YAML errors on top, Merge waits with the reason, a recipe with
// nothing in it confirmed first), shapes and formats in the tensor table, a dropped recipe file
// imported, a child in browser storage downloaded.
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, test } from '@playwright/test';
import { FIXTURE_DIR, clearOpfs, dropFolders, expectSameAsCli, exportRecipe, listOpfs, mergeToOpfs, openStudio, openWithInput, parentDirs, snap } from './fixtures.ts';

test('Mix N parents on Mixtral writes rules for its own kinds only, and the recipe runs', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Mix N parents' }).click();
  // Mixtral has neither shared experts nor dense MLP layers: no row for them.
  await expect(page.getByText('Shared experts', { exact: true })).toHaveCount(0);
  await expect(page.getByText('Dense MLP', { exact: true })).toHaveCount(0);
  await page.getByRole('button', { name: 'Apply: replace the rules' }).click();
  await expect(page.getByTestId('rule')).toHaveCount(4);
  await expect(page.getByTestId('plan-sentence')).toContainText('The child:');
  await expect(page.getByTestId('open-merge')).toBeEnabled();
  // Shapes and formats in the tensor table (Mixtral fixture experts: 96 × 64 BF16).
  await expect(page.getByTestId('tensor-table')).toContainText('shape · format');
  await expect(page.getByTestId('tensor-table')).toContainText('96×64 · BF16');
  await snap(page, info, 'mix-mixtral');
});

test('one verdict: a YAML error shows above the editor and Merge waits with the reason; an empty recipe asks first', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await expect(page.getByTestId('open-merge')).toBeEnabled();

  // No rules and no edits: the child would be a copy of the base; Merge asks.
  const asked: string[] = [];
  page.once('dialog', (d) => {
    asked.push(d.message());
    void d.dismiss();
  });
  await page.getByTestId('open-merge').click();
  await expect.poll(() => asked.length).toBe(1);
  expect(asked[0]).toContain('no rules, edits or expert changes');
  await expect(page.getByTestId('merge-dialog')).toHaveCount(0);

  await page.getByTestId('apply-mea').click();
  await page.getByTestId('yaml-tab').click();
  const yaml = page.getByTestId('yaml');
  await expect(yaml).toHaveValue(/rules:/);
  const good = await yaml.inputValue();
  await yaml.fill(good.replace('rules:', 'rules: [\n'));
  await expect(page.getByTestId('yaml-error')).toBeVisible();
  await expect(page.getByTestId('yaml-status')).toContainText('invalid YAML');
  // The error sits above the editor, in view.
  expect((await page.getByTestId('yaml-error').boundingBox())!.y).toBeLessThan((await yaml.boundingBox())!.y);
  await expect(page.getByTestId('open-merge')).toBeDisabled();
  await expect(page.getByTestId('merge-blocked')).toContainText('The YAML has an error');
  await snap(page, info, 'yaml-error');
  await yaml.fill(good);
  await expect(page.getByTestId('yaml-error')).toHaveCount(0);
  await expect(page.getByTestId('yaml-status')).toHaveText('valid');
  await expect(page.getByTestId('open-merge')).toBeEnabled();
  await expect(page.getByTestId('merge-blocked')).toHaveCount(0);
});

test('a dropped recipe file is imported; a child in browser storage downloads file by file', async ({ page }, info) => {
  await openStudio(page);
  const dirs = parentDirs('mixtral-pair');
  await openWithInput(page, dirs.map((d) => d.dir));
  const recipe = path.join(FIXTURE_DIR, 'mixtral-pair', 'dropped-recipe.yaml');
  writeFileSync(recipe, `parents: {base: base, instruct: instruct}\nrules:\n  - select: {kind: routed_expert, layers: 1}\n    from: instruct\n`);
  await dropFolders(page, [recipe]);
  await expect(page.getByRole('status').filter({ hasText: 'Recipe imported from dropped-recipe.yaml' })).toBeVisible();
  await expect(page.getByTestId('rule')).toHaveCount(1);
  await expect(page.getByTestId('parent-card')).toHaveCount(2);

  await mergeToOpfs(page, 'take-home');
  // A readable report: how tensors were made, per kind and parent.
  await expect(page.getByTestId('merge-report')).toContainText('from instruct');
  await expect(page.getByTestId('merge-report')).toContainText('routed expert');
  const files = await listOpfs(page, 'take-home');
  const downloads: { name: string; bytes: number }[] = [];
  page.on('download', (d) => {
    void d.path().then((p) => downloads.push({ name: d.suggestedFilename(), bytes: readFileSync(p!).length }));
  });
  await page.getByTestId('download-child').click();
  await expect.poll(() => downloads.length, { timeout: 20_000 }).toBe(files.length);
  expect(downloads.map((d) => d.name).sort()).toEqual(files);
  // The children kept in browser storage: listed with their files and size, and deletable.
  const stored = page.getByTestId('stored-children');
  await stored.locator('summary').click();
  const row = page.getByTestId('stored-child').filter({ hasText: 'take-home' });
  await expect(row).toContainText(`${files.length} files`);
  await snap(page, info, 'take-home');
  page.once('dialog', (d) => void d.accept());
  await row.getByRole('button', { name: 'Delete take-home' }).click();
  await expect(row).toHaveCount(0);
  expect(await listOpfs(page, 'take-home')).toEqual([]);
});

test('a λ sweep writes one child per value into browser storage, each equal to the CLI merging that recipe', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  const exported = await exportRecipe(page, 'mixtral-pair', 'sweep-recipe.yaml');
  expect(exported.text).toContain('weights: {base: 0.5, instruct: 0.5}');

  await clearOpfs(page, 'sweep-e2e');
  await page.getByTestId('open-merge').click();
  await page.getByLabel('Browser storage folder').fill('sweep-e2e');
  await page.getByTestId('use-opfs').click();
  await page.getByTestId('sweep-on').check();
  await page.getByTestId('sweep-lambdas').fill('0.25, 2');
  await expect(page.getByTestId('sweep-note')).toContainText('"2" is not a λ between 0 and 1');
  await expect(page.getByTestId('run-merge')).toBeDisabled();
  await page.getByTestId('sweep-lambdas').fill('0.25, 1');
  await expect(page.getByTestId('run-merge')).toHaveText('Start sweep: 2 children');
  await page.getByTestId('run-merge').click();
  await expect(page.getByTestId('merge-summary')).toContainText('Done. 2 children', { timeout: 60_000 });
  // One pass made both children: its workers' time is said once.
  await expect(page.getByTestId('merge-runners')).toHaveText(/^\d+ workers? busy \d+% of [\d.]+s: (\w+ \d+%, ){3}\w+ \d+%; (each of \d+ workers|the worker) held at most [\d.]+ [KMG]B for its kernels \(one pass for every child\)\.$/);
  await snap(page, info, 'sweep-done');
  expect(await listOpfs(page, 'sweep-e2e')).toEqual(['lambda-0.25', 'lambda-1']);

  // Each child equals the CLI's merge of the recipe with that λ (λ = 1: the donor's experts copied).
  const recipes: [string, string][] = [
    ['lambda-0.25', exported.text.replace('weights: {base: 0.5, instruct: 0.5}', 'weights: {base: 0.75, instruct: 0.25}')],
    ['lambda-1', exported.text.replace('weights: {base: 0.5, instruct: 0.5}', 'from: instruct')],
  ];
  for (const [name, text] of recipes) {
    const file = path.join(FIXTURE_DIR, 'mixtral-pair', `${name}.yaml`);
    writeFileSync(file, text);
    await expectSameAsCli(page, info, file, `sweep-e2e/${name}`);
  }
});

test('Mix N with three parents keeps thirds exact: 1/3 typed, the recipe says a third, not 0.334', async ({ page }) => {
  await openStudio(page);
  const dirs = parentDirs('deepseek-v3-triple');
  await openWithInput(page, dirs.map((d) => d.dir));
  await page.getByRole('button', { name: 'Mix N parents' }).click();
  for (const d of dirs) await page.getByLabel(`Routed experts weight of ${d.name}`, { exact: true }).fill('1/3');
  await page.getByRole('button', { name: 'Apply: replace the rules' }).click();
  await expect(page.getByTestId('plan-sentence')).toContainText('The child:');
  await page.getByTestId('yaml-tab').click();
  const third = String(1 / 3);
  await expect(page.getByTestId('yaml')).toHaveValue(new RegExp(`weights: \\{${dirs.map((d) => `${d.name}: ${third.replace('.', '\\.')}`).join(', ')}\\}`));
  await expect(page.getByTestId('yaml')).not.toHaveValue(/0\.334/);
  // A weight that is neither a number nor a fraction stops Apply.
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.getByLabel(`Routed experts weight of ${dirs[0]!.name}`, { exact: true }).fill('a third');
  await expect(page.getByRole('button', { name: 'Apply: replace the rules' })).toBeDisabled();
});

test('a dropped mergekit linear config becomes a recipe, says what it left out, and its child equals the CLI\'s', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  const config = path.join(FIXTURE_DIR, 'mixtral-pair', 'mergekit-linear.yml');
  writeFileSync(
    config,
    [
      'merge_method: linear',
      'base_model: ./base',
      'models:',
      '  - model: ./base',
      '    parameters: {weight: [{filter: self_attn, value: 3}, {value: 1}]}',
      '  - model: ./instruct',
      '    parameters: {weight: [{filter: self_attn, value: 1}, {value: 1}]}',
      'dtype: bfloat16',
      'tokenizer_source: union',
      '',
    ].join('\n'),
  );
  await dropFolders(page, [config]);
  const note = page.getByTestId('notice').filter({ hasText: 'mergekit-linear.yml (a mergekit config) was imported as a recipe' });
  await expect(note).toContainText('tokenizer_source');
  await expect(page.getByTestId('rule')).toHaveCount(2);
  await page.getByTestId('yaml-tab').click();
  const yaml = await page.getByTestId('yaml').inputValue();
  expect(yaml).toContain('select: {name: self_attn}');
  expect(yaml).toContain('weights: {base: 0.75, instruct: 0.25}');
  expect(yaml).toContain('dtype: bf16');
  const recipe = path.join(FIXTURE_DIR, 'mixtral-pair', 'e2e-mergekit.yaml');
  writeFileSync(recipe, yaml);
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await clearOpfs(page, 'e2e-mergekit');
  await mergeToOpfs(page, 'e2e-mergekit');
  await expectSameAsCli(page, info, recipe, 'e2e-mergekit');
});

test('a mixing preset sets the threshold with its rules', async ({ page }) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await page.getByRole('button', { name: 'Swap experts (MEA)' }).click();
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('preset-threshold-on').check();
  await page.getByLabel('preset threshold').fill('0.002');
  await page.getByTestId('apply-mea').click();
  await expect(page.getByTestId('threshold-on')).toBeChecked();
  await expect(page.getByLabel('threshold value')).toHaveValue('0.002');
  // Chimera copies: it mixes nothing, so it offers no threshold and leaves the recipe's alone.
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await expect(page.getByTestId('preset-threshold-on')).toHaveCount(0);
});
