// The comparison figures the studio draws are the engine's: equal to `moe-studio diff --json` in
// exact mode, and in sampled mode equal to the CLI's own estimate and within its stated error of
// the exact figures. Read through the test-only, read-only `window.__moeStudio.figures()` (every
// tensor), and spot-checked where a user reads them: the tooltip and the tensor table.
import { expect, test, type Page } from '@playwright/test';
import { cli, formatFigure, type FiguresSnapshot, openStudio, openWithInput, parentDirs, snap } from './fixtures.ts';

interface CliDiff {
  mode: 'exact' | 'sampled';
  tensors: { name: string; rms_diff: number; rel_diff: number; cosine: number; sampled: boolean; fraction: number; rel_error: number }[];
}

async function figures(page: Page): Promise<FiguresSnapshot> {
  return page.evaluate(() => (window as unknown as { __moeStudio: { figures(): FiguresSnapshot } }).__moeStudio.figures());
}

async function waitFor(page: Page, other: string, mode: 'exact' | 'sampled'): Promise<FiguresSnapshot> {
  await expect
    .poll(async () => {
      const d = (await figures(page)).diffs[other];
      return d && d.mode === mode && d.complete && !d.running;
    }, { timeout: 60_000 })
    .toBe(true);
  return figures(page);
}

/** Equal after the studio's Float32Array storage (the engine's figures are f64). */
function sameF32(studio: number, engine: number): boolean {
  if (Number.isNaN(engine)) return Number.isNaN(studio);
  return studio === Math.fround(engine);
}

test('heatmap figures equal the engine\'s: sampled within the stated error, exact to the last bit', async ({ page }, info) => {
  const [v3, r1] = parentDirs('deepseek-v3-fp8-pair');
  const exact = JSON.parse(cli(['diff', v3!.dir, r1!.dir, '--json'])) as CliDiff;
  const sampled = JSON.parse(cli(['diff', v3!.dir, r1!.dir, '--json', '--sampled'])) as CliDiff;
  const exactBy = new Map(exact.tensors.map((t) => [t.name, t]));
  const sampledBy = new Map(sampled.tensors.map((t) => [t.name, t]));

  await openStudio(page);
  await openWithInput(page, [v3!.dir, r1!.dir]);

  // The sampled estimate starts by itself.
  let snapOf = await waitFor(page, 'r1', 'sampled');
  expect(snapOf.base).toBe('v3');
  expect(snapOf.names.sort()).toEqual([...exactBy.keys()].sort());
  snapOf = await figures(page);
  let estimates = 0;
  for (const [i, name] of snapOf.names.entries()) {
    const d = snapOf.diffs.r1!;
    const s = sampledBy.get(name)!;
    const e = exactBy.get(name)!;
    expect(d.sampled[i], name).toBe(s.fraction < 1 ? 1 : 0);
    // The same estimate as the CLI's…
    expect(sameF32(d.rms[i]!, s.rms_diff), `${name} rms ${d.rms[i]} vs CLI sampled ${s.rms_diff}`).toBe(true);
    expect(sameF32(d.rel[i]!, s.rel_diff), `${name} rel`).toBe(true);
    expect(sameF32(d.cos[i]!, s.cosine), `${name} cos`).toBe(true);
    // …within its stated (relative standard) error of the exact figure: 4 standard errors.
    if (s.fraction < 1) {
      estimates++;
      expect(Math.abs(d.rms[i]! - e.rms_diff), `${name}: ${d.rms[i]} vs exact ${e.rms_diff} ± ${s.rel_error}`).toBeLessThanOrEqual(4 * s.rel_error * e.rms_diff + 1e-9);
    } else {
      expect(sameF32(d.rms[i]!, e.rms_diff), `${name} read whole`).toBe(true);
    }
  }
  expect(estimates).toBeGreaterThan(0);
  // The table marks estimates with *.
  const est = sampled.tensors.find((t) => t.fraction < 1 && t.rms_diff > 0)!;
  await page.getByLabel('Filter tensors').fill(est.name);
  await expect(page.getByTestId('tensor-table')).toContainText(`${formatFigure(Math.fround(est.rms_diff))}*`);
  await snap(page, info, 'figures-sampled');

  // The exact pass: every figure equal to the CLI's.
  await page.getByRole('button', { name: 'Exact pass' }).click();
  snapOf = await waitFor(page, 'r1', 'exact');
  await expect(page.getByRole('tab').first()).toContainText('exact');
  for (const [i, name] of snapOf.names.entries()) {
    const d = snapOf.diffs.r1!;
    const e = exactBy.get(name)!;
    expect(d.sampled[i], name).toBe(0);
    expect(sameF32(d.rms[i]!, e.rms_diff), `${name} rms ${d.rms[i]} vs CLI ${e.rms_diff}`).toBe(true);
    expect(sameF32(d.rel[i]!, e.rel_diff), `${name} rel ${d.rel[i]} vs CLI ${e.rel_diff}`).toBe(true);
    expect(sameF32(d.cos[i]!, e.cosine), `${name} cos ${d.cos[i]} vs CLI ${e.cosine}`).toBe(true);
  }
  await page.getByLabel('Filter tensors').fill(est.name);
  await expect(page.getByTestId('tensor-table')).toContainText(formatFigure(Math.fround(exactBy.get(est.name)!.rms_diff)));
  await expect(page.getByTestId('tensor-table')).not.toContainText('*');

  // Hover: the tooltip names the tensor under the pointer and shows the CLI's figures.
  const down = page.getByTestId('heatmap-down');
  const box = (await down.boundingBox())!;
  const cw = (box.width - 30) / 8;
  const chH = (box.height - 14) / 4; // MoE layers 1-3 and the MTP layer 4
  await page.mouse.move(box.x + 30 + cw * 5.5, box.y + 14 + chH * 1.5); // layer 2, expert 5
  const tip = page.getByTestId('heat-tooltip');
  const name = 'model.layers.2.mlp.experts.5.down_proj.weight';
  await expect(tip).toContainText(name);
  const e = exactBy.get(name)!;
  await expect(tip).toContainText(formatFigure(Math.fround(e.rms_diff)));
  await expect(tip).toContainText(formatFigure(Math.fround(e.rel_diff)));
  await expect(tip).toContainText(Math.fround(e.cosine).toFixed(6));
  await snap(page, info, 'figures-exact-tooltip');
});

test('exact figures survive a reload: kept per parent pair, keyed by the parents\' shards and headers', async ({ page }) => {
  await openStudio(page);
  const dirs = parentDirs('mixtral-pair').map((d) => d.dir);
  await openWithInput(page, dirs);
  await page.getByRole('button', { name: 'Exact pass' }).click();
  const before = await waitFor(page, 'instruct', 'exact');
  await expect(page.getByTestId('exact-note')).not.toContainText('kept from');

  await page.reload();
  await openWithInput(page, dirs);
  // No pass runs: the exact figures are back, said to be kept, and equal to before.
  const after = await waitFor(page, 'instruct', 'exact');
  await expect(page.getByRole('tab').first()).toContainText('exact');
  await expect(page.getByTestId('exact-note')).toContainText('kept from');
  expect(after.names).toEqual(before.names);
  expect(after.diffs['instruct']!.rms).toEqual(before.diffs['instruct']!.rms);
  expect(after.diffs['instruct']!.cos).toEqual(before.diffs['instruct']!.cos);
  // The other direction (instruct as the base) is another pair: it gets a fresh estimate.
  await page.getByTestId('parent-card').nth(1).getByRole('button', { name: 'make base' }).click();
  await expect(page.getByRole('tab').first()).toContainText('estimate');
});
