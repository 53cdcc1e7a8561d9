// Opening a parent model folder: config, shards, headers, scales, architecture, layout.
// The folder is only read. Every inconsistency that would make a merge read wrong bytes or
// write a broken child is an error naming the file and tensor; softer findings go to
// `model.warnings`.
//
// Which shards:
//  1. `model.safetensors.index.json` present: exactly the files its weight_map names. Every
//     mapped tensor must be in its shard's header; every header tensor must be mapped (a stale
//     index is an error, by name); every named file must exist. `metadata.total_size` that
//     differs from the tensors' bytes is a warning (several tools write it loosely).
//  2. else `model.safetensors`.
//  3. else every `*.safetensors` file in the folder, sorted by name, with a warning (a folder of
//     shards whose index was lost). A tensor name in two files is an error.
//  4. else an error.
// Other weight files (`*.bin`, `*.pt`, `*.pth`, `*.gguf`, unused `*.safetensors`, …) are
// neither shards nor `otherFiles`: they are listed in a warning and ignored.
//
// Layout: `layers`, `experts`, `expertsPerToken`, `sharedExperts` and `hiddenSize` come from
// config.json (keys per family in families.json) and are checked against the tensor names:
// every MoE layer must hold exactly experts 0..E-1; the set of MoE layers must be the one the
// config implies (first_k_dense_replace / moe_layer_freq / mlp_only_layers /
// decoder_sparse_step); tensors of layers ≥ `layers` are allowed only as the config's MTP
// layers (num_nextn_predict_layers). A mismatch is an error: the checkpoint would not load.
import { rangeText } from '../report/format.ts';
import { MoeError, readText, type ByteSource, type ModelFolder } from '../io.ts';
import { classifyTensor } from '../arch/classify.ts';
import { detectArchitecture } from '../arch/families.ts';
import type { ArchitectureSpec } from '../arch/types.ts';
import { FP8_BLOCK } from '../formats/dtype.ts';
import { readSafetensorsHeader } from '../formats/safetensors.ts';
import type { Model, ModelLayout, TensorRecord, Weight } from './types.ts';

export const CONFIG_FILE = 'config.json';
export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
export const SCALE_SUFFIX = '_scale_inv';

const WEIGHT_FILE = /\.(?:safetensors|bin|pt|pth|ckpt|gguf|h5|msgpack|onnx|npz)$|\.(?:bin|pt|pth)\.index\.json$|^pytorch_model.*\.index\.json$/i;
/** How many shard headers are read at once. */
const HEADER_CONCURRENCY = 8;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A file of the folder as named in messages: "FOLDER/FILE". */
export function pathIn(folder: ModelFolder, file: string): string {
  return `${folder.name.replace(/[\\/]+$/, '')}/${file}`;
}

