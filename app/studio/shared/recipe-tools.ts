// Pure recipe helpers for the studio: presets, rules from a heatmap selection, renames.
// The recipe shape itself is the engine's (app/engine/recipe/schema.ts), shared with the CLI.
import { fractionValue, tidyShare, type Edit, type ExpertChanges, type Recipe, type Rule } from '../../engine/recipe/schema.ts';
import { toIndexSet } from '../../engine/recipe/select.ts';
import { TENSOR_KINDS, type Projection, type TensorKind } from '../../engine/model/types.ts';
import { formatIndexList } from './format.ts';

export const NON_EXPERT_KINDS: TensorKind[] = TENSOR_KINDS.filter((k) => k !== 'routed_expert');

export interface ParentRef {
  name: string;
  /** What the CLI reads as the parent's path; the studio writes the folder name. */
  path: string;
}

export function emptyRecipe(parents: ParentRef[], base: string | undefined): Recipe {
  return withParents(
    { parents: {}, rules: [], edits: [], output: { dtype: 'keep', shard_size: '5GB' } },
    parents,
    base,
  );
}

/** Sets `parents` and `base` from the open parents, keeping paths the user edited for parents that remain. */
export function withParents(recipe: Recipe, parents: ParentRef[], base: string | undefined): Recipe {
  // fromEntries defines own properties: a parent named `__proto__` stays a parent.
  const next: Record<string, string> = Object.fromEntries(parents.map((p) => [p.name, recipe.parents[p.name] ?? p.path]));
  const out: Recipe = { ...recipe, parents: next };
  if (base !== undefined) out.base = base;
  else delete out.base;
  return out;
}

/** Renames a parent everywhere it is used: parents, base, weights and `from`. */
export function renameParent(recipe: Recipe, from: string, to: string): Recipe {
  if (from === to) return recipe;
  const parents: Record<string, string> = Object.fromEntries(Object.entries(recipe.parents).map(([k, v]) => [k === from ? to : k, v]));
  const rules = recipe.rules.map((r): Rule => {
    const out: Rule = { select: r.select };
    if (r.weights) {
      out.weights = Object.fromEntries(Object.entries(r.weights).map(([k, v]) => [k === from ? to : k, v]));
    }
    if (r.from !== undefined) out.from = r.from === from ? to : r.from;
    return out;
  });
  const out: Recipe = { ...recipe, parents, rules };
  if (recipe.base === from) out.base = to;
  return out;
}

/** Drops a parent: its weights go, and rules taking everything `from` it are removed. */
export function dropParent(recipe: Recipe, name: string): Recipe {
  const parents = { ...recipe.parents };
  delete parents[name];
  const rules: Rule[] = [];
  for (const r of recipe.rules) {
    if (r.from === name) continue;
    if (r.weights && name in r.weights) {
      const w = { ...r.weights };
      delete w[name];
      if (Object.keys(w).length === 0) continue;
      rules.push({ select: r.select, weights: w });
    } else rules.push(r);
  }
  const out: Recipe = { ...recipe, parents, rules };
  if (out.base === name) delete out.base;
  return out;
}

function keepRest(recipe: Recipe, rules: Rule[]): Recipe {
  return { ...recipe, rules };
}

/**
 * MEA: routed experts W = (1-α)·base + α·donor; everything else from the base.
 * α = 1 is a pure swap, written as `from: donor` so experts are copied byte for byte.
 */
export function meaPreset(recipe: Recipe, base: string, donor: string, alpha: number): Recipe {
  const a = Math.round(alpha * 1000) / 1000;
  const experts: Rule =
    a >= 1
      ? { select: { kind: 'routed_expert' }, from: donor }
      : a <= 0
        ? { select: { kind: 'routed_expert' }, from: base }
        : { select: { kind: 'routed_expert' }, weights: { [base]: round3(1 - a), [donor]: a } };
  // Tensors no rule matches come from the base: one rule is the whole recipe.
  return { ...keepRest(recipe, [experts]), base };
}

/** AoE "Chimera": routed experts from the donor verbatim, everything else from the base. */
export function chimeraPreset(recipe: Recipe, base: string, donor: string): Recipe {
  return {
    ...keepRest(recipe, [{ select: { kind: 'routed_expert' }, from: donor }]),
    base,
  };
}

/** The recipe with this AoE threshold (keep a mixed tensor from the base below it), or with none (`below` undefined). */
export function withThreshold(recipe: Recipe, below: number | undefined): Recipe {
  const out = { ...recipe };
  if (below === undefined) delete out.threshold;
  else out.threshold = { metric: 'rms_diff', below };
  return out;
}

