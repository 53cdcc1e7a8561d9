// End-to-end tests of the browser studio: Debian's Chromium (Playwright cannot download browsers
// here), against a production build served by `vite preview` with the COOP/COEP headers.
import { defineConfig } from '@playwright/test';
import { HUB_PORT } from './e2e/hub-port.ts';

const PORT = Number(process.env.STUDIO_PORT ?? 4319);

export default defineConfig({
  testDir: 'e2e',
  outputDir: 'test-results',
  globalSetup: './e2e/global-setup.ts',
  timeout: 120_000,
  expect: { timeout: 20_000 },
  fullyParallel: false,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  reporter: process.env.CI ? [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]] : [['list']],
  use: {
    baseURL: `http://localhost:${PORT}`,
    browserName: 'chromium',
    viewport: { width: 1280, height: 800 },
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-gpu'],
    },
  },
  webServer: {
    // A production build, as users get it; preview serves dist/studio with the isolation headers.
    // HF_ENDPOINT points the studio (and its Content-Security-Policy) at e2e/hub.spec.ts's stand-in Hub.
    command: `HF_ENDPOINT=http://127.0.0.1:${HUB_PORT} npx vite build && HF_ENDPOINT=http://127.0.0.1:${HUB_PORT} npx vite preview --port ${PORT} --strictPort`,
    url: `http://localhost:${PORT}`,
    reuseExistingServer: !process.env.CI,
    timeout: 180_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