async function readJson(folder: ModelFolder, file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readText(folder, file);
  } catch (e) {
    throw new MoeError(`cannot be read as UTF-8 text (${e instanceof Error ? e.message : String(e)})`, pathIn(folder, file));
  }
  try {
    // JSON.parse defines every key as an own property, `__proto__` included.
    return JSON.parse(text);
  } catch (e) {
    throw new MoeError(`is not valid JSON (${e instanceof Error ? e.message : String(e)})`, pathIn(folder, file));
  }
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Lists names for an error message, at most `max` of them. */
export function listNames(names: readonly string[], max = 10): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function openModel(folder: ModelFolder): Promise<Model> {
  const warnings: string[] = [];
  const files = await folder.list();
  const fileSet = new Set(files);

  // config.json
  if (!fileSet.has(CONFIG_FILE)) {
    throw new MoeError(`${CONFIG_FILE} is missing: a model folder needs its config (layers, experts, model_type)`, folder.name);
  }
  const configPath = pathIn(folder, CONFIG_FILE);
  const indexPath = pathIn(folder, INDEX_FILE);
  const config = await readJson(folder, CONFIG_FILE);
  if (!isPlainObject(config)) throw new MoeError('is not a JSON object', configPath);

  // Which shards, and what the index says.
  let shards: string[];
  let weightMap: Map<string, string> | undefined;
  let indexTotal: number | undefined;
  if (fileSet.has(INDEX_FILE)) {
    const index = await readJson(folder, INDEX_FILE);
    if (!isPlainObject(index)) throw new MoeError('is not a JSON object', indexPath);
    const wm = index['weight_map'];
    if (!isPlainObject(wm)) throw new MoeError('has no "weight_map" object (tensor name → shard file)', indexPath);
    weightMap = new Map();
    for (const [tensor, file] of Object.entries(wm)) {
      if (typeof file !== 'string' || file === '') {
        throw new MoeError(`weight_map value ${JSON.stringify(file)} is not a file name`, indexPath, tensor);
      }
      if (file.includes('/') || file.includes('\\')) {
        throw new MoeError(`weight_map names ${JSON.stringify(file)}: shards in subfolders are not supported`, indexPath, tensor);
      }
      weightMap.set(tensor, file);
    }
    if (weightMap.size === 0) throw new MoeError('weight_map is empty', indexPath);
    const meta = index['metadata'];
    if (isPlainObject(meta) && meta['total_size'] !== undefined) {
      const ts = Number(meta['total_size']);
      if (Number.isFinite(ts)) indexTotal = ts;
    }
    shards = [...new Set(weightMap.values())].sort(naturalCompare);
    const missing = shards.filter((f) => !fileSet.has(f));
    if (missing.length > 0) {
      const example = [...weightMap].find(([, f]) => f === missing[0])![0];
      throw new MoeError(
        `weight_map names shard file${missing.length > 1 ? 's' : ''} not in the folder: ${listNames(missing)} (e.g. for tensor ${example})`,
        indexPath,
      );
    }
  } else if (fileSet.has(SINGLE_FILE)) {
    shards = [SINGLE_FILE];
  } else {
    shards = files.filter((f) => f.toLowerCase().endsWith('.safetensors')).sort(naturalCompare);
    if (shards.length === 0) {
      throw new MoeError(
        `no weights found: expected ${INDEX_FILE} with its shards, or ${SINGLE_FILE}, or at least one *.safetensors file`,
        folder.name,
      );
    }
    warnings.push(`no ${INDEX_FILE} and no ${SINGLE_FILE}: using every .safetensors file in the folder (${listNames(shards)})`);
  }

  // Headers.
  const opened = await mapLimit(shards, HEADER_CONCURRENCY, async (file) => {
    const src = await folder.open(file);
    const h = await readSafetensorsHeader(src);
    return { src, tensors: h.tensors.map((t) => ({ ...t, file })) };
  });
  const sources = new Map<string, ByteSource>(shards.map((f, i) => [f, opened[i]!.src]));
  const headers = opened.map((o) => o.tensors);
  const records = new Map<string, TensorRecord>();
  for (const list of headers) {
    for (const r of list) {
      const prev = records.get(r.name);
      if (prev) throw new MoeError(`is in two shards, ${prev.file} and ${r.file}`, r.file, r.name);
      records.set(r.name, r);
    }
  }
  if (weightMap) {
    const notInShard: string[] = [];
    for (const [tensor, file] of weightMap) {
      const r = records.get(tensor);
      if (!r || r.file !== file) notInShard.push(r ? `${tensor} (found in ${r.file})` : `${tensor} (in ${file})`);
    }
    if (notInShard.length > 0) {
      throw new MoeError(`weight_map names tensor${notInShard.length > 1 ? 's' : ''} missing from the shard's header: ${listNames(notInShard)}`, indexPath);
    }
    const unmapped = [...records.values()].filter((r) => !weightMap!.has(r.name));
    if (unmapped.length > 0) {
      throw new MoeError(
        `shard header${unmapped.length > 1 ? 's hold tensors' : ' holds a tensor'} the weight_map does not list: ${listNames(unmapped.map((r) => `${r.name} (in ${r.file})`))}`,
        indexPath,
      );
    }
  }

  // Scales ride with their weights.
  const scales = new Map<string, TensorRecord>();
  const dataRecords: TensorRecord[] = [];
  for (const r of records.values()) {
    if (r.name.endsWith(SCALE_SUFFIX) && r.name.length > SCALE_SUFFIX.length) {
      const weightName = r.name.slice(0, -SCALE_SUFFIX.length);
      const w = records.get(weightName);
      if (!w) throw new MoeError(`is a block scale but its weight ${weightName} is not in the model`, r.file, r.name);
      if (w.dtype !== 'F8_E4M3') {
        throw new MoeError(`is a block scale of ${weightName}, which is ${w.dtype}, not F8_E4M3`, r.file, r.name);
      }
      if (r.dtype !== 'F32') throw new MoeError(`block scale is ${r.dtype}, expected F32`, r.file, r.name);
      const expect = w.shape.length === 2 ? [Math.ceil(w.shape[0]! / FP8_BLOCK), Math.ceil(w.shape[1]! / FP8_BLOCK)] : undefined;
      if (!expect || r.shape.length !== 2 || r.shape[0] !== expect[0] || r.shape[1] !== expect[1]) {
        throw new MoeError(
          `block scale shape ${JSON.stringify(r.shape)} does not fit weight ${weightName} ${JSON.stringify(w.shape)} ` +
            `(expected ${expect ? JSON.stringify(expect) : 'a 2-D weight'} for ${FP8_BLOCK}×${FP8_BLOCK} blocks)`,
          r.file,
          r.name,
        );
      }
      scales.set(weightName, r);
    } else dataRecords.push(r);
  }

  const arch = detectArchitecture(config, dataRecords.map((r) => r.name), configPath);

  const shardIndex = new Map(shards.map((f, i) => [f, i]));
  dataRecords.sort((a, b) => shardIndex.get(a.file)! - shardIndex.get(b.file)! || a.offset - b.offset);
  const weights: Weight[] = [];
  const byName = new Map<string, Weight>();
  const unscaled: string[] = [];
  let sizeOnDisk = 0;
  for (const r of dataRecords) {
    const w: Weight = { name: r.name, role: classifyTensor(arch, r.name), data: r };
    const s = scales.get(r.name);
    if (s) w.scale = s;
    else if (r.dtype === 'F8_E4M3') {
      w.unscaledFp8 = true;
      unscaled.push(r.name);
    }
    sizeOnDisk += r.length + (s?.length ?? 0);
    weights.push(w);
    byName.set(w.name, w);
  }
  if (unscaled.length > 0) {
    warnings.push(
      `${unscaled.length} F8_E4M3 weight${unscaled.length > 1 ? 's have' : ' has'} no ${SCALE_SUFFIX} block scale ` +
        `(they can be copied but not mixed): ${listNames(unscaled, 5)}`,
    );
  }
  if (indexTotal !== undefined && indexTotal !== sizeOnDisk) {
    warnings.push(`${INDEX_FILE} metadata.total_size is ${indexTotal}, but the tensors hold ${sizeOnDisk} bytes`);
  }

  const layout = buildLayout(config, arch, weights, warnings, configPath);

  const shardSet = new Set(shards);
  const otherFiles: string[] = [];
  const ignored: string[] = [];
  for (const f of [...files].sort(naturalCompare)) {
    if (shardSet.has(f) || f === INDEX_FILE || f === CONFIG_FILE) continue;
    if (WEIGHT_FILE.test(f)) ignored.push(f);
    else otherFiles.push(f);
  }
  if (ignored.length > 0) warnings.push(`other weight files are ignored: ${listNames(ignored)}`);

  const model: Model = {
    name: folder.name,
    folder,
    config,
    arch,
    layout,
    weights,
    byName,
    shards,
    sources,
    otherFiles,
    sizeOnDisk,
  };
  if (warnings.length > 0) model.warnings = warnings;
  return model;
}

