// A mergekit `merge_method: linear` config, run by the CLI as a recipe. The child is checked
// against the scalar reference merger given a recipe the test writes itself, one rule per tensor,
// with each tensor's weights read from the config the way mergekit reads them (per model, the
// first `filter` that is a substring of the name, else the entry without one; normalized to sum 1).
// The converter under test (app/engine/recipe/mergekit.ts) is not imported.
import { describe, expect, it, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { presetDir, runCli, writeRecipe } from './support/cli.ts';

let dir = '';
beforeAll(async () => {
  dir = await presetDir('mixtral-pair');
});

const CONFIG = `
merge_method: linear
base_model: ./base
models:
  - model: ./base
    parameters:
      weight:
        - filter: self_attn
          value: 0.75
        - filter: block_sparse_moe
          value: 1
        - value: 1
  - model: ./instruct
    parameters:
      weight:
        - filter: self_attn
          value: 0.25
        - filter: block_sparse_moe
          value: 3
        - value: 0
dtype: bfloat16
tokenizer_source: base
`;

/** mergekit's per-tensor weights for a linear merge (independent reading of the config). */
function mergekitWeights(config: { models: { model: string; parameters: { weight: { filter?: string; value: number }[] } }[] }, name: string): number[] {
  const raw = config.models.map((m) => (m.parameters.weight.find((e) => e.filter !== undefined && name.includes(e.filter)) ?? m.parameters.weight.find((e) => e.filter === undefined))!.value);
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / sum);
}

const escape = (s: string) => s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');

describe('mergekit linear configs', () => {
  it('run as a recipe: the child equals the reference given mergekit\'s per-tensor weights; what was left out is said', async () => {
    const file = writeRecipe(dir, 'mergekit.yml', CONFIG);
    const out = path.join(dir, 'out-mergekit');
    const r = runCli(['merge', file, '-o', out]);
    expect(r.stderr).not.toContain('error');
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('mergekit.yml (mergekit config): tokenizer_source: the child takes the base');
    expect(r.stderr).toContain('dtype bfloat16');

    // The same child from a recipe the test writes: one rule per tensor of the child.
    const { tensors } = readChild(out);
    const config = parseYaml(CONFIG);
    const rules: string[] = [];
    for (const name of [...tensors.keys()].sort()) {
      const [wb, wi] = mergekitWeights(config, name);
      const take = wi === 0 ? 'from: base' : wb === 0 ? 'from: instruct' : `weights: {base: ${wb}, instruct: ${wi}}`;
      rules.push(`  - select: {name: ${JSON.stringify(`^${escape(name)}$`)}}\n    ${take}`);
    }
    const mine = writeRecipe(dir, 'per-tensor.yaml', ['parents: {base: ./base, instruct: ./instruct}', 'base: base', 'output: {dtype: bf16}', 'rules:', ...rules, ''].join('\n'));
    expect(compareChild(await expectedChild(mine), tensors)).toEqual([]);
    // The child's recipe (written beside it) is the mapped one: a rule per filter, then the rest from the base.
    const written = parseYaml(readFileSync(path.join(out, 'moe-studio-recipe.yaml'), 'utf8')) as { rules: { select: { name?: string }; weights?: Record<string, number>; from?: string }[] };
    expect(written.rules.map((x) => x.select.name ?? null)).toEqual(['self_attn', 'block_sparse_moe', null]);
    expect(written.rules[1]!.weights).toEqual({ base: 0.25, instruct: 0.75 });
    expect(written.rules[2]!.from).toBe('base');
  });

  it('refuses what has no recipe equivalent, naming it', () => {
    const cases: [string, string][] = [
      ['merge_method: ties\nmodels: [{model: ./base, parameters: {weight: 1}}]\n', 'merge_method "ties" has no recipe equivalent'],
      ['merge_method: linear\nslices: []\nmodels: [{model: ./base, parameters: {weight: 1}}]\n', '`slices`'],
      ['merge_method: linear\nmodels:\n  - {model: ./base, parameters: {weight: [0, 0.5, 1]}}\n  - {model: ./instruct, parameters: {weight: 1}}\n', 'is a gradient'],
      ['merge_method: linear\nparameters: {normalize: false}\nmodels:\n  - {model: ./base, parameters: {weight: 1}}\n  - {model: ./instruct, parameters: {weight: 1}}\n', 'normalize: false with weights summing to 2'],
      ['merge_method: linear\nmodels:\n  - {model: ./base+./lora, parameters: {weight: 1}}\n', 'applies a LoRA'],
      ['merge_method: linear\nmodels:\n  - {model: ./base}\n  - {model: ./instruct, parameters: {weight: 1}}\n', 'models[0]: no weight'],
    ];
    for (const [yaml, message] of cases) {
      const file = writeRecipe(dir, 'bad-mergekit.yml', yaml);
      const r = runCli(['merge', file, '-o', path.join(dir, 'out-bad')]);
      expect(r.status, yaml).not.toBe(0);
      expect(r.stderr, yaml).toContain(message);
      expect(r.stderr, yaml).toContain('bad-mergekit.yml');
    }
  });
});
