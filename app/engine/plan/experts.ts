// Which experts the child has, layer by layer: the recipe's `experts:` section (remove,
// transplant, add) turned into child slots. Every index in the recipe is in the parents'
// numbering; the child's numbering follows from it: removed experts drop out, the ones after
// them move down, added ones are appended in order.
import { MoeError } from '../io.ts';
import type { Model } from '../model/types.ts';
import { rangeText } from '../report/format.ts';
import type { IndexSet, Recipe } from '../recipe/schema.ts';
import { indexRanges } from '../recipe/select.ts';
import type { ChildSlot, MergePlan } from './types.ts';

export interface ExpertSlots {
  /** Child slots per layer with routed experts (MoE and MTP layers). */
  byLayer: Map<number, ChildSlot[]>;
  /** Experts per layer in the child. */
  experts: number;
  /** True when the recipe changes anything (otherwise every slot is the base's own expert). */
  changed: boolean;
  /** Parents that give experts, by entry. */
  donors: Set<string>;
}

/** Layers with routed experts in the base, MTP layers included, in order. */
export function expertLayers(base: Model): number[] {
  return [...base.experts.keys()].sort((a, b) => a - b);
}

function indices(set: IndexSet, all: number[], where: string, what: string, valid: (i: number) => boolean, validText: string): number[] {
  const ranges = indexRanges(set, where);
  if (ranges === 'all') return all;
  const out: number[] = [];
  for (const [a, b] of ranges) {
    if (b - a > 1_000_000) throw new MoeError(`${where}: ${what} ${a}-${b} is not a range any model has`);
    for (let i = a; i <= b; i++) {
      if (!valid(i)) throw new MoeError(`${where}: ${what} ${i} ${validText}`);
      out.push(i);
    }
  }
  return [...new Set(out)].sort((x, y) => x - y);
}

