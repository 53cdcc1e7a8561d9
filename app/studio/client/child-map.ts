// The child map: the plan painted on the base's heatmap cells. Colour says where a cell's values
// come from (a parent, or a blend of the parents it mixes); a badge says what an expert edit or
// change does to it; the threshold's hatch is drawn by GridCanvas. `cellDecision` puts in words
// what decides one cell, for the inspector under the heatmaps.
import type { Recipe, Rule } from '../../engine/recipe/schema.ts';
import { CHILD, type PlanSummary, type TensorIndex } from '../shared/studio-api.ts';
import { ASSEMBLED_RGB, blend, MISSING_RGB, parentColors, ZERO_RGB, type Rgb } from './colors.ts';
import { itemWhere } from './heat-data.ts';

export const BADGE = { removed: '×', transplanted: 'T', mute: '0', off: '−', on: '+' } as const;
export const BADGE_HELP: Record<keyof typeof BADGE, string> = {
  removed: 'removed',
  transplanted: 'transplanted (another expert in this slot)',
  mute: 'muted (zero output)',
  off: 'switched off (never routed to)',
  on: 'switched on (always routed to)',
};

export interface ChildPainter {
  paint: (i: number, out: Uint8ClampedArray, at: number) => void;
  badge: (i: number) => string | null;
  colors: Rgb[];
}

/** Colours and badges for the child map of `plan` over the base's `index`. */
export function childPainter(plan: PlanSummary, recipe: Recipe, index: TensorIndex): ChildPainter {
  const colors = parentColors(plan.parents, plan.base);
  const mixColors = plan.childMap.mixes.map((w) => blend(colors, w));
  const { how, mix } = plan.childMap;
  const put = (c: Rgb, out: Uint8ClampedArray, at: number) => {
    out[at] = c[0];
    out[at + 1] = c[1];
    out[at + 2] = c[2];
  };
  const badges = badgeMap(plan, recipe);
  return {
    colors,
    paint(i, out, at) {
      const h = how[i]!;
      if (h < colors.length) put(colors[h]!, out, at);
      else if (h === CHILD.mixed) put(mixColors[mix[i]!]!, out, at);
      else if (h === CHILD.zero) put(ZERO_RGB, out, at);
      else if (h === CHILD.assembled || h === CHILD.value) put(ASSEMBLED_RGB, out, at);
      else put(MISSING_RGB, out, at);
    },
    badge(i) {
      if (index.expert[i]! < 0) return null;
      return badges.get(`${index.layer[i]}:${index.expert[i]}`) ?? null;
    },
  };
}

/** (layer:expert) → badge, for the recipe's edits and the plan's removed and transplanted slots. */
function badgeMap(plan: PlanSummary, recipe: Recipe): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of recipe.edits) out.set(`${e.layer}:${e.expert}`, BADGE[e.action]);
  for (const s of plan.childMap.slots) out.set(`${s.layer}:${s.expert}`, BADGE[s.how]);
  return out;
}

/** A rule in a line: what it selects and what it takes. */
export function ruleText(rule: Rule): string {
  const sel = Object.entries(rule.select)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : String(v)}`)
    .join(' · ');
  const take = rule.from !== undefined ? `from ${rule.from}` : Object.entries(rule.weights ?? {}).map(([p, w]) => `${p} ${w}`).join(', ');
  return `${sel} → ${take}`;
}

export interface CellDecision {
  name: string;
  where: string;
  /** What makes it: copied from, mixed, zeros, removed … */
  made: string;
  /** The rule (or the absence of one) that decides it. */
  decidedBy: string;
  /** Expert edit, slot change and threshold, where they apply. */
  notes: string[];
}

/** In words: how the child makes item `i` of the base, and which part of the recipe decides it. */
export function cellDecision(i: number, plan: PlanSummary, recipe: Recipe, index: TensorIndex, kept: boolean): CellDecision {
  const { how, mix, mixes, rule } = plan.childMap;
  const h = how[i]!;
  let made: string;
  if (h < plan.parents.length) made = plan.parents[h] === plan.base ? `copied from the base, ${plan.base}` : `copied from ${plan.parents[h]}`;
  else if (h === CHILD.mixed)
    made = `mixed: ${mixes[mix[i]!]!.map((w, k) => (w !== 0 ? `${plan.parents[k]} ${+w.toPrecision(6)}` : '')).filter(Boolean).join(' + ')}`;
  else if (h === CHILD.zero) made = 'all zeros (muted)';
  else if (h === CHILD.value || h === CHILD.assembled) made = 'assembled from several sources (rows or entries decided separately)';
  else if (h === CHILD.removed) made = 'not in the child: removed';
  else made = 'not in the child';
  const r = rule[i]!;
  const decidedBy =
    h === CHILD.removed
      ? 'experts: remove'
      : r >= 0 && recipe.rules[r]
        ? `rule ${r + 1}: ${ruleText(recipe.rules[r]!)}`
        : `no rule matches: from the base, ${plan.base}`;
  const notes: string[] = [];
  const layer = index.layer[i]!;
  const expert = index.expert[i]!;
  if (expert >= 0) {
    const edit = recipe.edits.find((e) => e.layer === layer && e.expert === expert);
    if (edit) notes.push(`edit: ${BADGE_HELP[edit.action]}`);
    const slot = plan.childMap.slots.find((s) => s.layer === layer && s.expert === expert && s.how === 'transplanted');
    if (slot) notes.push(`slot takes ${slot.text}`);
  }
  if (kept) notes.push('the threshold keeps it from the base');
  return { name: index.names[i]!, where: itemWhere(index, i), made, decidedBy, notes };
}
