// From a recipe and opened parents to a complete merge plan. Everything that can be wrong with a
// recipe is found here, before a byte is written, and reported with the rule or entry it concerns.
//
// The child follows the base: its weights, in the base's layout (per-expert or fused) and format,
// unless the output dtype says otherwise. Each child weight is cut into cells (a whole tensor, or
// one expert's projection inside a fused tensor, or one router row) and each cell is decided:
//  1. in the parents' numbering, by the first rule that matches it (`select` sees the cell's kind,
//     layer, expert and projection wherever it lives), else copied from the base; edits mute a
//     down projection or set a router-bias entry;
//  2. then the recipe's `experts:` changes restructure the result: removed experts drop out,
//     transplanted slots take another expert's cells, added ones are appended.
// A parent's cell is found by (layer, expert, projection) in whatever layout it has, so a
// per-expert parent and a fused re-save of the same model mix freely.
import { codecName, isDecodable, isEncodable, sameCodec, type Codec } from '../formats/codec.ts';
import { OUTPUT_DTYPE, elementCount, isFloatDtype, sameShape, tensorBytes } from '../formats/dtype.ts';
import { buildSafetensorsHeader, referenceTensorOrder } from '../formats/safetensors.ts';
import { MoeError, readAll } from '../io.ts';
import { classifyTensor } from '../arch/classify.ts';
import { checkCompatibility } from '../model/compat.ts';
import { INDEX_FILE } from '../model/open-model.ts';
import { biasRegion, fusedRegions, fusedView, movableAsBytes, recordIsPerSlab, regionDims, sameRegion, wholeRegion } from '../model/regions.ts';
import { TENSOR_KINDS, type Model, type Projection, type Region, type TensorRole, type Weight, type WeightView } from '../model/types.ts';
import { parseByteSize, recipeToYaml } from '../recipe/parse.ts';
import type { Recipe, Rule } from '../recipe/schema.ts';
import { compileSelector, type Matcher } from '../recipe/select.ts';
import { renderModelCard } from '../report/model-card.ts';
import { formatBytes, rangeText } from '../report/format.ts';
import { describeExpertChanges, expertLayers, resolveExpertSlots, type ExpertSlots } from './experts.ts';
import { childConfig, filesToCopy } from './output-files.ts';
import type { CellOp, ChildSlot, KindSummary, Made, MergePlan, PlannedCell, PlannedFile, PlannedShard, PlannedTensor, SourceCell, StoredTensor } from './types.ts';

/** Sum of weights may differ from 1 by this much. */
export const WEIGHT_SUM_TOLERANCE = 1e-6;
/** Router-bias value an `off` edit writes: no score (a sigmoid in 0..1, or a logit) plus another expert's bias reaches below it. */
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
  /** Cells this rule decides (it is the first to match them). */
  decided: number;
  /** Cells its `select` matches, decided here or by an earlier rule. */
  matched: number;
}

/** What a cell is, to find it in any parent. */
type CellKey =
  | { kind: 'expert'; layer: number; expert: number; proj: Projection; bias: boolean }
  | { kind: 'router'; weight: Weight; layer: number; slab: number }
  | { kind: 'whole'; weight: Weight };

interface Edits {
  /** "layer/expert" of muted experts (base numbering). */
  mute: Set<string>;
  /** Router-bias values per layer and base expert. */
  bias: Map<number, Map<number, { value: number; action: 'off' | 'on' }>>;
  /** Edits applied, to find those that matched nothing. */
  used: Set<string>;
}

interface Ctx {
  recipe: Recipe;
  parents: Map<string, Model>;
  parentOrder: string[];
  base: string;
  baseModel: Model;
  rules: CompiledRule[];
  /** Output dtype name ('keep' or a float dtype). */
  output: string;
  slots: ExpertSlots;
  edits: Edits;
  warnings: string[];
  /** Re-quantized copies, counted for one warning. */
  requantized: string[];
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

  const rules = recipe.rules.map((rule, index) => compileRule(rule, index, parentOrder));
  // Full parents share the base's skeleton; donors only give experts (transplant, add).
  const full = new Set([base]);
  for (const r of rules) for (const w of r.weights) full.add(w.parent);
  const slots = resolveExpertSlots(recipe, base, parents);
  const donors = parentOrder.filter((p) => !full.has(p) && slots.donors.has(p));
  for (const p of parentOrder) {
    if (!full.has(p) && !slots.donors.has(p)) warnings.push(`parent "${p}" is used by no rule and no expert change: nothing is taken from it`);
  }

