// moe-studio: the engine headless. `merge`, `diff`, `inspect` and `routing`, with the same recipes as the studio.
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MoeError, printable } from '../engine/io.ts';
import type { KernelPool } from '../engine/kernels/pool.ts';
import { openModel } from '../engine/model/open-model.ts';
import { formatSummary, summarizeModel } from '../engine/model/inspect.ts';
import type { Model } from '../engine/model/types.ts';
import { parseRecipeFile } from '../engine/recipe/parse.ts';
import { planMerge } from '../engine/plan/plan.ts';
import { executeMerges, MergeCancelled, type MergeJob, type PausePoint } from '../engine/exec/merge.ts';
import { diffModels, type TensorDiff } from '../engine/exec/diff.ts';
import { createNodeKernelPool, defaultWorkers } from './kernel-pool.ts';
import { openNodeModelFolder, openNodeOutputFolder } from './node-io.ts';
import { isHubRef, openHubFolder, parseHubRef, type HubFolder, type HubStats } from '../hub/index.ts';
import type { ModelFolder } from '../engine/io.ts';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { progressLine } from './progress.ts';
import { formatBytes, formatDuration, runnerMemoryText, runnerTimeText } from '../engine/report/format.ts';
import { formatDiffTable, summarizeDiff, formatKindSummary } from './diff-report.ts';
import { readRoutingArg, routingCompare, routingShow, type RoutingOptions } from './routing.ts';
import { CONTRAST_METRICS, RATE_METRICS, type ContrastMetric, type RateMetric } from '../engine/routing/stats.ts';
import { INDEX_SET_TEXT } from '../engine/recipe/schema.ts';
import { indexSet } from '../engine/recipe/select.ts';

