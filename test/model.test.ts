import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeModelFolder, openNodeModelFolder, openNodeOutputFolder } from '../app/cli/node-io.ts';
import { elementCount } from '../app/engine/formats/dtype.ts';
import { MoeError } from '../app/engine/io.ts';
import { checkCompatibility } from '../app/engine/model/compat.ts';
import { formatSummary, summarizeModel } from '../app/engine/model/inspect.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import type { Model } from '../app/engine/model/types.ts';
import * as corrupt from '../app/fixtures/corrupt.ts';
import { FIXTURE_PRESETS, e4m3ToF32, f32ToBf16Bits, specialValues, writePreset, type FixtureManifest } from '../app/fixtures/generate.ts';

let root: string;
const manifests: Record<string, Record<string, FixtureManifest>> = {};
const folders: NodeModelFolder[] = [];

async function open(dir: string): Promise<Model> {
  const folder = await openNodeModelFolder(dir);
  folders.push(folder);
  return openModel(folder);
}

async function openErr(dir: string): Promise<MoeError> {
  try {
    await open(dir);
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    return e as MoeError;
  }
  throw new Error(`expected openModel(${dir}) to fail`);
}

let copies = 0;
async function copyOf(preset: string, parent: string): Promise<string> {
  return corrupt.copyModel(manifests[preset]![parent]!.dir, path.join(root, 'copies', `${preset}-${parent}-${copies++}`));
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'moe-model-'));
  await Promise.all(Object.keys(FIXTURE_PRESETS).map(async (name) => (manifests[name] = await writePreset(path.join(root, name), name))));
});

afterAll(async () => {
  for (const f of folders) await f.close();
  await fsp.rm(root, { recursive: true, force: true });
});

