// moe-studio: the engine headless. `merge`, `diff` and `inspect`, with the same recipes as the studio.
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MoeError } from '../engine/io.ts';
import type { KernelPool } from '../engine/kernels/pool.ts';
import { openModel } from '../engine/model/open-model.ts';
import { formatSummary, summarizeModel } from '../engine/model/inspect.ts';
import type { Model } from '../engine/model/types.ts';
import { parseRecipe } from '../engine/recipe/parse.ts';
import { planMerge } from '../engine/plan/plan.ts';
import { executeMerge, MergeCancelled } from '../engine/exec/merge.ts';
import { diffModels, type TensorDiff } from '../engine/exec/diff.ts';
import { createNodeKernelPool, defaultWorkers } from './kernel-pool.ts';
import { openNodeModelFolder, openNodeOutputFolder, type NodeModelFolder } from './node-io.ts';
import { progressLine } from './progress.ts';
import { formatBytes, formatDuration } from '../engine/report/format.ts';
import { formatDiffTable, summarizeDiff, formatKindSummary } from './diff-report.ts';

const USAGE = `moe-studio: assemble Mixture-of-Experts models from existing releases

Usage:
  moe-studio merge RECIPE -o OUT [--workers N] [--overwrite]
      Run a recipe (YAML or JSON). Parent paths are relative to the recipe file.
  moe-studio diff MODEL_A MODEL_B [--json] [--sampled] [--workers N]
      Per-tensor rms_diff, relative difference and cosine of B against A, and a per-kind summary.
  moe-studio inspect MODEL [--json]
      Architecture, layers (dense/MoE), experts, shared experts, dtypes, parameters, size.

Options:
  -o, --output DIR   folder for the child (created if missing; never a parent's folder)
  --workers N        kernel worker threads (default ${defaultWorkers()}; 0 runs in this thread)
  --overwrite        replace an earlier child in OUT (its index is removed first)
  --json             machine-readable output on stdout
  --sampled          diff a spread of row blocks of each tensor instead of every byte (an estimate)
  -h, --help         this text
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
      json: { type: 'boolean' },
      sampled: { type: 'boolean' },
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
      if (args.length !== 1 || !values.output) throw new UsageError('merge needs RECIPE and -o OUT');
      return merge(args[0]!, values.output, workers, values.overwrite ?? false);
    case 'diff':
      if (args.length !== 2) throw new UsageError('diff needs MODEL_A and MODEL_B');
      return diff(args[0]!, args[1]!, workers, values.json ?? false, values.sampled ?? false);
    case 'inspect':
      if (args.length !== 1) throw new UsageError('inspect needs MODEL');
      return inspect(args[0]!, values.json ?? false);
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

async function openParent(dir: string): Promise<{ folder: NodeModelFolder; model: Model }> {
  const folder = await openNodeModelFolder(dir);
  return { folder, model: await openModel(folder) };
}

async function withPool<T>(workers: number, run: (pool: KernelPool) => Promise<T>): Promise<T> {
  const pool = await createNodeKernelPool(workers);
  try {
    return await run(pool);
  } finally {
    await pool.close();
  }
}

async function merge(recipePath: string, outDir: string, workers: number, overwrite: boolean): Promise<number> {
  const recipeFile = path.resolve(recipePath);
  const text = await readFile(recipeFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new MoeError(e.code === 'ENOENT' ? 'recipe file not found' : e.message, recipeFile);
  });
  const recipe = parseRecipe(text, recipeFile);
  const parents = new Map<string, Model>();
  const folders: NodeModelFolder[] = [];
  try {
    for (const [name, dir] of Object.entries(recipe.parents)) {
      const opened = await openParent(path.resolve(path.dirname(recipeFile), dir));
      folders.push(opened.folder);
      parents.set(name, opened.model);
    }
    const plan = await planMerge(recipe, parents);
    const err = process.stderr;
    err.write(`${plan.description}\n`);
    for (const w of plan.warnings) err.write(`warning: ${w}\n`);
    const out = await openNodeOutputFolder(outDir);
    const controller = new AbortController();
    const onSigint = () => controller.abort();
    process.once('SIGINT', onSigint);
    const bar = progressLine(process.stderr, 'bytes');
    try {
      const report = await withPool(workers, (pool) =>
        executeMerge(plan, out, pool, {
          signal: controller.signal,
          overwrite,
          onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, p.tensor),
        }),
      );
      bar.done();
      const secs = report.elapsedMs / 1000;
      const lines = [
        `wrote ${report.files.length} files, ${formatBytes(report.totalBytes)} to ${out.path} in ${formatDuration(report.elapsedMs)} (${formatBytes(report.totalBytes / Math.max(secs, 1e-3))}/s)`,
        `tensors: ${report.copied} copied, ${report.converted} converted, ${report.mixed} mixed, ${report.muted} muted, ${report.patched} router biases edited`,
      ];
      if (recipe.threshold) {
        lines.push(`threshold rms_diff < ${recipe.threshold.below}: ${report.thresholdKept} of ${report.threshold.length} tensors kept from ${plan.base}`);
      }
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    } catch (e) {
      bar.done();
      if (e instanceof MergeCancelled) {
        process.stderr.write(`moe-studio: ${e.message}\n`);
        return 130;
      }
      throw e;
    } finally {
      process.off('SIGINT', onSigint);
    }
  } finally {
    await Promise.all(folders.map((f) => f.close()));
  }
}

async function diff(aDir: string, bDir: string, workers: number, json: boolean, sampled: boolean): Promise<number> {
  const a = await openParent(aDir);
  const b = await openParent(bDir);
  try {
    const bar = progressLine(process.stderr, 'items');
    const result = await withPool(workers, (pool) =>
      diffModels(a.model, b.model, pool, {
        mode: sampled ? 'sampled' : 'exact',
        onProgress: (done, total) => bar.update(done, total, 'tensors'),
      }),
    );
    bar.done();
    const kinds = summarizeDiff(result.tensors);
    if (json) {
      const tensors = result.tensors.map((t: TensorDiff) => ({
        name: t.name, ...t.role, rms_diff: t.rmsDiff, rel_diff: finiteOrNull(t.relDiff), cosine: t.cosine,
        non_finite: t.stats.nonFinite, max_abs_diff: t.stats.maxAbsDiff, sampled: t.sampled, fraction: t.fraction, rel_error: t.relError,
      }));
      process.stdout.write(JSON.stringify({ a: a.folder.path, b: b.folder.path, mode: sampled ? 'sampled' : 'exact', tensors, kinds, skipped: result.skipped }, null, 2) + '\n');
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

/** Runs the CLI; every failure is one clear line on stderr and a non-zero exit. */
export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`moe-studio: ${(e as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`moe-studio: error: ${msg}\n`);
      if (process.env.MOE_STUDIO_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  }
}
