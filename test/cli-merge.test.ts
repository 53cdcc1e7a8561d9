// End to end: the built CLI merges generated checkpoints, and every tensor it writes is checked
// bit for bit against the independent scalar reference (test/support/reference-merge.ts).
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { filesIn, presetDir, runCli, writeRecipe } from './support/cli.ts';

const dirs: Record<string, string> = {};
beforeAll(async () => {
  for (const p of ['mixtral-pair', 'deepseek-v3-fp8-pair', 'deepseek-v3-triple', 'specials-f32-pair', 'specials-bf16-pair', 'specials-fp8-pair', 'mixed-dtype-pair', 'mixed-float-pair', 'qwen2-moe-pair', 'kimi-k2-pair', 'generic-pair']) {
    dirs[p] = await presetDir(p);
  }
});

/** Runs a recipe and checks the whole child against the reference; returns the CLI's stdout and the output folder. */
async function mergeAndCheck(preset: string, name: string, yaml: string, workers = 2): Promise<{ out: string; stdout: string; stderr: string }> {
  const dir = dirs[preset]!;
  const recipe = writeRecipe(dir, `${name}.yaml`, yaml);
  const out = path.join(dir, `out-${name}`);
  const r = runCli(['merge', recipe, '-o', out, '--workers', String(workers)]);
  expect(r.stderr + r.stdout).not.toContain('error');
  expect(r.status).toBe(0);
  const expected = await expectedChild(recipe);
  const { tensors, index } = readChild(out);
  expect(compareChild(expected, tensors)).toEqual([]);
  // The index: total_size is the sum of tensor bytes; every tensor mapped.
  const total = [...tensors.values()].reduce((s, t) => s + t.bytes.length, 0);
  expect(index.metadata.total_size).toBe(total);
  expect(Object.keys(index.weight_map).length).toBe(tensors.size);
  // No temporary files left; the recipe and card are there.
  const files = filesIn(out);
  expect(files.filter((f) => f.endsWith('.partial'))).toEqual([]);
  expect(files).toContain('moe-studio-recipe.yaml');
  expect(files).toContain('README.md');
  expect(files).toContain('config.json');
  expect(files).toContain('tokenizer.json');
  return { out, stdout: r.stdout, stderr: r.stderr };
}

function frontMatter(card: string): Record<string, unknown> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(card);
  if (!m) throw new Error('no front matter');
  return parseYaml(m[1]!);
}