describe('openModel on every preset', () => {
  for (const [preset, p] of Object.entries(FIXTURE_PRESETS)) {
    for (const parent of Object.keys(p.parents)) {
      it(`${preset}/${parent}`, async () => {
        const m = manifests[preset]![parent]!;
        const model = await open(m.dir);
        expect(model.arch.modelTypes).toContain(m.modelType);
        expect(model.config['model_type']).toBe(m.modelType);
        expect(model.warnings).toBeUndefined();

        // Layout from config, confirmed by tensor names.
        const l = model.layout;
        expect(l.layers).toBe(m.layout.layers);
        expect(l.moeLayers).toEqual(m.layout.moeLayers);
        expect(l.denseLayers).toEqual(m.layout.denseLayers);
        expect(l.mtpLayers ?? []).toEqual(m.layout.mtpLayers);
        expect(l.experts).toBe(m.layout.experts);
        expect(l.expertsPerToken).toBe(m.layout.expertsPerToken);
        expect(l.sharedExperts).toBe(m.layout.sharedExperts);
        expect(l.hiddenSize).toBe(m.layout.hiddenSize);

        // Files.
        expect(model.shards).toEqual(m.shards);
        expect([...model.sources.keys()].sort()).toEqual([...m.shards].sort());
        expect(model.otherFiles).toEqual([...m.otherFiles].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })));
        expect(model.sizeOnDisk).toBe(m.totalSize);

        // Every tensor: kind/layer/expert/proj as the generator meant; scales inside their weight.
        const weights = m.tensors.filter((t) => !t.scaleOf);
        expect(model.weights.length).toBe(weights.length);
        for (const t of weights) {
          const w = model.byName.get(t.name);
          expect(w, t.name).toBeDefined();
          const want: Record<string, unknown> = { kind: t.kind };
          if (t.layer !== undefined) want['layer'] = t.layer;
          if (t.expert !== undefined) want['expert'] = t.expert;
          if (t.proj !== undefined) want['proj'] = t.proj;
          expect({ name: t.name, role: w!.role }).toEqual({ name: t.name, role: want });
          expect(w!.data.dtype).toBe(t.dtype);
          expect(w!.data.shape).toEqual(t.shape);
          expect(w!.data.file).toBe(t.file);
        }
        for (const s of m.tensors.filter((t) => t.scaleOf)) {
          const w = model.byName.get(s.scaleOf!)!;
          const scale = w.companions.find((c) => c.role === 'scale')?.record;
          expect(scale?.name).toBe(s.name);
          expect(scale?.file).toBe(s.file);
          expect(model.byName.has(s.name)).toBe(false);
        }
        expect(model.weights.some((w) => w.codec.kind === 'plain' && w.codec.dtype === 'F8_E4M3')).toBe(false);

        // File order: shard order, then offset.
        const shardIdx = new Map(model.shards.map((f, i) => [f, i]));
        for (let i = 1; i < model.weights.length; i++) {
          const a = model.weights[i - 1]!.data;
          const b = model.weights[i]!.data;
          expect(shardIdx.get(a.file)! < shardIdx.get(b.file)! || (a.file === b.file && a.offset < b.offset)).toBe(true);
        }
      });
    }
  }

  it('reads real bytes: FP8 scales follow DeepSeek block quantization', async () => {
    const m = manifests['deepseek-v3-fp8-pair']!['v3']!;
    const model = await open(m.dir);
    const w = model.byName.get('model.layers.1.mlp.experts.0.gate_proj.weight')!;
    expect(w.data.shape).toEqual([136, 200]);
    const scale = w.companions.find((c) => c.role === 'scale')!.record;
    expect(scale.shape).toEqual([2, 2]);
    expect(w.codec).toEqual({ kind: 'fp8', scaleDtype: 'F32', blockRows: 128, blockCols: 128, scaleRole: 'scale_inv' });
    const bytes = await model.sources.get(w.data.file)!.read(w.data.offset, w.data.length);
    const sb = await model.sources.get(scale.file)!.read(scale.offset, scale.length);
    const scales = new Float32Array(sb.slice().buffer);
    // The block maximum is ±448 (after rounding) in every block, including the partial ones.
    for (let bi = 0; bi < 2; bi++) {
      for (let bj = 0; bj < 2; bj++) {
        let amax = 0;
        for (let r = bi * 128; r < Math.min(136, bi * 128 + 128); r++) {
          for (let c = bj * 128; c < Math.min(200, bj * 128 + 128); c++) amax = Math.max(amax, Math.abs(e4m3ToF32(bytes[r * 200 + c]!)));
        }
        expect(amax).toBe(448);
        expect(scales[bi * 2 + bj]!).toBeGreaterThan(0);
        expect(scales[bi * 2 + bj]! * 448).toBeLessThan(0.2);
      }
    }
  });

  it('donors differ from the base as the manifest says', async () => {
    const [base, donor] = [manifests['mixtral-pair']!['base']!, manifests['mixtral-pair']!['instruct']!];
    const a = await open(base.dir);
    const b = await open(donor.dir);
    const read = async (model: Model, name: string) => {
      const w = model.byName.get(name)!;
      return model.sources.get(w.data.file)!.read(w.data.offset, w.data.length);
    };
    const cats = Object.entries(donor.perturbation);
    expect(new Set(cats.filter(([n]) => n.includes('.experts.')).map(([, c]) => c))).toEqual(new Set(['identical', 'slight', 'large']));
    for (const [name, cat] of cats) {
      const x = await read(a, name);
      const y = await read(b, name);
      const same = x.every((v, i) => v === y[i]);
      expect({ name, same }).toEqual({ name, same: cat === 'identical' });
    }
  });
});

function decode(dtype: string, bytes: Uint8Array): Float32Array {
  const b = bytes.slice();
  if (dtype === 'F32') return new Float32Array(b.buffer);
  const u16 = new Uint16Array(b.buffer);
  const out = new Float32Array(u16.length);
  if (dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < u16.length; i++) u32[i] = u16[i]! << 16;
    return out;
  }
  throw new Error(`decode ${dtype}`);
}

