// Every supported family opens in the studio, and its parent cards say what the CLI's `inspect`
// says: architecture, layers (dense / MoE), experts, shared experts, dtypes and size on disk.
// And a mismatched pair is reported tensor by tensor and cannot be merged.
import { expect, test, type Locator } from '@playwright/test';
import { cli, formatBytes, openStudio, openWithInput, parentDirs, snap, type Preset } from './fixtures.ts';

interface Inspect {
  family: string;
  modelType?: string;
  layers: number;
  denseLayers: number[];
  moeLayers: number[];
  experts: number;
  expertsPerToken?: number;
  sharedExperts: number;
  dtypes: Record<string, { tensors: number; bytes: number }>;
  sizeOnDisk: number;
}

const FAMILIES: [string, Preset][] = [
  ['mixtral', 'mixtral-pair'],
  ['qwen2_moe', 'qwen2-moe-pair'],
  ['qwen3_moe', 'qwen3-moe-pair'],
  ['olmoe', 'olmoe-pair'],
  ['deepseek_v2', 'deepseek-v2-pair'],
  ['deepseek_v3', 'deepseek-v3-fp8-pair'],
  ['deepseek_v3', 'kimi-k2-pair'],
  ['generic', 'generic-pair'],
];

const fact = (card: Locator, term: string) => card.locator(`dt:text-is("${term}") + dd`);

for (const [family, preset] of FAMILIES) {
  test(`parent cards of a ${family} pair (${preset}) match the CLI's inspect`, async ({ page }, info) => {
    await openStudio(page);
    const dirs = parentDirs(preset);
    await openWithInput(page, dirs.map((d) => d.dir));
    const cards = page.getByTestId('parent-card');
    for (const [k, { name, dir }] of dirs.entries()) {
      const want = JSON.parse(cli(['inspect', dir, '--json'])) as Inspect;
      const card = cards.nth(k);
      await expect(card.getByLabel('Parent name')).toHaveValue(name);
      expect(want.family).toBe(family);
      await expect(fact(card, 'architecture')).toContainText(family);
      const dense = want.denseLayers.length;
      await expect(fact(card, 'layers')).toHaveText(
        `${want.layers} (${dense} dense${dense ? `: ${fmtList(want.denseLayers)}` : ''}, ${want.moeLayers.length} MoE)`,
      );
      await expect(fact(card, 'experts')).toHaveText(
        `${want.experts} routed${want.expertsPerToken ? `, top ${want.expertsPerToken}` : ''}${want.sharedExperts ? `, ${want.sharedExperts} shared` : ', no shared'}`,
      );
      const chips = await fact(card, 'dtypes').locator('.chip').allTextContents();
      expect(chips.sort()).toEqual(Object.keys(want.dtypes).sort());
      await expect(fact(card, 'size')).toContainText(formatBytes(want.sizeOnDisk));
    }
    await expect(page.getByTestId('compat').locator('.badge')).toHaveText('mergeable');
    await expect(page.getByTestId('heatmap-down')).toBeVisible();
    await snap(page, info, family);
  });
}

test('a mismatched pair lists its mismatches by tensor name and cannot be merged', async ({ page }, info) => {
  await openStudio(page);
  await openWithInput(page, parentDirs('mismatched-pair').map((d) => d.dir));
  const compat = page.getByTestId('compat');
  await expect(compat.locator('.badge')).toHaveText('not mergeable');
  const problems = compat.locator('.problem.sev-error');
  await expect(problems.first()).toBeVisible();
  // The donor has 6 experts of 80×64 against the base's 4 of 96×64: the expert count differs, and
  // each expert's projections differ in shape (named by layer, expert and projection, and tensor).
  await expect(compat).toContainText(/routed experts per layer differ: 6 here, 4 in the base/);
  await expect(compat).toContainText(/model\.layers\.0\.block_sparse_moe\.experts\.0\.w1\.weight/);
  await expect(compat).toContainText(/layer 0 expert 0 gate is 80 × 64 here, 96 × 64 in the base/);
  await expect(compat).toContainText(/\d+ errors/);
  const texts = await problems.allTextContents();
  expect(texts.every((t) => /model\.\S+/.test(t) || /expert|config|skeleton/i.test(t))).toBe(true);
  // Merging is refused: the plan fails and the merge button stays disabled.
  await page.getByRole('button', { name: 'Chimera (AoE)' }).click();
  await page.getByTestId('apply-chimera').click();
  await expect(page.getByTestId('plan-sentence')).toContainText('cannot run');
  await expect(page.getByTestId('open-merge')).toBeDisabled();
  await snap(page, info, 'mismatched');
});

function fmtList(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(j > i ? `${xs[i]}-${xs[j]}` : String(xs[i]));
    i = j + 1;
  }
  return parts.join(', ');
}
