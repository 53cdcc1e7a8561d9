// The engine in-process: chunk boundaries (tiny chunks across FP8 stripes), cancellation and
// failures mid-merge (nothing that looks complete is left), parents that are only ever read,
// resume (and an earlier version's journal refused), the coordinator's work per tensor, and the
// runners' time and memory.
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createKernelPool, type KernelEndpoint, type KernelPool } from '../app/engine/kernels/pool.ts';
import { localEndpoint } from '../app/engine/kernels/bridge.ts';
import { instantiateKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import type { Model } from '../app/engine/model/types.ts';
import { parseRecipe } from '../app/engine/recipe/parse.ts';
import { planMerge } from '../app/engine/plan/plan.ts';
import { executeMerge, MergeCancelled, MergeInterrupted } from '../app/engine/exec/merge.ts';
import { JOURNAL_FILE, JOURNAL_FORMAT } from '../app/engine/exec/journal.ts';
import { buildSafetensorsHeader } from '../app/engine/formats/safetensors.ts';
import type { OutputFolder } from '../app/engine/io.ts';
import { openNodeModelFolder, openNodeOutputFolder } from '../app/cli/node-io.ts';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { ROOT, filesIn, presetDir, writeRecipe } from './support/cli.ts';

let pool: KernelPool;
const dirs: Record<string, string> = {};

beforeAll(async () => {
  const wasm = new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm')));
  // Three runners: exercises the pool's spreading and out-of-order completion.
  pool = createKernelPool(await Promise.all([1, 2, 3].map(async () => localEndpoint(await instantiateKernelsFromBytes(wasm)))), { inProcess: true });
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

/** A merge into `outDir` cancelled once shard `k` completes (the pause hook), as an interruption leaves it. */
async function interruptAfterShard(plan: Awaited<ReturnType<typeof planMerge>>, outDir: string, k: number): Promise<void> {
  const controller = new AbortController();
  await executeMerge(plan, openNodeOutputFolder(outDir), pool, {
    signal: controller.signal,
    pause: async (point) => {
      if (point === `shard-complete:${plan.shards[k]!.file}`) controller.abort();
    },
  }).catch(() => {});
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
        const out = openNodeOutputFolder(outDir);
        const report = await executeMerge(plan, out, pool, { chunkElements, window: 5 });
        expect(report.totalBytes).toBe(report.files.reduce((s, f) => s + f.bytes, 0));
        // The runners' time: every part counted, no runner busier than the merge was long.
        const t = report.runnerTime;
        for (const v of Object.values(t)) expect(v).toBeGreaterThanOrEqual(0);
        expect(t.read + t.compute + t.hash + t.write).toBeGreaterThan(0);
        expect(t.read + t.compute + t.hash + t.write).toBeLessThanOrEqual(report.elapsedMs * pool.size);
        expect(compareChild(await expectedChild(file), readChild(outDir).tensors)).toEqual([]);
      });
    }
  }
});

describe("the coordinator's work per tensor", () => {
  it("reads a shard's entries a bounded number of times per entry, not once per tensor (a shard of n tensors cost n²)", async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const file = writeRecipe(dir, 'one-shard.yaml', 'parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    weights: {v3: 0.5, r1: 0.5}\n');
    const { parents, recipe } = await open(file);
    const plan = await planMerge(recipe, parents);
    expect(plan.shards).toHaveLength(1);
    const shard = plan.shards[0]!;
    const n = shard.entries.length;
    expect(n).toBeGreaterThan(200);
    // Every read of an entry by index (iteration, map, indexing) is counted.
    let reads = 0;
    (shard as { entries: unknown[] }).entries = new Proxy(shard.entries, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    const outDir = path.join(dir, 'engine-one-shard');
    await executeMerge(plan, openNodeOutputFolder(outDir), pool);
    expect(reads).toBeLessThan(20 * n);
    expect(compareChild(await expectedChild(file), readChild(outDir).tensors)).toEqual([]);
  });
});