/** Groups of tensor kinds the "Mix N parents" preset gives one row of weights each. */
export const MIX_GROUPS: { label: string; kinds: TensorKind[] }[] = [
  { label: 'Routed experts', kinds: ['routed_expert'] },
  { label: 'Shared experts', kinds: ['shared_expert'] },
  { label: 'Attention', kinds: ['attention'] },
  { label: 'Dense MLP', kinds: ['dense_mlp'] },
  { label: 'Router', kinds: ['router', 'router_bias'] },
  { label: 'Embeddings, head, norms, other', kinds: ['embedding', 'lm_head', 'norm', 'other'] },
];

/** The groups of MIX_GROUPS with the kinds among `present` (a model without shared experts gets no row for them). */
export function mixGroupsFor(present: readonly TensorKind[]): { label: string; kinds: TensorKind[] }[] {
  return MIX_GROUPS.map((g) => ({ label: g.label, kinds: g.kinds.filter((k) => present.includes(k)) })).filter((g) => g.kinds.length > 0);
}

/**
 * "Mix N parents": one rule per group of kinds, with that group's weights (normalized to sum 1).
 * `groups` are the model's own (mixGroupsFor): a rule for a kind the model lacks would match nothing.
 */
export function mixPreset(recipe: Recipe, base: string, weights: Record<string, number>[], groups = MIX_GROUPS): Recipe {
  const rules: Rule[] = [];
  groups.forEach((g, i) => {
    const w = weights[i] ?? {};
    const nonzero = Object.entries(w).filter(([, v]) => v > 0);
    const sum = nonzero.reduce((s, [, v]) => s + v, 0);
    const kind = g.kinds.length === 1 ? g.kinds[0]! : g.kinds;
    if (nonzero.length === 0) rules.push({ select: { kind }, from: base });
    else if (nonzero.length === 1) rules.push({ select: { kind }, from: nonzero[0]![0] });
    else {
      // Each weight its share exactly (thirds stay thirds, not 0.333/0.333/0.334); shares that are
      // short decimals stay short.
      const shares = nonzero.map(([k, v]) => [k, tidyShare(v / sum)] as [string, number]);
      rules.push({ select: { kind }, weights: Object.fromEntries(shares) });
    }
  });
  return { ...keepRest(recipe, rules), base };
}

/**
 * A rectangle of the expert heatmaps: these layers × these experts. `experts` empty: every expert
 * of those layers (a fused grid's row, where experts are not told apart).
 */
export interface SelectionRect {
  layers: number[];
  experts: number[];
}

/** The heatmap selection: a union of rectangles (shift adds one), for these projections. */
export interface ExpertSelection {
  rects: SelectionRect[];
  proj: Projection[];
}

export const NO_SELECTION: ExpertSelection = { rects: [], proj: [] };

