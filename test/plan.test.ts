// The planner: what it decides before a byte is written, and what it refuses.
import { describe, it, expect, beforeAll } from 'vitest';
import path from 'node:path';
import { openModel } from '../app/engine/model/open-model.ts';
import type { Model } from '../app/engine/model/types.ts';
import { parseRecipe } from '../app/engine/recipe/parse.ts';
import { planMerge } from '../app/engine/plan/plan.ts';
import { openNodeModelFolder } from '../app/cli/node-io.ts';
import { presetDir } from './support/cli.ts';

const parents: Record<string, Map<string, Model>> = {};

beforeAll(async () => {
  for (const [preset, names] of [['mixtral-pair', ['base', 'instruct']], ['deepseek-v3-fp8-pair', ['v3', 'r1']]] as const) {
    const dir = await presetDir(preset);
    const map = new Map<string, Model>();
    for (const n of names) map.set(n, await openModel(await openNodeModelFolder(path.join(dir, n))));
    parents[preset] = map;
  }
});

const plan = (preset: string, yaml: string) => planMerge(parseRecipe(yaml), parents[preset]!);

describe('weights as fractions', () => {
  it('"1/3" is the double nearest a third, and sums with its siblings within the tolerance', () => {
    const r = parseRecipe(`parents: {a: ./a, b: ./b, c: ./c}\nrules:\n  - select: {kind: routed_expert}\n    weights: {a: "1/3", b: 1/3, c: " 2 / 6 "}\n`);
    expect(r.rules[0]!.weights).toEqual({ a: 1 / 3, b: 1 / 3, c: 2 / 6 });
    expect(() => parseRecipe(`parents: {a: ./a}\nrules:\n  - select: {kind: norm}\n    weights: {a: "1/0"}\n`)).toThrow(/"1\/0" is not a weight \(a number ≥ 0, or a fraction such as 1\/3\)/);
    expect(() => parseRecipe(`parents: {a: ./a}\nrules:\n  - select: {kind: norm}\n    weights: {a: "one"}\n`)).toThrow(/"one" is not a weight/);
  });

  it('plans a mix with fractional weights as the same mix with their doubles', async () => {
    const frac = await plan('mixtral-pair', `parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: "2/3", instruct: "1/3"}\n`);
    const dbl = await plan('mixtral-pair', `parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: ${2 / 3}, instruct: ${1 / 3}}\n`);
    expect(frac.recipe.rules).toEqual(dbl.recipe.rules);
    expect(frac.description).toBe(dbl.description);
  });
});

describe('planMerge', () => {
  it('lays out shards within shard_size, a weight with its scale, the index last', async () => {
    const p = await plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    weights: {v3: 0.5, r1: 0.5}\noutput: {shard_size: 100KB}\n`);
    for (const s of p.shards) {
      const tensors = new Set(s.entries.map((e) => e.tensor));
      if (tensors.size > 1) expect(s.bytes).toBeLessThanOrEqual(100_000);
      for (const t of tensors) {
        // Every stored tensor of a weight (its scale too) is in the weight's shard.
        expect(s.entries.filter((e) => e.tensor === t).length).toBe(p.tensors[t]!.stored.length);
      }
    }
    // The embedding (320×200 BF16 = 128 KB) is larger than a shard: it gets one to itself.
    const emb = p.tensors.findIndex((t) => t.name === 'model.embed_tokens.weight');
    const own = p.shards.find((s) => s.entries.some((e) => e.tensor === emb))!;
    expect(new Set(own.entries.map((e) => e.tensor)).size).toBe(1);
    expect(p.files[p.files.length - 1]!.name).toBe('model.safetensors.index.json');
    expect(p.totalBytes).toBe(p.files.reduce((s, f) => s + f.bytes, 0));
  });

  it('warns about a rule that earlier rules shadow completely', async () => {
    const p = await plan('mixtral-pair', `parents: {base: ./b, instruct: ./i}\nrules:\n  - select: {kind: routed_expert}\n    from: instruct\n  - select: {kind: routed_expert, layers: 1}\n    weights: {base: 0.5, instruct: 0.5}\n`);
    expect(p.warnings.some((w) => /rule 2 .*matches 12 tensors or expert regions, but earlier rules decide all of them/.test(w))).toBe(true);
  });

  it('treats weights with a single non-zero 1 as a byte copy', async () => {
    const p = await plan('mixtral-pair', `parents: {base: ./b, instruct: ./i}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0, instruct: 1}\n`);
    const routed = p.tensors.filter((t) => t.role.kind === 'routed_expert');
    expect(routed.every((t) => t.wholeCopy && t.template.parent === 'instruct' && t.made === 'copied')).toBe(true);
  });

  it('refuses edits that cannot hold', async () => {
    const off = Array.from({ length: 7 }, (_, e) => `  - {layer: 2, expert: ${e}, action: off}`).join('\n');
    await expect(plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3}\nedits:\n${off}\n`)).rejects.toThrow(/7 experts switched off leaves fewer than the 2 chosen per token/);
    await expect(plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3}\nedits:\n  - {layer: 2, expert: 1, action: mute}\n  - {layer: 2, expert: 1, action: off}\n`)).rejects.toThrow(/also edited "mute"/);
    await expect(plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3}\nedits:\n  - {layer: 2, expert: 1, action: on}\n`)).rejects.toThrow(/"on" is not exact here: routing is group-limited/);
    await expect(plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3}\nedits:\n  - {layer: 0, expert: 1, action: off}\n`)).rejects.toThrow(/layer 0 .* has no routed experts/);
    await expect(plan('mixtral-pair', `parents: {base: ./b}\nbase: nope\n`)).rejects.toThrow(/base "nope" is not one of the parents/);
  });

  it('says in a sentence what the child will contain', async () => {
    const p = await plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    from: r1\nedits:\n  - {layer: 3, expert: 5, action: off}\n`);
    expect(p.description).toMatch(/^A v3-based child of 173 tensors .*routed expert \(96\): all from r1.*Router edits: L3\/E5 off\.$/);
  });

  it('reads index sets as YAML users write them: "2", "1, 3-4", "all"', async () => {
    const routed = (p: Awaited<ReturnType<typeof plan>>) => p.tensors.filter((t) => t.role.kind === 'routed_expert' && t.wholeCopy && t.template.parent === 'r1').map((t) => `${t.role.layer}:${t.role.expert}`);
    const rule = (layers: string, experts: string) =>
      plan('deepseek-v3-fp8-pair', `parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert, layers: ${layers}, experts: ${experts}, proj: up}\n    from: r1\n`);
    expect(new Set(routed(await rule('"2"', '"1, 3-4"')))).toEqual(new Set(['2:1', '2:3', '2:4']));
    expect(routed(await rule('all', '"0"')).sort()).toEqual(['1:0', '2:0', '3:0', '4:0']);
    await expect(rule('"3-1"', '0')).rejects.toThrow(/rule 1: layers: range "3-1" runs backwards/);
    expect(() => rule('"1;2"', '0')).toThrow(/rules\[0\]\.select\.layers: expected an integer, a list of integers, or a string of integers and ranges/);
  });
});
