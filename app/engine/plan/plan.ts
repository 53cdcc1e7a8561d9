// From a recipe and opened parents to a complete merge plan. Everything that can be wrong with a
// recipe is found here, before a byte is written, and reported with the rule it concerns.
import { DTYPE_SIZE, FP8_BLOCK, OUTPUT_DTYPE, elementCount, isFloatDtype, sameShape, type FloatDtype } from '../formats/dtype.ts';
import { buildSafetensorsHeader, referenceTensorOrder } from '../formats/safetensors.ts';
import { MoeError, readAll } from '../io.ts';
import { checkCompatibility } from '../model/compat.ts';
import { INDEX_FILE } from '../model/open-model.ts';
import { TENSOR_KINDS, type Model, type Weight } from '../model/types.ts';
import { parseByteSize, recipeToYaml } from '../recipe/parse.ts';
import type { Recipe, Rule } from '../recipe/schema.ts';
import { compileSelector, type Matcher } from '../recipe/select.ts';
import { renderModelCard } from '../report/model-card.ts';
import { formatBytes, rangeText } from '../report/format.ts';
import { childConfig, filesToCopy } from './output-files.ts';
import type { BiasPatch, KindSummary, MergePlan, PlannedFile, PlannedShard, PlannedTensor, TensorOp } from './types.ts';

/** Sum of weights may differ from 1 by this much. */
export const WEIGHT_SUM_TOLERANCE = 1e-6;
/** Router-bias value an `off` edit writes: no sigmoid score (0..1) plus another expert's bias can reach below it. */
export const EXPERT_OFF_BIAS = -1e4;
/** Router-bias value an `on` edit writes: always among the chosen experts. */
export const EXPERT_ON_BIAS = 1e4;

export { INDEX_FILE };
export const RECIPE_FILE = 'moe-studio-recipe.yaml';
export const CARD_FILE = 'README.md';

