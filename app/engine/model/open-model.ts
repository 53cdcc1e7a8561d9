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
import { MoeError, readAll, type ByteSource, type ModelFolder } from '../io.ts';
import { classifyTensor } from '../arch/classify.ts';
import { configValue, detectArchitecture } from '../arch/families.ts';
import type { ArchitectureSpec, ConfigKeys } from '../arch/types.ts';
import { groupWeights } from '../formats/companions.ts';
import { readSafetensorsHeader } from '../formats/safetensors.ts';
import { codecName, dataBytes, stripeScales } from '../formats/codec.ts';
import { configMoeLayers } from './moe-layers.ts';
import { biasRegion, fusedRegions, fusedView, wholeRegion } from './regions.ts';
import type { LayerExperts, Model, ModelLayout, TensorRecord, Weight } from './types.ts';

export const CONFIG_FILE = 'config.json';
export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

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
  // A failed read says why itself (a missing file, a refused download); only decoding is ours to name.
  const bytes = await readAll(await folder.open(file));
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
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

  // Quantized companions ride with their weights; then the architecture, by logical names.
  const grouped = groupWeights(records);
  const arch = detectArchitecture(config, grouped.map((g) => g.name), configPath);
  const cr: ConfigReader = { config, path: configPath, arch };
  const layersCount = configInt(cr, 'layers', 'number of layers', true);
  if (layersCount > CONFIG_LIMIT.layers) throw new MoeError(`"${configValue(arch, config, 'layers')!.path}" is ${layersCount}: more layers than any model has (at most ${CONFIG_LIMIT.layers})`, configPath);

  const shardIndex = new Map(shards.map((f, i) => [f, i]));
  grouped.sort((a, b) => shardIndex.get(a.data.file)! - shardIndex.get(b.data.file)! || a.data.offset - b.data.offset);
  const weights: Weight[] = [];
  const byName = new Map<string, Weight>();
  const unscaled: string[] = [];
  let sizeOnDisk = 0;
  for (const g of grouped) {
    const c = classifyTensor(arch, g.name, layersCount, g.codec.kind);
    const w: Weight = { name: g.name, role: c.role, codec: g.codec, shape: g.shape, view: { slabs: 1, rows: 1, cols: 1 }, data: g.data, companions: g.companions };
    if (c.fused) w.fused = c.fused;
    if (c.perExpert) w.experts = { kind: 'slabs', parts: [] };
    if (c.expertSpan) w.expertSpan = c.expertSpan;
    if (g.codec.kind === 'plain' && g.codec.dtype === 'F8_E4M3') unscaled.push(g.name);
    sizeOnDisk += g.data.length + g.companions.reduce((n, x) => n + x.record.length, 0);
    weights.push(w);
    byName.set(w.name, w);
  }
  if (unscaled.length > 0) {
    warnings.push(
      `${unscaled.length} F8_E4M3 weight${unscaled.length > 1 ? 's have' : ' has'} no scale tensor ` +
        `(they can be copied but not mixed): ${listNames(unscaled, 5)}`,
    );
  }
  if (indexTotal !== undefined && indexTotal !== sizeOnDisk) {
    warnings.push(`${INDEX_FILE} metadata.total_size is ${indexTotal}, but the tensors hold ${sizeOnDisk} bytes`);
  }

  const layout = buildLayout(cr, layersCount, weights, warnings);
  placeExperts(weights, layout, configPath);
  const experts = indexExperts(weights, layout);

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
    experts,
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
  arch: ArchitectureSpec;
}

/**
 * A config integer by the family's keys. A list of equal integers (Hunyuan's per-layer moe_topk)
 * counts as that integer; a list of different ones as unknown.
 */