  const compat = checkCompatibility(
    parentOrder.filter((p) => !donors.includes(p)).map((name) => ({ name, model: parents.get(name)! })),
    base,
  );
  const errors = compat.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) {
    // The first few, then a count: a DeepSeek-sized mismatch has hundreds, and the message is read
    // in one line (the studio's compatibility panel lists every one, by tensor).
    const shown = errors.slice(0, 4).map((p) => `${p.parent}${p.tensor ? ` ${p.tensor}` : ''}: ${p.message}`);
    const more = errors.length > 4 ? `; and ${errors.length - 4} more` : '';
    throw new MoeError(`the parents cannot be merged: ${shown.join('; ')}${more}`);
  }
  for (const p of compat.problems) {
    if (p.severity !== 'error') warnings.push(`${p.parent}${p.tensor ? ` ${p.tensor}` : ''}: ${p.message}`);
  }
  for (const d of donors) warnings.push(`"${d}" gives experts only (transplant, add): only those experts must fit the base, not its whole skeleton`);

  const ctx: Ctx = {
    recipe, parents, parentOrder, base, baseModel, rules,
    output: recipe.output.dtype,
    slots,
    edits: resolveEdits(recipe, baseModel, slots),
    warnings,
    requantized: [],
  };

  const tensors: PlannedTensor[] = [];
  for (const w of baseModel.weights) tensors.push(...planWeight(ctx, w));

  for (const r of rules) {
    if (r.matched === 0) {
      throw new MoeError(`rule ${r.index + 1} (${JSON.stringify(r.rule.select)}) matches no tensor of the base "${base}"`);
    }
    if (r.decided === 0) {
      warnings.push(`rule ${r.index + 1} (${JSON.stringify(r.rule.select)}) matches ${r.matched} tensors or expert regions, but earlier rules decide all of them (the first matching rule wins)`);
    }
  }
  for (const key of ctx.edits.mute) {
    if (!ctx.edits.used.has(`mute ${key}`)) throw new MoeError(`edit mute of layer ${key.replace('/', ' expert ')}: the base "${base}" has no down projection for that expert`);
  }
  for (const [layer, m] of ctx.edits.bias) {
    for (const e of m.keys()) {
      if (!ctx.edits.used.has(`bias ${layer}/${e}`)) throw new MoeError(`edits of layer ${layer}: the base "${base}" has no router bias in that layer (family ${baseModel.arch.name})`);
    }
  }
  if (ctx.requantized.length > 0) {
    warnings.push(
      `${ctx.requantized.length} copied expert region${ctx.requantized.length > 1 ? 's share' : ' shares'} quantization blocks with other values and ` +
        `${ctx.requantized.length > 1 ? 'are' : 'is'} re-quantized with fresh scales, not copied byte for byte (e.g. ${ctx.requantized[0]})`,
    );
  }

  const shardSize = parseByteSize(recipe.output.shard_size);
  const shards = layoutShards(tensors, shardSize);
  const tensorBytes = tensors.reduce((s, t) => s + t.stored.reduce((n, x) => n + x.bytes, 0), 0);
  const baseConfigBytes = await readAll(await baseModel.folder.open('config.json'));
  const { config, configBytes } = childConfig(baseModel, tensors, slots.experts, baseConfigBytes);
  const copiedFiles = filesToCopy(baseModel);
  const byKind = summarizeByKind(tensors, parentOrder);

  const plan: MergePlan = {
    recipe,
    parentOrder,
    base,
    parents,
    donors,
    tensors,
    shards,
    files: [],
    totalBytes: 0,
    tensorBytes,
    copiedFiles,
    config,
    configBytes,
    byKind,
    experts: slots.experts,
    description: '',
    warnings,
    outputDtype: recipe.output.dtype === 'keep' ? 'keep' : OUTPUT_DTYPE[recipe.output.dtype],
    shardSize,
  };
  if (slots.changed) plan.expertMap = expertLayers(baseModel).map((layer) => ({ layer, slots: slots.byLayer.get(layer)! }));
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

/** The first rule matching a cell (counting every match, for the unused-rule checks). */
function ruleFor(ctx: Ctx, name: string, role: TensorRole): CompiledRule | undefined {
  let first: CompiledRule | undefined;
  for (const r of ctx.rules) {
    if (!r.match(name, role)) continue;
    r.matched++;
    first ??= r;
  }
  if (first) first.decided++;
  return first;
}

function keyText(key: CellKey): string {
  switch (key.kind) {
    case 'expert':
      return `layer ${key.layer} expert ${key.expert} ${key.proj}${key.bias ? ' bias' : ''}`;
    case 'router':
      return `${key.weight.name} row ${key.slab}`;
    case 'whole':
      return key.weight.name;
  }
}