export function shardFileName(i: number, n: number): string {
  const pad = (x: number) => String(x).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

interface CompiledRule {
  index: number;
  rule: Rule;
  match: Matcher;
  /** Non-zero weights in parent order; a single entry of 1 means "copy". */
  weights: { parent: string; weight: number }[];
  /** Tensors this rule decides (it is the first to match them). */
  decided: number;
  /** Tensors its `select` matches, decided here or by an earlier rule. */
  matched: number;
}

/** Parents in the recipe's order, mapped to their opened models. */
export async function planMerge(recipe: Recipe, parents: Map<string, Model>): Promise<MergePlan> {
  const parentOrder = Object.keys(recipe.parents);
  if (parentOrder.length < 1) throw new MoeError('the recipe names no parents');
  for (const name of parentOrder) {
    if (!parents.has(name)) throw new MoeError(`parent "${name}" was not opened`);
  }
  const base = recipe.base ?? parentOrder[0]!;
  if (!recipe.parents[base]) {
    throw new MoeError(`base "${base}" is not one of the parents (${parentOrder.join(', ')})`);
  }
  const baseModel = parents.get(base)!;
  const warnings: string[] = [];

  const compat = checkCompatibility(
    parentOrder.map((name) => ({ name, model: parents.get(name)! })),
    base,
  );
  const errors = compat.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) {
    const shown = errors.slice(0, 20).map((p) => `${p.parent}${p.tensor ? ` ${p.tensor}` : ''}: ${p.message}`);
    const more = errors.length > 20 ? `; and ${errors.length - 20} more` : '';
    throw new MoeError(`the parents cannot be merged: ${shown.join('; ')}${more}`);
  }
  for (const p of compat.problems) {
    if (p.severity !== 'error') warnings.push(`${p.parent}${p.tensor ? ` ${p.tensor}` : ''}: ${p.message}`);
  }

  const rules = recipe.rules.map((rule, index) => compileRule(rule, index, parentOrder));
  const outName = recipe.output.dtype;
  const outputDtype: FloatDtype | 'keep' = outName === 'keep' ? 'keep' : OUTPUT_DTYPE[outName];
  const shardSize = parseByteSize(recipe.output.shard_size);
  const edits = resolveEdits(recipe, baseModel);

  const tensors: PlannedTensor[] = [];
  for (const weight of baseModel.weights) {
    let rule: CompiledRule | undefined;
    for (const r of rules) {
      if (!r.match(weight.name, weight.role)) continue;
      r.matched++;
      rule ??= r;
    }
    if (rule) rule.decided++;
    const weights = rule ? rule.weights : [{ parent: base, weight: 1 }];
    const single = weights.length === 1 ? weights[0]!.parent : undefined;
    const where = rule ? `rule ${rule.index + 1}` : 'unmatched tensors (from the base)';

    // Every parent that contributes must have this tensor with the base's shape.
    const inputs = weights.map(({ parent }) => {
      const w = parents.get(parent)!.byName.get(weight.name);
      if (!w) throw new MoeError(`${where} takes this tensor from "${parent}", which does not have it`, undefined, weight.name);
      if (!sameShape(w.data.shape, weight.data.shape)) {
        throw new MoeError(
          `${where}: shape in "${parent}" is [${w.data.shape}], base "${base}" has [${weight.data.shape}]`,
          undefined,
          weight.name,
        );
      }
      return { parent, weight: w };
    });

    let op: TensorOp;
    let dtype: string;
    if (single !== undefined) {
      const src = inputs[0]!.weight;
      dtype = outputDtypeFor(src, outputDtype);
      op = dtype === src.data.dtype ? { type: 'copy', parent: single } : { type: 'convert', parent: single };
      if (op.type === 'convert') requireDecodable(src, single, where);
    } else {
      for (const { parent, weight: w } of inputs) requireDecodable(w, parent, `${where} mixes it, but`);
      dtype = outputDtypeFor(weight, outputDtype);
      op = { type: 'mix', weights: parentOrder.map((p) => ({ parent: p, weight: weights.find((x) => x.parent === p)?.weight ?? 0 })) };
    }

    const planned: PlannedTensor = {
      name: weight.name,
      role: weight.role,
      shape: weight.data.shape,
      op,
      rule: rule ? rule.index : -1,
      dtype,
      bytes: elementCount(weight.data.shape) * DTYPE_SIZE[dtype]!,
      thresholdCandidate: op.type === 'mix' && recipe.threshold !== undefined,
    };

    const key = expertKey(weight.role.layer, weight.role.expert);
    if (weight.role.kind === 'routed_expert' && weight.role.proj === 'down' && edits.mute.has(key)) {
      planned.op = { type: 'zero' };
      planned.edit = 'mute';
      planned.thresholdCandidate = false;
      edits.mute.delete(key);
    }
    if (weight.role.kind === 'router_bias' && weight.role.layer !== undefined) {
      const patches = edits.bias.get(weight.role.layer);
      if (patches) {
        if (!isFloatDtype(dtype)) throw new MoeError(`router bias has dtype ${dtype}; expert edits need a float tensor`, undefined, weight.name);
        planned.patches = patches;
        edits.bias.delete(weight.role.layer);
      }
    }
    attachScale(planned, op, inputs[0]!.weight);
    tensors.push(planned);
  }

  for (const r of rules) {
    if (r.matched === 0) {
      throw new MoeError(`rule ${r.index + 1} (${JSON.stringify(r.rule.select)}) matches no tensor of the base "${base}"`);
    }
    if (r.decided === 0) {
      warnings.push(`rule ${r.index + 1} (${JSON.stringify(r.rule.select)}) matches ${r.matched} tensors, but earlier rules decide all of them (the first matching rule wins)`);
    }
  }
  for (const key of edits.mute.keys()) {
    throw new MoeError(`edit mute of ${key}: the base "${base}" has no down projection for that expert`);
  }
  for (const layer of edits.bias.keys()) {
    throw new MoeError(`edits of layer ${layer}: the base "${base}" has no router bias (e_score_correction_bias) in that layer`);
  }

  const shards = layoutShards(tensors, shardSize);
  const tensorBytes = tensors.reduce((s, t) => s + t.bytes + (t.scale?.bytes ?? 0), 0);
  const baseConfigBytes = await readAll(await baseModel.folder.open('config.json'));
  const { config, configBytes } = childConfig(baseModel, tensors, baseConfigBytes);
  const copiedFiles = filesToCopy(baseModel);
  const byKind = summarizeByKind(tensors, parentOrder);

  const plan: MergePlan = {
    recipe,
    parentOrder,
    base,
    parents,
    tensors,
    shards,
    files: [],
    totalBytes: 0,
    tensorBytes,
    copiedFiles,
    config,
    configBytes,
    byKind,
    description: '',
    warnings,
    outputDtype,
    shardSize,
  };
  const copiedSizes = await Promise.all(copiedFiles.map(async (f) => (await baseModel.folder.open(f)).size));
  plan.files = plannedFiles(plan, copiedSizes);
  plan.totalBytes = plan.files.reduce((s, f) => s + f.bytes, 0);
  plan.description = describePlan(plan);
  return plan;
}