function configInt(c: ConfigReader, field: keyof ConfigKeys, what: string, required: true): number;
function configInt(c: ConfigReader, field: keyof ConfigKeys, what: string, required?: false): number | undefined;
function configInt(c: ConfigReader, field: keyof ConfigKeys, what: string, required = false): number | undefined {
  const found = configValue(c.arch, c.config, field);
  if (!found) {
    if (required) throw new MoeError(`has no ${c.arch.config[field].map((k) => `"${k}"`).join(' or ') || `key for ${field}`} (${what})`, c.path);
    return undefined;
  }
  let v = found.value;
  if (Array.isArray(v)) v = v.length > 0 && v.every((x) => x === (v as unknown[])[0]) ? v[0] : undefined;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new MoeError(`"${found.path}" (${what}) is ${JSON.stringify(found.value)}, not a non-negative integer`, c.path);
  }
  return v;
}

function keyName(c: ConfigReader, field: keyof ConfigKeys): string {
  return configValue(c.arch, c.config, field)?.path ?? c.arch.config[field][0] ?? field;
}

function maxOf(values: Iterable<number>): number {
  let m = -Infinity;
  for (const v of values) if (v > m) m = v;
  return m;
}

/** Experts a weight stacks: a fused tensor's first dimension (DBRX's 2-D ones: rows / per-expert rows). */
function fusedCount(w: Weight): number {
  return w.shape[0] ?? 1;
}

/**
 * Layers, experts and shared experts from config.json, checked against the tensors. Every number
 * the config states is compared with what the tensors show before anything is sized from it, so a
 * config claiming a billion layers is an error, not a billion-step loop.
 */