/** The cell of a parent that stands for `key`, wherever that parent keeps it. */
function sourceCell(ctx: Ctx, parent: string, key: CellKey, where: string): SourceCell {
  const model = ctx.parents.get(parent)!;
  const missing = (why = 'which does not have it') => new MoeError(`${where} takes ${keyText(key)} from "${parent}", ${why}`);
  switch (key.kind) {
    case 'expert': {
      const le = model.experts.get(key.layer);
      if (!le) throw missing(`which has no routed experts in layer ${key.layer}`);
      const part = le.parts[key.expert]?.find((p) => p.proj === key.proj && p.bias === key.bias);
      if (!part) throw missing();
      return { parent, weight: part.weight, slab: part.slab, region: part.region };
    }
    case 'router': {
      let w = model.byName.get(key.weight.name);
      if (!w || w.role.kind !== key.weight.role.kind || w.role.layer !== key.layer || w.experts?.kind !== 'slabs') {
        // Another model (a donor): the router tensor of that kind in that layer.
        const candidates = model.experts.get(key.layer)?.routers.filter((r) => r.role.kind === key.weight.role.kind) ?? [];
        if (candidates.length !== 1) {
          throw missing(candidates.length === 0 ? `which has no ${key.weight.role.kind.replace('_', ' ')} in layer ${key.layer}` : `which has ${candidates.length} candidates in layer ${key.layer}`);
        }
        w = candidates[0]!;
      }
      const region = w.experts!.kind === 'slabs' ? w.experts!.parts[0]!.region : wholeRegion(w.view.rows, w.view.cols);
      if (key.slab >= w.view.slabs) throw missing(`which has ${w.view.slabs} rows`);
      return { parent, weight: w, slab: key.slab, region };
    }
    case 'whole': {
      const w = model.byName.get(key.weight.name);
      if (!w) throw missing();
      if (!sameShape(w.shape, key.weight.shape)) throw new MoeError(`${where}: shape in "${parent}" is [${w.shape}], base "${ctx.base}" has [${key.weight.shape}]`, undefined, key.weight.name);
      return { parent, weight: w, slab: 0, region: wholeRegion(w.view.rows, w.view.cols) };
    }
  }
}

/** A cell's op from a rule (or the base when no rule matches). */
function ruleOp(ctx: Ctx, rule: CompiledRule | undefined, key: CellKey, region: Region): { op: CellOp; thresholdBase?: SourceCell } {
  const where = rule ? `rule ${rule.index + 1}` : 'unmatched tensors (from the base)';
  const weights = rule ? rule.weights : [{ parent: ctx.base, weight: 1 }];
  const inputs = weights.map(({ parent, weight }) => {
    const from = sourceCell(ctx, parent, key, where);
    checkDims(ctx, region, from, where, key);
    return { from, weight };
  });
  if (inputs.length === 1) return { op: { type: 'copy', from: inputs[0]!.from } };
  const out: { op: CellOp; thresholdBase?: SourceCell } = { op: { type: 'mix', inputs } };
  if (ctx.recipe.threshold) {
    const b = sourceCell(ctx, ctx.base, key, where);
    checkDims(ctx, region, b, where, key);
    out.thresholdBase = b;
  }
  return out;
}

function checkDims(ctx: Ctx, region: Region, from: SourceCell, where: string, key: CellKey): void {
  const a = regionDims(region);
  const b = regionDims(from.region);
  if (a.out !== b.out || a.in !== b.in) {
    throw new MoeError(
      `${where}: ${keyText(key)} is ${b.out} × ${b.in} in "${from.parent}" (${from.weight.name}), but ${a.out} × ${a.in} in the child (base "${ctx.base}")`,
      undefined,
      from.weight.name,
    );
  }
}

function copyFromSlot(ctx: Ctx, slot: ChildSlot, key: CellKey, region: Region): CellOp {
  const from = sourceCell(ctx, slot.source!.parent, key, `experts.${slot.entry}`);
  checkDims(ctx, region, from, `experts.${slot.entry}`, key);
  return { type: 'copy', from };
}