async function values(model: Model, name: string): Promise<Float32Array> {
  const w = model.byName.get(name)!;
  return decode(w.data.dtype, await model.sources.get(w.data.file)!.read(w.data.offset, w.data.length));
}

describe('fixture values', () => {
  it('special values sit where the manifest says, and non-finite values nowhere else', async () => {
    for (const preset of ['specials-f32-pair', 'specials-bf16-pair']) {
      for (const m of Object.values(manifests[preset]!)) {
        const model = await open(m.dir);
        expect(m.specials.length).toBe(2);
        expect(m.nonFinite.length).toBe(1);
        const sv = specialValues(m.dtype);
        for (const name of m.specials) {
          const v = await values(model, name);
          for (let i = 0; i < sv.length; i++) {
            const want = m.dtype === 'BF16' ? decode('BF16', new Uint8Array(new Uint16Array([f32ToBf16Bits(sv[i]!)]).buffer))[0]! : Math.fround(sv[i]!);
            expect(Object.is(v[i], want), `${name}[${i}] = ${v[i]}, want ${want}`).toBe(true);
          }
        }
        for (const w of model.weights) {
          const v = await values(model, w.name);
          const bad = v.filter((x) => !Number.isFinite(x)).length;
          expect({ name: w.name, bad }).toEqual({ name: w.name, bad: m.nonFinite.includes(w.name) ? 3 : 0 });
        }
      }
    }
    const fp8 = manifests['specials-fp8-pair']!['v3']!;
    expect(fp8.nonFinite).toEqual([]);
    const model = await open(fp8.dir);
    for (const name of fp8.specials) {
      const w = model.byName.get(name)!;
      expect(w.data.dtype).toBe('F8_E4M3');
      const bytes = await model.sources.get(w.data.file)!.read(w.data.offset, 7);
      expect([...bytes]).toEqual(specialValues('FP8'));
    }
  });

  it('perturbation sizes make thresholds meaningful (relative RMS: identical 0, slight ~0.02, large ~1)', async () => {
    const base = await open(manifests['generic-pair']!['base']!.dir);
    const donor = await open(manifests['generic-pair']!['tuned']!.dir);
    for (const [name, cat] of Object.entries(manifests['generic-pair']!['tuned']!.perturbation)) {
      const a = await values(base, name);
      const b = await values(donor, name);
      let d2 = 0;
      let a2 = 0;
      for (let i = 0; i < a.length; i++) {
        d2 += (a[i]! - b[i]!) ** 2;
        a2 += a[i]! ** 2;
      }
      const rel = Math.sqrt(d2 / a2);
      const [lo, hi] = cat === 'identical' ? [0, 0] : cat === 'slight' ? [0.005, 0.06] : [0.6, 1.5];
      expect(rel, `${name} (${cat})`).toBeGreaterThanOrEqual(lo);
      expect(rel, `${name} (${cat})`).toBeLessThanOrEqual(hi);
      if (name.includes('norm')) expect(cat).toBe('identical');
    }
  });
});