function compileRule(rule: Rule, index: number, parentOrder: string[]): CompiledRule {
  const where = `rule ${index + 1}`;
  let weights: { parent: string; weight: number }[];
  if (rule.from !== undefined) {
    if (!parentOrder.includes(rule.from)) {
      throw new MoeError(`${where}: from "${rule.from}" is not a parent (${parentOrder.join(', ')})`);
    }
    weights = [{ parent: rule.from, weight: 1 }];
  } else {
    const given = rule.weights!;
    for (const name of Object.keys(given)) {
      if (!parentOrder.includes(name)) throw new MoeError(`${where}: weights name "${name}", which is not a parent (${parentOrder.join(', ')})`);
    }
    const sum = Object.values(given).reduce((s, w) => s + w, 0);
    if (Math.abs(sum - 1) > WEIGHT_SUM_TOLERANCE) {
      throw new MoeError(`${where}: weights must sum to 1 (a convex combination), they sum to ${sum}`);
    }
    weights = parentOrder.filter((p) => (given[p] ?? 0) !== 0).map((p) => ({ parent: p, weight: given[p]! }));
    // A single weight of 1 is a copy, exactly as `from:` would be.
    if (weights.length === 1) weights = [{ parent: weights[0]!.parent, weight: 1 }];
  }
  return { index, rule, match: compileSelector(rule.select, where), weights, decided: 0, matched: 0 };
}

function requireDecodable(w: Weight, parent: string, where: string): void {
  if (!isFloatDtype(w.data.dtype)) {
    throw new MoeError(`${where} "${parent}" stores it as ${w.data.dtype}, which can only be copied (use \`from:\`)`, undefined, w.name);
  }
  if (w.data.dtype === 'F8_E4M3') {
    if (!w.scale) throw new MoeError(`${where} "${parent}" has no ${w.name}_scale_inv block scale for this F8_E4M3 weight`, undefined, w.name);
    if (w.data.shape.length !== 2) throw new MoeError(`${where} F8_E4M3 weights must be 2-D, this one is [${w.data.shape}]`, undefined, w.name);
    const want = [Math.ceil(w.data.shape[0]! / FP8_BLOCK), Math.ceil(w.data.shape[1]! / FP8_BLOCK)];
    const got = w.scale.shape.length === 1 ? [w.scale.shape[0]!, 1] : w.scale.shape;
    if (w.scale.dtype !== 'F32' || !sameShape(got, want)) {
      throw new MoeError(
        `${where} "${parent}": its scale ${w.scale.name} is ${w.scale.dtype} [${w.scale.shape}], expected F32 [${want}] (128×128 blocks)`,
        undefined,
        w.name,
      );
    }
  }
}

/**
 * The child's dtype for a tensor. `keep`: the source's own dtype. Otherwise every float tensor takes
 * the requested dtype, except the router's selection bias, which stays in its own (F32) precision.
 */
function outputDtypeFor(src: Weight, out: FloatDtype | 'keep'): string {
  if (out === 'keep' || !isFloatDtype(src.data.dtype) || src.role.kind === 'router_bias') return src.data.dtype;
  return out;
}

/** FP8 weights carry a scale tensor: copied with a copy, freshly computed with a mix, gone after conversion. */
function attachScale(t: PlannedTensor, op: TensorOp, src: Weight): void {
  if (t.dtype !== 'F8_E4M3') return;
  const rows = t.shape[0] ?? 1;
  const cols = t.shape[1] ?? 1;
  const shape = op.type === 'copy' && src.scale ? src.scale.shape : [Math.ceil(rows / FP8_BLOCK), Math.ceil(cols / FP8_BLOCK)];
  t.scale = { name: src.scale?.name ?? `${t.name}_scale_inv`, shape, bytes: elementCount(shape) * 4 };
}

function expertKey(layer: number | undefined, expert: number | undefined): string {
  return `layer ${layer} expert ${expert}`;
}

interface ResolvedEdits {
  mute: Map<string, true>;
  bias: Map<number, BiasPatch[]>;
}

