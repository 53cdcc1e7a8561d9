// Grids for the heatmaps, derived once per base tensor index: routed experts as layers × experts
// per projection, the other per-layer tensors as layers × tensor slots, and the rest as a list.
import { PROJECTIONS, TENSOR_KINDS, type Projection, type TensorKind } from '../../engine/model/types.ts';
import type { TensorIndex } from '../shared/studio-api.ts';

export interface Grid {
  rows: number;
  cols: number;
  /** Tensor index per cell (row-major), -1 where none. */
  cells: Int32Array;
  rowLabels: number[];
  /** What each row's label reads, where it is not the layer number ("MTP"). */
  rowNames?: string[];
  /** Column labels (slot names) for the strip; experts are numbered. */
  colLabels?: string[];
  colKinds?: TensorKind[];
  /** Routed experts stored fused (one tensor for all experts of a layer). */
  fused?: boolean;
}

export interface HeatLayout {
  experts: Record<Projection, Grid | null>;
  strip: Grid | null;
  globals: number[];
  routedCount: number;
}

const cache = new WeakMap<TensorIndex, HeatLayout>();
const ROUTED = TENSOR_KINDS.indexOf('routed_expert');
const STRIP_ORDER: TensorKind[] = ['attention', 'norm', 'router', 'router_bias', 'shared_expert', 'dense_mlp', 'other', 'embedding', 'lm_head'];

export function heatLayout(index: TensorIndex, expertsPerLayer: number): HeatLayout {
  const hit = cache.get(index);
  if (hit) return hit;
  const n = index.names.length;
  const experts = {} as Record<Projection, Grid | null>;
  let routedCount = 0;
  for (let p = 0; p < PROJECTIONS.length; p++) {
    const layers = new Set<number>();
    let maxExpert = -1;
    let fused = false;
    for (let i = 0; i < n; i++) {
      if (index.kind[i] !== ROUTED || index.proj[i] !== p) continue;
      layers.add(index.layer[i]!);
      if (index.expert[i]! < 0) fused = true;
      else maxExpert = Math.max(maxExpert, index.expert[i]!);
    }
    if (layers.size === 0) {
      experts[PROJECTIONS[p]!] = null;
      continue;
    }
    const rowLabels = [...layers].sort((a, b) => a - b);
    const rowOf = new Map(rowLabels.map((l, r) => [l, r]));
    const cols = Math.max(maxExpert + 1, fused ? Math.max(1, expertsPerLayer) : 1);
    const cells = new Int32Array(rowLabels.length * cols).fill(-1);
    for (let i = 0; i < n; i++) {
      if (index.kind[i] !== ROUTED || index.proj[i] !== p) continue;
      routedCount++;
      const r = rowOf.get(index.layer[i]!)!;
      const e = index.expert[i]!;
      if (e >= 0) cells[r * cols + e] = i;
      else for (let c = 0; c < cols; c++) if (cells[r * cols + c] === -1) cells[r * cols + c] = i;
    }
    const grid: Grid = { rows: rowLabels.length, cols, cells, rowLabels, fused };
    if (rowLabels.some((l) => index.mtpLayers.includes(l))) grid.rowNames = rowLabels.map((l) => (index.mtpLayers.includes(l) ? 'MTP' : String(l)));
    experts[PROJECTIONS[p]!] = grid;
  }

  // Per-layer tensors other than routed experts: one column per slot (name without the layer).
  const slots = new Map<string, { kind: TensorKind; label: string }>();
  const slotOf = new Int32Array(n).fill(-1);
  let maxLayer = -1;
  const globals: number[] = [];
  const keyOf = (i: number): string => {
    const name = index.names[i]!;
    const l = index.layer[i]!;
    const re = new RegExp(`\\.${l}\\.`);
    return name.replace(re, '.*.');
  };
  const slotKeys: string[] = [];
  for (let i = 0; i < n; i++) {
    if (index.kind[i] === ROUTED) continue;
    if (index.layer[i]! < 0) {
      globals.push(i);
      continue;
    }
    maxLayer = Math.max(maxLayer, index.layer[i]!);
    const key = keyOf(i);
    if (!slots.has(key)) {
      const tail = key.split('.*.')[1] ?? key;
      slots.set(key, { kind: TENSOR_KINDS[index.kind[i]!]!, label: tail.replace(/\.weight$/, '') });
      slotKeys.push(key);
    }
  }
  slotKeys.sort((a, b) => {
    const ka = STRIP_ORDER.indexOf(slots.get(a)!.kind);
    const kb = STRIP_ORDER.indexOf(slots.get(b)!.kind);
    return ka - kb || slotKeys.indexOf(a) - slotKeys.indexOf(b);
  });
  const colOf = new Map(slotKeys.map((k, c) => [k, c]));
  let strip: Grid | null = null;
  if (slotKeys.length > 0) {
    const rows = maxLayer + 1;
    const cols = slotKeys.length;
    const cells = new Int32Array(rows * cols).fill(-1);
    for (let i = 0; i < n; i++) {
      if (index.kind[i] === ROUTED || index.layer[i]! < 0) continue;
      const c = colOf.get(keyOf(i))!;
      slotOf[i] = c;
      cells[index.layer[i]! * cols + c] = i;
    }
    strip = {
      rows,
      cols,
      cells,
      rowLabels: Array.from({ length: rows }, (_, r) => r),
      colLabels: slotKeys.map((k) => slots.get(k)!.label),
      colKinds: slotKeys.map((k) => slots.get(k)!.kind),
    };
  }
  const layout = { experts, strip, globals, routedCount };
  cache.set(index, layout);
  return layout;
}

/** Where an item sits, in words: "routed expert · layer 3 · expert 5 · up" (the MTP layer said so). */
export function itemWhere(index: TensorIndex, i: number): string {
  const parts: string[] = [KIND_LABEL[TENSOR_KINDS[index.kind[i]!]!]];
  const layer = index.layer[i]!;
  if (layer >= 0) parts.push(`layer ${layer}${index.mtpLayers.includes(layer) ? ' (multi-token prediction)' : ''}`);
  if (index.expert[i]! >= 0) parts.push(`expert ${index.expert[i]}`);
  if (index.proj[i]! >= 0) parts.push(PROJECTIONS[index.proj[i]!]!);
  return parts.join(' · ');
}

export const KIND_LABEL: Record<TensorKind, string> = {
  embedding: 'embedding',
  attention: 'attention',
  norm: 'norm',
  router: 'router',
  router_bias: 'router bias',
  routed_expert: 'routed expert',
  shared_expert: 'shared expert',
  dense_mlp: 'dense MLP',
  lm_head: 'LM head',
  other: 'other',
};

/** Labels for narrow heatmap columns, where the full label does not fit. */
export const KIND_SHORT: Record<TensorKind, string> = {
  embedding: 'emb',
  attention: 'attn',
  norm: 'norm',
  router: 'gate',
  router_bias: 'bias',
  routed_expert: 'exp',
  shared_expert: 'shared',
  dense_mlp: 'MLP',
  lm_head: 'head',
  other: 'misc',
};
