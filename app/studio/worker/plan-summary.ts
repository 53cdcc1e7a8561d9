// A merge plan as the studio shows it: the engine's counts and words, the threshold's candidates,
// and the child map, which says for every item of the base (a heatmap cell) how the child makes it.
import { itemName, type ModelItem } from '../../engine/model/items.ts';
import { describeExpertChanges, expertMapRows } from '../../engine/plan/experts.ts';
import type { MergePlan, PlannedCell } from '../../engine/plan/types.ts';
import { CHILD, type ChildMap, type PlanSummary } from '../shared/studio-api.ts';

/**
 * `baseItems` and `baseIndex` are the base's items and their positions (the order of its
 * TensorIndex), so the candidates and the child map index the same cells the heatmaps draw.
 */
export function planSummary(plan: MergePlan, baseItems: readonly ModelItem[], baseIndex: Map<string, number>): PlanSummary {
  const n = baseItems.length;
  const made: PlanSummary['made'] = { copied: 0, converted: 0, mixed: 0, muted: 0, patched: 0, assembled: 0 };
  const candIndex: number[] = [];
  const candMask: number[] = [];
  const ruleCounts = plan.recipe.rules.map(() => 0);
  const parentBit = new Map(plan.parentOrder.map((p, k) => [p, k]));
  const how = new Uint8Array(n).fill(CHILD.none);
  const mix = new Uint16Array(n);
  const rule = new Int16Array(n).fill(-1);
  const mixes: number[][] = [];
  const mixId = new Map<string, number>();
  /** What one cell does, as a child-map code (and the mix's id). */
  const codeOf = (c: PlannedCell): [number, number] => {
    const op = c.op;
    if (op.type === 'copy') return [parentBit.get(op.from.parent) ?? CHILD.none, 0];
    if (op.type === 'zero') return [CHILD.zero, 0];
    if (op.type === 'value') return [CHILD.value, 0];
    const w = plan.parentOrder.map(() => 0);
    for (const x of op.inputs) w[parentBit.get(x.from.parent)!]! += x.weight;
    const key = w.join(',');
    let id = mixId.get(key);
    if (id === undefined) mixId.set(key, (id = mixes.push(w) - 1));
    return [CHILD.mixed, id];
  };

  for (const t of plan.tensors) {
    made[t.made]++;
    // A heatmap cell is an item of the base: an expert's region of a fused tensor, else the whole
    // tensor (a router's rows are one item, whatever each row's source).
    const regions = t.role.kind === 'routed_expert' && (t.view.slabs > 1 || t.slabs[0]!.length > 1);
    // An added expert has no cell in the base's grid: the map lists it per layer.
    if (t.slot?.how === 'added') {
      for (const cells of t.slabs) for (const c of cells) if (c.rule >= 0) ruleCounts[c.rule]!++;
      continue;
    }
    const masks = new Map<string, number>();
    t.slabs.forEach((cells, slab) => {
      const slot = t.slots?.[slab];
      for (const c of cells) {
        if (c.rule >= 0) ruleCounts[c.rule]!++;
        if (slot?.how === 'added') continue;
        const name = regions ? itemName(t.baseName, slot?.baseExpert ?? slab, c.proj, !!c.bias) : t.baseName;
        const i = baseIndex.get(name);
        if (i !== undefined) {
          const [code, m] = codeOf(c);
          if (how[i] === CHILD.none) {
            how[i] = code;
            mix[i] = m;
            rule[i] = c.rule;
          } else if (how[i] !== code || mix[i] !== m) how[i] = CHILD.assembled;
        }
        if (c.op.type !== 'mix' || !c.thresholdBase) continue;
        let mask = masks.get(name) ?? 0;
        for (const x of c.op.inputs) if (x.weight !== 0 && x.from.parent !== plan.base) mask |= 1 << parentBit.get(x.from.parent)!;
        masks.set(name, mask);
      }
    });
    for (const [name, mask] of masks) {
      const i = baseIndex.get(name);
      if (i === undefined) continue;
      candIndex.push(i);
      candMask.push(mask >>> 0);
    }
  }

  // Slots: a base expert no child slot keeps was removed; a transplanted slot names its source.
  const slots: ChildMap['slots'] = [];
  const added: ChildMap['added'] = [];
  for (const { layer, slots: layerSlots } of plan.expertMap ?? []) {
    for (const s of layerSlots) {
      if (s.how === 'transplanted' && s.baseExpert !== undefined)
        slots.push({ layer, expert: s.baseExpert, how: 'transplanted', text: `${s.source!.parent} layer ${s.source!.layer} expert ${s.source!.expert} (${s.entry}; router ${s.router === 'source' ? 'row from the source' : 'row kept'})` });
      if (s.how === 'added') added.push({ layer, text: `${s.source!.parent} layer ${s.source!.layer} expert ${s.source!.expert} (${s.entry})` });
    }
  }
  const removed = new Set<string>();
  baseItems.forEach((it, i) => {
    if (how[i] !== CHILD.none || it.role.kind !== 'routed_expert' || it.role.expert === undefined) return;
    how[i] = CHILD.removed;
    const key = `${it.role.layer}:${it.role.expert}`;
    if (removed.has(key)) return;
    removed.add(key);
    slots.push({ layer: it.role.layer!, expert: it.role.expert, how: 'removed', text: 'removed (experts: remove)' });
  });

  return {
    files: plan.files.map((f) => ({ name: f.name, bytes: f.bytes, what: f.what })),
    totalBytes: plan.totalBytes,
    description: plan.description,
    byKind: plan.byKind.map((k) => ({ ...k, from: { ...k.from } })),
    tensors: plan.tensors.length,
    made,
    ruleCounts,
    experts: plan.experts,
    expertChanges: describeExpertChanges(plan),
    expertRows: expertMapRows(plan),
    warnings: [...plan.warnings],
    parents: [...plan.parentOrder],
    base: plan.base,
    candidates: { index: Int32Array.from(candIndex), mask: Uint32Array.from(candMask) },
    childMap: { how, mix, mixes, rule, slots, added },
  };
}

/** The typed arrays of a summary, to transfer rather than copy. */
export function summaryBuffers(s: PlanSummary): ArrayBuffer[] {
  return [s.candidates.index.buffer, s.candidates.mask.buffer, s.childMap.how.buffer, s.childMap.mix.buffer, s.childMap.rule.buffer] as ArrayBuffer[];
}