function resolveEdits(recipe: Recipe, base: Model): ResolvedEdits {
  const mute = new Map<string, true>();
  const bias = new Map<number, BiasPatch[]>();
  const seen = new Map<string, string>();
  const { layout, arch } = base;
  recipe.edits.forEach((e, i) => {
    const where = `edit ${i + 1} (layer ${e.layer}, expert ${e.expert}, ${e.action})`;
    if (!layout.moeLayers.includes(e.layer)) {
      throw new MoeError(`${where}: layer ${e.layer} of "${base.name}" has no routed experts (MoE layers: ${rangeText(layout.moeLayers)})`);
    }
    if (e.expert >= layout.experts) throw new MoeError(`${where}: there are ${layout.experts} experts per layer (0-${layout.experts - 1})`);
    const key = expertKey(e.layer, e.expert);
    const before = seen.get(key);
    if (before !== undefined && before !== e.action) throw new MoeError(`${where}: the same expert is also edited "${before}"`);
    seen.set(key, e.action);
    if (e.action === 'mute') {
      mute.set(key, true);
      return;
    }
    if (arch.routerBias !== 'selection_only') {
      throw new MoeError(
        `${where}: "${e.action}" needs a router with a selection-only bias (DeepSeek-V3 family); ` +
          `${arch.name} routers have none. Use action: mute (zero output, the expert still takes its slot)`,
      );
    }
    const list = bias.get(e.layer) ?? [];
    if (!list.some((p) => p.expert === e.expert)) {
      list.push({ expert: e.expert, action: e.action, value: e.action === 'off' ? EXPERT_OFF_BIAS : EXPERT_ON_BIAS });
    }
    bias.set(e.layer, list);
  });
  const k = layout.expertsPerToken;
  for (const [layer, patches] of bias) {
    const on = patches.filter((p) => p.action === 'on').length;
    const off = patches.filter((p) => p.action === 'off').length;
    if (k !== undefined && on > k) throw new MoeError(`edits of layer ${layer}: ${on} experts forced on, but only ${k} are chosen per token`);
    if (k !== undefined && off > layout.experts - k) {
      throw new MoeError(`edits of layer ${layer}: ${off} experts switched off leaves fewer than the ${k} chosen per token`);
    }
    patches.sort((a, b) => a.expert - b.expert);
  }
  return { mute, bias };
}

/**
 * Shards in the base's tensor order, each no larger than `shardSize` (header included); a weight
 * and its scale always share a shard; a tensor larger than the limit gets a shard to itself.
 */
function layoutShards(tensors: PlannedTensor[], shardSize: number): PlannedShard[] {
  const groups: number[][] = [];
  let current: number[] = [];
  let estimate = 0;
  tensors.forEach((t, i) => {
    const size = groupBytes(t);
    if (current.length > 0 && estimate + size > shardSize) {
      groups.push(current);
      current = [];
      estimate = 0;
    }
    current.push(i);
    estimate += size;
  });
  if (current.length > 0) groups.push(current);

  // The estimate above counts a generous header; build the real one and move tensors on if it overflowed.
  const shards: number[][] = [];
  const queue = groups;
  while (queue.length > 0) {
    const g = queue.shift()!;
    while (g.length > 1 && buildShard(tensors, g, '').bytes > shardSize) {
      const moved = g.pop()!;
      if (queue.length > 0) queue[0]!.unshift(moved);
      else queue.push([moved]);
    }
    shards.push(g);
  }
  return shards.map((g, i) => buildShard(tensors, g, shardFileName(i, shards.length)));
}

/** Bytes a tensor adds to a shard: its data and a generous estimate of its header entry. */
function groupBytes(t: PlannedTensor): number {
  const entry = (name: string, shape: number[]) => name.length + shape.join(',').length + 96;
  return t.bytes + entry(t.name, t.shape) + (t.scale ? t.scale.bytes + entry(t.scale.name, t.scale.shape) : 0);
}

function buildShard(tensors: PlannedTensor[], group: number[], file: string): PlannedShard {
  const unordered: { name: string; dtype: string; shape: number[]; length: number; tensor: number; part: 'weight' | 'scale' }[] = [];
  for (const i of group) {
    const t = tensors[i]!;
    unordered.push({ name: t.name, dtype: t.dtype, shape: t.shape, length: t.bytes, tensor: i, part: 'weight' });
    if (t.scale) unordered.push({ name: t.scale.name, dtype: 'F32', shape: t.scale.shape, length: t.scale.bytes, tensor: i, part: 'scale' });
  }
  // The reference writer's order (larger elements first, then by name), back to back: every tensor
  // starts at a multiple of its element size and there are no gaps, which the reference reader refuses.
  const list = referenceTensorOrder(unordered);
  const built = buildSafetensorsHeader(list, { format: 'pt' });
  const entries = list.map((e, k) => ({
    name: e.name,
    tensor: e.tensor,
    part: e.part,
    begin: built.offsets[k]!.begin,
    end: built.offsets[k]!.end,
  }));
  return { file, header: built.header, entries, bytes: built.header.length + built.dataLength };
}