function buildLayout(cr: ConfigReader, layers: number, weights: Weight[], warnings: string[]): ModelLayout {
  const configPath = cr.path;
  const experts = configInt(cr, 'experts', 'routed experts per MoE layer', true);
  const expertsPerToken = configInt(cr, 'expertsPerToken', 'experts per token');
  const hiddenSize = configInt(cr, 'hiddenSize', 'hidden size');
  const mtpCount = configInt(cr, 'mtpLayers', 'multi-token-prediction layers') ?? 0;
  const sharedFromConfig = configInt(cr, 'sharedExperts', 'shared experts');
  const groups = configInt(cr, 'groups', 'expert groups');
  const topkGroups = configInt(cr, 'topkGroups', 'groups chosen per token');
  if (mtpCount > CONFIG_LIMIT.layers) throw new MoeError(`"${keyName(cr, 'mtpLayers')}" is ${mtpCount}: more layers than any model has (at most ${CONFIG_LIMIT.layers})`, configPath);
  if (experts > CONFIG_LIMIT.experts) throw new MoeError(`"${keyName(cr, 'experts')}" is ${experts}: more experts than any model has (at most ${CONFIG_LIMIT.experts})`, configPath);
  const eKey = keyName(cr, 'experts');

  // What the tensors show: per-expert tensors name their expert; a fused tensor holds them all.
  const expertSets = new Map<number, Set<number>>();
  const fusedByLayer = new Map<number, Weight[]>();
  const layersSeen = new Set<number>();
  let sawShared = false;
  for (const w of weights) {
    const r = w.role;
    if (r.layer !== undefined) layersSeen.add(r.layer);
    if (r.kind === 'routed_expert') {
      if (r.layer === undefined) throw new MoeError('looks like a routed expert but has no layer index', w.data.file, w.name);
      if (w.fused) {
        const list = fusedByLayer.get(r.layer) ?? [];
        list.push(w);
        fusedByLayer.set(r.layer, list);
        continue;
      }
      if (r.expert === undefined) throw new MoeError('looks like a routed expert but has no expert index', w.data.file, w.name);
      let s = expertSets.get(r.layer);
      if (!s) expertSets.set(r.layer, (s = new Set()));
      s.add(r.expert);
    }
    if (r.kind === 'shared_expert') sawShared = true;
  }
  if (expertSets.size === 0 && fusedByLayer.size === 0) {
    throw new MoeError(`no routed expert tensors found for family ${cr.arch.name}: this does not look like an MoE checkpoint`, configPath);
  }

  // The config's layer count against the highest layer the tensors show.
  const lastSeen = maxOf(layersSeen);
  if (layers > lastSeen + 1) throw new MoeError(`"${keyName(cr, 'layers')}" is ${layers}, but the tensors show layers 0-${lastSeen} only`, configPath);
  // Layers beyond the config: only MTP layers.
  const mtpLayers: number[] = [];
  for (const l of [...layersSeen].filter((x) => x >= layers).sort((a, b) => a - b)) {
    if (l < layers + mtpCount) mtpLayers.push(l);
    else {
      const example = weights.find((w) => w.role.layer === l)!;
      throw new MoeError(
        `tensor names show layer ${l}, but config "${keyName(cr, 'layers')}" is ${layers}` + (cr.arch.config.mtpLayers.length > 0 ? ` and "${keyName(cr, 'mtpLayers')}" is ${mtpCount}` : ''),
        example.data.file,
        example.name,
      );
    }
  }
  const empty: number[] = [];
  for (let l = 0; l < layers; l++) if (!layersSeen.has(l)) empty.push(l);
  if (empty.length > 0) throw new MoeError(`config "${keyName(cr, 'layers')}" is ${layers}, but no tensors were found for layer${empty.length > 1 ? 's' : ''} ${rangeText(empty)}`, configPath);

  // Expert counts per MoE layer, MTP layers included.
  for (const [l, list] of [...fusedByLayer].sort((a, b) => a[0] - b[0])) {
    for (const w of list) {
      const n = w.fused!.stacked2d ? Math.floor((w.shape[0] ?? 0) / Math.max(1, experts)) * experts === (w.shape[0] ?? 0) ? experts : -1 : fusedCount(w);
      if (n !== experts) {
        throw new MoeError(
          w.fused!.stacked2d
            ? `shape [${w.shape}] does not stack config "${eKey}" = ${experts} experts along its rows`
            : `stacks ${fusedCount(w)} experts (shape [${w.shape}]), but config "${eKey}" is ${experts}`,
          w.data.file,
          w.name,
        );
      }
    }
    if (expertSets.has(l)) {
      const w = list[0]!;
      throw new MoeError(`layer ${l} holds routed experts both fused and one tensor per expert`, w.data.file, w.name);
    }
  }
  for (const [l, set] of [...expertSets].sort((a, b) => a[0] - b[0])) {
    const max = maxOf(set) + 1;
    if (max > experts) throw new MoeError(`config "${eKey}" is ${experts}, but layer ${l} has tensors for expert ${max - 1} (${max} or more experts)`, configPath);
    if (experts > max) throw new MoeError(`config "${eKey}" is ${experts}, but layer ${l} has tensors for experts 0-${max - 1} only`, configPath);
    if (set.size !== experts) {
      const missing: number[] = [];
      for (let e = 0; e < experts; e++) if (!set.has(e)) missing.push(e);
      throw new MoeError(`config "${eKey}" is ${experts}, but layer ${l} has no tensors for expert${missing.length > 1 ? 's' : ''} ${rangeText(missing)}`, configPath);
    }
  }
  if (expertsPerToken !== undefined && (expertsPerToken < 1 || expertsPerToken > experts)) {
    throw new MoeError(`"${keyName(cr, 'expertsPerToken')}" is ${expertsPerToken}, but each token must be routed to between 1 and the ${experts} experts of a layer`, configPath);
  }
  if (groups !== undefined && groups > 1 && experts % groups !== 0) {
    throw new MoeError(`"${keyName(cr, 'groups')}" is ${groups}, which does not divide the ${experts} experts of a layer into equal groups`, configPath);
  }

  const moeSet = new Set([...expertSets.keys(), ...fusedByLayer.keys()]);
  const moeLayers = [...moeSet].filter((l) => l < layers).sort((a, b) => a - b);
  const denseLayers: number[] = [];
  for (let l = 0; l < layers; l++) if (!moeSet.has(l)) denseLayers.push(l);
  const expected = configMoeLayers(cr.arch, cr.config, layers, configPath);
  if (expected.join(',') !== moeLayers.join(',')) {
    throw new MoeError(`the config implies MoE layers ${rangeText(expected)}, but routed expert tensors are in layers ${rangeText(moeLayers)}`, configPath);
  }

  let sharedExperts: number;
  if (sharedFromConfig !== undefined) {
    sharedExperts = sharedFromConfig;
    if (sharedFromConfig > 0 && !sawShared) throw new MoeError(`config "${keyName(cr, 'sharedExperts')}" is ${sharedFromConfig}, but no shared expert tensors were found`, configPath);
    if (sharedFromConfig === 0 && sawShared) warnings.push(`config "${keyName(cr, 'sharedExperts')}" is 0, but shared expert tensors were found`);
  } else sharedExperts = sawShared ? 1 : 0;

  const layout: ModelLayout = { layers, moeLayers, denseLayers, experts, sharedExperts };
  if (expertsPerToken !== undefined) layout.expertsPerToken = expertsPerToken;
  if (hiddenSize !== undefined) layout.hiddenSize = hiddenSize;
  if (mtpLayers.length > 0) layout.mtpLayers = mtpLayers;
  if (groups !== undefined) layout.groups = groups;
  if (topkGroups !== undefined) layout.topkGroups = topkGroups;
  return layout;
}