/**
 * Largest values a config may state before anything is sized from it: far above every real model
 * (DeepSeek-V3: 61 layers, 256 experts), far below what would exhaust memory.
 */
const CONFIG_LIMIT = { layers: 10_000, experts: 1_000_000 } as const;

interface ConfigReader {
  config: Record<string, unknown>;
  /** "FOLDER/config.json", for messages. */
  path: string;
}

function configInt(c: ConfigReader, key: string | null | undefined, what: string, required: true): number;
function configInt(c: ConfigReader, key: string | null | undefined, what: string, required?: false): number | undefined;
function configInt(c: ConfigReader, key: string | null | undefined, what: string, required = false): number | undefined {
  const own = key !== null && key !== undefined && Object.prototype.hasOwnProperty.call(c.config, key);
  if (!own || c.config[key!] === undefined || c.config[key!] === null) {
    if (required) throw new MoeError(`has no "${key}" (${what})`, c.path);
    return undefined;
  }
  const v = c.config[key!];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new MoeError(`"${key}" (${what}) is ${JSON.stringify(v)}, not a non-negative integer`, c.path);
  }
  return v;
}

/** Which layers the config says are MoE, among layers 0..layers-1 (layers is already bounded). */
function configMoeLayers(c: ConfigReader, arch: ArchitectureSpec, layers: number, experts: number): Set<number> {
  const k = arch.config;
  const firstDense = configInt(c, k.firstDenseLayers, 'dense layers before the first MoE layer') ?? 0;
  const freq = configInt(c, k.moeLayerFreq, 'MoE layer frequency') ?? 1;
  const step = configInt(c, k.sparseStep, 'MoE every n-th layer') ?? 1;
  const denseList = new Set<number>();
  const list = k.denseLayerList ? c.config[k.denseLayerList] : undefined;
  if (Array.isArray(list)) for (const x of list) if (typeof x === 'number') denseList.add(x);
  const out = new Set<number>();
  if (experts <= 0) return out;
  for (let l = 0; l < layers; l++) {
    if (l < firstDense) continue;
    if (freq > 1 && l % freq !== 0) continue;
    if (step > 1 && (l + 1) % step !== 0) continue;
    if (denseList.has(l)) continue;
    out.add(l);
  }
  return out;
}

