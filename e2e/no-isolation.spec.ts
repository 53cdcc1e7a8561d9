// Without cross-origin isolation (a server that sends no COOP/COEP headers) the studio must still
// work: it says so, and opens, compares and merges as usual.
import { expect, test } from '@playwright/test';
import { mergeToOpfs, openStudio, openWithInput, parentDirs } from './fixtures.ts';

test('works without cross-origin isolation, and says so', async ({ page, context }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Every response from the studio's server, stripped of its isolation headers.
  await context.route('**/*', async (route) => {
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['cross-origin-opener-policy'];
    delete headers['cross-origin-embedder-policy'];
    await route.fulfill({ response, headers });
  });
  await openStudio(page);
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
  await expect(page.getByTestId('coi')).toHaveText('not cross-origin isolated');

  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await expect(page.getByTestId('heatmap-gate')).toBeVisible();
  type Hook = { __moeStudio: { figures(): { diffs: Record<string, { complete: boolean; rms: number[] }> } } };
  await expect
    .poll(() => page.evaluate(() => Object.values((window as unknown as Hook).__moeStudio.figures().diffs)[0]?.complete ?? false))
    .toBe(true);
  const missing = await page.evaluate(() => Object.values((window as unknown as Hook).__moeStudio.figures().diffs)[0]!.rms.filter((x) => Number.isNaN(x)).length);
  expect(missing).toBe(0);

  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  await mergeToOpfs(page, 'e2e-no-isolation');
  expect(errors).toEqual([]);
});