function resolveEdits(recipe: Recipe, base: Model, slots: ExpertSlots): Edits {
  const mute = new Set<string>();
  const bias = new Map<number, Map<number, { value: number; action: 'off' | 'on' }>>();
  const seen = new Map<string, string>();
  const { layout, arch } = base;
  const layers = expertLayers(base);
  recipe.edits.forEach((e, i) => {
    const where = `edit ${i + 1} (layer ${e.layer}, expert ${e.expert}, ${e.action})`;
    if (!base.experts.has(e.layer)) {
      throw new MoeError(`${where}: layer ${e.layer} of "${base.name}" has no routed experts (layers with experts: ${rangeText(layers)})`);
    }
    if (e.expert >= layout.experts) throw new MoeError(`${where}: there are ${layout.experts} experts per layer (0-${layout.experts - 1})`);
    if (!slots.byLayer.get(e.layer)!.some((s) => s.baseExpert === e.expert)) throw new MoeError(`${where}: that expert is removed (experts.remove)`);
    const key = `${e.layer}/${e.expert}`;
    const before = seen.get(key);
    if (before !== undefined && before !== e.action) throw new MoeError(`${where}: the same expert is also edited "${before}"`);
    seen.set(key, e.action);
    if (e.action === 'mute') {
      mute.add(key);
      return;
    }
    if (arch.routerBias === 'none') {
      throw new MoeError(
        `${where}: "${e.action}" needs a router bias, and ${arch.name} routers have none. ` +
          'Use action: mute (zero output; the expert still takes its routing slot) or remove the expert (experts.remove)',
      );
    }
    if (e.action === 'on' && arch.routerBias === 'logits') {
      throw new MoeError(
        `${where}: "on" is not exact for ${arch.name}: its router bias is added to the logits before top-k, so a forced expert's softmax weight ` +
          'would dominate the others. Switch off the experts you do not want instead ("off" is exact)',
      );
    }
    const G = layout.groups;
    const T = layout.topkGroups;
    if (e.action === 'on' && G !== undefined && G > 1 && (T === undefined || T < G)) {
      const per = layout.experts / G;
      const g = Math.floor(e.expert / per);
      throw new MoeError(
        `${where}: "on" is not exact here: routing is group-limited (n_group ${G}, topk_group ${T ?? '?'}), so forcing expert ${e.expert} also forces its group ` +
          `(group ${g}, experts ${g * per}-${(g + 1) * per - 1}) into the chosen groups, leaving ${T !== undefined ? T - 1 : 'fewer'} group slot${T === 2 ? '' : 's'} for the rest ` +
          'and shutting other experts out. Switch off the experts you do not want instead ("off" is exact)',
      );
    }
    let m = bias.get(e.layer);
    if (!m) bias.set(e.layer, (m = new Map()));
    m.set(e.expert, { action: e.action, value: e.action === 'off' ? EXPERT_OFF_BIAS : EXPERT_ON_BIAS });
  });
  const k = layout.expertsPerToken;
  for (const [layer, m] of bias) {
    const on = [...m.values()].filter((p) => p.action === 'on').length;
    const off = [...m.values()].filter((p) => p.action === 'off').length;
    if (k !== undefined && on > k) throw new MoeError(`edits of layer ${layer}: ${on} experts forced on, but only ${k} are chosen per token`);
    if (k !== undefined && off > slots.experts - k) {
      throw new MoeError(`edits of layer ${layer}: ${off} experts switched off leaves fewer than the ${k} chosen per token`);
    }
  }
  return { mute, bias, used: new Set() };
}

/** The codec the child stores a weight in, unless it is a whole copy of another parent's. */
function targetCodec(ctx: Ctx, w: Weight): Codec {
  const out = ctx.output;
  if (out === 'keep') return w.codec;
  if (w.codec.kind === 'plain' && (!isFloatDtype(w.codec.dtype) || w.role.kind === 'router_bias')) return w.codec;
  if (w.codec.kind === 'plain' && w.codec.dtype === 'F8_E4M3') {
    throw new MoeError(`is F8_E4M3 without a scale tensor: it can be copied but not converted to ${out}; use output.dtype keep`, w.data.file, w.name);
  }
  if (!isDecodable(w.codec)) {
    throw new MoeError(`is stored as ${codecName(w.codec)}: it can be copied but not converted to ${out}; use output.dtype keep`, w.data.file, w.name);
  }
  return { kind: 'plain', dtype: OUTPUT_DTYPE[out as keyof typeof OUTPUT_DTYPE] };
}

/**
 * How a child weight is laid out in a codec: the template's view and expert regions, with the
 * expert axis resized to the child's count, and (a fused tensor changing format, as gpt-oss's MXFP4
 * [E, out, in] becomes BF16 [E, in, out]) the family's layout for that format.
 */
function childForm(ctx: Ctx, w: Weight, codec: Codec, experts: number): { shape: number[]; view: WeightView; parts?: { proj?: Projection; region: Region }[] } {
  const E = ctx.baseModel.layout.experts;
  if (w.fused) {
    let fused = w.fused;
    let shape = [...w.shape];
    if (codec.kind !== w.codec.kind) {
      const c = classifyTensor(ctx.baseModel.arch, w.name, ctx.baseModel.layout.layers, codec.kind);
      if (c.fused && c.fused.input !== 'auto' && w.experts?.kind === 'slabs') {
        const wasTransposed = w.experts.parts[0]!.region.transposed;
        const willBe = c.fused.input === 'rows';
        if (!c.fused.bias && wasTransposed !== willBe) shape = [...shape.slice(0, -2), shape[shape.length - 1]!, shape[shape.length - 2]!];
        fused = c.fused;
      }
    }
    shape[0] = fused.stacked2d ? (shape[0]! / E) * experts : experts;
    const view = fusedView(shape, fused, experts);
    const parts = fusedRegions(view, fused, ctx.baseModel.layout.hiddenSize, { file: w.data.file, name: w.name, config: 'config.json' });
    return { shape, view, parts };
  }
  if (w.experts?.kind === 'slabs') {
    // Router rows, bias entries: the first dimension that is not 1 is the expert.
    const shape = [...w.shape];
    const axis = shape.findIndex((d) => d !== 1);
    shape[axis] = experts;
    return { shape, view: { slabs: experts, rows: w.view.rows, cols: w.view.cols }, parts: w.experts.parts };
  }
  return { shape: [...w.shape], view: { ...w.view } };
}

