// The families of 2025–26, their layouts and formats, end to end through the CLI: each fixture
// (written as the release is, see app/fixtures/families.ts) opens with the roles its loader gives
// it, inspect states its router and exact edits, and merges — mixes, conversions, expert regions
// inside fused tensors, prune, transplant and add, across layouts and formats — match the
// independent reference merger byte for byte.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { FAMILY_PRESETS, type FamilyManifest } from '../app/fixtures/families.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import { openNodeModelFolder, type NodeModelFolder } from '../app/cli/node-io.ts';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { filesIn, presetDir, runCli, writeRecipe } from './support/cli.ts';

const dirs: Record<string, string> = {};
const folders: NodeModelFolder[] = [];

beforeAll(async () => {
  for (const p of Object.keys(FAMILY_PRESETS)) dirs[p] = await presetDir(p);
  // The main generator's DeepSeek-V3 pair, for group-limited routing.
  dirs['deepseek-v3-fp8-pair'] = await presetDir('deepseek-v3-fp8-pair');
}, 120_000);

afterAll(async () => {
  for (const f of folders) await f.close();
});

function manifests(preset: string): Record<string, FamilyManifest> {
  return JSON.parse(readFileSync(path.join(dirs[preset]!, 'fixture-manifest.json'), 'utf8')).parents;
}

/** A recipe over a preset's parents (their folders are named by the parents). */
function recipe(preset: string, name: string, body: string): string {
  const parents = Object.keys(FAMILY_PRESETS[preset]?.parents ?? {});
  return writeRecipe(dirs[preset]!, name, `parents: {${parents.map((p) => `${p}: ./${p}`).join(', ')}}\n${body}`);
}

async function mergeAndCheck(file: string, out: string, args: string[] = []): Promise<string> {
  const r = runCli(['merge', file, '-o', out, ...args]);
  expect(r.stderr).not.toContain('error');
  expect(r.status).toBe(0);
  expect(compareChild(await expectedChild(file), readChild(out).tensors)).toEqual([]);
  return r.stdout + r.stderr;
}

describe('every family fixture opens with its loader\'s roles', () => {
  for (const preset of Object.keys(FAMILY_PRESETS)) {
    it(preset, async () => {
      for (const [name, m] of Object.entries(manifests(preset))) {
        const folder = await openNodeModelFolder(m.dir);
        folders.push(folder);
        const model = await openModel(folder);
        expect(model.arch.name, name).toBe(m.family);
        expect(model.warnings, name).toBeUndefined();
        const l = model.layout;
        expect({ ...l, mtpLayers: l.mtpLayers ?? [] }).toMatchObject({ ...m.layout });
        // Every stored tensor belongs to the weight the generator meant, with its role.
        const weights = new Set(m.tensors.map((t) => t.weight));
        expect(model.weights.length, name).toBe(weights.size);
        for (const t of m.tensors) {
          const w = model.byName.get(t.weight);
          expect(w, `${name}: ${t.weight}`).toBeDefined();
          const stored = [w!.data.name, ...w!.companions.map((c) => c.record.name)];
          expect(stored, `${name}: ${t.weight}`).toContain(t.name);
          expect(w!.role.kind, t.weight).toBe(t.kind);
          if (t.layer !== undefined) expect(w!.role.layer, t.weight).toBe(t.layer);
          if (t.expert !== undefined) expect(w!.role.expert, t.weight).toBe(t.expert);
          if (t.proj !== undefined) expect(w!.role.proj, t.weight).toBe(t.proj);
        }
        // Every expert of every layer has its projections, wherever they are stored.
        for (const [layer, le] of model.experts) {
          expect(le.experts, `layer ${layer}`).toBe(m.layout.experts);
          for (const parts of le.parts) expect(parts.filter((p) => !p.bias).map((p) => p.proj).sort()).toEqual(m.family === 'nemotron_h' ? ['down', 'up'] : ['down', 'gate', 'up']);
        }
      }
    });
  }
});

