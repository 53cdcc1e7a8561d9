// Broken parents through the CLI: every problem is one clear error naming the file, the tensor
// and what is wrong; exit code 1; nothing is written to the output folder.
import { describe, it, expect, beforeAll } from 'vitest';
import path from 'node:path';
import { readdirSync } from 'node:fs';
import {
  breakDtypeSize, copyModel, indexNameMissingTensor, makeOverlap, setHeaderLength, truncateShard,
} from '../app/fixtures/corrupt.ts';
import { filesIn, presetDir, runCli, tempDir, writeRecipe } from './support/cli.ts';

let pristine: string;
beforeAll(async () => {
  pristine = await presetDir('mixtral-pair');
});

/** A broken copy of the base, merged with the intact donor. */
async function brokenMerge(name: string, breakIt: (dir: string, shard: string) => Promise<unknown>): Promise<{ stderr: string; out: string; shard: string }> {
  const dir = tempDir(name);
  const base = await copyModel(path.join(pristine, 'base'), path.join(dir, 'base'));
  await copyModel(path.join(pristine, 'instruct'), path.join(dir, 'instruct'));
  const shard = readdirSync(base).filter((f) => f.endsWith('.safetensors')).sort()[0]!;
  await breakIt(base, path.join(base, shard));
  const recipe = writeRecipe(dir, 'r.yaml', 'parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0.5, instruct: 0.5}\n');
  const out = path.join(dir, 'out');
  const r = runCli(['merge', recipe, '-o', out]);
  expect(r.status).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(filesIn(out)).toEqual([]);
  return { stderr: r.stderr, out, shard };
}

describe('broken parents are refused before anything is written', () => {
  it('a truncated shard', async () => {
    let tensor = '';
    const { stderr, shard } = await brokenMerge('truncated', async (_d, f) => {
      tensor = (await truncateShard(f)).tensor;
    });
    expect(stderr).toContain(shard);
    expect(stderr).toContain(tensor);
    expect(stderr).toMatch(/past the end|end of file|truncat/i);
  });

  it('a header length past the end of the file', async () => {
    const { stderr, shard } = await brokenMerge('header-length', (_d, f) => setHeaderLength(f));
    expect(stderr).toContain(shard);
    expect(stderr).toMatch(/header length/i);
  });

  it('overlapping tensor data', async () => {
    let names: string[] = [];
    const { stderr, shard } = await brokenMerge('overlap', async (_d, f) => {
      const o = await makeOverlap(f);
      names = [o.tensor, o.other];
    });
    expect(stderr).toContain(shard);
    expect(names.some((n) => stderr.includes(n))).toBe(true);
    expect(stderr).toMatch(/overlap/i);
  });

  it('a shape that does not match the dtype size', async () => {
    let tensor = '';
    const { stderr, shard } = await brokenMerge('dtype-size', async (_d, f) => {
      tensor = (await breakDtypeSize(f)).tensor;
    });
    expect(stderr).toContain(shard);
    expect(stderr).toContain(tensor);
    expect(stderr).toMatch(/BF16|bytes/);
  });

  it('an index naming a tensor its shard does not have', async () => {
    let tensor = '';
    const { stderr } = await brokenMerge('index-missing', async (d) => {
      tensor = (await indexNameMissingTensor(d)).tensor;
    });
    expect(stderr).toContain('model.safetensors.index.json');
    expect(stderr).toContain(tensor);
  });
});