/** A per-expert tensor's name with its expert index replaced (companion names share the prefix). */
function renamer(w: Weight, child: number | undefined): (name: string) => string {
  const span = w.expertSpan;
  if (!span || child === undefined) return (n) => n;
  const prefix = w.name.slice(0, span[0]);
  const digits = w.name.slice(span[0], span[1]);
  return (n) => (n.startsWith(prefix) && n.slice(span[0], span[1]) === digits ? prefix + child + n.slice(span[1]) : n);
}

/** The stored tensors of a child weight: its template's (renamed, the expert axis resized), or a single plain tensor. */
function storedFor(template: Weight, codec: Codec, childName: string, shape: number[], slabs: number, rename: (n: string) => string): StoredTensor[] {
  if (!sameCodec(codec, template.codec)) {
    const dtype = (codec as { dtype: string }).dtype;
    return [{ name: childName, dtype, shape, bytes: tensorBytes(dtype, elementCount(shape))!, role: 'data', perSlab: true }];
  }
  const E = template.view.slabs;
  const records = [{ role: 'data' as const, record: template.data }, ...template.companions];
  return records.map(({ role, record }) => {
    const s = [...record.shape];
    const perSlab = recordIsPerSlab(template, role, s);
    if (perSlab && E !== slabs && E > 1) {
      if (role === 'data' && template.experts?.kind === 'slabs' && !template.fused) {
        const axis = s.findIndex((d) => d !== 1);
        s[axis] = slabs;
      } else s[0] = (s[0]! / E) * slabs;
    }
    return { name: rename(record.name), dtype: record.dtype, shape: s, bytes: tensorBytes(record.dtype, elementCount(s))!, role, perSlab };
  });
}

/** Checks a cell's op against the child's codec; notes copies that cannot keep their bytes. */
function checkOp(ctx: Ctx, codec: Codec, view: WeightView, cell: PlannedCell, childName: string): void {
  const op = cell.op;
  const decodeErr = (w: Weight, parent: string, what: string) =>
    new MoeError(`${what}, but "${parent}" stores it as ${codecName(w.codec)}, which can only be copied into a child of the same format`, undefined, w.name);
  if (op.type === 'copy') {
    const src = op.from.weight;
    if (sameCodec(src.codec, codec)) {
      if (!movableAsBytes(codec, cell.region, view, op.from.region, src.view)) {
        if (!isDecodable(codec)) throw new MoeError(`is ${codecName(codec)}: this region cannot be copied without re-quantizing, which the format does not allow`, undefined, childName);
        ctx.requantized.push(`${childName} ${cell.proj ?? ''}`.trim());
      }
      return;
    }
    if (!isDecodable(src.codec)) throw decodeErr(src, op.from.parent, `the child stores ${childName} as ${codecName(codec)}`);
    if (!isEncodable(codec)) throw new MoeError(`is stored as ${codecName(codec)}, which can only hold copies of the same format (${op.from.parent} has ${codecName(src.codec)})`, undefined, childName);
    return;
  }
  if (!isEncodable(codec)) {
    const what = op.type === 'mix' ? 'mix' : op.type === 'zero' ? 'mute' : 'change';
    throw new MoeError(
      `is stored as ${codecName(codec)} in the base, a format MoE Studio copies but never decodes, so it cannot ${what} it; take the tensor whole from one parent (from:), or leave it out of the rule`,
      undefined,
      childName,
    );
  }
  if (op.type === 'mix') {
    for (const { from } of op.inputs) if (!isDecodable(from.weight.codec)) throw decodeErr(from.weight, from.parent, 'a rule mixes it');
  }
}

