// Heatmaps at scale (issue 11): zoom, pan and the minimap, one projection at a time, the keyboard,
// selections as rectangles (shift adds one, never a cross product), and the child map with its
// cell inspector. On qwen3-moe-wide: 6 MoE layers × 128 experts.
import { expect, test, type Page } from '@playwright/test';
import { dragCells, openStudio, openWithInput, parentDirs, snap } from './fixtures.ts';

async function openWide(page: Page): Promise<void> {
  await openStudio(page);
  await openWithInput(page, parentDirs('qwen3-moe-wide').map((d) => d.dir));
  await expect(page.getByTestId('heatmap-gate')).toHaveAttribute('aria-label', /6 layers by 128 experts/);
  await expect(page.getByRole('tab').first()).toContainText('estimate');
}

const attr = async (page: Page, id: string, name: string) => Number(await page.getByTestId(id).getAttribute(name));

test('zoom, pan and the minimap; one projection at a time', async ({ page }, info) => {
  await openWide(page);
  // One projection at a time: only the down projection's grid is drawn.
  await page.getByTestId('proj-down').click();
  await expect(page.getByTestId('heatmap-gate')).toHaveCount(0);
  const down = page.getByTestId('heatmap-down');
  await expect(down).toBeVisible();
  const fitWidth = (await down.boundingBox())!.width;
  await expect(page.getByTestId('heatmap-down-minimap')).toHaveCount(0);

  // Zoom in twice: the grid keeps its width on screen, shows a quarter of the columns, and a
  // minimap appears; a click at the minimap's right end pans to the last columns.
  await page.getByTestId('zoom-in').click();
  await page.getByTestId('zoom-in').click();
  await expect(down).toHaveAttribute('data-zoom', '4.000');
  expect(Math.abs((await down.boundingBox())!.width - fitWidth)).toBeLessThan(2);
  const mini = page.getByTestId('heatmap-down-minimap');
  await expect(mini).toBeVisible();
  const mb = (await mini.boundingBox())!;
  await page.mouse.click(mb.x + mb.width - 2, mb.y + mb.height / 2);
  expect(await attr(page, 'heatmap-down', 'data-left')).toBeGreaterThan(90);
  // Hovering the right edge names an expert near the end.
  const db = (await down.boundingBox())!;
  await page.mouse.move(db.x + db.width - 3, db.y + 14 + 3);
  await expect(page.getByTestId('heat-tooltip')).toContainText(/expert 12[4-7]/);
  await snap(page, info, 'zoomed-down');

  // Ctrl+wheel (a trackpad pinch) zooms around the pointer; a horizontal wheel pans.
  await page.getByTestId('zoom-fit').click();
  await expect(down).toHaveAttribute('data-zoom', '1.000');
  await page.mouse.move(db.x + 30 + 20, db.y + 20);
  await page.keyboard.down('Control');
  await page.mouse.wheel(0, -300);
  await page.keyboard.up('Control');
  await expect.poll(() => attr(page, 'heatmap-down', 'data-zoom')).toBeGreaterThan(2);
  const leftBefore = await attr(page, 'heatmap-down', 'data-left');
  await page.mouse.wheel(400, 0);
  await expect.poll(() => attr(page, 'heatmap-down', 'data-left')).toBeGreaterThan(leftBefore);
  // Alt+drag drags the view: to the right shows earlier columns.
  const leftWheeled = await attr(page, 'heatmap-down', 'data-left');
  await page.keyboard.down('Alt');
  await page.mouse.move(db.x + 100, db.y + 20);
  await page.mouse.down();
  await page.mouse.move(db.x + 160, db.y + 20, { steps: 3 });
  await page.mouse.up();
  await page.keyboard.up('Alt');
  await expect.poll(() => attr(page, 'heatmap-down', 'data-left')).toBeLessThan(leftWheeled);
  // No selection was made by the drag.
  await expect(page.getByTestId('selection')).toHaveCount(0);

  // Back to all three, side by side or stacked as space allows, zoomed together.
  await page.getByTestId('proj-all').click();
  await expect(page.getByTestId('heatmap-gate')).toBeVisible();
  expect(await attr(page, 'heatmap-gate', 'data-zoom')).toBeCloseTo(await attr(page, 'heatmap-up', 'data-zoom'), 3);
  for (const [w, h] of [
    [1024, 768],
    [1280, 800],
    [1920, 1080],
  ] as const) {
    await page.setViewportSize({ width: w, height: h });
    await expect(page.getByTestId('open-merge')).toBeInViewport();
    await page.screenshot({ path: info.outputPath(`wide-${w}x${h}.png`) });
  }
});