describe('moe-studio merge, bit for bit against the reference', () => {
  it('MEA swap α=1: Mixtral base skeleton with the instruct experts', async () => {
    const { out, stdout } = await mergeAndCheck('mixtral-pair', 'swap', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    from: instruct
`);
    expect(stdout).toMatch(/wrote \d+ files/);
    // Where the workers' time went, in shares that add up to about 100.
    const shares = /^\d+ workers? busy \d+% of [\d.]+s: (computing|reading|writing|checksums) (\d+)%, (?:\w+ (\d+)%, ){2}\w+ (\d+)%$/m.exec(stdout);
    expect(shares, stdout).not.toBeNull();
    const pct = [...shares![0].split(': ')[1]!.matchAll(/(\d+)%/g)].map((x) => Number(x[1]));
    expect(Math.abs(pct.reduce((a, b) => a + b, 0) - 100)).toBeLessThanOrEqual(2);
    // The memory it took: the process's peak, and each worker's kernel memory, a part of it.
    const mem = /^memory: peak ([\d.]+) MB resident; (?:each of \d+ workers|the worker) held at most ([\d.]+) MB for its kernels$/m.exec(stdout);
    expect(mem, stdout).not.toBeNull();
    expect(Number(mem![2])).toBeGreaterThan(1);
    expect(Number(mem![1])).toBeGreaterThan(Number(mem![2]));
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    const fm = frontMatter(card);
    expect(fm.base_model).toEqual(['./base', './instruct']);
    expect(fm.tags).toEqual(['merge', 'moe-studio']);
    expect(fm.library_name).toBe('transformers');
    expect(card).toMatch(/\| routed_expert \| 24 \| 0 \| 24 \| 0 \| 0 \|/);
    // Config and tokenizer are the base's, byte for byte.
    expect(readFileSync(path.join(out, 'config.json'))).toEqual(readFileSync(path.join(dirs['mixtral-pair']!, 'base/config.json')));
    expect(readFileSync(path.join(out, 'tokenizer.json'))).toEqual(readFileSync(path.join(dirs['mixtral-pair']!, 'base/tokenizer.json')));
    // The recipe written beside the child is the one that ran.
    expect(parseYaml(readFileSync(path.join(out, 'moe-studio-recipe.yaml'), 'utf8'))).toMatchObject({
      parents: { base: './base', instruct: './instruct' },
      rules: [{ select: { kind: 'routed_expert' }, from: 'instruct' }],
    });
  });

  it('MEA α=0.5 on BF16 experts, with 1 and 2 workers giving identical bytes', async () => {
    const yaml = `
parents: {base: ./base, instruct: ./instruct}
base: base
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, instruct: 0.5}
`;
    const a = await mergeAndCheck('mixtral-pair', 'alpha05', yaml, 2);
    const b = await mergeAndCheck('mixtral-pair', 'alpha05-w0', yaml, 0);
    for (const f of filesIn(a.out)) expect(readFileSync(path.join(a.out, f))).toEqual(readFileSync(path.join(b.out, f)));
  });

  it('AoE Chimera on FP8: routed experts from R1 copied with their scales, the rest from V3', async () => {
    const { out } = await mergeAndCheck('deepseek-v3-fp8-pair', 'chimera', `
parents: {v3: ./v3, r1: ./r1}
base: v3
rules:
  - select: {kind: routed_expert}
    from: r1
output: {dtype: keep, shard_size: 200KB}
`);
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config.quantization_config.quant_method).toBe('fp8');
    // Shards respect shard_size (a tensor bigger than it would get its own).
    for (const f of filesIn(out).filter((f) => f.endsWith('.safetensors'))) {
      expect(f).toMatch(/^model-\d{5}-of-\d{5}\.safetensors$/);
      expect(statSync(path.join(out, f)).size).toBeLessThanOrEqual(200_000);
    }
  });

  it('FP8 mix α=0.5 re-quantizes every block with a fresh scale (partial edge blocks included)', async () => {
    await mergeAndCheck('deepseek-v3-fp8-pair', 'fp8-mix', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: [routed_expert, shared_expert]}
    weights: {v3: 0.3, r1: 0.7}
  - select: {kind: attention, layers: "1-2"}
    weights: {v3: 0.5, r1: 0.5}
`);
  });

  it('three parents, one of them a single model.safetensors, per-kind weights', async () => {
    const { out } = await mergeAndCheck('deepseek-v3-triple', 'three', `
parents: {v3: ./v3, r1: ./r1, v3-0324: ./v3-0324}
rules:
  - select: {kind: routed_expert, layers: [1, 3], proj: [gate, up]}
    weights: {v3: 0.2, r1: 0.5, v3-0324: 0.3}
  - select: {kind: routed_expert}
    weights: {v3: 0.333333, r1: 0.333333, v3-0324: 0.333334}
  - select: {kind: attention}
    from: v3-0324
  - select: {name: "norm"}
    weights: {v3: 0.5, v3-0324: 0.5}
`);
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(frontMatter(card).base_model).toEqual(['./v3', './r1', './v3-0324']);
  });

  it('threshold: tensors whose parents barely differ are taken from the base, and the count is reported', async () => {
    const { stdout, out } = await mergeAndCheck('mixtral-pair', 'threshold', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, instruct: 0.5}
threshold: {metric: rms_diff, below: 0.002}
`);
    // The fixture's experts are identical, slightly (~0.0004) or largely (~0.02) perturbed: a third is large.
    const m = /threshold rms_diff < 0\.002: (\d+) of (\d+) tensors kept/.exec(stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBe(24);
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBeLessThan(24);
    expect(readFileSync(path.join(out, 'README.md'), 'utf8')).toContain(`${m![1]} of 24 such tensors were kept from base`);
  });

  it('threshold on FP8 parents, dequantized before comparing', async () => {
    await mergeAndCheck('deepseek-v3-fp8-pair', 'threshold-fp8', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    weights: {v3: 0.5, r1: 0.5}
threshold: {metric: rms_diff, below: 0.002}
`);
  });

  it('expert edits on DeepSeek-V3: off and on set the selection bias, mute zeroes the down projection with a valid FP8 scale', async () => {
    const { out } = await mergeAndCheck('deepseek-v3-fp8-pair', 'edits', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    from: r1
edits:
  - {layer: 2, expert: 5, action: off}
  - {layer: 2, expert: 1, action: off}
  - {layer: 3, expert: 0, action: mute}
`);
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toContain('layer 2, expert 5: switched off');
    expect(card).toContain('layer 3, expert 0: muted');
    const { tensors } = readChild(out);
    const bias = tensors.get('model.layers.2.mlp.gate.e_score_correction_bias')!;
    const values = new Float32Array(bias.bytes.buffer.slice(bias.bytes.byteOffset, bias.bytes.byteOffset + bias.bytes.byteLength));
    expect(values[5]).toBe(-1e4);
    expect(values[1]).toBe(-1e4);
    // Routing is group-limited here (n_group 4, topk_group 2): forcing an expert on forces its group.
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const on = writeRecipe(dir, 'on.yaml', `parents: {v3: ./v3}\nedits:\n  - {layer: 2, expert: 5, action: on}\n`);
    const r = runCli(['merge', on, '-o', path.join(dir, 'out-on')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/"on" is not exact here: routing is group-limited \(n_group 4, topk_group 2\).*group 2, experts 4-5.*Switch off/);
    expect(filesIn(path.join(dir, 'out-on'))).toEqual([]);
    const muted = tensors.get('model.layers.3.mlp.experts.0.down_proj.weight')!;
    expect(muted.bytes.every((b) => b === 0)).toBe(true);
  });

  it('mute works on Mixtral (w2), while off is refused with a hint to use mute', async () => {
    await mergeAndCheck('mixtral-pair', 'mute', `
parents: {base: ./base, instruct: ./instruct}
edits:
  - {layer: 1, expert: 2, action: mute}
`);
    const dir = dirs['mixtral-pair']!;
    const recipe = writeRecipe(dir, 'off.yaml', `parents: {base: ./base}\nedits:\n  - {layer: 1, expert: 2, action: off}\n`);
    const r = runCli(['merge', recipe, '-o', path.join(dir, 'out-off')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/needs a router bias.*mixtral routers have none.*mute/);
    expect(filesIn(path.join(dir, 'out-off'))).toEqual([]);
  });

  it('dtype conversion: FP8 to BF16 dequantizes every weight, drops scales and quantization_config', async () => {
    const { out } = await mergeAndCheck('deepseek-v3-fp8-pair', 'to-bf16', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: routed_expert}
    weights: {v3: 0.5, r1: 0.5}
output: {dtype: bf16}
`);
    const { tensors } = readChild(out);
    expect([...tensors.keys()].filter((n) => n.endsWith('_scale_inv'))).toEqual([]);
    expect([...tensors.values()].filter((t) => t.dtype === 'F8_E4M3')).toEqual([]);
    expect(tensors.get('model.layers.1.mlp.gate.e_score_correction_bias')!.dtype).toBe('F32');
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config.quantization_config).toBeUndefined();
  });

  it('dtype conversion: BF16 to F32 and to F16', async () => {
    const { out } = await mergeAndCheck('mixtral-pair', 'to-f32', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    from: instruct
output: {dtype: f32}
`);
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
    await mergeAndCheck('mixtral-pair', 'to-f16', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.25, instruct: 0.75}
output: {dtype: f16}
`);
  });

  it('special values: ±0, subnormals, ±max, ties, ±inf and NaN through mixing and conversion', async () => {
    await mergeAndCheck('specials-f32-pair', 'specials-f32-bf16', `
parents: {base: ./base, donor: ./donor}
rules:
  - select: {kind: [routed_expert, attention]}
    weights: {base: 0.5, donor: 0.5}
output: {dtype: bf16}
`);
    await mergeAndCheck('specials-f32-pair', 'specials-f32-f16', `
parents: {base: ./base, donor: ./donor}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.75, donor: 0.25}
output: {dtype: f16}
`);
    await mergeAndCheck('specials-bf16-pair', 'specials-bf16', `
parents: {base: ./base, donor: ./donor}
rules:
  - select: {kind: [routed_expert, attention]}
    weights: {base: 0.5, donor: 0.5}
`);
    await mergeAndCheck('specials-fp8-pair', 'specials-fp8', `
parents: {v3: ./v3, r1: ./r1}
rules:
  - select: {kind: [routed_expert, attention]}
    weights: {v3: 0.5, r1: 0.5}
`);
  });

  it('parents of different dtypes mix in f32 (FP8 base with a BF16 donor; BF16 with F32)', async () => {
    await mergeAndCheck('mixed-dtype-pair', 'mixed', `
parents: {fp8: ./fp8, bf16: ./bf16}
rules:
  - select: {kind: routed_expert}
    weights: {fp8: 0.5, bf16: 0.5}
  - select: {kind: shared_expert}
    from: bf16
`);
    await mergeAndCheck('mixed-float-pair', 'mixed-float', `
parents: {bf16: ./bf16, f32: ./f32}
rules:
  - select: {kind: routed_expert}
    weights: {bf16: 0.5, f32: 0.5}
  - select: {kind: attention}
    from: f32
`);
  });

  it('other families: Qwen2-MoE shared experts, Kimi-K2 FP8 edits, a generic layout', async () => {
    await mergeAndCheck('qwen2-moe-pair', 'qwen2', `
parents: {base: ./base, chat: ./chat}
rules:
  - select: {kind: shared_expert}
    weights: {base: 0.4, chat: 0.6}
  - select: {kind: routed_expert, experts: "2-5"}
    from: chat
`);
    await mergeAndCheck('kimi-k2-pair', 'kimi', `
parents: {base: ./base, instruct: ./instruct}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, instruct: 0.5}
edits:
  - {layer: 1, expert: 3, action: off}
  - {layer: 1, expert: 5, action: on}
`);
    await mergeAndCheck('generic-pair', 'generic', `
parents: {base: ./base, tuned: ./tuned}
rules:
  - select: {kind: routed_expert}
    weights: {base: 0.5, tuned: 0.5}
`);
  });
});