export function resolveExpertSlots(recipe: Recipe, baseName: string, parents: Map<string, Model>): ExpertSlots {
  const base = parents.get(baseName)!;
  const layers = expertLayers(base);
  const layerSet = new Set(layers);
  const E = base.layout.experts;
  const allExperts = Array.from({ length: E }, (_, i) => i);
  const byLayer = new Map<number, ChildSlot[]>(layers.map((l) => [l, allExperts.map((e): ChildSlot => ({ baseExpert: e, how: 'kept', router: 'rules' }))]));
  const changes = recipe.experts;
  const donors = new Set<string>();
  if (!changes || (changes.remove.length === 0 && changes.transplant.length === 0 && changes.add.length === 0)) {
    return { byLayer, experts: E, changed: false, donors };
  }
  const layerText = `routed experts (layers ${rangeText(layers)})`;
  const layersOf = (set: IndexSet, where: string) => indices(set, layers, where, 'layer', (l) => layerSet.has(l), `of the base "${baseName}" has no ${layerText}`);
  const expertsOf = (set: IndexSet, where: string) => indices(set, allExperts, where, 'expert', (e) => e < E, `is out of range: the base "${baseName}" has ${E} experts per layer (0-${E - 1})`);

  /** Checks that a parent has the expert an entry names; returns the source. */
  const sourceOf = (where: string, ref: { parent: string; layer?: number; expert?: number }, layer: number, expert: number) => {
    const model = parents.get(ref.parent);
    if (!model) throw new MoeError(`${where}: from parent "${ref.parent}", which is not a parent (${[...parents.keys()].join(', ')})`);
    const srcLayer = ref.layer ?? layer;
    const le = model.experts.get(srcLayer);
    if (!le) {
      throw new MoeError(`${where}: "${ref.parent}" has no routed experts in layer ${srcLayer} (its layers with experts: ${rangeText(expertLayers(model))})`);
    }
    const srcExpert = ref.expert ?? expert;
    if (srcExpert >= le.experts) throw new MoeError(`${where}: "${ref.parent}" has ${le.experts} experts in layer ${srcLayer} (0-${le.experts - 1}), not expert ${srcExpert}`);
    if (ref.parent !== baseName) donors.add(ref.parent);
    return { parent: ref.parent, layer: srcLayer, expert: srcExpert };
  };

  const removed = new Map<number, Set<number>>(layers.map((l) => [l, new Set()]));
  changes.remove.forEach((r, i) => {
    const where = `experts.remove ${i + 1}`;
    for (const l of layersOf((r.layers ?? r.layer)!, where)) for (const e of expertsOf((r.experts ?? r.expert)!, where)) removed.get(l)!.add(e);
  });

  changes.transplant.forEach((t, i) => {
    const where = `experts.transplant ${i + 1}`;
    for (const l of layersOf((t.layers ?? t.layer)!, where)) {
      for (const e of expertsOf((t.experts ?? t.expert)!, where)) {
        if (removed.get(l)!.has(e)) throw new MoeError(`${where}: layer ${l} expert ${e} is also removed (experts.remove)`);
        const slot = byLayer.get(l)![e]!;
        if (slot.how === 'transplanted') throw new MoeError(`${where}: layer ${l} expert ${e} already takes another expert (${slot.entry})`);
        slot.how = 'transplanted';
        slot.source = sourceOf(where, t.from, l, e);
        slot.router = t.router === 'source' ? 'source' : 'rules';
        slot.entry = `transplant ${i + 1}`;
      }
    }
  });

  const added = new Map<number, ChildSlot[]>(layers.map((l) => [l, []]));
  changes.add.forEach((a, i) => {
    const where = `experts.add ${i + 1}`;
    for (const l of layersOf((a.layers ?? a.layer)!, where)) {
      added.get(l)!.push({ how: 'added', source: sourceOf(where, a.from, l, a.from.expert), router: 'source', entry: `add ${i + 1}` });
    }
  });

  // The child's slots: the base's minus the removed, then the added, in order.
  const counts = new Map<number, number>();
  for (const l of layers) {
    const slots = byLayer.get(l)!.filter((s) => !removed.get(l)!.has(s.baseExpert!)).concat(added.get(l)!);
    byLayer.set(l, slots);
    counts.set(l, slots.length);
  }
  const distinct = [...new Set(counts.values())];
  if (distinct.length > 1) {
    const groups = distinct.map((n) => `${n} in layer${[...counts].filter(([, c]) => c === n).length > 1 ? 's' : ''} ${rangeText([...counts].filter(([, c]) => c === n).map(([l]) => l))}`);
    throw new MoeError(`every MoE layer must end with the same number of experts (the config states one count), but the child would have ${groups.join('; ')}`);
  }
  const Eout = distinct[0] ?? E;
  if (Eout === 0) throw new MoeError('the expert changes remove every expert: a MoE layer needs at least one');
  const k = base.layout.expertsPerToken;
  if (k !== undefined && k > Eout) {
    throw new MoeError(`the child would have ${Eout} experts per layer, fewer than the ${k} each token is routed to (num_experts_per_tok); keep at least ${k}`);
  }

  // Group-limited routing: groups are contiguous ranges of E / n_group experts.
  const G = base.layout.groups;
  if (G !== undefined && G > 1) {
    const per = E / G;
    for (const l of layers) {
      const lost = Array.from({ length: G }, () => 0);
      for (const e of removed.get(l)!) lost[Math.floor(e / per)]!++;
      if (lost.some((n) => n !== lost[0])) {
        throw new MoeError(
          `layer ${l}: routing is group-limited (n_group ${G}: experts in groups of ${per}), and each group must lose the same number of experts, ` +
            `but the groups would lose ${lost.join(', ')}`,
        );
      }
    }
    const addedCount = added.get(layers[0]!)!.length;
    if (addedCount > 0 && base.layout.topkGroups !== G) {
      throw new MoeError(
        `experts.add: routing is group-limited (n_group ${G}, topk_group ${base.layout.topkGroups ?? '?'}): experts appended at the end ` +
          'would fall into the last group and shift every group boundary. Adding is possible only where every group is chosen (topk_group = n_group)',
      );
    }
    if (Eout % G !== 0) throw new MoeError(`the child would have ${Eout} experts per layer, which n_group ${G} does not divide into equal groups`);
    // DeepSeek-V3's routing (topk_method noaux_tc, also Kimi-K2 and GLM-4.5) scores a group by the
    // sum of its two best experts: a group of one makes transformers fail on every token ("selected
    // index k out of range", seen with transformers 5.17). DeepSeek-V2's group_limited_greedy takes
    // the best one only.
    const greedy = (text(base.config, 'topk_method') ?? text((base.config as { text_config?: Record<string, unknown> }).text_config, 'topk_method')) === 'group_limited_greedy';
    if (!greedy && Eout / G < 2) {
      throw new MoeError(
        `the child would have ${Eout / G} expert per group (n_group ${G}), but group-limited routing scores each group by the sum of its two best experts, so every group needs at least 2`,
      );
    }
  }
  return { byLayer, experts: Eout, changed: true, donors };
}

