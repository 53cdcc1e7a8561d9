/// <reference lib="dom" />
// `npm run bench:studio`: the browser studio's figures, in Chromium against the production build
// (`vite preview`, cross-origin isolated), driven through the real UI:
//   1. merge throughput on a generated pair (about 1 GB per parent), written to the origin-private
//      file system (OPFS), recipe α=0.5 on every routed expert (the MEA preset);
//   2. next to it, in the same page, a copy-only floor: as many dedicated workers as the studio has
//      kernel workers read every byte of both parents (the File objects the folder input gave the
//      studio, in 16 MiB slices) and write a file of the child's size into OPFS with synchronous
//      access handles at their offsets (see studio-floor-worker.ts); no arithmetic;
//   3. the page's peak memory during each (summed VmRSS of the browser's renderer processes,
//      sampled every 50 ms from /proc: the page's workers live in its renderer), and the CPU time
//      of all the browser's processes across each (from /proc): spread over every core against the
//      floor, the least merge / floor that much work allows; and the summary's line on where the
//      kernel workers' time went;
//   4. time to the first heatmap on a DeepSeek-V3-sized pair (~92,000 tensors per parent), and how
//      the page answers meanwhile: during the sampled and then the exact pass a key is pressed every
//      300 ms (trusted input through the DevTools protocol); the Long Tasks API gives the longest
//      main-thread task, the Event Timing API each key's input delay (event start → handler start).
//   1-3 run for a BF16 Mixtral-shaped pair (`merge`) and for a DeepSeek-V3-shaped FP8 pair whose
//   routed experts are re-quantized (`fp8`), each with its own floor.
//   npm run bench:studio [-- --size 2GB] [-- --runs 2 (best of; default)] [-- --only merge,fp8,heatmap] [-- --json] [-- --headed]
//                        [-- --trace FILE: a Chrome trace of one more merge and floor, for chrome://tracing or Perfetto,
//                         with V8's CPU samples of every thread (FILE-fp8.json for the FP8 pair when both run)]
// Generated models are kept in .cache/bench/ and reused. Linux only (/proc).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type BrowserContext, type Page } from '@playwright/test';
import { COPY_BLOCK } from '../app/engine/exec/merge.ts';
import { bf16Pair, CACHE, fp8Pair, ROOT } from './pairs.ts';
import { floorWorkerSource, type FloorRequest, type FloorResult } from './studio-floor-worker.ts';
import { pageRenderer, rendererPids, sampleRss, statusKB, treeCpuMs, type MemorySample } from './studio-proc.ts';

const { values: opts } = parseArgs({
  options: {
    size: { type: 'string', default: '2GB' },
    runs: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    headed: { type: 'boolean', default: false },
    only: { type: 'string' },
    trace: { type: 'string' },
  },
});
const SCENARIOS = ['merge', 'fp8', 'heatmap'] as const;
const only = new Set(opts.only ? opts.only.split(',') : SCENARIOS);
for (const o of only) if (!(SCENARIOS as readonly string[]).includes(o)) throw new Error(`--only: ${o} is not one of ${SCENARIOS.join(', ')}`);
const runs = Math.max(1, Number(opts.runs));
const CHILD_FOLDER = 'bench-child';
const FLOOR_FOLDER = 'bench-floor';
/** Where the page loads the floor's worker script from (served by the benchmark, see mergeBench). */
const FLOOR_WORKER_PATH = '/__bench/floor-worker.js';
const log = (s: string) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------------------------------------
// Models

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0);
}

function fullCountPair(): { base: string; other: string } {
  const dir = path.join(CACHE, 'full-count');
  const pair = path.join(dir, 'deepseek-v3-full');
  if (!existsSync(path.join(pair, 'fixture-manifest.json'))) {
    rmSync(dir, { recursive: true, force: true });
    log('generating the DeepSeek-V3-sized pair (once; kept in .cache/bench)...');
    run(process.execPath, ['--import', 'tsx', 'app/fixtures/cli.ts', dir, '--full-count']);
  }
  return { base: path.join(pair, 'v3'), other: path.join(pair, 'r1') };
}

// ---------------------------------------------------------------------------------------------
// Server and browser

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function startPreview(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/vite/bin/vite.js'), 'preview', '--port', String(port), '--strictPort', '--host', '127.0.0.1'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vite preview exited: ${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      if (res.ok) return child;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
  throw new Error(`vite preview did not answer on port ${port}: ${stderr}`);
}

