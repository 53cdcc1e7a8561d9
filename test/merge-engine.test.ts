// The engine in-process: chunk boundaries (tiny chunks across FP8 stripes), cancellation and
// failures mid-merge (nothing that looks complete is left), and parents that are only ever read.
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, statSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createKernelPool, localEndpoint, type KernelPool } from '../app/engine/kernels/pool.ts';
import { createWasmKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import type { Model } from '../app/engine/model/types.ts';
import { parseRecipe } from '../app/engine/recipe/parse.ts';
import { planMerge } from '../app/engine/plan/plan.ts';
import { executeMerge, MergeCancelled } from '../app/engine/exec/merge.ts';
import type { OutputFolder } from '../app/engine/io.ts';
import { openNodeModelFolder, openNodeOutputFolder } from '../app/cli/node-io.ts';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { ROOT, filesIn, presetDir, writeRecipe } from './support/cli.ts';

let pool: KernelPool;
const dirs: Record<string, string> = {};

beforeAll(async () => {
  const kernels = await createWasmKernelsFromBytes(new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm'))));
  // Three endpoints over one kernel instance: exercises the pool's spreading and out-of-order completion.
  pool = createKernelPool([localEndpoint(kernels), localEndpoint(kernels), localEndpoint(kernels)]);
  for (const p of ['deepseek-v3-fp8-pair', 'specials-bf16-pair', 'mixtral-pair']) dirs[p] = await presetDir(p);
});

async function open(recipeFile: string): Promise<{ parents: Map<string, Model>; recipe: ReturnType<typeof parseRecipe> }> {
  const recipe = parseRecipe(readFileSync(recipeFile, 'utf8'), recipeFile);
  const parents = new Map<string, Model>();
  for (const [name, dir] of Object.entries(recipe.parents)) {
    parents.set(name, await openModel(await openNodeModelFolder(path.resolve(path.dirname(recipeFile), dir))));
  }
  return { parents, recipe };
}

function folderHash(dir: string): string {
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) {
    h.update(f);
    h.update(readFileSync(path.join(dir, f)));
    h.update(String(statSync(path.join(dir, f)).mtimeMs));
  }
  return h.digest('hex');
}

describe('chunking does not change a byte', () => {
  const cases: [string, string, string][] = [
    ['deepseek-v3-fp8-pair', 'fp8 mix + threshold + mute', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert, proj: [gate, up]}
    weights: {v3: 0.5, r1: 0.5}
  - select: {kind: [shared_expert, dense_mlp, attention]}
    weights: {v3: 0.25, r1: 0.75}
threshold: {metric: rms_diff, below: 0.002}
edits:
  - {layer: 1, expert: 2, action: mute}
  - {layer: 3, expert: 7, action: off}
`],
    ['deepseek-v3-fp8-pair', 'fp8 to f16', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    weights: {v3: 0.5, r1: 0.5}
output: {dtype: f16}
`],
    ['specials-bf16-pair', 'bf16 specials to f32', `
parents: {base: ./base, donor: ./donor}
rules:
  - select: {kind: [routed_expert, attention, norm]}
    weights: {base: 0.1, donor: 0.9}
output: {dtype: f32}
`],
  ];
  for (const [preset, name, yaml] of cases) {
    for (const chunkElements of [97, 128 * 200 + 3]) {
      it(`${name}, chunks of ${chunkElements} elements`, async () => {
        const dir = dirs[preset]!;
        const file = writeRecipe(dir, `${name.replace(/\W+/g, '-')}.yaml`, yaml);
        const { parents, recipe } = await open(file);
        const plan = await planMerge(recipe, parents);
        const outDir = path.join(dir, `engine-${name.replace(/\W+/g, '-')}-${chunkElements}`);
        const out = await openNodeOutputFolder(outDir);
        const report = await executeMerge(plan, out, pool, { chunkElements, window: 5 });
        expect(report.totalBytes).toBe(report.files.reduce((s, f) => s + f.bytes, 0));
        expect(compareChild(await expectedChild(file), readChild(outDir).tensors)).toEqual([]);
      });
    }
  }
});

describe('nothing half-done looks done', () => {
  const yaml = `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    weights: {v3: 0.5, r1: 0.5}
output: {shard_size: 300KB}
`;

  it('a cancelled merge leaves no index and no files, and the parents are untouched', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const before = [folderHash(path.join(dir, 'v3')), folderHash(path.join(dir, 'r1'))];
    const { parents, recipe } = await open(writeRecipe(dir, 'cancel.yaml', yaml));
    const plan = await planMerge(recipe, parents);
    expect(plan.shards.length).toBeGreaterThan(1);
    const outDir = path.join(dir, 'engine-cancel');
    const controller = new AbortController();
    let sawProgress = 0;
    const run = executeMerge(plan, await openNodeOutputFolder(outDir), pool, {
      signal: controller.signal,
      chunkElements: 1000,
      onProgress: (p) => {
        sawProgress = p.bytesDone;
        if (p.bytesDone > p.bytesTotal / 2) controller.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(MergeCancelled);
    expect(sawProgress).toBeGreaterThan(0);
    expect(filesIn(outDir)).toEqual([]);
    expect([folderHash(path.join(dir, 'v3')), folderHash(path.join(dir, 'r1'))]).toEqual(before);
  });

  it('a write failure mid-merge (disk full) removes what was written and writes no index', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const { parents, recipe } = await open(writeRecipe(dir, 'fail.yaml', yaml));
    const plan = await planMerge(recipe, parents);
    const outDir = path.join(dir, 'engine-fail');
    const real = await openNodeOutputFolder(outDir);
    let writes = 0;
    const failing: OutputFolder = {
      name: real.name,
      canRename: real.canRename,
      list: () => real.list(),
      rename: (a, b) => real.rename(a, b),
      remove: (f) => real.remove(f),
      overlaps: (p) => real.overlaps(p),
      create: async (f) => {
        const file = await real.create(f);
        return {
          write: async (b) => {
            if (++writes === 40) throw new Error('ENOSPC: no space left on device');
            return file.write(b);
          },
          writeAt: (p, b) => file.writeAt(p, b),
          close: () => file.close(),
          abort: () => file.abort(),
        };
      },
    };
    await expect(executeMerge(plan, failing, pool, { chunkElements: 1000 })).rejects.toThrow(/ENOSPC/);
    expect(filesIn(outDir)).toEqual([]);
  });

  it('refuses when the output folder lacks the space the child needs', async () => {
    const dir = dirs['mixtral-pair']!;
    const { parents, recipe } = await open(writeRecipe(dir, 'space.yaml', 'parents: {base: ./base}\n'));
    const plan = await planMerge(recipe, parents);
    const real = await openNodeOutputFolder(path.join(dir, 'engine-space'));
    const tiny: OutputFolder = Object.assign(Object.create(Object.getPrototypeOf(real)), real, { freeBytes: async () => 1000 });
    await expect(executeMerge(plan, tiny, pool)).rejects.toThrow(/not enough free space/);
    expect(filesIn(path.join(dir, 'engine-space'))).toEqual([]);
  });
});