/** Every (layer, expert) the selection covers, once each, by layer then expert. */
export function selectionPairs(sel: ExpertSelection): { layer: number; expert: number }[] {
  const seen = new Set<string>();
  const out: { layer: number; expert: number }[] = [];
  for (const r of sel.rects)
    for (const layer of r.layers)
      for (const expert of r.experts) {
        const k = `${layer}:${expert}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push({ layer, expert });
      }
  return out.sort((a, b) => a.layer - b.layer || a.expert - b.expert);
}

/** The layers any rectangle covers, ascending. */
export function selectionLayers(sel: ExpertSelection): number[] {
  return [...new Set(sel.rects.flatMap((r) => r.layers))].sort((a, b) => a - b);
}

/**
 * (layer, expert) pairs as few `{layers, experts}` blocks: layers with the same set of experts
 * share a block. Exact: the blocks cover these pairs and nothing else, each pair once.
 */
export function pairBlocks(pairs: readonly { layer: number; expert: number }[]): { layers: number[]; experts: number[] }[] {
  const byLayer = new Map<number, number[]>();
  for (const p of pairs) byLayer.set(p.layer, [...(byLayer.get(p.layer) ?? []), p.expert]);
  const blocks = new Map<string, { layers: number[]; experts: number[] }>();
  for (const [layer, experts] of [...byLayer].sort((a, b) => a[0] - b[0])) {
    const set = [...new Set(experts)].sort((a, b) => a - b);
    const key = set.join(',');
    const b = blocks.get(key);
    if (b) b.layers.push(layer);
    else blocks.set(key, { layers: [layer], experts: set });
  }
  return [...blocks.values()];
}

/** The selection in words: "layers 1-2 × experts 2-5; layer 4 × expert 0". */
export function describeSelection(sel: ExpertSelection): string {
  return sel.rects
    .map((r) => {
      const l = `${r.layers.length === 1 ? 'layer' : 'layers'} ${formatIndexList(r.layers)}`;
      const e = r.experts.length === 0 ? 'all experts' : `${r.experts.length === 1 ? 'expert' : 'experts'} ${formatIndexList(r.experts)}`;
      return `${l} × ${e}`;
    })
    .join('; ');
}

/** Rules for the routed experts under a heatmap selection: one per rectangle, in selection order. */
export function selectionRules(sel: ExpertSelection, take: { from: string } | { weights: Record<string, number> }, allProj = 3): Rule[] {
  return sel.rects.map((r) => {
    const select: Rule['select'] = { kind: 'routed_expert' };
    if (r.layers.length) select.layers = toIndexSet(r.layers);
    if (r.experts.length) select.experts = toIndexSet(r.experts);
    if (sel.proj.length && sel.proj.length < allProj) select.proj = sel.proj.length === 1 ? sel.proj[0]! : [...sel.proj];
    return 'from' in take ? { select, from: take.from } : { select, weights: take.weights };
  });
}

/** Adds or replaces expert edits for every (layer, expert) the selection covers. */
export function applyEdits(recipe: Recipe, sel: ExpertSelection, action: Edit['action'] | 'clear'): Recipe {
  const pairs = selectionPairs(sel);
  if (action === 'clear') {
    const chosen = new Set(pairs.map((p) => `${p.layer}:${p.expert}`));
    return { ...recipe, edits: recipe.edits.filter((ed) => !chosen.has(`${ed.layer}:${ed.expert}`)) };
  }
  return applyEditList(recipe, pairs.map((p) => ({ layer: p.layer, expert: p.expert, action })));
}

/** Adds or replaces edits for exactly these (layer, expert) pairs (not a product of layers and experts). */
export function applyEditList(recipe: Recipe, edits: readonly Edit[]): Recipe {
  const key = (l: number, e: number) => `${l}:${e}`;
  const chosen = new Set(edits.map((e) => key(e.layer, e.expert)));
  return { ...recipe, edits: [...recipe.edits.filter((ed) => !chosen.has(key(ed.layer, ed.expert))), ...edits] };
}

/** Removes (prunes) exactly these (layer, expert) pairs: `experts.remove`, layers with the same experts in one entry. */
export function removeExpertList(recipe: Recipe, cells: readonly { layer: number; expert: number }[]): Recipe {
  const blocks = pairBlocks(cells);
  if (blocks.length === 0) return recipe;
  const c = changesOf(recipe);
  for (const b of blocks) c.remove.push({ layers: toIndexSet(b.layers), experts: toIndexSet(b.experts) });
  return { ...recipe, experts: c };
}

/** The recipe's expert changes, with empty lists filled in. */
function changesOf(recipe: Recipe): ExpertChanges {
  return { remove: [...(recipe.experts?.remove ?? [])], transplant: [...(recipe.experts?.transplant ?? [])], add: [...(recipe.experts?.add ?? [])] };
}

/** Removes (prunes) the selected experts: `experts.remove`. */
export function removeExperts(recipe: Recipe, sel: ExpertSelection): Recipe {
  return removeExpertList(recipe, selectionPairs(sel));
}

/**
 * Each selected expert slot takes another expert's weights: `experts.transplant`. `expert`
 * undefined: the same index as the slot (a swap of whole experts between related models).
 */
export function transplantExperts(recipe: Recipe, sel: ExpertSelection, from: { parent: string; layer?: number; expert?: number }, router: 'keep' | 'source'): Recipe {
  const blocks = pairBlocks(selectionPairs(sel));
  if (blocks.length === 0) return recipe;
  const c = changesOf(recipe);
  const ref: { parent: string; layer?: number; expert?: number } = { parent: from.parent };
  if (from.layer !== undefined) ref.layer = from.layer;
  if (from.expert !== undefined) ref.expert = from.expert;
  for (const b of blocks) c.transplant.push({ layers: toIndexSet(b.layers), experts: toIndexSet(b.experts), from: { ...ref }, router });
  return { ...recipe, experts: c };
}

/** Appends a parent's expert to every selected layer: `experts.add` (its router row comes with it). */
export function addExpert(recipe: Recipe, sel: ExpertSelection, from: { parent: string; layer?: number; expert: number }): Recipe {
  const layers = selectionLayers(sel);
  if (layers.length === 0) return recipe;
  const c = changesOf(recipe);
  const ref: { parent: string; layer?: number; expert: number } = { parent: from.parent, expert: from.expert };
  if (from.layer !== undefined) ref.layer = from.layer;
  c.add.push({ layers: toIndexSet(layers), from: ref });
  return { ...recipe, experts: c };
}

/** Drops every expert change. */
export function clearExpertChanges(recipe: Recipe): Recipe {
  const out = { ...recipe };
  delete out.experts;
  return out;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** λ values as typed ("0.25, 0.5 0.75"): each in [0, 1], at most 16, no repeats; an error text otherwise. */
export function parseLambdas(text: string): number[] | string {
  const parts = text.split(/[\s,;]+/).filter((p) => p !== '');
  if (parts.length === 0) return 'give λ values, e.g. 0.25, 0.5, 0.75';
  const out: number[] = [];
  for (const p of parts) {
    const x = Number(p);
    if (!Number.isFinite(x) || x < 0 || x > 1) return `"${p}" is not a λ between 0 and 1`;
    if (out.includes(x)) return `${p} is given twice`;
    out.push(x);
  }
  if (out.length > 16) return 'at most 16 children in one sweep';
  return out;
}

/**
 * A λ sweep of one rule: per λ, the recipe with that rule taking (1 − λ) of the base and λ of its
 * donor (the rule's other parent: its `from`, or the non-base parent of its two weights). Each
 * child is named "lambda-<λ>". The rule must involve the base and exactly one other parent.
 */
export function sweepRecipes(recipe: Recipe, rule: number, lambdas: readonly number[]): { name: string; recipe: Recipe }[] | string {
  const r = recipe.rules[rule];
  const base = recipe.base ?? Object.keys(recipe.parents)[0];
  if (!r || base === undefined) return `the recipe has no rule ${rule + 1}`;
  const involved = 'from' in r && r.from !== undefined ? [r.from] : Object.keys(r.weights ?? {});
  const donors = involved.filter((p) => p !== base);
  if (donors.length !== 1 || involved.some((p) => p !== base && p !== donors[0])) {
    return `rule ${rule + 1} must take from ${base} (the base) and one other parent to sweep λ`;
  }
  const donor = donors[0]!;
  return lambdas.map((l) => {
    const rules = recipe.rules.map((x, i) => {
      if (i !== rule) return x;
      const { from: _f, weights: _w, ...rest } = x as Rule & { from?: string; weights?: Record<string, number> };
      if (l === 0) return { ...rest, from: base } as Rule;
      if (l === 1) return { ...rest, from: donor } as Rule;
      return { ...rest, weights: { [base]: Math.round((1 - l) * 1e9) / 1e9, [donor]: l } } as Rule;
    });
    return { name: `lambda-${l}`, recipe: { ...recipe, rules } };
  });
}

/**
 * A weight as the studio shows it: a fraction k/n (n ≤ 12) when it is one to the last bits (a
 * third reads "1/3", not 0.3333333333333333), else at most 6 significant digits.
 */
export function weightText(w: number): string {
  if (!Number.isFinite(w)) return '';
  for (let n = 2; n <= 12; n++) {
    const k = Math.round(w * n);
    if (k > 0 && k < n && Math.abs(k / n - w) < 1e-12 && k / n !== Number((k / n).toPrecision(6))) return `${k}/${n}`;
  }
  return String(Number(w.toPrecision(6)));
}

/** A weight as typed in the studio: a number ≥ 0 or a fraction ("1/3", as recipes accept); NaN when neither. */
export function weightOf(text: string): number {
  const v = text.trim() === '' ? NaN : Number(text);
  const w = Number.isNaN(v) ? fractionValue(text) : v;
  return Number.isFinite(w) && w >= 0 ? w : NaN;
}

/**
 * Which preset a recipe is, so the presets show it (after a reload, an import, or a return to the
 * Build tab): one routed-expert rule taking a donor verbatim is Chimera (as MEA at α = 1 is), with
 * weights it is MEA at the donor's share; rules by tensor kind only are Mix N. Null for anything else.
 */
export function presetOf(recipe: Recipe): { kind: 'mea'; donor: string; alpha: number } | { kind: 'chimera'; donor: string } | { kind: 'mix' } | null {
  const rules = recipe.rules;
  const byKindOnly = (r: Rule) => Object.keys(r.select).length === 1 && r.select.kind !== undefined;
  const base = recipe.base ?? Object.keys(recipe.parents)[0];
  if (rules.length === 1 && byKindOnly(rules[0]!) && rules[0]!.select.kind === 'routed_expert') {
    const r = rules[0]!;
    if (r.from !== undefined && r.from !== base) return { kind: 'chimera', donor: r.from };
    const donors = Object.keys(r.weights ?? {}).filter((p) => p !== base);
    if (donors.length === 1) return { kind: 'mea', donor: donors[0]!, alpha: r.weights![donors[0]!]! };
    return null;
  }
  if (rules.length > 1 && rules.every(byKindOnly)) return { kind: 'mix' };
  return null;
}