describe('inspect states the router, the exact edits and the layout of each family', () => {
  const verdicts = (dir: string) => {
    const s = JSON.parse(runCli(['inspect', dir, '--json']).stdout);
    return { s, edits: Object.fromEntries(s.edits.map((e: { action: string; available: boolean; exact: boolean }) => [e.action, e.available ? (e.exact ? 'exact' : 'inexact') : 'refused'])) };
  };
  it('selection bias: off exact; on exact without group-limited routing, refused with it', () => {
    const glm = verdicts(path.join(dirs['glm4-moe-fp8-pair']!, 'fp8'));
    expect(glm.s.routerBias).toBe('selection');
    expect(glm.edits).toEqual({ off: 'exact', on: 'exact', mute: 'exact', remove: 'exact' });
    expect(glm.s.formats).toHaveProperty(['FP8 E4M3, per-channel scales (BF16)']);
    const ds = verdicts(path.join(dirs['deepseek-v3-fp8-pair']!, 'v3'));
    expect(ds.edits.on).toBe('refused');
    const text = runCli(['inspect', path.join(dirs['deepseek-v3-fp8-pair']!, 'v3')]).stdout;
    expect(text).toMatch(/router +selection-only bias \(added to the scores only to choose experts\); group-limited: 4 groups, 2 chosen per token/);
    expect(text).toMatch(/on +refused: routing is group-limited \(n_group 4, topk_group 2\): forcing an expert also forces its group/);
  });
  it('gpt-oss: a logit bias (off exact, on refused), MXFP4 experts fused and interleaved', () => {
    const g = verdicts(path.join(dirs['gpt-oss-trio']!, 'mxfp4'));
    expect(g.s.routerBias).toBe('logits');
    expect(g.edits).toEqual({ off: 'exact', on: 'refused', mute: 'exact', remove: 'exact' });
    expect(g.s.expertLayout).toBe('fused');
    expect(g.s.fusedLayouts).toContain('model.layers.L.mlp.experts.gate_up_proj [4, 64, 64]: gate, up interleaved');
    expect(Object.keys(g.s.formats)).toContain('MXFP4 (E2M1, E8M0 scales per 32)');
  });
  it('no bias (Qwen, Llama-4, DBRX, …): mute and remove only', () => {
    for (const [preset, parent] of [['qwen3-moe-layouts', 'resaved'], ['llama4-pair', 'base'], ['dbrx-pair', 'base']] as const) {
      const v = verdicts(path.join(dirs[preset]!, parent));
      expect(v.s.routerBias).toBe('none');
      expect(v.edits).toEqual({ off: 'refused', on: 'refused', mute: 'exact', remove: 'exact' });
      expect(v.s.expertLayout).toBe('fused');
    }
    const kimi = verdicts(path.join(dirs['kimi-k2-thinking-pair']!, 'int4'));
    expect(Object.keys(kimi.s.formats)).toContain('INT4 pack-quantized, groups of 32 (BF16 scales)');
    expect(kimi.s.quantization).toBe('compressed-tensors');
  });
});