function summarizeByKind(tensors: PlannedTensor[], parentOrder: string[]): KindSummary[] {
  const map = new Map<string, KindSummary>();
  for (const t of tensors) {
    let s = map.get(t.role.kind);
    if (!s) {
      s = { kind: t.role.kind, tensors: 0, from: Object.fromEntries(parentOrder.map((p) => [p, 0])), mixed: 0, muted: 0, patched: 0 };
      map.set(t.role.kind, s);
    }
    s.tensors++;
    if (t.op.type === 'copy' || t.op.type === 'convert') s.from[t.op.parent]!++;
    else if (t.op.type === 'mix') s.mixed++;
    else s.muted++;
    if (t.patches) s.patched++;
  }
  return TENSOR_KINDS.filter((k) => map.has(k)).map((k) => map.get(k)!);
}

function describePlan(plan: MergePlan): string {
  const parts: string[] = [];
  for (const s of plan.byKind) {
    const label = s.kind.replace('_', ' ');
    const sources = Object.entries(s.from).filter(([, n]) => n > 0);
    const bits: string[] = [];
    if (sources.length === 1 && s.mixed === 0 && s.muted === 0) bits.push(`all from ${sources[0]![0]}`);
    else {
      for (const [p, n] of sources) bits.push(`${n} from ${p}`);
      if (s.mixed > 0) bits.push(`${s.mixed} mixed`);
      if (s.muted > 0) bits.push(`${s.muted} muted`);
    }
    parts.push(`${label} (${s.tensors}): ${bits.join(', ')}`);
  }
  const dtype = plan.outputDtype === 'keep' ? 'each tensor in its source dtype' : `floats as ${plan.outputDtype}`;
  const threshold = plan.recipe.threshold
    ? ` Mixed tensors whose parents differ from ${plan.base} by less than rms ${plan.recipe.threshold.below} are taken from ${plan.base} as they are.`
    : '';
  const patched = plan.tensors.filter((t) => t.patches).flatMap((t) => t.patches!.map((p) => `L${t.role.layer}/E${p.expert} ${p.action}`));
  const edits = patched.length > 0 ? ` Router edits: ${patched.join(', ')}.` : '';
  return (
    `A ${plan.base}-based child of ${plan.tensors.length} tensors (${dtype}) in ${plan.shards.length} shard${plan.shards.length === 1 ? '' : 's'}, ` +
    `${formatBytes(plan.totalBytes)}: ${parts.join('; ')}.${threshold}${edits}`
  );
}

function plannedFiles(plan: MergePlan, copiedSizes: number[]): PlannedFile[] {
  const files: PlannedFile[] = plan.shards.map((s) => ({ name: s.file, bytes: s.bytes, what: 'shard' as const }));
  files.push({ name: 'config.json', bytes: plan.configBytes.length, what: 'config' });
  plan.copiedFiles.forEach((f, i) => files.push({ name: f, bytes: copiedSizes[i]!, what: 'copy' }));
  files.push({ name: RECIPE_FILE, bytes: new TextEncoder().encode(recipeToYaml(plan.recipe)).length, what: 'recipe' });
  files.push({ name: CARD_FILE, bytes: new TextEncoder().encode(renderModelCard(plan, undefined)).length, what: 'card' });
  files.push({ name: INDEX_FILE, bytes: indexBytes(plan).length, what: 'index' });
  return files;
}

/** `model.safetensors.index.json`: total_size is the sum of tensor bytes, as transformers writes it. */
export function indexBytes(plan: MergePlan): Uint8Array {
  const names: [string, string][] = [];
  for (const s of plan.shards) for (const e of s.entries) names.push([e.name, s.file]);
  names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  // fromEntries defines each name as an own property: `__proto__` is kept like any other.
  const weightMap = Object.fromEntries(names);
  const text = JSON.stringify({ metadata: { total_size: plan.tensorBytes }, weight_map: weightMap }, null, 2) + '\n';
  return new TextEncoder().encode(text);
}