/** The child tensors one base weight becomes (none when its expert is removed; several for added ones). */
function planWeight(ctx: Ctx, w: Weight): PlannedTensor[] {
  const r = w.role;
  const layer = r.layer;
  const slots = layer !== undefined ? ctx.slots.byLayer.get(layer) : undefined;

  // A per-expert tensor: one child tensor per slot that takes its place.
  if (w.experts?.kind === 'single' && slots && layer !== undefined) {
    const e = w.experts.expert;
    const proj = w.experts.proj;
    const out: PlannedTensor[] = [];
    const templateOf = (s: ChildSlot) => s.baseExpert ?? 0;
    slots.forEach((slot, j) => {
      if (templateOf(slot) !== e) return;
      const codec = targetCodec(ctx, w);
      const form = childForm(ctx, w, codec, 1);
      const region = r.bias ? biasRegion(form.view.rows * form.view.cols) : wholeRegion(form.view.rows, form.view.cols);
      let cell: PlannedCell;
      if (!proj) {
        // A per-expert tensor whose projection the family does not name: decided whole, by the rules.
        if (slot.source) throw new MoeError(`experts.${slot.entry}: this per-expert tensor has no projection a donor's expert could be matched by`, w.data.file, w.name);
        const rule = ruleFor(ctx, w.name, r);
        cell = { region, rule: rule ? rule.index : -1, ...ruleOp(ctx, rule, { kind: 'whole', weight: w }, region) };
      } else if (slot.how === 'kept' || !slot.source) {
        const rule = ruleFor(ctx, w.name, r);
        const key: CellKey = { kind: 'expert', layer, expert: e, proj, bias: !!r.bias };
        cell = { region, proj, bias: !!r.bias, rule: rule ? rule.index : -1, ...ruleOp(ctx, rule, key, region) };
      } else {
        ruleFor(ctx, w.name, r);
        const key: CellKey = { kind: 'expert', layer: slot.source.layer, expert: slot.source.expert, proj, bias: !!r.bias };
        cell = { region, proj, bias: !!r.bias, rule: -1, op: copyFromSlot(ctx, slot, key, region) };
      }
      applyMute(ctx, cell, layer, slot);
      const role: TensorRole = { ...r, expert: j };
      out.push(finish(ctx, w, renamer(w, j)(w.name), role, codec, form, [[cell]], { slot, child: j }));
    });
    return out;
  }

  // A fused expert tensor: a slab per child slot, a cell per projection.
  if (w.experts?.kind === 'slabs' && r.kind === 'routed_expert' && slots && layer !== undefined) {
    const codec = targetCodec(ctx, w);
    const form = childForm(ctx, w, codec, slots.length);
    const parts = form.parts!;
    const cells = slots.map((slot) =>
      parts.map((p): PlannedCell => {
        const proj = p.proj!;
        const bias = !!w.fused?.bias;
        let cell: PlannedCell;
        if (slot.source && slot.how !== 'kept') {
          ruleFor(ctx, w.name, { ...r, expert: slot.baseExpert, proj, bias });
          const key: CellKey = { kind: 'expert', layer: slot.source.layer, expert: slot.source.expert, proj, bias };
          cell = { region: p.region, proj, bias, rule: -1, op: copyFromSlot(ctx, slot, key, p.region) };
        } else {
          const e = slot.baseExpert!;
          const role: TensorRole = { ...r, expert: e, proj };
          if (bias) role.bias = true;
          const rule = ruleFor(ctx, w.name, role);
          const key: CellKey = { kind: 'expert', layer, expert: e, proj, bias };
          cell = { region: p.region, proj, bias, rule: rule ? rule.index : -1, ...ruleOp(ctx, rule, key, p.region) };
        }
        applyMute(ctx, cell, layer, slot);
        return cell;
      }),
    );
    return [finish(ctx, w, w.name, r, codec, form, cells, { slots })];
  }

  // Router rows and bias entries: a slab per child slot.
  if (w.experts?.kind === 'slabs' && slots && layer !== undefined) {
    const codec = targetCodec(ctx, w);
    const form = childForm(ctx, w, codec, slots.length);
    const region = form.parts![0]!.region;
    const rule = ruleFor(ctx, w.name, r);
    const patches = r.kind === 'router_bias' ? ctx.edits.bias.get(layer) : undefined;
    const cells = slots.map((slot): PlannedCell[] => {
      let cell: PlannedCell;
      if (slot.router === 'source' && slot.source) {
        const key: CellKey = { kind: 'router', weight: w, layer: slot.source.layer, slab: slot.source.expert };
        cell = { region, rule: -1, op: copyFromSlot(ctx, slot, key, region) };
      } else {
        const key: CellKey = { kind: 'router', weight: w, layer, slab: slot.baseExpert! };
        cell = { region, rule: rule ? rule.index : -1, ...ruleOp(ctx, rule, key, region) };
      }
      const patch = slot.baseExpert !== undefined ? patches?.get(slot.baseExpert) : undefined;
      if (patch) {
        if (region.rowCount * region.colCount !== 1) throw new MoeError(`a router bias should hold one value per expert, this one holds ${region.rowCount * region.colCount}`, w.data.file, w.name);
        cell.op = { type: 'value', value: patch.value };
        cell.edit = patch.action;
        delete cell.thresholdBase;
        ctx.edits.used.add(`bias ${layer}/${slot.baseExpert}`);
      }
      return [cell];
    });
    return [finish(ctx, w, w.name, r, codec, form, cells, { slots })];
  }

  // Everything else: one cell, the whole tensor.
  const codec = targetCodec(ctx, w);
  const form = childForm(ctx, w, codec, 1);
  const region = wholeRegion(form.view.rows, form.view.cols);
  const rule = ruleFor(ctx, w.name, r);
  const cell: PlannedCell = { region, rule: rule ? rule.index : -1, ...ruleOp(ctx, rule, { kind: 'whole', weight: w }, region) };
  return [finish(ctx, w, w.name, r, codec, form, [[cell]], {})];
}