async function stopPreview(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** Loads the studio on a clean origin (no recipe, no recent folders, empty OPFS). */
async function openStudio(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.evaluate(async () => {
    localStorage.clear();
    await new Promise<void>((res) => {
      const r = indexedDB.deleteDatabase('moe-studio');
      r.onsuccess = r.onerror = r.onblocked = () => res();
    });
    const root = await navigator.storage.getDirectory();
    for (const name of ['bench-child', 'bench-floor']) await root.removeEntry(name, { recursive: true }).catch(() => undefined);
  });
  await page.reload();
  await page.getByTestId('studio').waitFor();
  await page.waitForFunction(() => /kernel workers/.test(document.querySelector('[data-testid=kernels]')?.textContent ?? ''), null, { timeout: 30_000 });
}

async function clearOpfs(page: Page, folder: string): Promise<void> {
  await page.evaluate(async (folder) => {
    const root = await navigator.storage.getDirectory();
    await root.removeEntry(folder, { recursive: true }).catch(() => undefined);
  }, folder);
}

/** File names and sizes of an OPFS folder. */
async function opfsFiles(page: Page, folder: string): Promise<{ name: string; size: number }[]> {
  return page.evaluate(async (folder) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
    const out: { name: string; size: number }[] = [];
    for await (const [name, h] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
      if (h.kind === 'file') out.push({ name, size: (await (h as FileSystemFileHandle).getFile()).size });
    }
    return out;
  }, folder);
}

/** A trusted drop of folders from disk (CDP), as a user dragging them from a file manager. */
async function dropFolders(page: Page, paths: string[]): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop'] as const) await cdp.send('Input.dispatchDragEvent', { type, x: 640, y: 400, data });
  await cdp.detach();
}

async function cardCount(page: Page, n: number, timeout = 120_000): Promise<void> {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid=parent-card]').length === n, n, { timeout });
}

/** Waits until the automatic sampled comparison (started when a second parent opens) is over. */
async function sampledDone(page: Page, timeout = 180_000): Promise<void> {
  await page.waitForFunction(
    () => /Estimate from sampled rows|Exact figures|Comparison failed/.test(document.querySelector('.diff-controls')?.textContent ?? ''),
    null,
    { timeout },
  );
}

// ---------------------------------------------------------------------------------------------
// 1-3. Merge and floor

interface MergeMeasure {
  ms: number;
  /** CPU time of the browser's processes across the merge (see treeCpuMs). */
  cpuMs: number;
  summaryText: string;
  childBytes: number;
  memory: MemorySample;
}

interface FloorMeasure {
  ms: number;
  cpuMs: number;
  read: number;
  memory: MemorySample;
}