describe('a sweep: several children in one pass', () => {
  it('writes each child byte for byte as its recipe alone does, reading each parent byte once', async () => {
    const dir = dirs['deepseek-v3-fp8-pair']!;
    const recipes = [0.25, 0.5, 0.75].map((l) =>
      writeRecipe(dir, `lambda-${l}.yaml`, `parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    weights: {v3: ${1 - l}, r1: ${l}}\n`),
    );
    const sweepDir = path.join(dir, 'out-sweep');
    const env = { ...process.env, MOE_STUDIO_REPORT_USAGE: '1' };
    const readOf = (stderr: string) => Number(/io: read (\d+) bytes/.exec(stderr)![1]);
    const cli = (args: string[]) => runCli(args, undefined, env);
    const sweep = cli(['merge', ...recipes, '-o', sweepDir, '--workers', '2']);
    expect(sweep.stderr).not.toContain('error');
    expect(sweep.status).toBe(0);
    expect(filesIn(sweepDir)).toEqual(['lambda-0.25', 'lambda-0.5', 'lambda-0.75']);
    // One pass: its workers' time said once; the process's CPU time with the usage report.
    expect(sweep.stdout.match(/^2 workers busy /gm)).toHaveLength(1);
    expect(sweep.stdout.match(/^memory: /gm)).toHaveLength(1);
    expect(sweep.stderr).toMatch(/^cpu: user \d+ ms, system \d+ ms$/m);
    let singleRead = 0;
    for (const [k, l] of [0.25, 0.5, 0.75].entries()) {
      const one = path.join(dir, `out-lambda-${l}`);
      const r = cli(['merge', recipes[k]!, '-o', one, '--workers', '2']);
      expect(r.status).toBe(0);
      singleRead = readOf(r.stderr);
      for (const f of filesIn(one)) expect(readFileSync(path.join(sweepDir, `lambda-${l}`, f)).equals(readFileSync(path.join(one, f))), f).toBe(true);
      expect(compareChild(await expectedChild(recipes[k]!), readChild(path.join(sweepDir, `lambda-${l}`)).tensors)).toEqual([]);
    }
    // Three children, one read of the parents: the sweep reads about what one merge reads.
    const parents = ['v3', 'r1'].reduce((n, p) => n + filesIn(path.join(dir, p)).filter((f) => f.endsWith('.safetensors')).reduce((m, f) => m + statSync(path.join(dir, p, f)).size, 0), 0);
    expect(readOf(sweep.stderr)).toBeLessThan(singleRead + 0.25 * parents);
    // One recipe at a time for --resume; a child folder named twice is refused.
    expect(runCli(['merge', ...recipes, '-o', sweepDir, '--resume']).stderr).toMatch(/--resume continues one interrupted merge: give one recipe/);
    expect(runCli(['merge', recipes[0]!, recipes[0]!, '-o', path.join(dir, 'out-twice')]).stderr).toMatch(/two recipes would write the same child folder "lambda-0.25"/);
  });
});

