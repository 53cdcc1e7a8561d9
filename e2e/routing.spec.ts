// The Routing view: statistics files (moe-studio.routing/1) dropped or picked, checked against the
// base; the ranked table and the heatmap's figures equal the CLI's `routing compare`; the top N and
// a heatmap selection become recipe edits and removals (with where they came from), and the child
// merged into browser storage equals the CLI's.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect, test } from '@playwright/test';
import { parse as parseYaml } from 'yaml';
import { routingFixture } from '../app/fixtures/routing.ts';
import { FIXTURE_DIR, cli, dragCells, dropFolders, exportRecipe, openStudio, openWithInput, parentDirs, sameChild, snap } from './fixtures.ts';

const fixed = (x: number, d = 4) => x.toFixed(d);

test('routing statistics: ranked like the CLI, top N and a selection into the recipe, the child equal to the CLI\'s', async ({ page }, info) => {
  const dir = path.join(FIXTURE_DIR, 'deepseek-v3-fp8-pair');
  const fixture = { modelType: 'deepseek_v3', layers: [1, 2, 3], experts: 8, topK: 2, source: 'e2e' };
  const stats = path.join(dir, 'e2e.routing.json');
  writeFileSync(
    stats,
    JSON.stringify(
      routingFixture({
        ...fixture,
        sets: [
          { name: 'refusal', prompts: 30, tokens: 700, seed: 5, figures: true, boost: [{ layer: 1, expert: 5, factor: 5 }, { layer: 3, expert: 2, factor: 2.5 }] },
          { name: 'baseline', prompts: 50, tokens: 1100, seed: 9 },
        ],
      }),
    ),
  );
  const wrong = path.join(dir, 'e2e-wrong.routing.json');
  writeFileSync(wrong, JSON.stringify(routingFixture({ ...fixture, experts: 16, sets: [{ name: 'x', prompts: 1, tokens: 40, seed: 2 }] })));

  await openStudio(page);
  await openWithInput(page, parentDirs('deepseek-v3-fp8-pair').map((p) => p.dir));
  await page.getByTestId('view-routing').click();
  await expect(page.getByTestId('routing-intro')).toBeVisible();
  // A file of another model is refused with the mismatch named; dropping the right one loads it.
  await page.getByTestId('routing-input').setInputFiles(wrong);
  await expect(page.locator('.notice.error')).toContainText('e2e-wrong.routing.json: does not describe the base v3: 16 experts per layer here, 8 there');
  await dropFolders(page, [stats]);
  await expect(page.getByTestId('routing-files')).toContainText('e2e.routing.json');
  await expect(page.getByTestId('parent-card')).toHaveCount(2); // not opened as a model

  // The ranked table equals `routing compare`, for both statistics.
  for (const metric of ['rd', 'log-odds'] as const) {
    if (metric === 'log-odds') await page.getByRole('radio', { name: 'Log-odds' }).click();
    const want = JSON.parse(cli(['routing', 'compare', `${stats}#refusal`, `${stats}#baseline`, '--metric', metric, '--top', '10', '--json'])).top;
    const rows = page.getByTestId('routing-row');
    await expect(rows).toHaveCount(10);
    const got = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(got).toEqual(
      want.map((t: any, i: number) => [
        String(i + 1), String(t.layer), String(t.expert), `${t.a.selected}/${t.a.tokens}`, `${t.b.selected}/${t.b.tokens}`,
        fixed(t.a.rate), fixed(t.b.rate), fixed(t.rd), fixed(t.logOdds, 3), `[${fixed(t.low, 3)}, ${fixed(t.high, 3)}]`,
      ]),
    );
  }
  // A cell's tooltip: layer 1, expert 5 (row 0, column 5).
  const hm = page.getByTestId('routing-heatmap');
  const b = (await hm.boundingBox())!;
  await page.mouse.move(b.x + 30 + ((b.width - 30) / 8) * 5.5, b.y + 14 + ((b.height - 14) / 3) * 0.5);
  const all = JSON.parse(cli(['routing', 'compare', `${stats}#refusal`, `${stats}#baseline`, '--top', '24', '--json'])).top;
  const cell = all.find((t: any) => t.layer === 1 && t.expert === 5);
  await expect(page.getByTestId('routing-tooltip')).toContainText('layer 1 · expert 5');
  await expect(page.getByTestId('routing-tooltip')).toContainText(`rd${fixed(cell.rd)}`);
  await snap(page, info, 'routing-log-odds');

  // Top 3 by log-odds switched off: the same edits the CLI prints, with where they came from.
  await page.getByLabel('Top N').fill('3');
  await page.getByTestId('routing-top-actions').getByRole('button', { name: 'Switch off' }).click();
  await expect(page.getByTestId('routing-top-actions').getByRole('button', { name: 'Force on' })).toBeDisabled(); // group-limited routing: on is not exact
  // A selection on the heatmap, removed: one expert of each of the 4 routing groups in every layer
  // (group-limited routing needs that), none of them edited; rectangles, not a product.
  await dragCells(page, 'routing-heatmap', 3, 8, [0, 0], [2, 0]);
  await dragCells(page, 'routing-heatmap', 3, 8, [0, 3], [2, 3], true);
  await dragCells(page, 'routing-heatmap', 3, 8, [0, 7], [2, 7], true);
  await dragCells(page, 'routing-heatmap', 3, 8, [0, 4], [0, 4], true);
  await dragCells(page, 'routing-heatmap', 3, 8, [2, 4], [2, 4], true);
  await dragCells(page, 'routing-heatmap', 3, 8, [1, 5], [1, 5], true);
  await expect(page.getByTestId('routing-selection-actions')).toContainText('Selection (12)');
  await page.getByTestId('routing-selection-actions').getByRole('button', { name: 'Remove' }).click();
  await page.getByTestId('yaml-tab').click();
  const removed = parseYaml(await page.getByTestId('yaml').inputValue());
  expect(removed.experts.remove).toEqual([{ layers: [1, 3], experts: [0, 3, 4, 7] }, { layers: 2, experts: [0, 3, 5, 7] }]);
  // The MTP layer (4) routes too but is not in the statistics (transformers does not run it): the
  // plan refuses uneven layers and says so.
  await expect(page.getByTestId('open-merge')).toBeDisabled();
  await expect(page.getByTestId('open-merge')).toHaveAttribute('title', /would have 4 in layers 1-3; 8 in layer 4/);
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.getByTestId('clear-expert-changes').click();
  // Mute the same selection instead: edits for exactly those 12 experts.
  await page.getByTestId('routing-selection-actions').getByRole('button', { name: 'Mute' }).click();
  await page.getByTestId('view-differences').click();
  const recipe = await exportRecipe(page, 'deepseek-v3-fp8-pair', 'e2e-routing.yaml');
  const doc = parseYaml(recipe.text);
  const fromCli = parseYaml(cli(['routing', 'compare', `${stats}#refusal`, `${stats}#baseline`, '--metric', 'log-odds', '--top', '3', '--edits', 'off'])).edits;
  expect(doc.edits.slice(0, 3)).toEqual(fromCli);
  expect(doc.edits[0].why).toMatch(/^log-odds [\d.]+ \[[\d.]+, [\d.]+\]; routing e2e\.routing\.json#refusal against e2e\.routing\.json#baseline$/);
  expect(doc.edits.slice(3).map((e: { layer: number; expert: number; action: string }) => `${e.layer}:${e.expert}:${e.action}`).sort()).toEqual(
    ['1:0', '2:0', '3:0', '1:3', '2:3', '3:3', '1:7', '2:7', '3:7', '1:4', '3:4', '2:5'].map((k) => `${k}:mute`).sort(),
  );
  expect(doc.experts).toBeUndefined();
  await sameChild(page, info, recipe.path, 'e2e-routing');
});