async function mergeOnce(page: Page, pid: number): Promise<MergeMeasure> {
  await clearOpfs(page, CHILD_FOLDER);
  await page.getByTestId('open-merge').click();
  await page.getByTestId('merge-dialog').waitFor();
  await page.getByLabel('Browser storage folder').fill(CHILD_FOLDER);
  await page.getByTestId('use-opfs').click();
  await page.waitForFunction((f) => (document.querySelector('[data-testid=output-check]')?.textContent ?? '').includes(f), CHILD_FOLDER);
  if (await page.getByTestId('overwrite').count()) await page.getByTestId('overwrite').check();
  // In-page clock: the run click (capture listener) to the first frame showing "Done.".
  await page.evaluate(() => {
    const w = window as unknown as { __bench: { click?: number; done?: number } };
    w.__bench = {};
    document.addEventListener(
      'click',
      (e) => {
        if ((e.target as Element | null)?.closest('[data-testid=run-merge]')) w.__bench.click = performance.now();
      },
      { capture: true, once: true },
    );
    const obs = new MutationObserver(() => {
      const s = document.querySelector('[data-testid=merge-summary]');
      if (s && /Done\.|Cancelled/.test(s.textContent ?? '') && w.__bench.done === undefined) {
        w.__bench.done = performance.now();
        obs.disconnect();
      }
    });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const mem = sampleRss(pid, 50);
  const cpu0 = treeCpuMs();
  await page.getByTestId('run-merge').click();
  await page.waitForFunction(() => (window as unknown as { __bench: { done?: number } }).__bench.done !== undefined, null, { timeout: 600_000, polling: 100 });
  const cpuMs = treeCpuMs() - cpu0;
  const memory = mem.stop();
  const t = await page.evaluate(() => (window as unknown as { __bench: { click: number; done: number } }).__bench);
  const summaryText = (await page.getByTestId('merge-summary').textContent()) ?? '';
  if (!summaryText.includes('Done.')) throw new Error(`the merge did not finish: ${summaryText}`);
  const files = await opfsFiles(page, CHILD_FOLDER);
  if (files.some((f) => f.name.endsWith('.partial'))) throw new Error('the merge left .partial files');
  await page.getByRole('dialog', { name: 'Merge' }).getByLabel('Close').click();
  return { ms: t.done - t.click, cpuMs, summaryText: summaryText.replace(/\s+/g, ' ').trim(), childBytes: files.reduce((s, f) => s + f.size, 0), memory };
}

async function floorOnce(page: Page, pid: number, childBytes: number, parts: number): Promise<FloorMeasure> {
  await clearOpfs(page, FLOOR_FOLDER);
  const mem = sampleRss(pid, 50);
  const cpu0 = treeCpuMs();
  const t0 = Date.now();
  const res = await page.evaluate(
    async ({ childBytes, block, folder, parts, workerPath }) => {
      const files = (globalThis as unknown as { __benchFiles: File[][] }).__benchFiles;
      const workers = Array.from({ length: parts }, () => new Worker(workerPath));
      // The file exists before the workers open their handles on it.
      const root = await navigator.storage.getDirectory();
      await (await root.getDirectoryHandle(folder, { create: true })).getFileHandle('floor.bin', { create: true });
      const started = performance.now();
      const outs = await Promise.all(
        workers.map(
          (worker, part) =>
            new Promise<{ ok: boolean; result?: FloorResult; error?: string }>((resolve) => {
              worker.onmessage = (e) => resolve(e.data);
              worker.onerror = (e) => resolve({ ok: false, error: e.message });
              const req: FloorRequest = { base: files[0]!, donor: files[1]!, childBytes, block, folder, part, parts };
              worker.postMessage(req);
            }),
        ),
      );
      const ms = performance.now() - started;
      for (const w of workers) w.terminate();
      const bad = outs.find((o) => !o.ok);
      if (bad) return { ok: false, error: bad.error, ms, read: 0, written: 0 };
      return { ok: true, ms, read: outs.reduce((s, o) => s + o.result!.read, 0), written: outs.reduce((s, o) => s + o.result!.written, 0) };
    },
    { childBytes, block: COPY_BLOCK, folder: FLOOR_FOLDER, parts, workerPath: FLOOR_WORKER_PATH },
  );
  const cpuMs = treeCpuMs() - cpu0;
  const memory = mem.stop();
  if (!res.ok) throw new Error(`copy floor failed after ${Date.now() - t0} ms: ${res.error}`);
  if (res.written !== childBytes) throw new Error(`copy floor wrote ${res.written} bytes, not ${childBytes}`);
  return { ms: res.ms, cpuMs, read: res.read, memory };
}

/** The merge scenarios: the pair each one merges (generated on first use), and how it is described. */
const MERGES = {
  merge: { pair: () => bf16Pair(opts.size!), scenario: `BF16 Mixtral-shaped pair, ${opts.size} in all, α=0.5 on every routed expert, into OPFS` },
  fp8: { pair: () => fp8Pair(opts.size!), scenario: `DeepSeek-V3-shaped FP8 pair, ${opts.size} in all, α=0.5 on every routed expert (dequantize, mix, re-quantize), into OPFS` },
};

async function mergeBench(context: BrowserContext, url: string, which: keyof typeof MERGES) {
  const pair = MERGES[which].pair();
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  // The floor's workers are served from the page's own origin: its Content-Security-Policy allows
  // workers from there only (not blob: URLs).
  await page.route(`**${FLOOR_WORKER_PATH}`, (route) =>
    route.fulfill({ contentType: 'text/javascript', body: floorWorkerSource(), headers: { 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' } }),
  );
  await openStudio(page, url);
  // Keep the File objects the studio's folder input hands over, for the floor.
  await page.evaluate(() => {
    const g = globalThis as unknown as { __benchFiles: File[][] };
    g.__benchFiles = [];
    document.addEventListener(
      'change',
      (e) => {
        const input = e.target as HTMLInputElement | null;
        if (input?.dataset.testid === 'folder-input' && input.files) g.__benchFiles.push(Array.from(input.files));
      },
      { capture: true },
    );
  });
  for (const [k, dir] of [pair.base, pair.donor].entries()) {
    await page.getByTestId('folder-input').setInputFiles(dir);
    await cardCount(page, k + 1);
  }
  // The sampled comparison starts by itself on opening: let it finish so it does not overlap.
  await sampledDone(page);
  // MEA preset, α = 0.5: every routed expert half base, half donor.
  await page.getByLabel('alpha value').fill('0.5');
  await page.getByTestId('apply-mea').click();
  await page.getByTestId('rule').first().waitFor();
  await page.getByTestId('yaml-tab').click();
  await page
    .waitForFunction(() => /routed_expert/.test((document.querySelector('[data-testid=yaml]') as HTMLTextAreaElement | null)?.value ?? ''), null, { timeout: 10_000 })
    .catch(() => undefined);
  const yaml = await page.getByTestId('yaml').inputValue();
  if (!/routed_expert/.test(yaml) || !/weights: \{\s*base: 0\.5, donor: 0\.5\s*\}/.test(yaml)) throw new Error(`unexpected recipe:\n${yaml}`);
  const workers = Number(/(\d+) kernel workers/.exec((await page.getByTestId('kernels').textContent()) ?? '')?.[1] ?? 1);

  // The page's renderer (its workers run inside it): found by spinning the page's main thread.
  const pid = await pageRenderer(() => page.evaluate(() => { const end = performance.now() + 600; while (performance.now() < end); }));
  await new Promise((r) => setTimeout(r, 500));
  const idleMB = statusKB(pid, 'VmRSS') / 1024;
  const merges: MergeMeasure[] = [];
  const floors: FloorMeasure[] = [];
  let hwmAfterMergeMB = 0;
  for (let i = 0; i < runs; i++) {
    log(`merge ${i + 1}/${runs}...`);
    const m = await mergeOnce(page, pid);
    if (i === 0) hwmAfterMergeMB = statusKB(pid, 'VmHWM') / 1024;
    merges.push(m);
    await clearOpfs(page, CHILD_FOLDER);
    log(`copy-only floor ${i + 1}/${runs}...`);
    floors.push(await floorOnce(page, pid, m.childBytes, workers));
    await clearOpfs(page, FLOOR_FOLDER);
  }
  if (opts.trace) {
    const file = which === 'fp8' && only.has('merge') ? opts.trace.replace(/(\.json)?$/, '-fp8.json') : opts.trace;
    log(`tracing one more merge and floor into ${file}...`);
    await traceWhile(page, file, async () => {
      const m = await mergeOnce(page, pid);
      await clearOpfs(page, CHILD_FOLDER);
      await floorOnce(page, pid, m.childBytes, workers);
      await clearOpfs(page, FLOOR_FOLDER);
    });
  }
  await page.close();
  const m = merges.reduce((a, b) => (b.ms < a.ms ? b : a));
  const f = floors.reduce((a, b) => (b.ms < a.ms ? b : a));
  const parentBytes = dirBytes(pair.base) + dirBytes(pair.donor);
  const summaryElapsed = /written to .* in (\S+(?: \S+s)?) \(/.exec(m.summaryText)?.[1] ?? '?';
  return {
    scenario: MERGES[which].scenario,
    kernelWorkers: workers,
    parentsGB: +(parentBytes / 1e9).toFixed(2),
    childGB: +(m.childBytes / 1e9).toFixed(2),
    mergeSeconds: +(m.ms / 1000).toFixed(2),
    mergeSecondsAll: merges.map((x) => +(x.ms / 1000).toFixed(2)),
    mergeSummaryElapsed: summaryElapsed,
    floorSeconds: +(f.ms / 1000).toFixed(2),
    floorSecondsAll: floors.map((x) => +(x.ms / 1000).toFixed(2)),
    mergeOverFloor: +(m.ms / f.ms).toFixed(2),
    // CPU time of the browser's processes, and the merge's spread over every core against the
    // floor: merge / floor cannot be lower with this much work.
    mergeCpuSeconds: +(m.cpuMs / 1000).toFixed(2),
    floorCpuSeconds: +(f.cpuMs / 1000).toFixed(2),
    mergeCpuOverCoresOverFloor: +(m.cpuMs / cpus().length / f.ms).toFixed(2),
    // The summary's worker line: where their time went, and the most memory one held for its kernels.
    mergeRunners: /\d+ workers? busy \d+% of [\d.]+s: [a-z ,%\d]*%(?:; [a-z\d ]+held at most [\d.]+ [KMG]B for its kernels)?/.exec(m.summaryText)?.[0] ?? '',
    mergeGBps: +((parentBytes + m.childBytes) / 1e6 / m.ms).toFixed(2),
    floorGBps: +((f.read + m.childBytes) / 1e6 / f.ms).toFixed(2),
    idleRssMB: Math.round(idleMB),
    mergeStartRssMB: Math.round(merges[0]!.memory.startMB),
    mergePeakRssMB: Math.round(Math.max(...merges.map((x) => x.memory.peakMB))),
    mergeHwmMB: Math.round(hwmAfterMergeMB),
    floorStartRssMB: Math.round(floors[0]!.memory.startMB),
    floorPeakRssMB: Math.round(Math.max(...floors.map((x) => x.memory.peakMB))),
  };
}

// ---------------------------------------------------------------------------------------------
// 4. Time to first heatmap, DeepSeek-V3-sized pair

async function heatmapBench(context: BrowserContext, url: string) {
  const pair = fullCountPair();
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await openStudio(page, url);
  log('opening the DeepSeek-V3-sized base...');
  const tb = Date.now();
  await dropFolders(page, [pair.base]);
  await cardCount(page, 1);
  await page.getByTestId('heatmap-gate').waitFor({ timeout: 120_000 });
  const baseMs = Date.now() - tb;
  // Milestones, stamped in the page on the first animation frame that shows them.
  await page.evaluate(() => {
    interface Marks { drop?: number; opened?: number; compare?: number; figures?: number; complete?: number; }
    const w = window as unknown as { __hm: Marks };
    const m: Marks = (w.__hm = {});
    window.addEventListener('drop', () => (m.drop = performance.now()), { capture: true, once: true });
    const tick = () => {
      if (m.drop !== undefined) {
        const now = performance.now();
        if (m.opened === undefined && document.querySelectorAll('[data-testid=parent-card]').length >= 2) m.opened = now;
        // The comparison view: a "<other> vs <base>" tab, and the gate heatmap drawn under it.
        if (m.compare === undefined && document.querySelector('[role=tab]') && document.querySelector('[data-testid=heatmap-gate]')) m.compare = now;
        const text = document.querySelector('.diff-controls')?.textContent ?? '';
        const n = /sampled ([\d,]+) \//.exec(text);
        const finished = /Estimate from sampled rows|Exact figures|Comparison failed/.test(text);
        if (m.figures === undefined && ((n && Number(n[1]!.replace(/,/g, '')) > 0) || finished)) m.figures = now;
        if (m.complete === undefined && finished) m.complete = now;
      }
      if (m.complete === undefined) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  await watchResponsiveness(page);
  log('dropping the second parent...');
  await dropFolders(page, [pair.other]);
  const sampled = await probeUntil(page, () => page.evaluate(() => (window as unknown as { __hm: { complete?: number } }).__hm.complete !== undefined), 300_000);
  const m = await page.evaluate(() => (window as unknown as { __hm: Record<string, number> }).__hm);
  const controls = ((await page.locator('.diff-controls').textContent()) ?? '').replace(/\s+/g, ' ');
  if (/Comparison failed/.test(controls)) throw new Error(controls);
  const tensors = Number(/for ([\d,]+) tensors/.exec(controls)?.[1]?.replace(/,/g, '') ?? NaN);
  log('the exact pass...');
  const te = Date.now();
  await page.getByRole('button', { name: 'Exact pass' }).click();
  await page.waitForFunction(() => /exact/.test(document.querySelector('.diff-controls')?.textContent ?? ''), null, { timeout: 30_000 });
  const exact = await probeUntil(page, () => page.evaluate(() => /Exact figures|Comparison failed/.test(document.querySelector('.diff-controls')?.textContent ?? '')), 600_000);
  const exactMs = Date.now() - te;
  await page.close();
  const s = (x: number | undefined) => (x === undefined ? NaN : +((x - m.drop!) / 1000).toFixed(2));
  return {
    scenario: 'DeepSeek-V3-sized FP8 pair (~92,000 tensors per parent, tiny shapes): second parent dropped onto the open base',
    baseOpenedSeconds: +(baseMs / 1000).toFixed(2),
    openedSeconds: s(m.opened),
    compareDrawnSeconds: s(m.compare),
    firstFiguresSeconds: s(m.figures),
    sampledCompleteSeconds: s(m.complete),
    sampledTensors: tensors,
    sampledPass: sampled,
    exactSeconds: +(exactMs / 1000).toFixed(1),
    exactPass: exact,
  };
}

/** Runs `work` under a DevTools trace of the page's renderer (its workers included) and writes it to `file`. */
async function traceWhile(page: Page, file: string, work: () => Promise<void>): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const categories = ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'blink', 'toplevel', 'disabled-by-default-v8.cpu_profiler'];
  await cdp.send('Tracing.start', { transferMode: 'ReturnAsStream', traceConfig: { includedCategories: categories } });
  await work();
  const done = new Promise<string>((resolve) => cdp.once('Tracing.tracingComplete', (e) => resolve(e.stream!)));
  await cdp.send('Tracing.end');
  const stream = await done;
  const chunks: string[] = [];
  for (;;) {
    const r = await cdp.send('IO.read', { handle: stream });
    chunks.push(r.base64Encoded ? Buffer.from(r.data, 'base64').toString('utf8') : r.data);
    if (r.eof) break;
  }
  await cdp.send('IO.close', { handle: stream });
  await cdp.detach();
  writeFileSync(file, chunks.join(''));
}

/** Long tasks and key input delays on the page, recorded from now on (read by probeUntil). */
async function watchResponsiveness(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __resp: { tasks: number[]; delays: number[]; keys: number } };
    w.__resp = { tasks: [], delays: [], keys: 0 };
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) w.__resp.tasks.push(e.duration);
    }).observe({ type: 'longtask' });
    // Event Timing reports a key whose handling took 16 ms or more, with its input delay.
    new PerformanceObserver((l) => {
      for (const e of l.getEntries() as PerformanceEventTiming[]) if (e.name === 'keydown') w.__resp.delays.push(e.processingStart - e.startTime);
    }).observe({ type: 'event', durationThreshold: 16 } as PerformanceObserverInit);
    // Every key that reaches the page is counted, fast or not.
    window.addEventListener('keydown', () => w.__resp.keys++, { capture: true });
  });
}

interface Responsiveness {
  seconds: number;
  longTasks: number;
  longestTaskMs: number;
  tasksOver100ms: number;
  keysPressed: number;
  keysAnswered: number;
  /** Worst input delay among the keys Event Timing reported (those whose handling took ≥ 16 ms); 0 when none did. */
  worstInputDelayMs: number;
}

/** Presses Shift every 300 ms until `done()`; returns what the page recorded meanwhile (and resets it). */
async function probeUntil(page: Page, done: () => Promise<boolean>, timeout: number): Promise<Responsiveness> {
  const t0 = Date.now();
  let pressed = 0;
  while (!(await done())) {
    if (Date.now() - t0 > timeout) throw new Error(`not done within ${timeout / 1000} s`);
    await page.keyboard.press('Shift');
    pressed++;
    await new Promise((r) => setTimeout(r, 300));
  }
  // The last key's handling has run once the page answers an evaluate.
  const r = await page.evaluate(() => {
    const w = window as unknown as { __resp: { tasks: number[]; delays: number[]; keys: number } };
    const out = { tasks: w.__resp.tasks.splice(0), delays: w.__resp.delays.splice(0), keys: w.__resp.keys };
    w.__resp.keys = 0;
    return out;
  });
  return {
    seconds: +((Date.now() - t0) / 1000).toFixed(1),
    longTasks: r.tasks.length,
    longestTaskMs: Math.round(Math.max(0, ...r.tasks)),
    tasksOver100ms: r.tasks.filter((x) => x > 100).length,
    keysPressed: pressed,
    keysAnswered: r.keys,
    worstInputDelayMs: Math.round(Math.max(0, ...r.delays)),
  };
}

// ---------------------------------------------------------------------------------------------

const started = Date.now();
const loadStart = loadavg().map((x) => x.toFixed(1)).join(' ');
if (!existsSync(path.join(ROOT, 'dist/studio/index.html'))) throw new Error('dist/studio is missing: run `node scripts/build.mjs` (npm run bench:studio does)');
const port = await freePort();
const server = await startPreview(port);
const url = `http://127.0.0.1:${port}/`;
const profile = mkdtempSync(path.join(tmpdir(), 'moe-studio-bench-'));
let context: BrowserContext | undefined;
const merges: Awaited<ReturnType<typeof mergeBench>>[] = [];
let heat: Awaited<ReturnType<typeof heatmapBench>> | undefined;
let chromeVersion = '';
try {
  // A persistent profile: OPFS on disk, as for a user (an incognito-like context keeps it in memory).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: !opts.headed,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-gpu'],
    viewport: { width: 1280, height: 800 },
  });
  // tsx compiles this file with esbuild's keepNames: functions passed to page.evaluate may call __name().
  await context.addInitScript('globalThis.__name = (f) => f;');
  chromeVersion = context.browser()?.version() ?? '';
  if (rendererPids().length === 0) log('warning: no renderer process found under this process: memory figures will be 0');
  for (const which of ['merge', 'fp8'] as const) if (only.has(which)) merges.push(await mergeBench(context, url, which));
  heat = only.has('heatmap') ? await heatmapBench(context, url) : undefined;
  if (!chromeVersion) {
    const p = await context.newPage();
    chromeVersion = /Chrome\/(\S+)/.exec(await p.evaluate(() => navigator.userAgent))?.[1] ?? '';
    await p.close();
  }
} finally {
  await context?.close().catch(() => undefined);
  await stopPreview(server);
  rmSync(profile, { recursive: true, force: true });
}

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Chromium ${chromeVersion}, headless; load average at start ${loadStart}`;
const totalSeconds = +((Date.now() - started) / 1000).toFixed(1);
if (opts.json) {
  process.stdout.write(JSON.stringify({ machine, merges, heatmap: heat, totalSeconds }, null, 2) + '\n');
} else {
  const h = heat;
  const resp = (x: Responsiveness) =>
    `${x.seconds} s: ${x.longTasks} long tasks (${x.tasksOver100ms} over 100 ms), longest ${x.longestTaskMs} ms; ${x.keysAnswered} of ${x.keysPressed} keys answered, worst input delay ${x.worstInputDelayMs} ms`;
  process.stdout.write(
    `machine: ${machine}\n\n` +
      merges
        .map(
          (r) =>
            `${r.scenario}\n  parents ${r.parentsGB} GB, child ${r.childGB} GB; ${r.kernelWorkers} kernel worker(s), as many floor workers\n` +
            `  copy-only floor ${r.floorSeconds} s (${r.floorGBps} GB/s read+written), page RSS peak ${r.floorPeakRssMB} MB (${r.floorStartRssMB} MB at start)\n` +
            `  merge           ${r.mergeSeconds} s (${r.mergeGBps} GB/s read+written), page RSS peak ${r.mergePeakRssMB} MB (${r.mergeStartRssMB} MB at start; VmHWM ${r.mergeHwmMB} MB); summary says ${r.mergeSummaryElapsed}\n` +
            `  merge / floor   ${r.mergeOverFloor}\n` +
            `  CPU of the browser's processes: floor ${r.floorCpuSeconds} s, merge ${r.mergeCpuSeconds} s (over ${cpus().length} cores, ${r.mergeCpuOverCoresOverFloor} × the floor)\n` +
            `  ${r.mergeRunners}\n` +
            `  page RSS with both parents open, idle: ${r.idleRssMB} MB\n` +
            (runs > 1 ? `  all runs: merge ${r.mergeSecondsAll.join(', ')} s; floor ${r.floorSecondsAll.join(', ')} s\n` : '') +
            '\n',
        )
        .join('') +
      (h
        ? `${h.scenario}\n` +
          `  base opened and drawn      ${h.baseOpenedSeconds} s (from its drop)\n` +
          `  from the second drop: opened ${h.openedSeconds} s, comparison heatmap drawn ${h.compareDrawnSeconds} s,\n` +
          `  first sampled figures ${h.firstFiguresSeconds} s, sampled estimate complete ${h.sampledCompleteSeconds} s (${h.sampledTensors} tensors)\n` +
          `  responsiveness, sampled pass: ${resp(h.sampledPass)}\n` +
          `  responsiveness, exact pass (${h.exactSeconds} s): ${resp(h.exactPass)}\n\n`
        : '') +
      `total ${totalSeconds} s\n`,
  );
}