function maxOf(values: Iterable<number>): number {
  let m = -Infinity;
  for (const v of values) if (v > m) m = v;
  return m;
}

/**
 * Layers, experts and shared experts from config.json, checked against the tensor names. Every
 * number the config states is compared with what the tensors show before anything is sized from
 * it, so a config claiming a billion layers is an error, not a billion-step loop.
 */
function buildLayout(config: Record<string, unknown>, arch: ArchitectureSpec, weights: Weight[], warnings: string[], configPath: string): ModelLayout {
  const c = arch.config;
  const cr: ConfigReader = { config, path: configPath };
  const layers = configInt(cr, c.layers, 'number of layers', true);
  const experts = configInt(cr, c.experts, 'routed experts per MoE layer', true);
  const expertsPerToken = configInt(cr, c.expertsPerToken, 'experts per token');
  const hiddenSize = configInt(cr, c.hiddenSize, 'hidden size');
  const mtpCount = configInt(cr, c.mtpLayers, 'multi-token-prediction layers') ?? 0;
  const sharedFromConfig = configInt(cr, c.sharedExperts, 'shared experts');
  if (layers > CONFIG_LIMIT.layers) throw new MoeError(`"${c.layers}" is ${layers}: more layers than any model has (at most ${CONFIG_LIMIT.layers})`, configPath);
  if (mtpCount > CONFIG_LIMIT.layers) throw new MoeError(`"${c.mtpLayers}" is ${mtpCount}: more layers than any model has (at most ${CONFIG_LIMIT.layers})`, configPath);
  if (experts > CONFIG_LIMIT.experts) throw new MoeError(`"${c.experts}" is ${experts}: more experts than any model has (at most ${CONFIG_LIMIT.experts})`, configPath);

  // What the tensors show.
  const expertSets = new Map<number, Set<number>>();
  const layersSeen = new Set<number>();
  let sawShared = false;
  for (const w of weights) {
    const r = w.role;
    if (r.layer !== undefined) layersSeen.add(r.layer);
    if (r.kind === 'routed_expert') {
      if (r.layer === undefined || r.expert === undefined) {
        throw new MoeError('looks like a routed expert but has no layer/expert index', w.data.file, w.name);
      }
      let s = expertSets.get(r.layer);
      if (!s) expertSets.set(r.layer, (s = new Set()));
      s.add(r.expert);
    }
    if (r.kind === 'shared_expert') sawShared = true;
  }
  if (expertSets.size === 0) {
    throw new MoeError(`no routed expert tensors found for family ${arch.name}: this does not look like an MoE checkpoint`, configPath);
  }

  // The config's layer count against the highest layer the tensors show.
  const lastSeen = maxOf(layersSeen);
  if (layers > lastSeen + 1) {
    throw new MoeError(`"${c.layers}" is ${layers}, but the tensors show layers 0-${lastSeen} only`, configPath);
  }
  // Layers beyond the config: only MTP layers.
  const mtpLayers: number[] = [];
  const beyond = [...layersSeen].filter((l) => l >= layers).sort((a, b) => a - b);
  for (const l of beyond) {
    if (l < layers + mtpCount) mtpLayers.push(l);
    else {
      const example = weights.find((w) => w.role.layer === l)!;
      throw new MoeError(
        `tensor names show layer ${l}, but config "${c.layers}" is ${layers}` +
          (c.mtpLayers ? ` and "${c.mtpLayers}" is ${mtpCount}` : ''),
        example.data.file,
        example.name,
      );
    }
  }
  const empty: number[] = [];
  for (let l = 0; l < layers; l++) if (!layersSeen.has(l)) empty.push(l);
  if (empty.length > 0) {
    throw new MoeError(`config "${c.layers}" is ${layers}, but no tensors were found for layer${empty.length > 1 ? 's' : ''} ${rangeText(empty)}`, configPath);
  }

  // Expert counts per MoE layer, MTP layers included.
  for (const [l, set] of [...expertSets].sort((a, b) => a[0] - b[0])) {
    const max = maxOf(set) + 1;
    if (max > experts) {
      throw new MoeError(`config "${c.experts}" is ${experts}, but layer ${l} has tensors for expert ${max - 1} (${max} or more experts)`, configPath);
    }
    if (experts > max) {
      throw new MoeError(`config "${c.experts}" is ${experts}, but layer ${l} has tensors for experts 0-${max - 1} only`, configPath);
    }
    if (set.size !== experts) {
      const missing: number[] = [];
      for (let e = 0; e < experts; e++) if (!set.has(e)) missing.push(e);
      throw new MoeError(`config "${c.experts}" is ${experts}, but layer ${l} has no tensors for expert${missing.length > 1 ? 's' : ''} ${rangeText(missing)}`, configPath);
    }
  }
  if (expertsPerToken !== undefined && (expertsPerToken < 1 || expertsPerToken > experts)) {
    throw new MoeError(
      `"${c.expertsPerToken}" is ${expertsPerToken}, but each token must be routed to between 1 and the ${experts} experts of a layer`,
      configPath,
    );
  }
  requireCompleteExperts(weights);

  const moeLayers = [...expertSets.keys()].filter((l) => l < layers).sort((a, b) => a - b);
  const denseLayers: number[] = [];
  for (let l = 0; l < layers; l++) if (!expertSets.has(l)) denseLayers.push(l);
  const expected = [...configMoeLayers(cr, arch, layers, experts)].sort((a, b) => a - b);
  if (expected.join(',') !== moeLayers.join(',')) {
    throw new MoeError(
      `the config implies MoE layers ${rangeText(expected)}, but routed expert tensors are in layers ${rangeText(moeLayers)}`,
      configPath,
    );
  }

  let sharedExperts: number;
  if (sharedFromConfig !== undefined) {
    sharedExperts = sharedFromConfig;
    if (sharedFromConfig > 0 && !sawShared) {
      throw new MoeError(`config "${c.sharedExperts}" is ${sharedFromConfig}, but no shared expert tensors were found`, configPath);
    }
    if (sharedFromConfig === 0 && sawShared) {
      warnings.push(`config "${c.sharedExperts}" is 0, but shared expert tensors were found`);
    }
  } else sharedExperts = sawShared ? 1 : 0;

  const layout: ModelLayout = { layers, moeLayers, denseLayers, experts, sharedExperts };
  if (expertsPerToken !== undefined) layout.expertsPerToken = expertsPerToken;
  if (hiddenSize !== undefined) layout.hiddenSize = hiddenSize;
  if (mtpLayers.length > 0) layout.mtpLayers = mtpLayers;
  return layout;
}

