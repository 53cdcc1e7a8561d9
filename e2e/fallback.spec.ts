import { expect, test } from '@playwright/test';
import { openWithInput, parentDirs } from './fixtures.ts';

test('without the File System Access API it says which browsers work, and still reads folders', async ({ page }) => {
  await page.addInitScript(() => {
    delete (window as { showDirectoryPicker?: unknown }).showDirectoryPicker;
    delete (Window.prototype as { showDirectoryPicker?: unknown }).showDirectoryPicker;
  });
  await page.goto('/');
  await expect(page.getByTestId('no-fsa')).toContainText('Chrome or Edge 86+, or Opera');
  await expect(page.getByTestId('open-folder')).toHaveCount(0);
  await openWithInput(page, parentDirs('mixtral-pair').map((d) => d.dir));
  await expect(page.getByTestId('heatmap-gate')).toBeVisible();
});
