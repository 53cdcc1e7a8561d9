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
  // Long tasks on the page's main thread (the Long Tasks API), from the drop on.
  await page.addInitScript(() => {
    const w = window as unknown as { __longTasks: number[] };
    w.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__longTasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: false });
  });
  await openStudio(page);
  const longTasks = () => page.evaluate(() => (window as unknown as { __longTasks: number[] }).__longTasks.splice(0));
  await longTasks();
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
  // The last row is the multi-token-prediction layer, and says so.
  await down.hover({ position: { x: box.width / 2, y: box.height - 2 } });
  await expect(page.getByTestId('heat-tooltip')).toContainText('layer 61 (multi-token prediction)');
  // The sampled estimate reaches every tensor: no batch of figures is lost between the worker and the page.
  type Hook = { __moeStudio: { figures(): { diffs: Record<string, { complete: boolean; rms: number[] }> } } };
  await expect
    .poll(() => page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']?.complete ?? false), { timeout: 120_000 })
    .toBe(true);
  const missing = await page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']!.rms.filter((x) => Number.isNaN(x)).length);
  expect(missing).toBe(0);
  const sampledTasks = await longTasks();

  // The exact pass over every byte: the page keeps answering (a hover shows its tooltip) and no
  // main-thread task runs long; before, every batch re-sorted the 92,000-row table (75 s busy of 95).
  await page.getByRole('button', { name: 'Exact pass' }).click();
  await expect
    .poll(() => page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']?.complete ?? false), { timeout: 5_000 })
    .toBe(false);
  const t1 = Date.now();
  await page.mouse.move(0, 0);
  await down.hover({ position: { x: box.width / 3, y: box.height / 3 } });
  await expect(page.getByTestId('heat-tooltip')).toBeVisible();
  const hoverMs = Date.now() - t1;
  await expect
    .poll(() => page.evaluate(() => (window as unknown as Hook).__moeStudio.figures().diffs['r1']?.complete ?? false), { timeout: 120_000 })
    .toBe(true);
  const exactTasks = await longTasks();
  const longest = (xs: number[]) => Math.round(Math.max(0, ...xs));
  const figures = `sampled pass: ${sampledTasks.length} long tasks, longest ${longest(sampledTasks)} ms; exact pass: ${exactTasks.length}, longest ${longest(exactTasks)} ms; hover answered in ${hoverMs} ms`;
  info.annotations.push({ type: 'responsiveness', description: figures });
  console.log(figures);
  // Loose bounds for this shared 2-core machine (the figures above are what to read); a page that
  // freezes as it did (tasks of seconds) fails.
  expect(longest(exactTasks)).toBeLessThan(1000);
  // Re-sorting the table and refitting the colour scale on every frame gave 33 tasks over 100 ms
  // (up to 289 ms) in an exact pass of npm run bench:studio; throttled, it has at most a few.
  expect(exactTasks.filter((t) => t > 150).length).toBeLessThanOrEqual(3);
  expect(hoverMs).toBeLessThan(2000);
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