/**
 * Every routed expert of a layer holds the same tensors (its projections, and their biases where
 * the family has them). A missing one is an error naming it: a child merged without it would not
 * load, and silently taking it from elsewhere would make a model nobody asked for.
 */
function requireCompleteExperts(weights: Weight[]): void {
  // Per layer: the tensor name of each (expert, slot), a slot being the name with its expert index wildcarded.
  const layersMap = new Map<number, Map<string, Map<number, Weight>>>();
  const EXPERT_INDEX = /(^|\.)experts\.(\d+)\./;
  for (const w of weights) {
    const r = w.role;
    if (r.kind !== 'routed_expert' || r.layer === undefined || r.expert === undefined) continue;
    const slot = w.name.replace(EXPERT_INDEX, '$1experts.*.');
    let slots = layersMap.get(r.layer);
    if (!slots) layersMap.set(r.layer, (slots = new Map()));
    let byExpert = slots.get(slot);
    if (!byExpert) slots.set(slot, (byExpert = new Map()));
    byExpert.set(r.expert, w);
  }
  for (const [layer, slots] of [...layersMap].sort((a, b) => a[0] - b[0])) {
    const experts = new Set<number>();
    for (const byExpert of slots.values()) for (const e of byExpert.keys()) experts.add(e);
    for (const [slot, byExpert] of slots) {
      if (byExpert.size === experts.size) continue;
      const missing = [...experts].filter((e) => !byExpert.has(e)).sort((a, b) => a - b);
      const example = byExpert.values().next().value as Weight;
      const name = slot.replace('experts.*.', `experts.${missing[0]}.`);
      throw new MoeError(
        `layer ${layer}: expert${missing.length > 1 ? 's' : ''} ${rangeText(missing)} ${missing.length > 1 ? 'lack' : 'lacks'} ` +
          `${name}${missing.length > 1 ? ' (and the others of that slot)' : ''}, which the layer's other experts have (e.g. ${example.name}): ` +
          'an incomplete expert cannot be merged',
        example.data.file,
        name,
      );
    }
  }
}