const USAGE = `moe-studio: assemble Mixture-of-Experts models from existing releases

Usage:
  moe-studio merge RECIPE -o OUT [--workers N] [--overwrite | --resume]
      Run a recipe (YAML or JSON; a mergekit merge_method: linear config is read as one). Parent paths
      are relative to the recipe file; hf://ORG/NAME[@REV] is a model on the Hugging Face Hub, read
      with range requests, never downloaded whole.
  moe-studio merge RECIPE RECIPE... -o OUT_DIR [--workers N] [--overwrite]
      A sweep: one child per recipe, in OUT_DIR/<recipe file name>/, reading the parents once.
  moe-studio diff MODEL_A MODEL_B [--json] [--sampled] [--workers N]
      Per-tensor rms_diff, relative difference and cosine of B against A, and a per-kind summary.
  moe-studio inspect MODEL [--json]
      Architecture, layers (dense/MoE), experts, shared experts, dtypes, parameters, size.
  moe-studio routing show STATS.json[#SET] [--metric rate|saliency|gate] [--top N] [--layers L] [--model MODEL] [--json]
      A routing statistics file (moe-studio.routing/1): each set's experts, most selected first.
  moe-studio routing compare A.json[#SET] B.json[#SET] [--metric rd|log-odds] [--top N] [--layers L]
                             [--model MODEL] [--json | --edits off|on|mute]
      Experts that behaviour set A selects more than baseline B; with --edits, a recipe's edits: list.

Options:
  -o, --output DIR   folder for the child (created if missing; never a parent's folder)
  --workers N        kernel worker threads (default ${defaultWorkers()}; 0 runs in this thread)
  --overwrite        replace an earlier child (or an interrupted merge) in OUT; its index goes first
  --resume           continue an interrupted merge in OUT: its completed shards are checked and kept
  --json             machine-readable output on stdout
  --sampled          diff a spread of row blocks of each tensor instead of every byte (an estimate)
  --metric M         routing: what to rank by (show: rate, saliency, gate; compare: rd, log-odds)
  --top N            routing: how many experts to list (default 20)
  --layers L         routing: only these layers ("3-10", "5, 7")
  --model MODEL      routing: refuse statistics that do not describe this model folder
  --edits ACTION     routing compare: print the top N as recipe edits with this action
  -h, --help         this text

A MODEL is a folder or hf://ORG/NAME[@REVISION]. Hub access follows HF_ENDPOINT (default
https://huggingface.co), HF_TOKEN (gated and private repos) and HF_HUB_DOWNLOAD_TIMEOUT (seconds
without data before a read is retried; default 60).
`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      output: { type: 'string', short: 'o' },
      workers: { type: 'string' },
      overwrite: { type: 'boolean' },
      resume: { type: 'boolean' },
      json: { type: 'boolean' },
      sampled: { type: 'boolean' },
      metric: { type: 'string' },
      top: { type: 'string' },
      layers: { type: 'string' },
      model: { type: 'string' },
      edits: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...args] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  const workers = values.workers === undefined ? defaultWorkers() : parseWorkers(values.workers);
  switch (command) {
    case 'merge':
      if (args.length < 1 || !values.output) throw new UsageError('merge needs RECIPE (or several) and -o OUT');
      if (values.overwrite && values.resume) throw new UsageError('--overwrite and --resume exclude each other');
      if (args.length > 1 && values.resume) throw new UsageError('--resume continues one interrupted merge: give one recipe');
      return merge(args, values.output, workers, { overwrite: values.overwrite ?? false, resume: values.resume ?? false });
    case 'diff':
      if (args.length !== 2) throw new UsageError('diff needs MODEL_A and MODEL_B');
      return diff(args[0]!, args[1]!, workers, values.json ?? false, values.sampled ?? false);
    case 'inspect':
      if (args.length !== 1) throw new UsageError('inspect needs MODEL');
      return inspect(args[0]!, values.json ?? false);
    case 'routing':
      return routing(args, values);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

class UsageError extends Error {}

function parseWorkers(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new UsageError(`--workers takes a whole number from 0 to 64, not "${v}"`);
  return n;
}

/** A parent folder the CLI opened, local or on the Hub; `close` frees its handles or connections. */
type ParentFolder = ModelFolder & { close(): Promise<void> };

/** A local folder, or a Hub repository (hf://ORG/NAME[@REV]) through HF_ENDPOINT with HF_TOKEN. */
async function openParentFolder(where: string): Promise<ParentFolder> {
  if (!isHubRef(where)) return openNodeModelFolder(where);
  let ref;
  try {
    ref = parseHubRef(where);
  } catch (e) {
    throw new MoeError((e as Error).message);
  }
  return openHubFolder(ref, {
    ...(process.env['HF_ENDPOINT'] ? { endpoint: process.env['HF_ENDPOINT'] } : {}),
    ...(process.env['HF_TOKEN'] ? { token: process.env['HF_TOKEN'] } : {}),
    tokenHint: process.env['HF_TOKEN'] ? 'check HF_TOKEN' : 'set HF_TOKEN to a token that can read it',
    // As huggingface_hub: seconds a download may go without data before it is dropped and retried.
    ...(Number(process.env['HF_HUB_DOWNLOAD_TIMEOUT']) > 0 ? { idleTimeoutMs: Number(process.env['HF_HUB_DOWNLOAD_TIMEOUT']) * 1000 } : {}),
  });
}

/** One line on stderr saying what Hub parents cost, when there were any. */
function reportHub(folders: ModelFolder[]): void {
  const stats = folders.map((f) => (f as Partial<HubFolder>).stats).filter((s): s is HubStats => s !== undefined);
  if (stats.length === 0) return;
  const sum = (k: keyof HubStats) => stats.reduce((a, s) => a + s[k], 0);
  process.stderr.write(`from the Hub: ${sum('requests')} requests, ${formatBytes(sum('bytes'))}${sum('retries') > 0 ? `, ${sum('retries')} tried again` : ''}\n`);
}

/** Opens a parent; on failure its file handles are closed before the error goes on. */
async function openParent(where: string): Promise<{ folder: ParentFolder; model: Model }> {
  const folder = await openParentFolder(where);
  try {
    return { folder, model: await openModel(folder) };
  } catch (e) {
    await folder.close();
    throw e;
  }
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/**
 * Ctrl-C, `kill` and a closed terminal all stop a merge the same way: the first signal cancels it,
 * and any further one while it cleans up is only acknowledged (before, a second Ctrl-C within
 * 50 ms killed the process mid-cleanup, leaving finished-looking shards).
 */
function onStopSignals(stop: (signal: string) => void): () => void {
  let first: string | undefined;
  const handler = (signal: NodeJS.Signals) => {
    if (first) {
      process.stderr.write(`\nmoe-studio: ${signal} again: still cleaning up, one moment\n`);
      return;
    }
    first = signal;
    stop(signal);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

/**
 * Test hook (documented in the README): with MOE_STUDIO_TEST_PAUSE_AT=<pause point> and
 * MOE_STUDIO_TEST_PAUSE_FILE=<path>, the merge writes <path>.waiting when it reaches that point
 * and waits until <path>.go exists. Tests arrange races (two merges into one folder) with it,
 * deterministically, instead of with sleeps.
 */
function testPauseHook(signal: AbortSignal): ((point: PausePoint) => Promise<void>) | undefined {
  const at = process.env['MOE_STUDIO_TEST_PAUSE_AT'];
  const file = process.env['MOE_STUDIO_TEST_PAUSE_FILE'];
  if (!at || !file) return undefined;
  return async (point) => {
    if (point !== at) return;
    writeFileSync(`${file}.waiting`, `${process.pid}\n`);
    // A signal ends the wait: the merge then stops as it would anywhere else.
    while (!existsSync(`${file}.go`) && !signal.aborted) await new Promise((r) => setTimeout(r, 10));
  };
}

/**
 * The kernel pool, started at once: its threads load while the parents are opened and the work is
 * planned. `close` ends it (and is safe whether it started or not).
 */
function startPool(workers: number): { ready: Promise<KernelPool>; close: () => Promise<void> } {
  const ready = createNodeKernelPool(workers);
  ready.catch(() => {});
  return { ready, close: async () => (await ready.catch(() => undefined))?.close() };
}

/**
 * With MOE_STUDIO_REPORT_USAGE set, the process's resource usage, worker threads included, goes to
 * stderr: its CPU time (user, system) and the bytes it read and wrote through system calls (Linux
 * /proc/self/io). The benchmark checks with them that a sweep reads each parent byte once, and
 * sets a merge's CPU time against the machine's cores: no merge takes less than that share.
 */
function reportUsage(): void {
  if (!process.env['MOE_STUDIO_REPORT_USAGE']) return;
  const cpu = process.cpuUsage();
  process.stderr.write(`cpu: user ${Math.round(cpu.user / 1000)} ms, system ${Math.round(cpu.system / 1000)} ms\n`);
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const get = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    process.stderr.write(`io: read ${get('rchar')} bytes, wrote ${get('wchar')} bytes\n`);
  } catch {
    process.stderr.write('io: no /proc/self/io on this system\n');
  }
}

/** A child's folder in a sweep: the recipe file's name without its extension. */
function childName(recipeFile: string): string {
  return path.basename(recipeFile).replace(/\.(ya?ml|json)$/i, '');
}

async function merge(recipePaths: string[], outDir: string, workers: number, mode: { overwrite: boolean; resume: boolean }): Promise<number> {
  const pool = startPool(workers);
  try {
    return await mergeWith(pool.ready, workers, recipePaths, outDir, mode);
  } finally {
    await pool.close();
  }
}

async function mergeWith(poolReady: Promise<KernelPool>, workers: number, recipePaths: string[], outDir: string, mode: { overwrite: boolean; resume: boolean }): Promise<number> {
  const sweep = recipePaths.length > 1;
  const recipes = await Promise.all(
    recipePaths.map(async (p) => {
      const file = path.resolve(p);
      const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw new MoeError(e.code === 'ENOENT' ? 'recipe file not found' : e.message, file);
      });
      const { recipe, notes } = parseRecipeFile(text, file);
      // A mergekit config is read as a recipe: say what of it was read differently or left out.
      for (const n of notes) process.stderr.write(`${path.basename(file)} (mergekit config): ${n}\n`);
      return { file, recipe };
    }),
  );
  if (sweep) {
    const names = recipes.map((r) => childName(r.file));
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice) throw new UsageError(`two recipes would write the same child folder "${twice}": give the recipe files different names`);
  }
  // Parents are opened once by folder, whatever name each recipe gives them: a sweep reads them once.
  const opened = new Map<string, { folder: ParentFolder; model: Model }>();
  const err = process.stderr;
  try {
    const jobs: MergeJob[] = [];
    for (const { file, recipe } of recipes) {
      const parents = new Map<string, Model>();
      for (const [name, dir] of Object.entries(recipe.parents)) {
        const abs = isHubRef(dir) ? dir : path.resolve(path.dirname(file), dir);
        let p = opened.get(abs);
        if (!p) opened.set(abs, (p = await openParent(abs)));
        parents.set(name, p.model);
      }
      const plan = await planMerge(recipe, parents);
      err.write(`${sweep ? `${childName(file)}: ` : ''}${plan.description}\n`);
      for (const w of plan.warnings) err.write(`warning: ${w}\n`);
      jobs.push({ plan, out: openNodeOutputFolder(sweep ? path.join(outDir, childName(file)) : outDir) });
    }
    const controller = new AbortController();
    let stoppedBy: string | undefined;
    const offSignals = onStopSignals((signal) => {
      stoppedBy = signal;
      controller.abort();
    });
    const bar = progressLine(process.stderr, 'bytes');
    try {
      const reports = await executeMerges(jobs, await poolReady, {
          signal: controller.signal,
          overwrite: mode.overwrite,
          resume: mode.resume,
          owner: { tool: 'moe-studio merge', started: new Date().toISOString() },
          pause: testPauseHook(controller.signal),
          onNotice: (t) => {
            bar.done();
            err.write(`note: ${t}\n`);
          },
          onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, p.tensor),
        });
      bar.done();
      const lines: string[] = [];
      reports.forEach((report, k) => {
        const { plan, out } = jobs[k]!;
        const recipe = recipes[k]!.recipe;
        const secs = report.elapsedMs / 1000;
        const written = report.totalBytes - report.resumedBytes;
        lines.push(
          `wrote ${report.files.length} files, ${formatBytes(report.totalBytes)} to ${(out as ReturnType<typeof openNodeOutputFolder>).path} in ${formatDuration(report.elapsedMs)} (${formatBytes(written / Math.max(secs, 1e-3))}/s)`,
          `tensors: ${report.copied} copied, ${report.converted} converted, ${report.mixed} mixed, ${report.assembled} assembled, ${report.muted} with muted experts, ${report.patched} router biases edited`,
        );
        if (report.resumedShards > 0) lines.push(`resumed: ${report.resumedShards} shards (${formatBytes(report.resumedBytes)}) kept from the interrupted merge`);
        if (recipe.threshold) {
          lines.push(`threshold rms_diff < ${recipe.threshold.below}: ${report.thresholdKept} of ${report.threshold.length} tensors kept from ${plan.base}`);
        }
      });
      // The children of a sweep were made in one pass: its time is said once.
      const last = reports[reports.length - 1];
      if (last) {
        lines.push(runnerTimeText(last.runnerTime, last.elapsedMs, workers));
        // maxRSS is the process's, worker threads included (they share its memory), in KiB.
        lines.push(`memory: peak ${formatBytes(process.resourceUsage().maxRSS * 1024)} resident; ${runnerMemoryText(last.runnerMemory, workers)}`);
      }
      process.stdout.write(lines.join('\n') + '\n');
      reportHub([...opened.values()].map((p) => p.folder));
      reportUsage();
      return 0;
    } catch (e) {
      bar.done();
      if (e instanceof MergeCancelled) {
        const how = stoppedBy ? `${stoppedBy}: ` : '';
        const again = !sweep && e.kept ? `; continue with: moe-studio merge ${recipePaths[0]} -o ${outDir} --resume` : '';
        process.stderr.write(`moe-studio: ${how}${e.message}${again}\n`);
        return SIGNAL_EXIT[stoppedBy ?? 'SIGINT'] ?? 130;
      }
      throw e;
    } finally {
      offSignals();
    }
  } finally {
    await Promise.all([...opened.values()].map((p) => p.folder.close()));
  }
}