test('the keyboard selects; shift adds a rectangle, not a cross product; the child map says what decides a cell', async ({ page }, info) => {
  await openWide(page);
  const gate = page.getByTestId('heatmap-gate');
  await gate.focus();
  // Arrows move from the top-left cell, shift+arrows extend, Enter selects: layers 1-2 × experts 2-5.
  for (const k of ['ArrowRight', 'ArrowRight', 'ArrowDown']) await page.keyboard.press(k);
  await expect(page.getByTestId('heat-tooltip')).toContainText('layer 1 · expert 2');
  for (const k of ['Shift+ArrowRight', 'Shift+ArrowRight', 'Shift+ArrowRight', 'Shift+ArrowDown', 'Enter']) await page.keyboard.press(k);
  await expect(page.getByTestId('selection')).toContainText('Layers 1-2 × experts 2-5');

  // A second rectangle with shift: layer 4 × experts 10-11. The union is 8 + 2 experts; the
  // cross product of its layers and experts would be 18.
  const cols = 128;
  await dragCells(page, 'heatmap-gate', 6, cols, [4, 10], [4, 11], true);
  await expect(page.getByTestId('selection')).toContainText('Layers 1-2 × experts 2-5; layer 4 × experts 10-11');
  await expect(page.getByTestId('selection')).toContainText('2 rectangles');
  await page.getByRole('button', { name: 'mute', exact: true }).click();
  await expect(page.getByText('Expert edits (10)')).toBeVisible();
  // One rule per rectangle.
  await page.getByTestId('selection-rule').click();
  await expect(page.getByTestId('rule')).toHaveCount(2);

  // The child map: rule 1 (layers 1-2 × experts 2-5, from the second parent) decides layer 1 expert 3.
  await page.getByTestId('colour-child').click();
  await expect(page.getByTestId('child-legend')).toContainText('from base (base)');
  await expect(page.getByTestId('child-legend')).toContainText('from tuned');
  await page.keyboard.press('Escape');
  await gate.focus();
  for (const k of ['Control+ArrowUp', 'Home', 'ArrowDown', 'ArrowRight', 'ArrowRight', 'ArrowRight', 'Enter']) await page.keyboard.press(k);
  const decision = page.getByTestId('cell-decision');
  await expect(decision).toContainText('layer 1 · expert 3 · gate');
  await expect(decision).toContainText('copied from tuned');
  await expect(decision).toContainText('rule 1: kind routed_expert · layers 1-2 · experts 2-5 · proj gate → from tuned');
  await expect(decision).toContainText('muted (zero output)');
  // A cell no rule decides comes from the base.
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await expect(decision).toContainText('layer 3 · expert 3');
  await expect(decision).toContainText('no rule matches: from the base, base');
  // Removing expert 20 from every layer (Ctrl+arrows move 8 cells) shows in the map and the inspector.
  for (const k of ['Control+ArrowUp', 'Home', 'Control+ArrowRight', 'Control+ArrowRight', 'ArrowRight', 'ArrowRight', 'ArrowRight', 'ArrowRight', 'Shift+Control+ArrowDown', 'Enter']) await page.keyboard.press(k);
  await expect(page.getByTestId('selection')).toContainText('Layers 0-5 × expert 20');
  await page.getByTestId('remove-experts').click();
  await expect(page.getByTestId('expert-changes')).toContainText('Experts per layer 128 → 127');
  await gate.focus();
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('Enter');
  await expect(decision).toContainText('layer 4 · expert 20');
  await expect(decision).toContainText('not in the child: removed');
  await snap(page, info, 'child-map');
});

test('eight parents at 1024×768 and 1280×800: every weight whole, Merge in view', async ({ page }, info) => {
  await openStudio(page);
  const [base, instruct] = parentDirs('mixtral-pair').map((d) => d.dir);
  // The same two folders four times over: eight parents of one skeleton, named apart.
  await openWithInput(page, [base!, instruct!, instruct!, instruct!, instruct!, instruct!, instruct!, instruct!]);
  await expect(page.getByTestId('parent-card')).toHaveCount(8);
  await page.getByRole('button', { name: 'Mix N parents' }).click();
  await page.getByLabel('Routed experts weight of instruct-2').fill('1/3');
  await page.getByTestId('apply-mix').click();
  await expect(page.getByTestId('rule').first()).toBeVisible();
  for (const [w, h] of [
    [1024, 768],
    [1280, 800],
  ] as const) {
    await page.setViewportSize({ width: w, height: h });
    // No weight is cut: every input in the Mix N table and in the first rule shows all it holds.
    const cut = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLInputElement>('[data-testid=mix-table] input, [data-testid=rule] .weights input')]
        .filter((i) => i.scrollWidth > i.clientWidth + 1)
        .map((i) => `${i.getAttribute('aria-label')}: ${i.value}`),
    );
    expect(cut).toEqual([]);
    await expect(page.getByTestId('open-merge')).toBeInViewport();
    await page.screenshot({ path: info.outputPath(`eight-parents-${w}x${h}.png`) });
  }
  // The rule's weights read whole: a fraction or at most six significant digits, never "0.0".
  const values = await page.getByTestId('rule').first().locator('.weights input').evaluateAll((xs) => xs.map((x) => (x as HTMLInputElement).value));
  expect(values).toHaveLength(8);
  for (const v of values) expect(v).toMatch(/^(\d+\/\d+|0\.\d{1,7}|1)$/);
});