/** A muted expert's down projection (and its bias): zeros. */
function applyMute(ctx: Ctx, cell: PlannedCell, layer: number, slot: ChildSlot): void {
  if (cell.proj !== 'down' || slot.baseExpert === undefined) return;
  const key = `${layer}/${slot.baseExpert}`;
  if (!ctx.edits.mute.has(key)) return;
  cell.op = { type: 'zero' };
  cell.edit = 'mute';
  delete cell.thresholdBase;
  ctx.edits.used.add(`mute ${key}`);
}

function finish(
  ctx: Ctx,
  w: Weight,
  name: string,
  role: TensorRole,
  codec: Codec,
  form: { shape: number[]; view: WeightView },
  slabs: PlannedCell[][],
  extra: { slots?: ChildSlot[]; slot?: ChildSlot; child?: number },
): PlannedTensor {
  // A whole copy: every cell copies the same-numbered slab of one parent weight laid out alike.
  const first = slabs[0]![0]!.op;
  let whole: { parent: string; weight: Weight } | undefined;
  let stored: StoredTensor[] | undefined;
  if (first.type === 'copy') {
    const src = first.from.weight;
    const alike =
      src.view.slabs === slabs.length && src.view.rows === form.view.rows && src.view.cols === form.view.cols &&
      slabs.every((cells, s) => cells.every((c) => c.op.type === 'copy' && c.op.from.weight === src && c.op.from.slab === s && sameRegion(c.op.from.region, c.region)));
    const roles = (x: Weight) => ['data', ...x.companions.map((c) => c.role)].sort().join(',');
    if (alike && sameCodec(src.codec, codec) && roles(src) === roles(w)) {
      // Stored as the base names them; the bytes are the source's, companion by companion.
      whole = { parent: first.from.parent, weight: src };
      stored = storedFor(w, codec, name, form.shape, form.view.slabs, renamer(w, extra.child));
    } else if (alike && ctx.output === 'keep' && renamer(src, extra.child)(src.name) === name) {
      // Another format of the same tensor, kept as that parent stores it (`output.dtype: keep`).
      whole = { parent: first.from.parent, weight: src };
      stored = storedFor(src, src.codec, name, form.shape, form.view.slabs, renamer(src, extra.child));
    }
  }
  const childCodec = whole ? whole.weight.codec : codec;
  if (!whole) for (const cells of slabs) for (const c of cells) checkOp(ctx, childCodec, form.view, c, name);
  const template = whole ?? { parent: ctx.base, weight: w };
  stored ??= storedFor(w, childCodec, name, form.shape, form.view.slabs, renamer(w, extra.child));

  const ops = slabs.flat().map((c) => c.op.type);
  const made: Made = ops.includes('value')
    ? 'patched'
    : ops.includes('zero')
      ? 'muted'
      : ops.includes('mix')
        ? 'mixed'
        : whole
          ? 'copied'
          : new Set(slabs.flat().map((c) => (c.op as Extract<CellOp, { type: 'copy' }>).from.weight)).size === 1 && slabs.length === 1
            ? 'converted'
            : 'assembled';
  const t: PlannedTensor = {
    name,
    baseName: w.name,
    role,
    codec: childCodec,
    shape: form.shape,
    view: form.view,
    slabs,
    stored,
    template,
    wholeCopy: whole !== undefined,
    made,
    thresholdCandidate: slabs.some((cells) => cells.some((c) => c.thresholdBase !== undefined)),
  };
  if (extra.slots) t.slots = extra.slots;
  if (extra.slot) t.slot = extra.slot;
  return t;
}