describe('merges across layouts and formats, bit for bit against the reference', () => {
  it('per-expert base, fused donor: a region of a fused tensor copied or mixed into per-expert tensors', async () => {
    const f = recipe('qwen3-moe-layouts', 'r-layouts.yaml', `base: hub
rules:
  - select: {kind: routed_expert, layers: 1, experts: [1, 2], proj: up}
    weights: {hub: 0.5, tuned: 0.5}
  - select: {kind: routed_expert, layers: 0, experts: 3}
    from: tuned
`);
    const log = await mergeAndCheck(f, path.join(dirs['qwen3-moe-layouts']!, 'out-layouts'));
    expect(log).toMatch(/tuned: keeps its routed experts fused, the base one tensor per expert: compatible/);
  });

  it('fused base: one expert\'s projection inside fused tensors, prune, transplant (router from the source) and add', async () => {
    const f = recipe('qwen3-moe-layouts', 'r-restructure.yaml', `base: resaved
rules:
  - select: {kind: routed_expert, layers: 1, experts: [1, 2], proj: up}
    weights: {resaved: 0.5, tuned: 0.5}
  - select: {kind: routed_expert, layers: 0, experts: 3}
    from: hub
experts:
  remove:
    - {layers: all, experts: [0]}
  transplant:
    - {layer: 1, expert: 2, from: {parent: tuned, layer: 0, expert: 1}, router: source}
  add:
    - {layers: all, from: {parent: tuned, expert: 3}}
`);
    const out = path.join(dirs['qwen3-moe-layouts']!, 'out-restructure');
    await mergeAndCheck(f, out);
    // The child's numbering: 4 experts again (one removed, one added), shapes [4, 2I, H].
    const { tensors } = readChild(out);
    expect(tensors.get('model.layers.0.mlp.experts.gate_up_proj')!.shape).toEqual([4, 64, 64]);
    expect(tensors.get('model.layers.0.mlp.gate.weight')!.shape).toEqual([4, 64]);
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    // Expert 0 removed: layer 1's slot for expert 2 is child expert 1; the added expert is child 3.
    expect(card).toContain('| 1 | 1 | tuned layer 0 expert 1 (transplant 1, in place of expert 2; router row from the source) |');
    expect(card).toContain('| 0 | 3 | tuned layer 0 expert 3 (add 1) |');
    expect(card).toContain('| 1 | 0 | expert 1 of resaved (renumbered) |');
    // The same merge with the runners in this process writes the same bytes.
    await mergeAndCheck(f, path.join(dirs['qwen3-moe-layouts']!, 'out-restructure-0'), ['--workers', '0']);
    const shard = 'model-00001-of-00001.safetensors';
    expect(readFileSync(path.join(out, shard)).equals(readFileSync(path.join(dirs['qwen3-moe-layouts']!, 'out-restructure-0', shard)))).toBe(true);
  });

  it('gpt-oss MXFP4: mixes re-encoded to MXFP4 (interleaved gate/up regions), a BF16 donor, an exact off edit', async () => {
    await mergeAndCheck(recipe('gpt-oss-trio', 'r-mx.yaml', `rules:
  - select: {kind: routed_expert, layers: 0}
    weights: {mxfp4: 0.5, tuned: 0.5}
  - select: {kind: routed_expert, layers: 1, experts: 2}
    weights: {mxfp4: 0.25, bf16: 0.75}
  - select: {kind: routed_expert, layers: 1, experts: 3, proj: up}
    from: tuned
edits:
  - {layer: 1, expert: 0, action: off}
`), path.join(dirs['gpt-oss-trio']!, 'out-mx'));
  });

  it('gpt-oss MXFP4 to BF16: dequantized into the BF16 layout (transposed), quantization_config dropped', async () => {
    const out = path.join(dirs['gpt-oss-trio']!, 'out-bf16');
    const parents = '{mxfp4: ./mxfp4, tuned: ./tuned}';
    await mergeAndCheck(writeRecipe(dirs['gpt-oss-trio']!, 'r-bf16.yaml', `parents: ${parents}\nrules:\n  - select: {kind: routed_expert}\n    weights: {mxfp4: 0.5, tuned: 0.5}\noutput: {dtype: bf16}\n`), out);
    const { tensors } = readChild(out);
    expect(tensors.get('model.layers.0.mlp.experts.gate_up_proj')).toMatchObject({ dtype: 'BF16', shape: [4, 64, 64] });
    expect(tensors.get('model.layers.0.mlp.experts.down_proj')).toMatchObject({ dtype: 'BF16', shape: [4, 32, 64] });
    expect([...tensors.keys()].some((n) => n.endsWith('_blocks'))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
  });

  it('a BF16 base takes MXFP4 experts (decoded) and drops one', async () => {
    await mergeAndCheck(writeRecipe(dirs['gpt-oss-trio']!, 'r-from-mx.yaml', `parents: {bf16: ./bf16, mxfp4: ./mxfp4}
rules:
  - select: {kind: routed_expert, experts: "1-2"}
    from: mxfp4
experts:
  remove:
    - {layers: all, experts: 3}
`), path.join(dirs['gpt-oss-trio']!, 'out-from-mx'));
  });

  it('Kimi-K2-Thinking INT4: mixed and re-packed (groups of 32), on/mute edits; and dequantized to BF16', async () => {
    const p = dirs['kimi-k2-thinking-pair']!;
    await mergeAndCheck(recipe('kimi-k2-thinking-pair', 'r-int4.yaml', `rules:
  - select: {kind: routed_expert}
    weights: {int4: 0.5, bf16: 0.5}
edits:
  - {layer: 1, expert: 2, action: on}
  - {layer: 1, expert: 0, action: mute}
`), path.join(p, 'out-int4'));
    const out = path.join(p, 'out-int4-bf16');
    await mergeAndCheck(recipe('kimi-k2-thinking-pair', 'r-int4-bf16.yaml', `rules:\n  - select: {kind: routed_expert, experts: 1}\n    from: bf16\noutput: {dtype: bf16}\n`), out);
    expect(readChild(out).tensors.get('model.layers.1.mlp.experts.0.up_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [32, 64] });
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
  });

  it('GLM-4.5 FP8 per-channel: mixed with a BF16 donor under a threshold; MiniMax-M2 FP8 blocks with prune and off', async () => {
    const log = await mergeAndCheck(recipe('glm4-moe-fp8-pair', 'r-glm.yaml', `rules:
  - select: {kind: [routed_expert, attention]}
    weights: {fp8: 0.6, bf16: 0.4}
threshold: {metric: rms_diff, below: 0.0005}
`), path.join(dirs['glm4-moe-fp8-pair']!, 'out-glm'));
    expect(log).toMatch(/threshold rms_diff < 0.0005: \d+ of 100 tensors kept from fp8/);
    await mergeAndCheck(recipe('minimax-m2-fp8-pair', 'r-mm.yaml', `rules:
  - select: {kind: routed_expert, proj: [gate, up]}
    weights: {base: 0.5, tuned: 0.5}
edits:
  - {layer: 1, expert: 1, action: off}
experts:
  remove:
    - {layers: all, experts: [2]}
`), path.join(dirs['minimax-m2-fp8-pair']!, 'out-mm'));
  });

  it('transposed and 2-D fused layouts: Qwen3-VL, Llama-4 (transplant, add), DBRX (prune), Granite', async () => {
    await mergeAndCheck(recipe('qwen3-vl-moe-pair', 'r-vl.yaml', `rules:
  - select: {kind: routed_expert, experts: 1}
    weights: {base: 0.5, tuned: 0.5}
  - select: {kind: routed_expert, experts: 2, proj: gate}
    from: tuned
experts:
  remove:
    - {layers: all, experts: 3}
`), path.join(dirs['qwen3-vl-moe-pair']!, 'out-vl'));
    const l4 = path.join(dirs['llama4-pair']!, 'out-l4');
    await mergeAndCheck(recipe('llama4-pair', 'r-l4.yaml', `rules:
  - select: {kind: routed_expert, proj: up}
    weights: {base: 0.3, tuned: 0.7}
experts:
  transplant:
    - {layer: 1, expert: 0, from: {parent: tuned, expert: 3}}
  add:
    - {layers: 1, from: {parent: tuned, expert: 1}}
`), l4);
    expect(JSON.parse(readFileSync(path.join(l4, 'config.json'), 'utf8')).text_config.num_local_experts).toBe(5);
    const dbrx = path.join(dirs['dbrx-pair']!, 'out-dbrx');
    await mergeAndCheck(recipe('dbrx-pair', 'r-dbrx.yaml', `rules:
  - select: {kind: routed_expert, experts: [0, 2]}
    weights: {base: 0.5, tuned: 0.5}
experts:
  remove:
    - {layers: all, experts: 1}
`), dbrx);
    expect(JSON.parse(readFileSync(path.join(dbrx, 'config.json'), 'utf8')).ffn_config.moe_num_experts).toBe(3);
    expect(readChild(dbrx).tensors.get('transformer.blocks.0.ffn.experts.mlp.w2')!.shape).toEqual([3 * 32, 64]);
    await mergeAndCheck(recipe('granitemoe-pair', 'r-granite.yaml', `rules:
  - select: {kind: routed_expert, proj: down}
    from: tuned
  - select: {kind: routed_expert, experts: 1}
    weights: {base: 0.5, tuned: 0.5}
`), path.join(dirs['granitemoe-pair']!, 'out-granite'));
  });

  it('Qwen3.5 (fused layers and a per-expert MTP block: `all` prunes both), ERNIE [1, E] bias edits, Nemotron-H up/down experts', async () => {
    await mergeAndCheck(recipe('qwen3-5-moe-pair', 'r-q35.yaml', `rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, tuned: 0.5}
experts:
  remove:
    - {layers: all, experts: 0}
  add:
    - {layers: all, from: {parent: tuned, expert: 2}}
`), path.join(dirs['qwen3-5-moe-pair']!, 'out-q35'));
    const ernie = path.join(dirs['ernie-4-5-moe-pair']!, 'out-ernie');
    await mergeAndCheck(recipe('ernie-4-5-moe-pair', 'r-ernie.yaml', `rules:
  - select: {kind: routed_expert}
    from: tuned
edits:
  - {layer: 1, expert: 3, action: off}
  - {layer: 2, expert: 0, action: on}
experts:
  remove:
    - {layers: "1-2", experts: 1}
`), ernie);
    expect(readChild(ernie).tensors.get('model.layers.1.mlp.moe_statics.e_score_correction_bias')!.shape).toEqual([1, 3]);
    expect(JSON.parse(readFileSync(path.join(ernie, 'config.json'), 'utf8')).moe_num_experts).toBe(3);
    await mergeAndCheck(recipe('nemotron-h-pair', 'r-nemo.yaml', `rules:
  - select: {kind: routed_expert, layers: 4}
    weights: {base: 0.5, tuned: 0.5}
edits:
  - {layer: 2, expert: 1, action: on}
`), path.join(dirs['nemotron-h-pair']!, 'out-nemo'));
  });

  it('NVFP4 is copied byte for byte (and pruned), never decoded', async () => {
    const p = dirs['qwen3-moe-nvfp4-pair']!;
    await mergeAndCheck(recipe('qwen3-moe-nvfp4-pair', 'r-nv.yaml', `rules:
  - select: {kind: attention}
    from: bf16
experts:
  remove:
    - {layers: all, experts: 1}
`), path.join(p, 'out-nv'));
    const r = runCli(['merge', recipe('qwen3-moe-nvfp4-pair', 'r-nv-mix.yaml', `rules:\n  - select: {kind: routed_expert}\n    weights: {nvfp4: 0.5, bf16: 0.5}\n`), '-o', path.join(p, 'out-nv-mix')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is stored as NVFP4 \(modelopt\) in the base, a format MoE Studio copies but never decodes, so it cannot mix it/);
    expect(filesIn(path.join(p, 'out-nv-mix'))).toEqual([]);
  });

  it('an expert donor from another model need not share the base\'s skeleton (MEA: a math expert into a general MoE)', async () => {
    const dir = dirs['more-families']!;
    const hub = path.join(dirs['qwen3-moe-layouts']!, 'hub');
    const f = writeRecipe(dir, 'r-donor.yaml', `parents: {hub: ${hub}, phi: ./phimoe}
experts:
  add:
    - {layers: all, from: {parent: phi, layer: 0, expert: 1}}
  transplant:
    - {layer: 1, expert: 0, from: {parent: phi, expert: 2}, router: source}
`);
    const log = await mergeAndCheck(f, path.join(dir, 'out-donor'));
    expect(log).toContain('"phi" gives experts only (transplant, add): only those experts must fit the base, not its whole skeleton');
  });
});

describe('expert changes that cannot hold are refused before anything is written', () => {
  const refuse = (dir: string, name: string, yaml: string, why: RegExp) => {
    const out = path.join(dir, `out-${name}`);
    const r = runCli(['merge', writeRecipe(dir, `${name}.yaml`, yaml), '-o', out]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(why);
    expect(existsSync(out)).toBe(false);
  };
  it('uneven layers, too few experts, every expert, group-limited routing, a missing router bias, a removed edit', () => {
    const q = dirs['qwen3-moe-layouts']!;
    refuse(q, 'uneven', `parents: {hub: ./hub}\nexperts:\n  remove:\n    - {layers: 0, experts: 1}\n`, /every MoE layer must end with the same number of experts .*would have 3 in layer 0; 4 in layer 1/);
    refuse(q, 'few', `parents: {hub: ./hub}\nexperts:\n  remove:\n    - {layers: all, experts: "0-2"}\n`, /the child would have 1 experts per layer, fewer than the 2 each token is routed to/);
    refuse(q, 'none', `parents: {hub: ./hub}\nexperts:\n  remove:\n    - {layers: all, experts: all}\n`, /remove every expert/);
    refuse(q, 'range', `parents: {hub: ./hub}\nexperts:\n  remove:\n    - {layers: all, experts: 9}\n`, /experts.remove 1: expert 9 is out of range: the base "hub" has 4 experts per layer/);
    refuse(q, 'edit', `parents: {hub: ./hub}\nedits:\n  - {layer: 0, expert: 1, action: mute}\nexperts:\n  remove:\n    - {layers: all, experts: 1}\n`, /edit 1 .*: that expert is removed/);
    const d = dirs['deepseek-v3-fp8-pair']!;
    refuse(d, 'groups', `parents: {v3: ./v3}\nexperts:\n  remove:\n    - {layers: all, experts: 0}\n`, /routing is group-limited \(n_group 4: experts in groups of 2\), and each group must lose the same number of experts, but the groups would lose 1, 0, 0, 0/);
    refuse(d, 'groups-of-one', `parents: {v3: ./v3}\nexperts:\n  remove:\n    - {layers: all, experts: [0, 2, 4, 6]}\n`, /the child would have 1 expert per group \(n_group 4\), but group-limited routing scores each group by the sum of its two best experts, so every group needs at least 2/);
    refuse(d, 'groups-add', `parents: {v3: ./v3, r1: ./r1}\nexperts:\n  add:\n    - {layers: all, from: {parent: r1, expert: 0}}\n`, /experts.add: routing is group-limited .*shift every group boundary/);
    const m = dirs['minimax-m2-fp8-pair']!;
    const hub = path.join(q, 'hub');
    refuse(m, 'no-bias', `parents: {base: ./base, q: ${hub}}\nexperts:\n  add:\n    - {layers: all, from: {parent: q, expert: 0}}\n`, /experts.add 1 takes .*e_score_correction_bias row 0 from "q", which has no router bias in layer 0/);
  });
  it('a transplant of another shape names the entry and both shapes', () => {
    const q = dirs['qwen3-moe-layouts']!;
    const other = path.join(dirs['qwen3-5-moe-pair']!, 'base');
    refuse(q, 'shape', `parents: {hub: ./hub, e: ${other}}\nexperts:\n  transplant:\n    - {layer: 0, expert: 0, from: {parent: e, layer: 1, expert: 0}}\n`,
      /experts.transplant 1: layer 1 expert 0 gate is 48 × 64 in "e" \(model.language_model.layers.1.mlp.experts.gate_up_proj\), but 32 × 64 in the child \(base "hub"\)/);
  });
});

describe('diff compares experts across layouts', () => {
  it('a fused re-save of a per-expert model differs in nothing, region by region', () => {
    const q = dirs['qwen3-moe-layouts']!;
    const r = runCli(['diff', path.join(q, 'hub'), path.join(q, 'resaved'), '--json']);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.skipped).toEqual([]);
    expect(j.tensors.length).toBeGreaterThan(0);
    for (const t of j.tensors) expect(t.rms_diff, t.name).toBe(0);
    const fused = runCli(['diff', path.join(q, 'resaved'), path.join(q, 'tuned'), '--json']);
    const names = JSON.parse(fused.stdout).tensors.map((t: { name: string }) => t.name);
    expect(names).toContain('model.layers.1.mlp.experts.gate_up_proj[2].up');
    expect(names).toContain('model.layers.1.mlp.experts.down_proj[3].down');
  });
});