describe('openModel errors and warnings', () => {
  it('config.json missing or invalid', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    await fsp.writeFile(path.join(dir, 'config.json'), '{ not json');
    expect((await openErr(dir)).message).toMatch(/config\.json: is not valid JSON/);
    await fsp.rm(path.join(dir, 'config.json'));
    expect((await openErr(dir)).message).toMatch(/config\.json is missing/);
  });

  it('no weights at all', async () => {
    const dir = path.join(root, 'copies', 'empty');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'config.json'), '{"model_type":"mixtral"}');
    expect((await openErr(dir)).message).toMatch(/no weights found/);
  });

  it('index naming a tensor that is not in its shard', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    const { tensor } = await corrupt.indexNameMissingTensor(dir);
    const err = await openErr(dir);
    expect(err.file).toBe(path.join(dir, 'model.safetensors.index.json'));
    expect(err.message).toContain(tensor);
    expect(err.message).toMatch(/missing from the shard's header/);
  });

  it('shard tensor the index does not list', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    const { tensor } = await corrupt.indexDropTensor(dir);
    const err = await openErr(dir);
    expect(err.message).toMatch(/the weight_map does not list/);
    expect(err.message).toContain(tensor);
  });

  it('index naming a shard file that does not exist', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    const { file, tensor } = await corrupt.indexMissingShard(dir);
    const err = await openErr(dir);
    expect(err.message).toContain(file);
    expect(err.message).toContain(tensor);
  });

  it('a corrupt shard is reported with its file and tensor', async () => {
    const dir = await copyOf('mixtral-pair', 'instruct');
    const shard = path.join(dir, 'model-00002-of-00003.safetensors');
    const { tensor } = await corrupt.truncateShard(shard);
    const err = await openErr(dir);
    expect(err.file).toBe(shard);
    expect(err.tensor).toBe(tensor);
  });

  it('a block scale without its weight is an error', async () => {
    const dir = await copyOf('deepseek-v3-fp8-pair', 'v3');
    const weight = 'model.layers.2.mlp.experts.3.up_proj.weight';
    await corrupt.dropTensor(dir, weight);
    const err = await openErr(dir);
    expect(err.tensor).toBe(`${weight}_scale_inv`);
    expect(err.message).toContain(`its weight ${weight} is not in the model`);
  });

  it('an FP8 weight without a scale is allowed but flagged', async () => {
    const dir = await copyOf('deepseek-v3-fp8-pair', 'r1');
    const weight = 'model.layers.2.mlp.experts.3.up_proj.weight';
    await corrupt.dropTensor(dir, `${weight}_scale_inv`);
    const model = await open(dir);
    const unscaled = (w: Model['weights'][number]) => w.codec.kind === 'plain' && w.codec.dtype === 'F8_E4M3';
    expect(unscaled(model.byName.get(weight)!)).toBe(true);
    expect(model.weights.filter(unscaled).length).toBe(1);
    expect(model.warnings?.join('\n')).toMatch(/1 F8_E4M3 weight has no scale tensor \(they can be copied but not mixed\)/);
    const base = await open(manifests['deepseek-v3-fp8-pair']!['v3']!.dir);
    const report = checkCompatibility([{ name: 'v3', model: base }, { name: 'r1', model }], 'v3');
    expect(report.ok).toBe(true);
    expect(report.problems.some((p) => p.parent === 'r1' && /no scale/.test(p.message))).toBe(true);
  });

  it('config expert count that the tensors contradict', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    await corrupt.editConfig(dir, (c) => (c['num_local_experts'] = 2));
    expect((await openErr(dir)).message).toMatch(/"num_local_experts" is 2, but layer 0 has tensors for expert 3/);
    await corrupt.editConfig(dir, (c) => (c['num_local_experts'] = 16));
    expect((await openErr(dir)).message).toMatch(/"num_local_experts" is 16, but layer 0 has tensors for experts 0-3 only/);
  });

  // Regression (issue 12.3): a config number is checked against the tensors before anything is
  // sized from it; these used to run for a minute and die out of memory.
  it('absurd config numbers are refused at once, naming the file and the key', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    const configPath = path.join(dir, 'config.json');
    const started = performance.now();
    await corrupt.editConfig(dir, (c) => (c['num_hidden_layers'] = 1_000_000_000));
    let err = await openErr(dir);
    expect(err.message).toBe(`${configPath}: "num_hidden_layers" is 1000000000: more layers than any model has (at most 10000)`);
    await corrupt.editConfig(dir, (c) => (c['num_hidden_layers'] = 9_000));
    expect((await openErr(dir)).message).toBe(`${configPath}: "num_hidden_layers" is 9000, but the tensors show layers 0-1 only`);
    await corrupt.editConfig(dir, (c) => {
      c['num_hidden_layers'] = 2;
      c['num_local_experts'] = 900_000;
    });
    expect((await openErr(dir)).message).toBe(`${configPath}: config "num_local_experts" is 900000, but layer 0 has tensors for experts 0-3 only`);
    expect(performance.now() - started).toBeLessThan(5_000);
    for (const k of [0, 5]) {
      await corrupt.editConfig(dir, (c) => {
        c['num_local_experts'] = 4;
        c['num_experts_per_tok'] = k;
      });
      err = await openErr(dir);
      expect(err.message).toBe(`${configPath}: "num_experts_per_tok" is ${k}, but each token must be routed to between 1 and the 4 experts of a layer`);
    }
  });

  // Regression (issue 12.6): an expert missing one projection used to pass with a warning and
  // give a child without that tensor.
  it('an expert missing one projection is an error naming the missing tensor', async () => {
    const dir = await copyOf('mixtral-pair', 'base');
    await corrupt.dropTensor(dir, 'model.layers.0.block_sparse_moe.experts.1.w2.weight');
    const err = await openErr(dir);
    expect(err.tensor).toBe('model.layers.0.block_sparse_moe.experts.1.w2.weight');
    expect(err.message).toMatch(/layer 0: expert 1 lacks model\.layers\.0\.block_sparse_moe\.experts\.1\.w2\.weight, which the layer's other experts have \(e\.g\. model\.layers\.0\.block_sparse_moe\.experts\.0\.w2\.weight\): an incomplete expert cannot be merged/);
  });

  it('config layer counts and dense layers that the tensors contradict', async () => {
    const dir = await copyOf('deepseek-v2-pair', 'base');
    await corrupt.editConfig(dir, (c) => (c['num_hidden_layers'] = 2));
    expect((await openErr(dir)).message).toMatch(/tensor names show layer 2, but config "num_hidden_layers" is 2/);
    await corrupt.editConfig(dir, (c) => (c['num_hidden_layers'] = 4));
    expect((await openErr(dir)).message).toMatch(/"num_hidden_layers" is 4, but the tensors show layers 0-2 only/);
    await corrupt.editConfig(dir, (c) => {
      c['num_hidden_layers'] = 3;
      c['first_k_dense_replace'] = 2;
    });
    expect((await openErr(dir)).message).toMatch(/config implies MoE layers 2, but routed expert tensors are in layers 1-2/);
  });

  it('falls back to every *.safetensors file without an index, and ignores other weight files', async () => {
    const dir = await copyOf('mixtral-pair', 'instruct');
    await fsp.rm(path.join(dir, 'model.safetensors.index.json'));
    await fsp.writeFile(path.join(dir, 'pytorch_model.bin'), 'x');
    const model = await open(dir);
    expect(model.shards.length).toBe(3);
    expect(model.warnings!.join('\n')).toMatch(/using every \.safetensors file/);
    expect(model.warnings!.join('\n')).toMatch(/other weight files are ignored: pytorch_model\.bin/);
    expect(model.otherFiles).not.toContain('pytorch_model.bin');
  });
});