describe('moe-studio inspect and diff', () => {
  it('inspect describes a DeepSeek-V3 FP8 checkpoint', () => {
    const r = runCli(['inspect', path.join(dirs['deepseek-v3-fp8-pair']!, 'v3')]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/deepseek_v3/);
    expect(r.stdout).toMatch(/F8_E4M3/);
    const j = runCli(['inspect', path.join(dirs['deepseek-v3-fp8-pair']!, 'v3'), '--json']);
    const s = JSON.parse(j.stdout);
    expect(s.experts).toBe(8);
  });

  it('diff gives per-tensor figures and a per-kind summary, as a table and as JSON', () => {
    const dir = dirs['mixtral-pair']!;
    const r = runCli(['diff', path.join(dir, 'base'), path.join(dir, 'instruct')]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/rms_diff/);
    expect(r.stdout).toMatch(/routed_expert/);
    const j = JSON.parse(runCli(['diff', path.join(dir, 'base'), path.join(dir, 'instruct'), '--json']).stdout);
    const emb = j.tensors.find((t: { name: string }) => t.name === 'model.embed_tokens.weight');
    expect(emb.rms_diff).toBe(0);
    expect(emb.cosine).toBe(1);
    const experts = j.tensors.filter((t: { kind: string }) => t.kind === 'routed_expert');
    expect(experts.some((t: { rms_diff: number }) => t.rms_diff > 0.01)).toBe(true);
    const kinds = j.kinds.map((k: { kind: string }) => k.kind);
    expect(kinds).toContain('routed_expert');
    expect(kinds).toContain('attention');
  });
});