/**
 * Every weight's view (slabs × rows × cols) and, for weights that stack experts, where each
 * expert's projections sit in its slab.
 */
function placeExperts(weights: Weight[], layout: ModelLayout, configPath: string): void {
  const E = layout.experts;
  for (const w of weights) {
    const s = w.shape;
    if (w.fused) {
      w.view = fusedView(s, w.fused, E);
      w.experts = { kind: 'slabs', parts: fusedRegions(w.view, w.fused, layout.hiddenSize, { file: w.data.file, name: w.name, config: configPath }) };
      checkStored(w);
      continue;
    }
    if (w.experts?.kind === 'slabs') {
      // A router's rows or a bias's entries: the first dimension that is not 1 is the expert.
      const dims = s.filter((d) => d !== 1);
      const first = dims[0] ?? 1;
      if (first !== E) {
        throw new MoeError(`should hold one row or entry per expert (${E}), but its shape is [${s}]`, w.data.file, w.name);
      }
      const rest = dims.slice(1).reduce((a, b) => a * b, 1);
      w.view = { slabs: E, rows: 1, cols: rest };
      w.experts = { kind: 'slabs', parts: [{ region: wholeRegion(1, rest) }] };
      checkStored(w);
      continue;
    }
    const rows = s.length >= 2 ? s[0]! : 1;
    const cols = s.length >= 2 ? s.slice(1).reduce((a, b) => a * b, 1) : (s[0] ?? 1);
    w.view = { slabs: 1, rows, cols };
    if (w.role.kind === 'routed_expert' && w.role.expert !== undefined) {
      w.experts = w.role.proj ? { kind: 'single', expert: w.role.expert, proj: w.role.proj } : { kind: 'single', expert: w.role.expert };
    }
    checkStored(w);
  }
}

/**
 * The stored bytes must be exactly what the view and codec say: every slab the same size, so a
 * slab's bytes (and its scales) are at a fixed stride. A mismatch is a file no loader would read.
 */
