import { expect, test } from '@playwright/test';
import { openStudio } from './fixtures.ts';

test('the shell renders, cross-origin isolated, with its kernels', async ({ page }, info) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await openStudio(page);
  await expect(page.getByRole('region', { name: 'Parents' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Differences' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Recipe' })).toBeVisible();
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  await expect(page.getByTestId('coi')).toHaveText('cross-origin isolated');
  await expect(page.getByTestId('open-folder')).toBeVisible();
  await page.screenshot({ path: info.outputPath('empty-1280x800.png') });
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.screenshot({ path: info.outputPath('empty-1920x1080.png') });
  expect(errors).toEqual([]);
});