describe('bad input: a clear error, and nothing written', () => {
  const bad = async (preset: string, name: string, yaml: string, pattern: RegExp) => {
    const dir = dirs[preset]!;
    const recipe = writeRecipe(dir, `${name}.yaml`, yaml);
    const out = path.join(dir, `out-${name}`);
    const r = runCli(['merge', recipe, '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(pattern);
    expect(filesIn(out)).toEqual([]);
  };

  it('recipes: unknown key, unknown parent, weights not summing to 1, a rule matching nothing, bad YAML', async () => {
    await bad('mixtral-pair', 'bad-key', `parents: {base: ./base}\nrules:\n  - select: {kind: routed_expert, layer: 3}\n    from: base\n`, /rules\[0\]\.select: unknown key "layer"/);
    await bad('mixtral-pair', 'bad-parent', `parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    from: donor\n`, /rule 1: from "donor" is not a parent/);
    await bad('mixtral-pair', 'bad-sum', `parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0.5, instruct: 0.6}\n`, /rule 1: weights must sum to 1.*1\.1/);
    await bad('mixtral-pair', 'bad-match', `parents: {base: ./base}\nrules:\n  - select: {kind: shared_expert}\n    from: base\n`, /rule 1 .*matches no tensor/);
    await bad('mixtral-pair', 'bad-yaml', `parents: {base: ./base\nrules: [\n`, /not valid YAML/);
    await bad('mixtral-pair', 'bad-edit', `parents: {base: ./base}\nedits:\n  - {layer: 1, expert: 9, action: mute}\n`, /edit 1 .*4 experts per layer/);
  });

  it('mismatched parents are refused, naming the tensors', async () => {
    const dir = await presetDir('mismatched-pair');
    const recipe = writeRecipe(dir, 'r.yaml', `parents: {base: ./base, other: ./other}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0.5, other: 0.5}\n`);
    const r = runCli(['merge', recipe, '-o', path.join(dir, 'out')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot be merged/);
    expect(r.stderr).toMatch(/model\.layers\.\d\.block_sparse_moe\.experts\.\d\.w\d\.weight/);
    expect(filesIn(path.join(dir, 'out'))).toEqual([]);
  });

  it('refuses to write into a parent folder, and over an earlier child unless --overwrite', async () => {
    const dir = dirs['mixtral-pair']!;
    const recipe = writeRecipe(dir, 'plain.yaml', `parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    from: instruct\n`);
    const before = filesIn(path.join(dir, 'base'));
    const r = runCli(['merge', recipe, '-o', path.join(dir, 'base')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/parent "base"/);
    expect(filesIn(path.join(dir, 'base'))).toEqual(before);
    const out = path.join(dir, 'out-plain');
    expect(runCli(['merge', recipe, '-o', out]).status).toBe(0);
    const again = runCli(['merge', recipe, '-o', out]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already holds/);
    expect(runCli(['merge', recipe, '-o', out, '--overwrite']).status).toBe(0);
    expect(existsSync(path.join(out, 'model.safetensors.index.json'))).toBe(true);
  });
});
