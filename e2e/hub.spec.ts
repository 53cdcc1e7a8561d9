// Parents from the Hub in the studio: the build's HF_ENDPOINT points at a local stand-in Hub
// (app/fixtures/hub-server.ts) serving the DeepSeek-V3 fixture pair, one repo of it gated.
import { expect, test } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { HUB_PORT } from './hub-port.ts';
import { exportRecipe, openStudio, parentDirs, sameChild, snap } from './fixtures.ts';

const TOKEN = 'hf_e2etoken';
// Its own process: the CLI runs synchronously from this one (expectSameAsCli) and must reach it.
let server: ChildProcess;
const hub = {
  url: `http://127.0.0.1:${HUB_PORT}`,
  async requests(): Promise<number> {
    return ((await (await fetch(`${this.url}/_stand-in/stats`)).json()) as { requests: number }).requests - 1;
  },
};

test.beforeAll(async () => {
  const [v3, r1] = parentDirs('deepseek-v3-fp8-pair');
  server = spawn(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'app/fixtures/hub-serve.ts', '--port', String(HUB_PORT), `deepseek-ai/DeepSeek-V3=${v3!.dir}`, `deepseek-ai/DeepSeek-R1=${r1!.dir},gated:${TOKEN}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => String(d).includes('hub: ') && resolve());
    server.on('exit', (code) => reject(new Error(`the stand-in Hub exited (${code})`)));
  });
});

test.afterAll(() => {
  server?.kill();
});

test('opens Hub parents (a gated one with a token kept in memory), draws their heatmap and merges them as the CLI does', async ({ page }, info) => {
  const own = new URL(info.project.use.baseURL!).origin;
  const elsewhere: string[] = [];
  page.on('request', (r) => {
    const origin = new URL(r.url()).origin;
    if (origin !== own && origin !== hub.url) elsewhere.push(r.url());
  });
  const res = await page.goto('/');
  const csp = (await res!.allHeaders())['content-security-policy'] ?? '';
  expect(csp).toContain(`connect-src 'self' ${hub.url}`);
  await openStudio(page);
  // Nothing goes to the Hub (or anywhere else) until a Hub parent is asked for.
  expect(await hub.requests()).toBe(0);

  await page.getByTestId('hub-ref').fill('deepseek-ai/DeepSeek-V3');
  await page.getByTestId('hub-open').click();
  await expect(page.getByTestId('parent-card')).toHaveCount(1);
  await expect(page.getByTestId('parent-card')).toContainText('hf://deepseek-ai/DeepSeek-V3');

  // Gated without a token: the reason and what to do.
  await page.getByTestId('hub-ref').fill('https://huggingface.co/deepseek-ai/DeepSeek-R1');
  await page.getByTestId('hub-open').click();
  await expect(page.getByRole('alert').filter({ hasText: 'DeepSeek-R1' })).toContainText('the Hub refused access (401');
  await expect(page.getByRole('alert').filter({ hasText: 'DeepSeek-R1' })).toContainText('enter a token with read access under "From the Hub"');
  await page.getByTestId('hub-token-show').click();
  await page.getByTestId('hub-token').fill(TOKEN);
  await page.getByTestId('hub-ref').fill('hf://deepseek-ai/DeepSeek-R1@main');
  await page.getByTestId('hub-open').click();
  await expect(page.getByTestId('parent-card')).toHaveCount(2);

  // The sampled heatmap of the two Hub parents.
  await expect
    .poll(async () => page.evaluate(() => Object.values((window as unknown as { __moeStudio: { figures(): { diffs: Record<string, { complete: boolean }> } } }).__moeStudio.figures().diffs).some((d) => d.complete)), { timeout: 60_000 })
    .toBe(true);
  await snap(page, info, 'hub-heatmap');

  // The recipe names the Hub parents; the CLI merges the exported recipe from the same Hub.
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  const recipe = await exportRecipe(page, 'deepseek-v3-fp8-pair', 'hub-recipe.yaml');
  expect(recipe.text).toContain('hf://deepseek-ai/DeepSeek-V3');
  expect(recipe.text).toContain('hf://deepseek-ai/DeepSeek-R1@main');
  process.env['HF_ENDPOINT'] = hub.url;
  process.env['HF_TOKEN'] = TOKEN;
  try {
    const files = await sameChild(page, info, recipe.path, 'hub-child');
    expect(files).toContain('README.md');
  } finally {
    delete process.env['HF_ENDPOINT'];
    delete process.env['HF_TOKEN'];
  }

  // The token was never written anywhere the page keeps things, and left only for the Hub.
  const kept = await page.evaluate(async () => {
    const idb = await new Promise<string>((res) => {
      const r = indexedDB.open('moe-studio');
      r.onsuccess = () => res(String([...r.result.objectStoreNames]));
      r.onerror = () => res('');
    });
    return JSON.stringify({ ...localStorage }) + idb;
  });
  expect(kept).not.toContain(TOKEN);
  expect(elsewhere).toEqual([]);
});