describe('shards side by side', () => {
  it('each shard computed beside others keeps to its own runner, and the child is byte for byte the one made a shard at a time', async () => {
    const dir = dirs['mixtral-pair']!;
    const file = writeRecipe(dir, 'lanes.yaml', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, instruct: 0.5}
output: {shard_size: 60KB}
`);
    const { parents, recipe } = await open(file);
    const plan = await planMerge(recipe, parents);
    expect(plan.shards.length).toBeGreaterThan(4);
    const wasm = new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm')));
    /**
     * Two runners that count batches sent while another shard's batch was under way (shards side
     * by side), and batches sent while the same shard's batch was under way on the other runner
     * (two writers of one file).
     */
    const watched = async () => {
      const under = [new Map<number, number>(), new Map<number, number>()];
      const seen = { sideBySide: 0, twoWriters: 0, batches: 0 };
      const endpoints = await Promise.all(
        [0, 1].map(async (runner): Promise<KernelEndpoint> => {
          const e = localEndpoint(await instantiateKernelsFromBytes(wasm));
          return {
            ...e,
            run: async (units) => {
              const files = [...new Set(units.flatMap((u) => (u.kind === 'stripe' ? [u.data.file] : u.kind === 'copy' ? u.parts.map((p) => p.to.file) : u.kind === 'bytes' ? [u.to.file] : [])))];
              seen.batches++;
              const other = under[1 - runner]!;
              if (files.some((f) => other.has(f))) seen.twoWriters++;
              if ([...under[0]!.keys(), ...under[1]!.keys()].some((f) => !files.includes(f))) seen.sideBySide++;
              for (const f of files) under[runner]!.set(f, (under[runner]!.get(f) ?? 0) + 1);
              try {
                // A turn of the event loop, as a worker's reply takes: other batches are sent meanwhile.
                await new Promise((r) => setTimeout(r, 1));
                return await e.run(units);
              } finally {
                for (const f of files) if (under[runner]!.set(f, under[runner]!.get(f)! - 1).get(f) === 0) under[runner]!.delete(f);
              }
            },
          };
        }),
      );
      return { pool: createKernelPool(endpoints, { inProcess: true }), seen };
    };
    const side = await watched();
    const a = path.join(dir, 'engine-lanes');
    await executeMerge(plan, openNodeOutputFolder(a), side.pool, { chunkElements: 97 });
    const one = await watched();
    const b = path.join(dir, 'engine-lanes-one');
    await executeMerge(plan, openNodeOutputFolder(b), one.pool, { chunkElements: 97, shardsInFlight: 1 });

    for (const f of filesIn(b)) expect(Buffer.compare(readFileSync(path.join(a, f)), readFileSync(path.join(b, f))), f).toBe(0);
    expect(filesIn(a)).toEqual(filesIn(b));
    expect(compareChild(await expectedChild(file), readChild(a).tensors)).toEqual([]);
    // A shard at a time: both runners write the shard under way.
    expect(one.seen.sideBySide).toBe(0);
    expect(one.seen.twoWriters).toBeGreaterThan(one.seen.batches / 3);
    // Side by side: two shards under way, each on its own runner but at the end, where the last
    // shard takes both.
    expect(side.seen.sideBySide).toBeGreaterThan(side.seen.batches / 3);
    expect(side.seen.twoWriters).toBeLessThan(one.seen.twoWriters / 3);
  });
});

describe('nothing half-done looks done', () => {
  const yaml = `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    weights: {v3: 0.5, r1: 0.5}
output: {shard_size: 300KB}
`;

  /** Files that would make a folder look like (part of) a finished child: anything not temporary. */
  const finalLooking = (dir: string) => filesIn(dir).filter((f) => !f.endsWith('.partial') && f !== '.moe-studio-journal.json');

  it('a cancelled merge leaves no index and no shard under its final name; completed shards stay for resume; parents untouched', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const before = [folderHash(path.join(dir, 'v3')), folderHash(path.join(dir, 'r1'))];
    const { parents, recipe } = await open(writeRecipe(dir, 'cancel.yaml', yaml));
    const plan = await planMerge(recipe, parents);
    expect(plan.shards.length).toBeGreaterThan(1);
    const outDir = path.join(dir, 'engine-cancel');
    const controller = new AbortController();
    let sawProgress = 0;
    const run = executeMerge(plan, openNodeOutputFolder(outDir), pool, {
      signal: controller.signal,
      chunkElements: 1000,
      onProgress: (p) => {
        sawProgress = p.bytesDone;
        if (p.bytesDone > p.bytesTotal / 2) controller.abort();
      },
    });
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MergeCancelled);
    expect(sawProgress).toBeGreaterThan(0);
    const kept = (err as MergeCancelled).kept!;
    expect(kept.shards).toBeGreaterThan(0);
    expect(kept.shards).toBeLessThan(plan.shards.length);
    expect(finalLooking(outDir)).toEqual([]);
    expect(filesIn(outDir).filter((f) => f.endsWith('.partial'))).toHaveLength(kept.shards);
    expect(filesIn(outDir)).toContain('.moe-studio-journal.json');
    expect([folderHash(path.join(dir, 'v3')), folderHash(path.join(dir, 'r1'))]).toEqual(before);

    // Without resume or overwrite, the interrupted merge is not touched.
    await expect(executeMerge(plan, openNodeOutputFolder(outDir), pool)).rejects.toThrow(/holds an interrupted merge .*resume it, or overwrite/);

    // Resumed: the kept shards are not written again, and the child is the one a single run makes.
    const notices: string[] = [];
    const report = await executeMerge(plan, openNodeOutputFolder(outDir), pool, { resume: true, chunkElements: 1000, onNotice: (t) => notices.push(t) });
    expect(report.resumedShards).toBe(kept.shards);
    expect(report.resumedBytes).toBe(kept.bytes);
    expect(notices.join('\n')).toContain(`resuming: ${kept.shards} of ${plan.shards.length} shards are kept`);
    expect(compareChild(await expectedChild(path.join(dir, 'cancel.yaml')), readChild(outDir).tensors)).toEqual([]);
    const fresh = path.join(dir, 'engine-cancel-fresh');
    await executeMerge(plan, openNodeOutputFolder(fresh), pool);
    // Buffer.compare: toEqual on large buffers takes seconds.
    for (const f of filesIn(fresh)) expect(Buffer.compare(readFileSync(path.join(outDir, f)), readFileSync(path.join(fresh, f))), f).toBe(0);
    expect(filesIn(outDir)).toEqual(filesIn(fresh));
  });

  it('resume refuses a changed recipe or parent with the reason, and rewrites a kept shard whose bytes changed', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const file = writeRecipe(dir, 'resume.yaml', yaml);
    const { parents, recipe } = await open(file);
    const plan = await planMerge(recipe, parents);
    const outDir = path.join(dir, 'engine-resume');
    await interruptAfterShard(plan, outDir, 1);
    expect(filesIn(outDir).filter((f) => f.endsWith('.partial'))).toEqual([`${plan.shards[0]!.file}.partial`, `${plan.shards[1]!.file}.partial`]);

    const other = await open(writeRecipe(dir, 'resume-other.yaml', yaml.replace('0.5, r1: 0.5', '0.4, r1: 0.6')));
    const otherPlan = await planMerge(other.recipe, other.parents);
    await expect(executeMerge(otherPlan, openNodeOutputFolder(outDir), pool, { resume: true })).rejects.toThrow(
      /cannot resume the interrupted merge: the recipe changed .*Overwrite to start over \(its 2 completed shards are discarded\)/,
    );
    const swapped = await open(writeRecipe(dir, 'resume-swapped.yaml', yaml.replace('{v3: ./v3, r1: ./r1}', '{v3: ./v3, r1: ./v3}')));
    await expect(executeMerge(await planMerge(swapped.recipe, swapped.parents), openNodeOutputFolder(outDir), pool, { resume: true })).rejects.toThrow(
      /cannot resume the interrupted merge: parent "r1" changed since/,
    );

    // One byte of a kept shard flipped: that shard is written again, the other kept.
    const victim = path.join(outDir, `${plan.shards[1]!.file}.partial`);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 3]! ^= 0x40;
    writeFileSync(victim, bytes);
    const notices: string[] = [];
    const report = await executeMerge(plan, openNodeOutputFolder(outDir), pool, { resume: true, onNotice: (t) => notices.push(t) });
    expect(report.resumedShards).toBe(1);
    expect(notices.join('\n')).toContain(`shard ${plan.shards[1]!.file} of the interrupted merge is written again: its checksum differs`);
    expect(compareChild(await expectedChild(file), readChild(outDir).tensors)).toEqual([]);
    expect(filesIn(outDir).some((f) => f.endsWith('.partial') || f.startsWith('.moe-studio'))).toBe(false);
  });

  it("refuses an earlier version's journal (XXH64 checksums) naming its format; overwrite starts over", async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const file = writeRecipe(dir, 'resume-old.yaml', yaml);
    const { parents, recipe } = await open(file);
    const plan = await planMerge(recipe, parents);
    const outDir = path.join(dir, 'engine-resume-old');
    await interruptAfterShard(plan, outDir, 0);
    const journalFile = path.join(outDir, JOURNAL_FILE);
    const journal = JSON.parse(readFileSync(journalFile, 'utf8'));
    expect(journal.format).toBe(JOURNAL_FORMAT);
    writeFileSync(journalFile, JSON.stringify({ ...journal, format: 'moe-studio.journal/1' }));
    await expect(executeMerge(plan, openNodeOutputFolder(outDir), pool, { resume: true })).rejects.toThrow(
      /is not a resume journal of this version \(format "moe-studio.journal\/1", expected moe-studio.journal\/2\); use overwrite to start over/,
    );
    const report = await executeMerge(plan, openNodeOutputFolder(outDir), pool, { overwrite: true });
    expect(report.resumedShards).toBe(0);
    expect(compareChild(await expectedChild(file), readChild(outDir).tensors)).toEqual([]);
  });

  it('a write failure (disk full) removes what was written and writes no index: the folder it made goes, or completed shards stay for resume', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const { parents, recipe } = await open(writeRecipe(dir, 'fail.yaml', yaml));
    const plan = await planMerge(recipe, parents);
    /** Fails the `failAt`-th write to a shard (`shard`: only to that one). */
    const failingAt = (outDir: string, failAt: number, shard = 'model-'): OutputFolder => {
      const real = openNodeOutputFolder(outDir);
      let writes = 0;
      return Object.assign(Object.create(Object.getPrototypeOf(real)), real, {
        create: async (f: string) => {
          const file = await real.create(f);
          return {
            write: async (b: Uint8Array) => {
              if (f.startsWith(shard) && ++writes === failAt) throw new Error('ENOSPC: no space left on device');
              return file.write(b);
            },
            writeAt: async (p: number, b: Uint8Array) => {
              if (f.startsWith(shard) && ++writes === failAt) throw new Error('ENOSPC: no space left on device');
              return file.writeAt(p, b);
            },
            close: () => file.close(),
            abort: () => file.abort(),
          };
        },
      });
    };
    // In the first shard: nothing is complete (the shards computed beside it are not finished
    // before it), nothing stays, not even the folders the merge made.
    await expect(executeMerge(plan, failingAt(path.join(dir, 'engine-fail', 'nested'), 5, plan.shards[0]!.file), pool, { chunkElements: 1000 })).rejects.toThrow(/ENOSPC/);
    expect(existsSync(path.join(dir, 'engine-fail'))).toBe(false);
    // Later: the completed shards stay (temporary names) with the journal; the error says so.
    const later = path.join(dir, 'engine-fail-later');
    const err = (await executeMerge(plan, failingAt(later, 60), pool, { chunkElements: 1000 }).catch((e: unknown) => e)) as MergeInterrupted;
    expect(err).toBeInstanceOf(MergeInterrupted);
    expect(err.message).toMatch(/ENOSPC.*\(\d+ of 16 shards, [\d.]+ KB, are complete and kept for resume\)/);
    expect(finalLooking(later)).toEqual([]);
    expect(filesIn(later).filter((f) => f.endsWith('.partial'))).toHaveLength(err.kept.shards);
  });

  it('flushes each shard to disk while it is written; a failed flush, or a shard failing to close while the next is written, stops the merge keeping only whole shards', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const file = writeRecipe(dir, 'flush.yaml', yaml);
    const { parents, recipe } = await open(file);
    const plan = await planMerge(recipe, parents);
    const shards = new Set(plan.shards.map((s) => s.file));
    /** The real folder, counting shard flushes, failing the `flushFailAt`-th flush or the close of shard `closeFails`. */
    const watched = (outDir: string, flushFailAt = 0, closeFails = '') => {
      const real = openNodeOutputFolder(outDir);
      const seen = { flushes: 0, shardsFlushed: new Set<string>() };
      const folder: OutputFolder = Object.assign(Object.create(Object.getPrototypeOf(real)), real, {
        create: async (f: string) => {
          const out = await real.create(f);
          const shard = f.replace(/\.partial$/, '');
          return {
            write: (b: Uint8Array) => out.write(b),
            writeAt: (p: number, b: Uint8Array) => out.writeAt(p, b),
            flush: async () => {
              if (!shards.has(shard)) throw new Error(`flush of ${f}, which is not a shard`);
              seen.shardsFlushed.add(shard);
              if (++seen.flushes === flushFailAt) throw new Error('EIO: i/o error, fdatasync');
              return out.flush!();
            },
            close: async () => {
              if (shard === closeFails) {
                await out.abort();
                throw new Error('EIO: i/o error, close');
              }
              return out.close();
            },
            abort: () => out.abort(),
          };
        },
      });
      return { folder, seen };
    };
    const flushEvery = 4096;
    const ok = watched(path.join(dir, 'engine-flush'));
    await executeMerge(plan, ok.folder, pool, { chunkElements: 1000, flushEvery });
    // Every shard bigger than a few flush intervals was flushed on the way (its close flushes the rest).
    const big = plan.shards.filter((s) => s.bytes > 3 * flushEvery).map((s) => s.file);
    expect(big.length).toBeGreaterThan(2);
    for (const f of big) expect(ok.seen.shardsFlushed).toContain(f);
    expect(compareChild(await expectedChild(file), readChild(path.join(dir, 'engine-flush')).tensors)).toEqual([]);

    for (const [label, failing] of [
      ['flush', watched(path.join(dir, 'engine-flush-fails'), Math.ceil(ok.seen.flushes / 2))],
      ['close', watched(path.join(dir, 'engine-close-fails'), 0, big[1]!)],
    ] as const) {
      const outDir = path.join(dir, `engine-${label}-fails`);
      const err = (await executeMerge(plan, failing.folder, pool, { chunkElements: 1000, flushEvery }).catch((e: unknown) => e)) as MergeInterrupted;
      expect(String(err), label).toMatch(label === 'flush' ? /EIO: i\/o error, fdatasync/ : /EIO: i\/o error, close/);
      expect(finalLooking(outDir), label).toEqual([]);
      // Only shards journaled complete stay, and they are whole: the journal names exactly them.
      const kept = err instanceof MergeInterrupted ? err.kept.shards : 0;
      const partial = filesIn(outDir).filter((f) => f.endsWith('.partial'));
      expect(partial, label).toEqual(plan.shards.slice(0, kept).map((s) => `${s.file}.partial`));
      if (label === 'close') expect(kept).toBe(plan.shards.findIndex((s) => s.file === big[1]));
    }
  });

  it("refuses when the output folder lacks the space the child needs, creating nothing; the child's size is enough where files are written in place", async () => {
    const dir = dirs['mixtral-pair']!;
    const { parents, recipe } = await open(writeRecipe(dir, 'space.yaml', 'parents: {base: ./base}\n'));
    const plan = await planMerge(recipe, parents);
    const real = openNodeOutputFolder(path.join(dir, 'engine-space'));
    const tiny: OutputFolder = Object.assign(Object.create(Object.getPrototypeOf(real)), real, { freeBytes: async () => 1000 });
    await expect(executeMerge(plan, tiny, pool)).rejects.toThrow(/not enough free space/);
    expect(existsSync(path.join(dir, 'engine-space'))).toBe(false);
    // Just the child's size is enough where files are written in place; where each takes its size
    // twice while written (the browser's swap files), the shards written at once must fit again.
    const exact: OutputFolder = Object.assign(Object.create(Object.getPrototypeOf(real)), real, { freeBytes: async () => plan.totalBytes });
    await executeMerge(plan, exact, pool);
    expect(compareChild(await expectedChild(path.join(dir, 'space.yaml')), readChild(path.join(dir, 'engine-space')).tensors)).toEqual([]);
    const swapping = (outDir: string) => {
      const r = openNodeOutputFolder(outDir);
      return Object.assign(Object.create(Object.getPrototypeOf(r)), r, { freeBytes: async () => plan.totalBytes, swapsWhileWriting: true }) as OutputFolder;
    };
    await expect(executeMerge(plan, swapping(path.join(dir, 'engine-space-swap')), pool)).rejects.toThrow(
      new RegExp(`needs ${plan.totalBytes + Math.max(...plan.shards.map((s) => s.bytes))} bytes while written, ${plan.totalBytes} are free`),
    );
    expect(existsSync(path.join(dir, 'engine-space-swap'))).toBe(false);
  });
});

describe("the runners' memory", () => {
  /** A pair holding one BF16 expert tensor of rows × 1024 (the bench's one-tensor model), under `dir`. */
  function oneTensorPair(dir: string, rows: number): void {
    const cols = 1024;
    for (const [i, side] of ['base', 'donor'].entries()) {
      const d = path.join(dir, side);
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'one_tensor_moe', num_hidden_layers: 1, hidden_size: cols, num_local_experts: 1 }));
      const name = 'model.layers.0.mlp.experts.0.down_proj.weight';
      const { header } = buildSafetensorsHeader([{ name, dtype: 'BF16', shape: [rows, cols], length: rows * cols * 2 }], { format: 'pt' });
      const data = new Uint16Array(rows * cols);
      for (let k = 0; k < data.length; k++) data[k] = 0x3c00 | ((k * 7 + i) & 0x7f); // finite values near 2^-7
      writeFileSync(path.join(d, 'model.safetensors'), Buffer.concat([header, new Uint8Array(data.buffer)]));
    }
  }

  it("is what the runner's WASM memory holds, and the stripe sets it, not the tensor: 1 M values or 4 M take the same", async () => {
    const wasm = new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm')));
    const held: number[] = [];
    for (const rows of [1024, 4096]) {
      const dir = mkdtempSync(path.join(tmpdir(), 'moe-memory-'));
      try {
        oneTensorPair(dir, rows);
        const { parents, recipe } = await open(writeRecipe(dir, 'mix.yaml', 'parents: {base: ./base, donor: ./donor}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0.5, donor: 0.5}\n'));
        const m = await instantiateKernelsFromBytes(wasm);
        const one = createKernelPool([localEndpoint(m)], { inProcess: true });
        const report = await executeMerge(await planMerge(recipe, parents), openNodeOutputFolder(path.join(dir, 'child')), one);
        expect(report.mixed).toBe(1);
        expect(report.runnerMemory).toBe(m.x.memory.buffer.byteLength);
        held.push(report.runnerMemory);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    // A million values per stripe: 2 MB of BF16 from each parent and 2 MB out, besides the module's own.
    expect(held[1]).toBe(held[0]);
    expect(held[0]).toBeGreaterThan(4 << 20);
    expect(held[0]).toBeLessThan(64 << 20);
  });
});