function text(o: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = o?.[key];
  return typeof v === 'string' ? v : undefined;
}

/** Expert changes in words: "layers 0-47: experts 5, 9 removed; 1 transplanted; 1 added (48 → 47 experts)". */
export function describeExpertChanges(plan: MergePlan): string {
  if (!plan.expertMap) return '';
  const base = plan.parents.get(plan.base)!.layout.experts;
  const parts: string[] = [];
  const byText = new Map<string, number[]>();
  for (const { layer, slots } of plan.expertMap) {
    const kept = new Set(slots.map((s) => s.baseExpert).filter((e): e is number => e !== undefined));
    const removed = Array.from({ length: base }, (_, e) => e).filter((e) => !kept.has(e));
    const bits: string[] = [];
    if (removed.length > 0) bits.push(`expert${removed.length > 1 ? 's' : ''} ${rangeText(removed)} removed`);
    const tr = slots.map((s, j) => ({ s, j })).filter(({ s }) => s.how === 'transplanted');
    if (tr.length > 0) bits.push(tr.map(({ s }) => `expert ${s.baseExpert} ← ${s.source!.parent} L${s.source!.layer}/E${s.source!.expert}`).join(', '));
    const add = slots.map((s, j) => ({ s, j })).filter(({ s }) => s.how === 'added');
    if (add.length > 0) bits.push(add.map(({ s, j }) => `new ${j} ← ${s.source!.parent} L${s.source!.layer}/E${s.source!.expert}`).join(', '));
    if (bits.length === 0) continue;
    const text = bits.join('; ');
    byText.set(text, [...(byText.get(text) ?? []), layer]);
  }
  for (const [text, layers] of byText) parts.push(`layer${layers.length > 1 ? 's' : ''} ${rangeText(layers)}: ${text}`);
  return `Experts per layer ${base} → ${plan.experts} (child numbering: removed experts drop out, later ones move down, added ones are appended). ${parts.join('. ')}.`;
}


/** One row of the child's expert map: in these layers, child expert `child` comes from `from`. */
export interface ExpertMapRow {
  layers: number[];
  child: number;
  from: string;
}

/**
 * The child slots that are not simply the base's own expert at its own index, grouped by layers
 * with the same slots: what the model card and the studio show before and after a merge.
 */
export function expertMapRows(plan: MergePlan): ExpertMapRow[] {
  if (!plan.expertMap) return [];
  const groups = new Map<string, number[]>();
  for (const { layer, slots } of plan.expertMap) {
    const key = JSON.stringify(slots.map((s) => [s.how, s.baseExpert, s.source, s.router]));
    groups.set(key, [...(groups.get(key) ?? []), layer]);
  }
  const rows: ExpertMapRow[] = [];
  for (const layers of groups.values()) {
    const slots = plan.expertMap.find((m) => m.layer === layers[0])!.slots;
    slots.forEach((s, j) => {
      if (s.how === 'kept' && s.baseExpert === j) return;
      const from =
        s.how === 'kept'
          ? `expert ${s.baseExpert} of ${plan.base} (renumbered)`
          : `${s.source!.parent} layer ${s.source!.layer} expert ${s.source!.expert} (${s.entry}${s.how === 'transplanted' ? `, in place of expert ${s.baseExpert}; router ${s.router === 'source' ? 'row from the source' : 'row kept'}` : ''})`;
      rows.push({ layers, child: j, from });
    });
  }
  return rows;
}