describe('summarizeModel / formatSummary', () => {
  it('DeepSeek-V3 FP8: layers, experts, dtypes, parameters, tensors', async () => {
    const m = manifests['deepseek-v3-fp8-pair']!['v3']!;
    const s = summarizeModel(await open(m.dir));
    expect(s.family).toBe('deepseek_v3');
    expect(s.modelType).toBe('deepseek_v3');
    expect(s.denseLayers).toEqual([0]);
    expect(s.moeLayers).toEqual([1, 2, 3]);
    expect(s.mtpLayers).toEqual([4]);
    expect(s.experts).toBe(8);
    expect(s.expertsPerToken).toBe(2);
    expect(s.sharedExperts).toBe(1);
    expect(s.totalRoutedExperts).toBe(32);
    expect(s.routerBias).toBe('selection');
    expect(s.groups).toBe(4);
    expect(s.topkGroups).toBe(2);
    expect(s.edits.map((e) => [e.action, e.available, e.exact])).toEqual([['off', true, true], ['on', false, false], ['mute', true, true], ['remove', true, true]]);
    expect(s.expertLayout).toBe('per-expert');
    expect(Object.keys(s.formats)).toEqual(expect.arrayContaining(['FP8 E4M3, 128×128 blocks (F32)', 'BF16', 'F32']));
    const scales = m.tensors.filter((t) => t.scaleOf);
    expect(s.scales).toBe(scales.length);
    expect(s.tensors).toBe(m.tensors.length);
    expect(s.weights).toBe(m.tensors.length - scales.length);
    expect(s.parameters).toBe(m.parameters);
    expect(s.sizeOnDisk).toBe(m.totalSize);
    expect(s.shards).toBe(3);
    const byDtype: Record<string, { tensors: number; bytes: number }> = {};
    for (const t of m.tensors) {
      const d = (byDtype[t.dtype] ??= { tensors: 0, bytes: 0 });
      d.tensors++;
      d.bytes += elementCount(t.shape) * (t.dtype === 'F32' ? 4 : t.dtype === 'BF16' ? 2 : 1);
    }
    expect(s.dtypes).toEqual(byDtype);
    expect(s.kinds.routed_expert).toBe(4 * 8 * 3);
    expect(s.kinds.router_bias).toBe(4);
    expect(s.quantization).toBe('fp8 e4m3 blocks 128×128');
    const text = formatSummary(s);
    expect(text).toContain('layers 0 dense, 1-3 MoE; MTP layer 4');
    expect(text).toContain('8 routed per MoE layer, 2 per token, 1 shared');
    expect(text).toMatch(/F8_E4M3 +\d+ tensors/);
    expect(text).toContain('in 3 shards');
  });

  it('ranges read like "layers 0-2 dense, 3-60 MoE"', async () => {
    const s = summarizeModel(await open(manifests['mixtral-pair']!['base']!.dir));
    const fake = { ...s, layers: 61, denseLayers: [0, 1, 2], moeLayers: Array.from({ length: 58 }, (_, i) => i + 3), mtpLayers: [61] };
    expect(formatSummary(fake)).toContain('61: layers 0-2 dense, 3-60 MoE; MTP layer 61');
    expect(formatSummary(s)).toContain('2: layers 0-1 MoE');
  });
});