async function diff(aDir: string, bDir: string, workers: number, json: boolean, sampled: boolean): Promise<number> {
  const pool = startPool(workers);
  try {
    return await diffWith(pool.ready, aDir, bDir, json, sampled);
  } finally {
    await pool.close();
  }
}

async function diffWith(poolReady: Promise<KernelPool>, aDir: string, bDir: string, json: boolean, sampled: boolean): Promise<number> {
  const a = await openParent(aDir);
  const b = await openParent(bDir).catch(async (e: unknown) => {
    await a.folder.close();
    throw e;
  });
  try {
    const bar = progressLine(process.stderr, 'items');
    const result = await diffModels(a.model, b.model, await poolReady, {
      mode: sampled ? 'sampled' : 'exact',
      onProgress: (done, total) => bar.update(done, total, 'tensors'),
    });
    bar.done();
    reportHub([a.folder, b.folder]);
    const kinds = summarizeDiff(result.tensors);
    if (json) {
      const tensors = result.tensors.map((t: TensorDiff) => ({
        name: t.name, ...t.role, rms_diff: t.rmsDiff, rel_diff: finiteOrNull(t.relDiff), cosine: t.cosine,
        non_finite: t.stats.nonFinite, max_abs_diff: t.stats.maxAbsDiff, sampled: t.sampled, fraction: t.fraction, rel_error: t.relError,
      }));
      process.stdout.write(JSON.stringify({ a: a.folder.name, b: b.folder.name, mode: sampled ? 'sampled' : 'exact', tensors, kinds, skipped: result.skipped }, null, 2) + '\n');
    } else {
      process.stdout.write(formatDiffTable(result.tensors) + '\n\n' + formatKindSummary(kinds) + '\n');
      if (result.skipped.length > 0) {
        process.stdout.write(`\nnot compared (${result.skipped.length}):\n${result.skipped.map((s) => `  ${s.name}: ${s.reason}`).join('\n')}\n`);
      }
    }
    return 0;
  } finally {
    await a.folder.close();
    await b.folder.close();
  }
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

async function inspect(dir: string, json: boolean): Promise<number> {
  const { folder, model } = await openParent(dir);
  try {
    const summary = summarizeModel(model);
    process.stdout.write(json ? JSON.stringify(summary, null, 2) + '\n' : formatSummary(summary) + '\n');
    return 0;
  } finally {
    await folder.close();
  }
}

async function routing(
  args: string[],
  values: { metric?: string | undefined; top?: string | undefined; layers?: string | undefined; model?: string | undefined; edits?: string | undefined; json?: boolean | undefined },
): Promise<number> {
  const [sub, ...files] = args;
  const top = values.top === undefined ? 20 : Number(values.top);
  if (!Number.isInteger(top) || top < 1) throw new UsageError(`--top takes a whole number from 1, not "${values.top}"`);
  if (values.layers !== undefined && !INDEX_SET_TEXT.test(values.layers)) throw new UsageError(`--layers takes layers such as "3-10" or "5, 7", not "${values.layers}"`);
  const opts: RoutingOptions = { top, json: values.json ?? false };
  if (values.layers !== undefined) opts.layers = indexSet(values.layers, '--layers');
  if (values.model !== undefined) {
    const { folder, model } = await openParent(values.model);
    try {
      opts.model = { target: summarizeModel(model), name: folder.hub ? folder.hub.repo : path.basename(path.resolve(values.model)) };
    } finally {
      await folder.close();
    }
  }
  if (sub === 'show') {
    if (files.length !== 1) throw new UsageError('routing show needs one STATS.json');
    const metric = values.metric ?? 'rate';
    if (!(RATE_METRICS as readonly string[]).includes(metric)) throw new UsageError(`routing show --metric takes ${RATE_METRICS.join(', ')}, not "${metric}"`);
    if (values.edits !== undefined) throw new UsageError('--edits goes with routing compare');
    process.stdout.write(routingShow(await readRoutingArg(files[0]!), metric as RateMetric, opts) + '\n');
    return 0;
  }
  if (sub === 'compare') {
    if (files.length !== 2) throw new UsageError('routing compare needs A.json and B.json (a file twice with #SET names two of its sets)');
    const metric = values.metric ?? 'rd';
    if (!(CONTRAST_METRICS as readonly string[]).includes(metric)) throw new UsageError(`routing compare --metric takes ${CONTRAST_METRICS.join(', ')}, not "${metric}"`);
    const edits = values.edits;
    if (edits !== undefined && edits !== 'off' && edits !== 'on' && edits !== 'mute') throw new UsageError(`--edits takes off, on or mute, not "${edits}"`);
    if (edits !== undefined && opts.json) throw new UsageError('--edits prints YAML: leave out --json');
    const [a, b] = await Promise.all(files.map(readRoutingArg));
    process.stdout.write(routingCompare(a!, b!, metric as ContrastMetric, edits === undefined ? opts : { ...opts, edits }).text + (edits ? '' : '\n'));
    return 0;
  }
  throw new UsageError(sub === undefined ? 'routing needs show or compare' : `unknown routing command "${sub}" (show, compare)`);
}

/** Runs the CLI; every failure is one clear line on stderr and a non-zero exit. */
export async function run(argv: string[]): Promise<void> {
  // A reader that stops early (`moe-studio diff --json | head -c1`) is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  try {
    process.exitCode = await main(argv);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`moe-studio: ${(e as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      // Escaped again here: an error that is not the engine's may still quote a name from a file.
      const msg = printable(e instanceof Error ? e.message : String(e));
      process.stderr.write(`moe-studio: error: ${msg}\n`);
      if (process.env.MOE_STUDIO_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  }
}