function checkStored(w: Weight): void {
  const { slabs, rows, cols } = w.view;
  if (w.codec.kind === 'plain') {
    // The safetensors reader checked bytes against shape and dtype; slabs need equal shares.
    if (w.data.length % Math.max(1, slabs) !== 0) throw new MoeError(`holds ${w.data.length} bytes, which do not split into ${slabs} equal slabs`, w.data.file, w.name);
    return;
  }
  const want = slabs * dataBytes(w.codec, rows, cols);
  if (w.data.length !== want) {
    throw new MoeError(`holds ${w.data.length} bytes of ${codecName(w.codec)}, but ${slabs} × ${rows} × ${cols} values take ${want}`, w.data.file, w.data.name);
  }
  const scale = w.companions.find((c) => c.role === 'scale');
  if (scale && w.codec.kind !== 'nvfp4') {
    const sc = slabs * stripeScales(w.codec, rows, cols).bytes;
    if (scale.record.length !== sc) {
      throw new MoeError(`scale holds ${scale.record.length} bytes, but ${slabs} × ${rows} × ${cols} values of ${codecName(w.codec)} need ${sc}`, scale.record.file, scale.record.name);
    }
  }
}

/**
 * The routed experts of every layer: where each expert's projections (and biases) are, and the
 * router tensors with a row or entry per expert. Every expert of a layer must have the same parts:
 * a missing one is an error naming it (a child without it would not load, and silently taking it
 * from elsewhere would make a model nobody asked for).
 */
function indexExperts(weights: Weight[], layout: ModelLayout): Map<number, LayerExperts> {
  const out = new Map<number, LayerExperts>();
  const layerOf = (l: number) => {
    let le = out.get(l);
    if (!le) out.set(l, (le = { layer: l, experts: layout.experts, parts: Array.from({ length: layout.experts }, () => []), routers: [] }));
    return le;
  };
  // Per layer: which (slot) each expert has, a slot being the tensor name with its expert index wildcarded.
  const slots = new Map<number, Map<string, Map<number, Weight>>>();
  for (const w of weights) {
    const r = w.role;
    if (r.layer === undefined || !w.experts) continue;
    if (r.kind === 'router' || r.kind === 'router_bias') {
      layerOf(r.layer).routers.push(w);
      continue;
    }
    if (r.kind !== 'routed_expert') continue;
    const le = layerOf(r.layer);
    if (w.experts.kind === 'single') {
      const proj = w.experts.proj;
      if (proj) le.parts[w.experts.expert]!.push({ weight: w, slab: 0, region: r.bias ? biasRegion(w.view.rows * w.view.cols) : wholeRegion(w.view.rows, w.view.cols), proj, bias: !!r.bias });
      const span = w.expertSpan;
      const slot = span ? w.name.slice(0, span[0]) + '*' + w.name.slice(span[1]) : w.name;
      let bySlot = slots.get(r.layer);
      if (!bySlot) slots.set(r.layer, (bySlot = new Map()));
      let byExpert = bySlot.get(slot);
      if (!byExpert) bySlot.set(slot, (byExpert = new Map()));
      byExpert.set(w.experts.expert, w);
    } else {
      for (let e = 0; e < layout.experts; e++) {
        for (const p of w.experts.parts) le.parts[e]!.push({ weight: w, slab: e, region: p.region, proj: p.proj!, bias: !!w.fused?.bias });
      }
    }
  }
  for (const [layer, bySlot] of [...slots].sort((a, b) => a[0] - b[0])) {
    for (const [slot, byExpert] of bySlot) {
      if (byExpert.size === layout.experts) continue;
      const missing: number[] = [];
      for (let e = 0; e < layout.experts; e++) if (!byExpert.has(e)) missing.push(e);
      const example = byExpert.values().next().value as Weight;
      const name = slot.replace('*', String(missing[0]));
      throw new MoeError(
        `layer ${layer}: expert${missing.length > 1 ? 's' : ''} ${rangeText(missing)} ${missing.length > 1 ? 'lack' : 'lacks'} ` +
          `${name}${missing.length > 1 ? ' (and the others of that slot)' : ''}, which the layer's other experts have (e.g. ${example.name}): ` +
          'an incomplete expert cannot be merged',
        example.data.file,
        name,
      );
    }
  }
  return out;
}