describe('checkCompatibility', () => {
  async function pair(preset: string) {
    const p = FIXTURE_PRESETS[preset]!;
    const list = [];
    for (const name of Object.keys(p.parents)) list.push({ name, model: await open(manifests[preset]![name]!.dir) });
    return checkCompatibility(list, p.base);
  }

  it('related pairs from every family are compatible with no problems', async () => {
    for (const preset of ['mixtral-pair', 'deepseek-v3-fp8-pair', 'deepseek-v3-triple', 'qwen2-moe-pair', 'qwen3-moe-pair', 'olmoe-pair', 'deepseek-v2-pair', 'kimi-k2-pair', 'generic-pair']) {
      const r = await pair(preset);
      expect({ preset, r }).toEqual({ preset, r: { ok: true, problems: [] } });
    }
  });

  it('mismatched-pair: errors name the extra and mis-shaped tensors', async () => {
    const r = await pair('mismatched-pair');
    expect(r.ok).toBe(false);
    const errors = r.problems.filter((p) => p.severity === 'error');
    expect(errors.some((p) => p.tensor === undefined && /routed experts per layer differ: 6 here, 4 in the base/.test(p.message))).toBe(true);
    const shape = errors.find((p) => p.tensor === 'model.layers.0.block_sparse_moe.experts.0.w1.weight')!;
    expect(shape.message).toBe('layer 0 expert 0 gate is 80 × 64 here, 96 × 64 in the base');
    expect(shape.kind).toBe('routed_expert');
    // Experts are compared by (layer, expert, projection); the extra experts 4-5 are the count error above.
    const extra = r.problems.filter((p) => p.message.startsWith('is not in the base')).map((p) => p.tensor);
    expect(extra.filter((t) => t?.includes('.experts.'))).toEqual([]);
    const router = r.problems.find((p) => p.tensor === 'model.layers.0.block_sparse_moe.gate.weight')!;
    expect(router.severity).toBe('warning');
  });

  it('mixed dtypes are not errors', async () => {
    for (const preset of ['mixed-dtype-pair', 'mixed-float-pair']) {
      const r = await pair(preset);
      expect(r.ok).toBe(true);
      expect(r.problems.length).toBe(1);
      expect(r.problems[0]!.severity).toBe('warning');
      expect(r.problems[0]!.message).toMatch(preset === 'mixed-dtype-pair' ? /137 weights are BF16 here and FP8 E4M3, 128×128 blocks \(F32\) in the base/ : /weights are F32 here and BF16 in the base/);
    }
  });

  it('a tensor other than a routed expert missing from a parent is a warning', async () => {
    const dir = await copyOf('mixtral-pair', 'instruct');
    await corrupt.dropTensor(dir, 'model.layers.1.post_attention_layernorm.weight');
    const base = await open(manifests['mixtral-pair']!['base']!.dir);
    const donor = await open(dir);
    const r = checkCompatibility([{ name: 'base', model: base }, { name: 'instruct', model: donor }], 'base');
    expect(r.ok).toBe(true);
    expect(r.problems).toEqual([
      { severity: 'warning', parent: 'instruct', tensor: 'model.layers.1.post_attention_layernorm.weight', kind: 'norm', message: expect.stringMatching(/missing from this parent/) },
    ]);
  });

  it('warns when parents look unrelated', async () => {
    const dir = await copyOf('mixtral-pair', 'instruct');
    await corrupt.editConfig(dir, (c) => {
      c['architectures'] = ['OtherMoeForCausalLM'];
      c['vocab_size'] = 32000;
    });
    const base = await open(manifests['mixtral-pair']!['base']!.dir);
    const r = checkCompatibility([{ name: 'base', model: base }, { name: 'x', model: await open(dir) }], 'base');
    expect(r.ok).toBe(true);
    expect(r.problems.length).toBe(1);
    expect(r.problems[0]!.message).toMatch(/looks unrelated to the base \(vocab_size 32000 vs 128; architectures .*OtherMoe.*\)\. Expert order is arbitrary/);
  });

  it('refuses an unknown base name', async () => {
    const base = await open(manifests['mixtral-pair']!['base']!.dir);
    expect(() => checkCompatibility([{ name: 'a', model: base }], 'b')).toThrow(/base "b" is not one of the parents/);
  });
});

