// The diff engine: exact figures equal the scalar reference over whole tensors; sampled figures
// read a spread of row blocks (inside FP8 stripes) and stay within their stated error.
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, openSync, readSync, closeSync } from 'node:fs';
import path from 'node:path';
import { createKernelPool, type KernelPool } from '../app/engine/kernels/pool.ts';
import { localEndpoint } from '../app/engine/kernels/bridge.ts';
import { instantiateKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import type { Model, TensorRecord, Weight } from '../app/engine/model/types.ts';
import type { Stripe } from '../app/engine/kernels/wasm-kernels.ts';
import { diffModels, sampleBlocks } from '../app/engine/exec/diff.ts';
import { figuresOf } from '../app/engine/report/metrics.ts';
import { openNodeModelFolder } from '../app/cli/node-io.ts';
import { diffRef } from './reference/scalar.ts';
import { ROOT, presetDir } from './support/cli.ts';

let pool: KernelPool;
const models: Record<string, [Model, Model, string, string]> = {};

function bytesOf(dir: string, rec: TensorRecord): Uint8Array {
  const fd = openSync(path.join(dir, rec.file), 'r');
  const b = new Uint8Array(rec.length);
  readSync(fd, b, 0, rec.length, rec.offset);
  closeSync(fd);
  return b;
}

/** A whole weight as one stripe of its slabs' rows. */
function whole(dir: string, w: Weight): Stripe {
  const scale = w.companions.find((c) => c.role === 'scale');
  const s: Stripe = { codec: w.codec, rows: w.view.slabs * w.view.rows, cols: w.view.cols, data: bytesOf(dir, w.data) };
  if (scale && w.codec.kind !== 'plain') s.scales = bytesOf(dir, scale.record);
  return s;
}

beforeAll(async () => {
  const wasm = new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm')));
  pool = createKernelPool([localEndpoint(await instantiateKernelsFromBytes(wasm)), localEndpoint(await instantiateKernelsFromBytes(wasm))], { inProcess: true });
  for (const [preset, a, b] of [['deepseek-v3-fp8-pair', 'v3', 'r1'], ['mixtral-pair', 'base', 'instruct'], ['mixed-dtype-pair', 'fp8', 'bf16']] as const) {
    const dir = await presetDir(preset);
    const da = path.join(dir, a);
    const db = path.join(dir, b);
    models[preset] = [await openModel(await openNodeModelFolder(da)), await openModel(await openNodeModelFolder(db)), da, db];
  }
});

describe('diff', () => {
  for (const preset of ['deepseek-v3-fp8-pair', 'mixtral-pair', 'mixed-dtype-pair']) {
    it(`exact figures equal the scalar reference (${preset})`, async () => {
      const [a, b, da, db] = models[preset]!;
      const { tensors, skipped } = await diffModels(a, b, pool, { mode: 'exact' });
      expect(skipped).toEqual([]);
      expect(tensors.length).toBe(a.weights.length);
      for (const t of tensors) {
        const ref = figuresOf(diffRef(whole(da, a.byName.get(t.name)!), whole(db, b.byName.get(t.name)!)));
        expect(t.sampled).toBe(false);
        expect(t.rmsDiff).toBeCloseTo(ref.rmsDiff, 12);
        expect(t.cosine).toBeCloseTo(ref.cosine, 12);
      }
    });
  }

  it('sampled figures stay within their stated error, identical tensors read as identical', async () => {
    const [a, b] = models['deepseek-v3-fp8-pair']!;
    const exact = new Map((await diffModels(a, b, pool, { mode: 'exact' })).tensors.map((t) => [t.name, t]));
    const progress: number[] = [];
    const { tensors } = await diffModels(a, b, pool, { mode: 'sampled', sampleBytes: 1024, onProgress: (d) => progress.push(d) });
    expect(progress[progress.length - 1]).toBe(tensors.length);
    const sampled = tensors.filter((t) => t.sampled);
    expect(sampled.length).toBeGreaterThan(50);
    for (const t of sampled) {
      const e = exact.get(t.name)!;
      expect(t.fraction).toBeLessThan(1);
      if (e.rmsDiff === 0) expect(t.rmsDiff).toBe(0);
      else expect(Math.abs(t.rmsDiff - e.rmsDiff) / e.rmsDiff).toBeLessThanOrEqual(Math.max(0.1, 5 * t.relError));
    }
  });

  it('sampled rows inside an FP8 block are read alone and give the reference figures of exactly those rows', async () => {
    const [a, b, da, db] = models['deepseek-v3-fp8-pair']!;
    const opts = { sampleBytes: 1024, sampleBlocks: 4 };
    const { tensors } = await diffModels(a, b, pool, { mode: 'sampled', ...opts });
    // FP8 weights of more than one 128-row block: their sample rows start inside a block.
    const fp8 = tensors.filter((t) => a.byName.get(t.name)?.codec.kind === 'fp8' && a.byName.get(t.name)!.view.rows > 128 && a.byName.get(t.name)!.view.slabs === 1);
    expect(fp8.length).toBeGreaterThan(10);
    for (const t of fp8) {
      const wa = a.byName.get(t.name)!;
      const [sa, sb] = [whole(da, wa), whole(db, b.byName.get(t.name)!)];
      const { rows, cols } = wa.view;
      const scaleCols = sa.scales!.length / 4 / Math.ceil(rows / 128);
      // Rows [at, at + count) as their own stripe, with the one scale row of their 128-row block.
      const part = (s: Stripe, at: number, count: number): Stripe => ({
        codec: s.codec, rows: count, cols,
        data: s.data.slice(at * cols, (at + count) * cols),
        scales: s.scales!.slice(Math.floor(at / 128) * scaleCols * 4, (Math.floor(at / 128) + 1) * scaleCols * 4),
      });
      const ref = { count: 0, nonFinite: 0, sumSqDiff: 0, sumSqA: 0, sumSqB: 0, dot: 0, maxAbsDiff: 0 };
      for (const blk of sampleBlocks(rows, cols, 2, opts.sampleBlocks, opts.sampleBytes)) {
        const r = diffRef(part(sa, blk.at, blk.count), part(sb, blk.at, blk.count));
        ref.count += r.count;
        ref.sumSqDiff += r.sumSqDiff;
        ref.sumSqA += r.sumSqA;
        ref.sumSqB += r.sumSqB;
        ref.dot += r.dot;
      }
      expect(t.stats.count, t.name).toBe(ref.count);
      expect(t.rmsDiff, t.name).toBeCloseTo(figuresOf(ref).rmsDiff, 12);
      expect(t.cosine, t.name).toBeCloseTo(figuresOf(ref).cosine, 12);
    }
  });

  it('sample blocks are spread over the rows and never cross a 128-row stripe', () => {
    const blocks = sampleBlocks(1000, 7168, 1, 4, 16 * 1024);
    expect(blocks).toHaveLength(4);
    for (const b of blocks) {
      expect(Math.floor(b.at / 128)).toBe(Math.floor((b.at + b.count - 1) / 128));
      expect(b.count).toBeGreaterThan(0);
    }
    expect(blocks[0]!.at).toBeLessThan(250);
    expect(blocks[3]!.at).toBeGreaterThan(750);
    expect(sampleBlocks(100, 64, 2)).toEqual([{ at: 0, count: 100 }]);
  });
});