/**
 * Shards in the base's weight order, each no larger than `shardSize` (header included); a weight
 * and its companions always share a shard; a weight larger than the limit gets a shard to itself.
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

  // The estimate above counts a generous header; build the real one and move weights on if it overflowed.
  // Each shard's header is built once (the last build is the one that fits); names come when the count is known.
  const shards: PlannedShard[] = [];
  const queue = groups;
  while (queue.length > 0) {
    const g = queue.shift()!;
    let built = buildShard(tensors, g, '');
    while (g.length > 1 && built.bytes > shardSize) {
      const moved = g.pop()!;
      if (queue.length > 0) queue[0]!.unshift(moved);
      else queue.push([moved]);
      built = buildShard(tensors, g, '');
    }
    shards.push(built);
  }
  return shards.map((s, i) => ({ ...s, file: shardFileName(i, shards.length) }));
}

/** Bytes a weight adds to a shard: its stored tensors and a generous estimate of their header entries. */
function groupBytes(t: PlannedTensor): number {
  return t.stored.reduce((n, s) => n + s.bytes + s.name.length + s.shape.join(',').length + 96, 0);
}

function buildShard(tensors: PlannedTensor[], group: number[], file: string): PlannedShard {
  const unordered: { name: string; dtype: string; shape: number[]; length: number; tensor: number; stored: number }[] = [];
  for (const i of group) {
    tensors[i]!.stored.forEach((s, k) => unordered.push({ name: s.name, dtype: s.dtype, shape: s.shape, length: s.bytes, tensor: i, stored: k }));
  }
  // The reference writer's order (larger elements first, then by name), back to back: every tensor
  // starts at a multiple of its element size and there are no gaps, which the reference reader refuses.
  const list = referenceTensorOrder(unordered);
  const built = buildSafetensorsHeader(list, { format: 'pt' });
  const entries = list.map((e, k) => ({ name: e.name, tensor: e.tensor, stored: e.stored, begin: built.offsets[k]!.begin, end: built.offsets[k]!.end }));
  return { file, header: built.header, entries, bytes: built.header.length + built.dataLength };
}

function summarizeByKind(tensors: PlannedTensor[], parentOrder: string[]): KindSummary[] {
  const map = new Map<string, KindSummary>();
  for (const t of tensors) {
    let s = map.get(t.role.kind);
    if (!s) {
      s = { kind: t.role.kind, tensors: 0, from: Object.fromEntries(parentOrder.map((p) => [p, 0])), mixed: 0, muted: 0, patched: 0, assembled: 0 };
      map.set(t.role.kind, s);
    }
    s.tensors++;
    if (t.made === 'copied' || t.made === 'converted') {
      const op = t.slabs[0]![0]!.op as Extract<CellOp, { type: 'copy' }>;
      s.from[op.from.parent]!++;
    } else if (t.made === 'mixed') s.mixed++;
    else if (t.made === 'muted') s.muted++;
    else if (t.made === 'patched') s.patched++;
    else s.assembled++;
  }
  return TENSOR_KINDS.filter((k) => map.has(k)).map((k) => map.get(k)!);
}

function describePlan(plan: MergePlan): string {
  const parts: string[] = [];
  for (const s of plan.byKind) {
    const label = s.kind.replace('_', ' ');
    const sources = Object.entries(s.from).filter(([, n]) => n > 0);
    const bits: string[] = [];
    if (sources.length === 1 && s.mixed === 0 && s.muted === 0 && s.assembled === 0 && s.patched === 0) bits.push(`all from ${sources[0]![0]}`);
    else {
      for (const [p, n] of sources) bits.push(`${n} from ${p}`);
      if (s.mixed > 0) bits.push(`${s.mixed} mixed`);
      if (s.assembled > 0) bits.push(`${s.assembled} assembled from several sources`);
      if (s.muted > 0) bits.push(`${s.muted} with muted experts`);
      if (s.patched > 0) bits.push(`${s.patched} with switched experts`);
    }
    parts.push(`${label} (${s.tensors}): ${bits.join(', ')}`);
  }
  const dtype = plan.outputDtype === 'keep' ? "the base's formats" : `floats as ${plan.outputDtype}`;
  const threshold = plan.recipe.threshold
    ? ` Mixed tensors and expert regions whose parents differ from ${plan.base} by less than rms ${plan.recipe.threshold.below} are taken from ${plan.base} as they are.`
    : '';
  const switched: string[] = [];
  for (const t of plan.tensors) {
    t.slabs.forEach((cells, j) => {
      for (const c of cells) if (c.edit === 'off' || c.edit === 'on') switched.push(`L${t.role.layer}/E${t.slots?.[j]?.baseExpert ?? j} ${c.edit}`);
    });
  }
  const edits = switched.length > 0 ? ` Router edits: ${switched.join(', ')}.` : '';
  const experts = plan.expertMap ? ` ${describeExpertChanges(plan)}` : '';
  return (
    `A ${plan.base}-based child of ${plan.tensors.length} tensors (${dtype}) in ${plan.shards.length} shard${plan.shards.length === 1 ? '' : 's'}, ` +
    `${formatBytes(plan.totalBytes)}: ${parts.join('; ')}.${threshold}${edits}${experts}`
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