describe('node-io', () => {
  it('NodeModelFolder reads at offsets and refuses reads past the end', async () => {
    const dir = manifests['generic-pair']!['base']!.dir;
    const folder = await openNodeModelFolder(dir);
    folders.push(folder);
    expect(await folder.list()).toContain('config.json');
    const src = await folder.open('config.json');
    const all = await src.read(0, src.size);
    expect(new TextDecoder().decode(all)).toContain('my_moe');
    expect(await folder.open('config.json')).toBe(src);
    expect([...(await src.read(2, 3))]).toEqual([...all.subarray(2, 5)]);
    await expect(src.read(src.size - 1, 2)).rejects.toThrow(/past end of file/);
    await expect(folder.open('../x')).rejects.toThrow(/not a plain file name/);
    await expect(folder.open('nope.json')).rejects.toThrow(/file not found/);
  });

  it('NodeOutputFolder writes, rewrites, renames, removes, and knows when it is inside a parent', async () => {
    const out = openNodeOutputFolder(path.join(root, 'out', 'child'));
    expect(await out.list()).toEqual([]);
    await out.prepare();
    const f = await out.create('a.tmp');
    await f.write(new Uint8Array([1, 2, 3, 4]));
    await f.write(new Uint8Array([5, 6]));
    await f.writeAt(1, new Uint8Array([9, 9]));
    // Positional writes land anywhere; the file grows, the sequential position stays.
    await f.writeAt(8, new Uint8Array([7]));
    await f.write(new Uint8Array([8]));
    await expect(f.writeAt(-1, new Uint8Array([0]))).rejects.toThrow(/not a file position/);
    await f.close();
    await out.rename('a.tmp', 'a.bin');
    expect([...(await fsp.readFile(path.join(out.path, 'a.bin')))]).toEqual([1, 9, 9, 4, 5, 6, 8, 0, 7]);
    const back = await out.open('a.bin');
    expect([...(await back.read(2, 3))]).toEqual([9, 4, 5]);
    await back.close?.();
    const g = await out.create('b.tmp');
    await g.write(new Uint8Array([1]));
    await g.abort();
    expect(await out.list()).toEqual(['a.bin']);
    await out.remove('a.bin');
    expect(await out.list()).toEqual([]);
    const parent = await openNodeModelFolder(manifests['generic-pair']!['base']!.dir);
    folders.push(parent);
    expect(await out.overlaps(parent)).toBe(false);
    // Inside a parent: known before anything is created.
    const inside = openNodeOutputFolder(path.join(parent.path, 'merged', 'deeper'));
    expect(await inside.overlaps(parent)).toBe(true);
    expect(existsSync(path.join(parent.path, 'merged'))).toBe(false);
    const notYet = openNodeOutputFolder(parent.path);
    expect(await notYet.overlaps(parent)).toBe(true);
    const free = await out.freeBytes();
    expect(free === undefined || free > 0).toBe(true);
  });

  it('prepare creates only missing folders, and discardCreated removes only those it created that are empty', async () => {
    const top = path.join(root, 'made');
    const out = openNodeOutputFolder(path.join(top, 'a', 'b'));
    await out.prepare();
    expect(existsSync(path.join(top, 'a', 'b'))).toBe(true);
    await fsp.writeFile(path.join(top, 'keep.txt'), 'x'); // not the merge's: `made` must stay
    await out.discardCreated();
    expect(existsSync(path.join(top, 'a'))).toBe(false);
    expect(existsSync(path.join(top, 'keep.txt'))).toBe(true);
    await fsp.writeFile(path.join(root, 'a-file'), 'x');
    await expect(openNodeOutputFolder(path.join(root, 'a-file', 'sub')).prepare()).rejects.toThrow(/a-file is a file, not a folder/);
  });

  it('the merge lock: a second holder is refused and named; a lock whose process is gone is taken over', async () => {
    const out = openNodeOutputFolder(path.join(root, 'locked'));
    await out.prepare();
    const owner = { tool: 'moe-studio merge', started: '2026-11-29T00:00:00.000Z' };
    const held = await out.lock(owner);
    expect(held.replacedStale).toBeUndefined();
    const lockFile = path.join(out.path, '.moe-studio.lock');
    const content = JSON.parse(await fsp.readFile(lockFile, 'utf8'));
    expect(content).toMatchObject({ tool: 'moe-studio merge', pid: process.pid, host: os.hostname(), started: owner.started });
    await expect(out.lock(owner)).rejects.toThrow(
      new RegExp(`another merge is writing here: \\.moe-studio\\.lock is held by pid ${process.pid} on host ${os.hostname().replace(/\./g, '\\.')} \\(moe-studio merge\\), since 2026-11-29`),
    );
    await held.release();
    expect(existsSync(lockFile)).toBe(false);
    // A lock left by a process that no longer runs (pid 2^22 + 1 is above Linux's pid limit).
    await fsp.writeFile(lockFile, JSON.stringify({ tool: 'moe-studio merge', pid: 4194305, host: os.hostname(), started: 'earlier' }));
    const taken = await out.lock(owner);
    expect(taken.replacedStale).toMatchObject({ pid: 4194305 });
    await taken.release();
    // A lock from another host cannot be checked: refused, with what to do.
    await fsp.writeFile(lockFile, JSON.stringify({ tool: 'moe-studio merge', pid: 12, host: 'elsewhere', started: 'earlier' }));
    await expect(out.lock(owner)).rejects.toThrow(/held by pid 12 on host elsewhere .*if no merge is running there, remove the lock file/);
  });
});
